"""Every name that crosses a stack boundary, defined once.

A producing stage publishes a `Wire` as an Output, a consuming stage declares the same `Wire` as a
Parameter, and the composer connects the two by name. Using these constants on both sides turns
a typo into a NameError at import instead of a broken stack at deploy.

Conditional wires. Some wires name a resource that its producer creates only under a condition
(the endpoint exists once a model is supplied), though the name itself is known before. Such a
wire carries a `Presence`: a companion wire ("true" or "false") and the name of the condition
every consumer gets from it.
- The producer outputs the wire with its local condition:
  `b.output(ENDPOINT_NAME, value, condition=MODEL_SUPPLIED)`, which also outputs the companion
  (`EndpointExists`: "true" while MODEL_SUPPLIED holds; `condition=True` where it always does).
  A conditional wire without a condition, or a condition on a plain wire, is refused. The value
  is output unconditionally (a fixed name, known before the resource exists).
- A consumer that declares the wire (`b.input(ENDPOINT_NAME)`) gets the companion parameter and
  the condition `HasEndpoint` (= the companion is "true") in its template; `b.presence(wire)`
  declares both and returns the condition's name.
- The composer (pipeline.py) refuses a consumer whose resource or output uses the wire outside
  that condition: the resource must carry it (or an Fn::And holding it), or the use must sit in
  the true branch of an Fn::If on it.
"""

from dataclasses import dataclass

# The companion wire's two values.
PRESENT, ABSENT = "true", "false"


@dataclass(frozen=True)
class Wire:
    name: str
    description: str
    # The consumer's parameter type. Lists travel between stacks as comma-joined strings, which
    # a List<...> parameter accepts as is.
    type: str = "String"
    # The consumer's parameter's AllowedValues, when the value is one of a few.
    allowed_values: tuple[str, ...] = ()
    # Set when the value names a resource its producer creates only under a condition.
    presence: "Presence | None" = None


@dataclass(frozen=True)
class Presence:
    """Whether what a conditional wire names exists: the companion wire the producer outputs
    ("true"/"false") and the condition a consumer's template gets from it."""

    wire: Wire
    condition: str


def presence(name: str, what: str, condition: str) -> Presence:
    return Presence(Wire(name, f"{PRESENT} once {what} exists, {ABSENT} before",
                         allowed_values=(PRESENT, ABSENT)), condition)


# network
VPC_ID = Wire("VpcId", "VPC the pipeline's compute runs in", "AWS::EC2::VPC::Id")
VPC_CIDR = Wire("VpcCidrBlock", "IPv4 range of that VPC, for security group rules")
PRIVATE_SUBNET_IDS = Wire(
    "PrivateSubnetIds", "Private subnets, one per availability zone", "List<AWS::EC2::Subnet::Id>")
PRIVATE_SUBNET_ZONES = Wire(
    "PrivateSubnetZones", "Availability zone of each private subnet, in the same order",
    "List<AWS::EC2::AvailabilityZone::Name>")
ENDPOINT_SECURITY_GROUP_ID = Wire(
    "EndpointSecurityGroupId", "Security group of the interface VPC endpoints",
    "AWS::EC2::SecurityGroup::Id")
PUBLIC_SUBNET_IDS = Wire(
    "PublicSubnetIds", "Public subnets, one per availability zone (only with internet_gateway)",
    "List<AWS::EC2::Subnet::Id>")

# storage
DATA_KEY_ARN = Wire("DataKeyArn", "Customer-managed KMS key that encrypts the pipeline's data")
RAW_BUCKET_NAME = Wire("RawBucketName", "Bucket of raw data as ingested")
RAW_BUCKET_ARN = Wire("RawBucketArn", "ARN of the raw data bucket")
PROCESSED_BUCKET_NAME = Wire("ProcessedBucketName", "Bucket of cleaned, typed data")
PROCESSED_BUCKET_ARN = Wire("ProcessedBucketArn", "ARN of the processed data bucket")
ARTIFACTS_BUCKET_NAME = Wire("ArtifactsBucketName", "Bucket of models, scripts and reports")
ARTIFACTS_BUCKET_ARN = Wire("ArtifactsBucketArn", "ARN of the artifacts bucket")
ACCESS_LOGS_BUCKET_NAME = Wire(
    "AccessLogsBucketName", "Bucket receiving S3, load balancer and Redshift access logs")
DATA_KEY_ALIAS = Wire(
    "DataKeyAlias", "Alias (alias/...) of the data key, for people and SDK calls")

# ingestion
STREAM_NAME = Wire("IngestStreamName", "Kinesis data stream producers write to")
STREAM_ARN = Wire("IngestStreamArn", "ARN of the ingest stream")
DELIVERY_STREAM_NAME = Wire("DeliveryStreamName", "Firehose delivery stream into the raw bucket")
DELIVERY_STREAM_ARN = Wire("DeliveryStreamArn", "ARN of the Firehose delivery stream")
RAW_DATA_PREFIX = Wire("RawDataPrefix", "Key prefix under which Firehose writes raw records")
PRODUCER_POLICY_ARN = Wire(
    "ProducerPolicyArn", "Managed policy granting write access to the ingest stream")
CONSUMER_FUNCTION_NAME = Wire("ConsumerFunctionName", "Real-time consumer Lambda on the stream")
CONSUMER_FAILURE_QUEUE_NAME = Wire(
    "ConsumerFailureQueueName", "Queue told of stream batches the consumer gave up on")
EMR_CONSUMER_APPLICATION_ID = Wire(
    "EmrConsumerApplicationId", "EMR Serverless application of the stream consumer job")
