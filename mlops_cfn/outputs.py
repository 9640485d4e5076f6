"""Every name that crosses a stack boundary, defined once.

A producing stage publishes a `Wire` as an Output, a consuming stage declares the same `Wire` as a
Parameter, and the composer connects the two by name. Using these constants on both sides turns
a typo into a NameError at import instead of a broken stack at deploy.
"""

from dataclasses import dataclass


@dataclass(frozen=True)
class Wire:
    name: str
    description: str
    # The consumer's parameter type. Lists travel between stacks as comma-joined strings, which
    # a List<...> parameter accepts as is.
    type: str = "String"


# network
VPC_ID = Wire("VpcId", "VPC the pipeline's compute runs in", "AWS::EC2::VPC::Id")
VPC_CIDR = Wire("VpcCidrBlock", "IPv4 range of that VPC, for security group rules")
PRIVATE_SUBNET_IDS = Wire(
    "PrivateSubnetIds", "Private subnets, one per availability zone", "List<AWS::EC2::Subnet::Id>")
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

# etl

# analytics

# training

# serving

# monitoring

# cicd
