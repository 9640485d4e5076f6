"""Where each writer puts its logs in the storage stage's access-logs bucket.

The bucket is the storage stage's; the layout is shared by the stages that write there (the
storage and cicd stages' buckets' S3 server access logs, the serving stage's load balancer), so
it lives here rather than in any one of them. The bucket's policy admits each writer under its
prefix only.
"""

# Where S3 server access logs land: one folder per source bucket.
S3_ACCESS_LOG_PREFIX = "s3-access/"
# Where load balancer access logs land (ELB appends AWSLogs/<account>/elasticloadbalancing/...).
LOAD_BALANCER_LOG_PREFIX = "alb"