EC2_CONSUMER_GROUP_NAME = Wire(
    "Ec2ConsumerGroupName", "Auto Scaling group of the KCL stream consumer on EC2")
EC2_CONSUMER_LEASE_TABLE_NAME = Wire(
    "Ec2ConsumerLeaseTableName", "KCL lease table of the EC2 stream consumer (its application name)")

# etl
GLUE_DATABASE_NAME = Wire(
    "GlueDatabaseName", "Glue Data Catalog database of raw and processed tables")
ETL_JOB_NAME = Wire("EtlJobName", "Glue job that turns raw records into processed data")
PROCESSED_DATA_PREFIX = Wire(
    "ProcessedDataPrefix", "Key prefix in the processed bucket where the ETL job writes")
PROCESSED_TABLE_NAME = Wire("ProcessedTableName", "Glue table over the processed data")

# analytics
REDSHIFT_ENDPOINT_ADDRESS = Wire("RedshiftEndpointAddress", "Host name of the Redshift endpoint")
REDSHIFT_ENDPOINT_PORT = Wire("RedshiftEndpointPort", "Port of the Redshift endpoint")
REDSHIFT_WORKGROUP_NAME = Wire(
    "RedshiftWorkgroupName", "Redshift Serverless workgroup (or provisioned cluster id)")
REDSHIFT_ROLE_ARN = Wire("RedshiftRoleArn", "Role Redshift uses to COPY and query the catalog")
REDSHIFT_SECRET_ARN = Wire("RedshiftAdminSecretArn", "Secrets Manager secret of the admin user")

# training
TRAINING_PIPELINE_NAME = Wire("TrainingPipelineName", "SageMaker pipeline that trains the model")
TRAINING_PIPELINE_ARN = Wire("TrainingPipelineArn", "ARN of the training pipeline")
MODEL_PACKAGE_GROUP_NAME = Wire(
    "ModelPackageGroupName", "SageMaker model registry group of the trained models")
TRAINING_ROLE_ARN = Wire("TrainingRoleArn", "Role the training pipeline and its jobs run as")
# What starts one training run, whichever engine trains (stages.training.engine): the SageMaker
# pipeline (sagemaker:StartPipelineExecution) or the CodeBuild project (codebuild:StartBuild).
# A starter tells them apart by the ARN's service, so no other stage reads the engine.
TRAINING_START_ARN = Wire(
    "TrainingStartArn",
    "ARN of what starts one training run: the SageMaker pipeline or the CodeBuild project")

# serving (SageMaker)
ENDPOINT_NAME = Wire(
    "EndpointName", "SageMaker endpoint (named before it exists)",
    presence=presence("EndpointExists", "the SageMaker endpoint", "HasEndpoint"))
DATA_CAPTURE_URI = Wire(
    "DataCaptureS3Uri", "S3 URI where the endpoint captures requests and responses")
ASYNC_INPUT_URI = Wire(
    "AsyncInputS3Uri", "S3 URI under which callers put requests for the asynchronous endpoint")
ASYNC_OUTPUT_URI = Wire(
    "AsyncOutputS3Uri", "S3 URI where the asynchronous endpoint writes its answers")
ASYNC_SUCCESS_TOPIC_ARN = Wire(
    "AsyncSuccessTopicArn", "SNS topic announcing each answer of the asynchronous endpoint")
ASYNC_ERROR_TOPIC_ARN = Wire(
    "AsyncErrorTopicArn", "SNS topic announcing each failed request of the asynchronous endpoint")
BATCH_TRANSFORM_STATE_MACHINE_ARN = Wire(
    "BatchTransformStateMachineArn", "Step Functions state machine running batch transform")
# serving (Fargate)
LOAD_BALANCER_DNS_NAME = Wire("LoadBalancerDnsName", "DNS name of the model API load balancer")
LOAD_BALANCER_FULL_NAME = Wire(
    "LoadBalancerFullName", "app/<name>/<id> of the load balancer, the CloudWatch dimension")
TARGET_GROUP_FULL_NAME = Wire(
    "TargetGroupFullName", "targetgroup/<name>/<id>, the CloudWatch dimension")
ECS_CLUSTER_NAME = Wire("EcsClusterName", "ECS cluster of the model API")
ECS_SERVICE_NAME = Wire(
    "EcsServiceName", "ECS service of the model API (named before it exists)",
    presence=presence("ApiServiceExists", "the model API's ECS service", "HasApiService"))
API_LOG_GROUP_NAME = Wire("ApiLogGroupName", "Log group of the model API containers")
# serving (either)
API_URL = Wire(
    "ApiUrl", "URL of the prediction API (API Gateway when enabled)",
    presence=presence("ApiBackendExists", "what ApiUrl sends requests to",
                      "HasApiBackend"))

# monitoring
ALARM_TOPIC_ARN = Wire("AlarmTopicArn", "SNS topic every alarm notifies")
DASHBOARD_NAME = Wire("DashboardName", "CloudWatch dashboard of the pipeline")
RETRAIN_FUNCTION_NAME = Wire(
    "RetrainFunctionName", "Lambda that starts retraining on alarms (named before it exists)",
    presence=presence("RetrainFunctionExists", "the retrain Lambda", "HasRetrainFunction"))

# cicd
DELIVERY_PIPELINE_NAME = Wire(
    "DeliveryPipelineName", "CodePipeline that tests and deploys this pipeline")
DELIVERY_SOURCE_BUCKET_NAME = Wire(
    "DeliverySourceBucketName",
    "Bucket the delivery pipeline's source zip is uploaded to (S3 source)")
