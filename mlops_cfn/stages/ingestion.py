"""ingestion stage: producers write to a Kinesis stream; Firehose lands every record in S3.

Resources
- IngestStream: Kinesis data stream, on-demand or provisioned (`stream_mode`), encrypted with the
  data key.
- DeliveryStream: Firehose from the stream into the raw bucket under
  `<prefix>year=YYYY/month=MM/day=DD/hour=HH/`, undeliverable records under
  `firehose-errors/<prefix><error type>/...`, compressed, encrypted with the data key; with
  DeliveryRole, DeliveryLogGroup and DeliveryLogStream.
- ProducerPolicy: managed policy granting write access to the stream, for applications.
- With `consumer.enabled`: ConsumerFunction, a Lambda in the private subnets run on every batch
  of records (code: mlops_cfn/data/consumer.py), with ConsumerRole, ConsumerSecurityGroup,
  ConsumerLogGroup, ConsumerDeadLetterQueue, ConsumerFailureQueue and
  ConsumerEventSourceMapping.
- With `emr_consumer.enabled`: a Spark Structured Streaming job on EMR Serverless writing the
  stream's records, cleaned, to the processed bucket, and the Lambda that keeps it running
  (stages/ingestion_emr.py lists them).
- With `ec2_consumer.enabled`: a Kinesis Client Library application on an Auto Scaling group
  (stages/ingestion_ec2.py lists its resources).

Inputs: DataKeyArn, RawBucketArn; with the consumer also VpcId, VpcCidrBlock, PrivateSubnetIds;
with the EMR consumer VpcId, VpcCidrBlock, PrivateSubnetIds, ProcessedBucketName,
ProcessedBucketArn; with the EC2 consumer VpcId, PrivateSubnetIds, PrivateSubnetZones.
Outputs: IngestStreamName, IngestStreamArn, DeliveryStreamName, DeliveryStreamArn, RawDataPrefix,
ProducerPolicyArn; with the consumer ConsumerFunctionName and ConsumerFailureQueueName; with the
EMR consumer EmrConsumerApplicationId; with the EC2 consumer Ec2ConsumerGroupName and
Ec2ConsumerLeaseTableName.
"""

from pathlib import Path
from typing import Any, Sequence

import awacs.ec2
import awacs.kinesis
import awacs.kms
import awacs.logs
import awacs.s3
import awacs.sqs
import awacs.xray
from awacs.aws import Allow, Statement, StringEquals
from troposphere import (GetAtt, Ref, Sub, awslambda, ec2, firehose, iam, kinesis, logs,
                         sqs)

from .. import naming, policies
from ..config import PipelineConfig
from ..config.ingestion import FIREHOSE_ERROR_ROOT, IngestionConfig
from ..outputs import (CONSUMER_FAILURE_QUEUE_NAME, CONSUMER_FUNCTION_NAME, DATA_KEY_ARN,
                       DELIVERY_STREAM_ARN, DELIVERY_STREAM_NAME, PRIVATE_SUBNET_IDS,
                       PRODUCER_POLICY_ARN, RAW_BUCKET_ARN, RAW_DATA_PREFIX, STREAM_ARN,
                       STREAM_NAME)
from ..stage import Stage, StageBuilder
from . import ingestion_emr
from . import ingestion_ec2
from .common import (INLINE_CODE_LIMIT, encrypted_log_group, encrypted_queue,
                     https_out_security_group)

CONSUMER_SOURCE = Path(__file__).resolve().parent.parent / "data" / "consumer.py"

PARTITION = ("year=!{timestamp:yyyy}/month=!{timestamp:MM}/day=!{timestamp:dd}/"
             "hour=!{timestamp:HH}/")


def build(config: PipelineConfig) -> Stage:
    settings = config.stages.ingestion
    b = StageBuilder("ingestion", config.project,
                     "Kinesis ingest stream, Firehose delivery to the raw bucket"
                     + (", real-time consumer" if settings.consumer.enabled else ""))
    key = b.input(DATA_KEY_ARN)
    stream = b.add(ingest_stream(b, settings, key))
    b.output(STREAM_NAME, Ref(stream))
    b.output(STREAM_ARN, GetAtt(stream, "Arn"))

    delivery = add_delivery(b, config, stream, key)
    b.output(DELIVERY_STREAM_NAME, Ref(delivery))
    b.output(DELIVERY_STREAM_ARN, GetAtt(delivery, "Arn"))
    b.output(RAW_DATA_PREFIX, settings.firehose.prefix)

    producer = b.add(iam.ManagedPolicy(
        "ProducerPolicy",
        Description="Write records to the ingest stream",
        PolicyDocument=policies.document(producer_statements(stream, key)),
    ))
    b.output(PRODUCER_POLICY_ARN, Ref(producer))

    if settings.consumer.enabled:
        add_consumer(b, config, stream, key)
    if settings.emr_consumer.enabled:
        ingestion_emr.add(b, config, stream, key)
    if settings.ec2_consumer.enabled:
        ingestion_ec2.add_ec2_consumer(b, config, stream, key)
    return b.finish()


# --- stream --------------------------------------------------------------------------------

def ingest_stream(b: StageBuilder, settings: IngestionConfig, key: Ref) -> kinesis.Stream:
    # No Retain: the stream holds records for hours to days only, and Firehose copies every one
    # into the raw bucket, which is retained. A retained stream would also keep its name taken
    # (and its shards billed) after the stack is gone.
    props: dict[str, Any] = {}
    if settings.stream_mode == "provisioned":
        props["ShardCount"] = b.setting(settings, "shards")
    return kinesis.Stream(
        "IngestStream",
        Name=b.physical_name(naming.KINESIS_STREAM, "ingest"),
        StreamModeDetails=kinesis.StreamModeDetails(StreamMode=settings.stream_mode.upper()),
        RetentionPeriodHours=b.setting(settings, "retention_hours"),
        StreamEncryption=kinesis.StreamEncryption(EncryptionType="KMS", KeyId=key),
        **props,
    )


def producer_statements(stream: kinesis.Stream, key: Ref) -> list[Statement]:
    return [
        # AWS: "Permissions to use user-generated KMS keys" (Kinesis Data Streams): a producer
        # puts records; "Grant DescribeStreamSummary permission to the KPL": the KPL checks
        # the stream's record distribution first; "Amazon Kinesis Producer Library now
        # supports ListShards API" (What's New, 2019): the KPL discovers shards with ListShards.
        Statement(
            Effect=Allow,
            Action=[awacs.kinesis.PutRecord, awacs.kinesis.PutRecords,
                    awacs.kinesis.DescribeStreamSummary, awacs.kinesis.ListShards],
            Resource=[GetAtt(stream, "Arn")],
        ),
        # AWS: "Permissions to use user-generated KMS keys": producers need GenerateDataKey;
        # Kinesis passes the stream ARN as encryption context (same page).
        policies.key_use_in_context(key, [awacs.kms.GenerateDataKey], "kinesis",
                                    "aws:kinesis:arn", [GetAtt(stream, "Arn")]),
    ]


# --- Firehose ------------------------------------------------------------------------------

def data_prefix(settings: IngestionConfig) -> str:
    return settings.firehose.prefix + PARTITION


def error_prefix(settings: IngestionConfig) -> str:
    error_type = "!{firehose:error-output-type}/"
    return FIREHOSE_ERROR_ROOT + settings.firehose.prefix + error_type + PARTITION


def add_delivery(b: StageBuilder, config: PipelineConfig, stream: kinesis.Stream,
                 key: Ref) -> firehose.DeliveryStream:
    settings = config.stages.ingestion
    bucket = b.input(RAW_BUCKET_ARN)
    log_group = encrypted_log_group(b, config, "DeliveryLogGroup", "firehose")
    log_stream = b.add(logs.LogStream(
        "DeliveryLogStream", LogGroupName=Ref(log_group), LogStreamName="S3Delivery"))
    role = b.add(iam.Role(
        "DeliveryRole",
        Description="Firehose: read the ingest stream, write the raw bucket",
        # AWS's confused-deputy guard for Firehose: only on behalf of this account.
        AssumeRolePolicyDocument=policies.trusted_by(
            "firehose.amazonaws.com", StringEquals("sts:ExternalId", Ref("AWS::AccountId"))),
        Policies=[iam.Policy(
            PolicyName="delivery",
            PolicyDocument=policies.document(
                delivery_statements(settings, stream, bucket, key, log_group, log_stream)),
        )],
    ))
    firehose_settings = settings.firehose
    # No DeliveryStreamEncryptionConfigurationInput: Firehose refuses it with a Kinesis stream
    # source. Records are encrypted with the data key in the stream and again in S3.
    return b.add(firehose.DeliveryStream(
        "DeliveryStream",
        DeliveryStreamName=b.physical_name(naming.FIREHOSE_STREAM, "raw"),
        DeliveryStreamType="KinesisStreamAsSource",
        KinesisStreamSourceConfiguration=firehose.KinesisStreamSourceConfiguration(
            KinesisStreamARN=GetAtt(stream, "Arn"), RoleARN=GetAtt(role, "Arn")),
        ExtendedS3DestinationConfiguration=firehose.ExtendedS3DestinationConfiguration(
            BucketARN=bucket,
            RoleARN=GetAtt(role, "Arn"),
            Prefix=data_prefix(settings),
            ErrorOutputPrefix=error_prefix(settings),
            CompressionFormat=firehose_settings.compression,
            BufferingHints=firehose.BufferingHints(
                IntervalInSeconds=b.setting(firehose_settings, "buffer_interval_seconds"),
                SizeInMBs=b.setting(firehose_settings, "buffer_size_mb"),
            ),
            EncryptionConfiguration=firehose.EncryptionConfiguration(
                KMSEncryptionConfig=firehose.KMSEncryptionConfig(AWSKMSKeyARN=key)),
            CloudWatchLoggingOptions=firehose.CloudWatchLoggingOptions(
                Enabled=True, LogGroupName=Ref(log_group), LogStreamName=Ref(log_stream)),
        ),
    ))


def delivery_statements(settings: IngestionConfig, stream: kinesis.Stream, bucket: Ref,
                        key: Ref, log_group: logs.LogGroup,
                        log_stream: logs.LogStream) -> list[Statement]:
    """AWS's documented policy for a Firehose stream reading a Kinesis data stream and delivering
    to S3 with SSE-KMS and error logging ("Controlling access with Amazon Data Firehose"),
    narrowed to this stream, bucket, key and log stream."""
    stream_arn = GetAtt(stream, "Arn")
    data_root = settings.firehose.prefix
    error_root = FIREHOSE_ERROR_ROOT + settings.firehose.prefix
    objects = [Sub(f"${{{RAW_BUCKET_ARN.name}}}/{data_root}*"),
               Sub(f"${{{RAW_BUCKET_ARN.name}}}/{error_root}*")]
    # Every statement: AWS, "Controlling access with Amazon Data Firehose", section "Grant
    # Firehose access to an Amazon S3 destination" (its example policy, which covers a Kinesis
    # data stream source, SSE-KMS and error logging).
    return [
        # AWS: that section: the bucket actions, ListBucket without a condition.
        Statement(
            Effect=Allow,
            Action=[awacs.s3.GetBucketLocation, awacs.s3.ListBucket,
                    awacs.s3.ListBucketMultipartUploads],
            Resource=[bucket],
        ),
        # AWS: that section: the object actions, GetObject included, on the objects under the
        # data and error prefixes Firehose writes.
        Statement(
            Effect=Allow,
            Action=[awacs.s3.AbortMultipartUpload, awacs.s3.GetObject, awacs.s3.PutObject],
            Resource=objects,
        ),
        # AWS: that section: the key through S3 for the bucket's objects. With S3 Bucket Keys
        # the encryption context is the bucket's ARN, without them the object's.
        policies.key_use_in_context(key, [awacs.kms.Decrypt, awacs.kms.GenerateDataKey], "s3",
                                    "aws:s3:arn", [bucket, *objects], wildcards=True),
        # AWS: that section: reading the Kinesis data stream source.
        Statement(
            Effect=Allow,
            Action=[awacs.kinesis.DescribeStream, awacs.kinesis.GetShardIterator,
                    awacs.kinesis.GetRecords, awacs.kinesis.ListShards],
            Resource=[stream_arn],
        ),
        # AWS: that section: decrypting the source stream through Kinesis.
        policies.key_use_in_context(key, [awacs.kms.Decrypt], "kinesis", "aws:kinesis:arn",
                                    [stream_arn]),
        # AWS: that section: error logging to the delivery's log stream.
        Statement(
            Effect=Allow,
            Action=[awacs.logs.PutLogEvents],
            Resource=[policies.arn("logs", "log-group:${%s}:log-stream:${%s}"
                                   % (log_group.title, log_stream.title))],
        ),
    ]


# --- consumer ------------------------------------------------------------------------------

def consumer_code() -> str:
    code = CONSUMER_SOURCE.read_text(encoding="utf-8")
    if len(code.encode("utf-8")) > INLINE_CODE_LIMIT:
        raise ValueError(f"{CONSUMER_SOURCE.name} is over the {INLINE_CODE_LIMIT}-byte limit "
                         "of inline Lambda code")
    return code


def add_consumer(b: StageBuilder, config: PipelineConfig, stream: kinesis.Stream,
                 key: Ref) -> None:
    consumer = config.stages.ingestion.consumer
    log_group = encrypted_log_group(b, config, "ConsumerLogGroup", "consumer")
    dead_letters = encrypted_queue(b, "ConsumerDeadLetterQueue", "consumer-dead-letters")
    failures = encrypted_queue(b, "ConsumerFailureQueue", "consumer-failures")
    security_group = https_out_security_group(
        b, config, "ConsumerSecurityGroup", "Ingest stream consumer: HTTPS to VPC endpoints only")
    role = b.add(iam.Role(
        "ConsumerRole",
        Description="Ingest stream consumer Lambda",
        AssumeRolePolicyDocument=policies.trusted_by("lambda.amazonaws.com"),
        Policies=[iam.Policy(
            PolicyName="consumer",
            PolicyDocument=policies.document(consumer_statements(
                stream, key, [dead_letters, failures], log_group, security_group)),
        )],
    ))
    function = b.add(awslambda.Function(
        "ConsumerFunction",
        FunctionName=b.physical_name(naming.LAMBDA_FUNCTION, "consumer"),
        Description="Real-time consumer of the ingest stream",
        Runtime="python3.12",
        Architectures=["arm64"],
        Handler="index.handler",
        # Inline code, so no CodeSigningConfig: Lambda verifies signatures only on packages
        # uploaded to S3.
        Code=awslambda.Code(ZipFile=consumer_code()),
        Role=GetAtt(role, "Arn"),
        MemorySize=b.setting(consumer, "memory_mb"),
        Timeout=b.setting(consumer, "timeout_seconds"),
        ReservedConcurrentExecutions=b.setting(consumer, "reserved_concurrency"),
        # Lambda decrypts the variables through a grant it creates on the key at deployment,
        # so the role needs no kms:Decrypt for them.
        KmsKeyArn=key,
        Environment=awslambda.Environment(Variables={
            "METRICS_NAMESPACE": f"MLOps/{config.project}",
            "STREAM_NAME": Ref(stream),
        }),
        VpcConfig=awslambda.VPCConfig(
            SubnetIds=b.input(PRIVATE_SUBNET_IDS), SecurityGroupIds=[Ref(security_group)]),
        TracingConfig=awslambda.TracingConfig(Mode="Active"),
        LoggingConfig=awslambda.LoggingConfig(LogGroup=Ref(log_group)),
        # Catches asynchronous invocations (a manual test, say); stream batches are invoked
        # synchronously and fail over to the event source mapping's failure queue instead.
        DeadLetterConfig=awslambda.DeadLetterConfig(TargetArn=GetAtt(dead_letters, "Arn")),
    ))
    b.add(awslambda.EventSourceMapping(
        "ConsumerEventSourceMapping",
        EventSourceArn=GetAtt(stream, "Arn"),
        FunctionName=Ref(function),
        StartingPosition="LATEST",
        BatchSize=b.setting(consumer, "batch_size"),
        MaximumBatchingWindowInSeconds=b.setting(consumer, "batching_window_seconds"),
        ParallelizationFactor=b.setting(consumer, "parallelization_factor"),
        MaximumRetryAttempts=b.setting(consumer, "maximum_retry_attempts"),
        BisectBatchOnFunctionError=True,
        FunctionResponseTypes=["ReportBatchItemFailures"],
        DestinationConfig=awslambda.DestinationConfig(
            OnFailure=awslambda.OnFailure(Destination=GetAtt(failures, "Arn"))),
    ))
    b.output(CONSUMER_FUNCTION_NAME, Ref(function))
    b.output(CONSUMER_FAILURE_QUEUE_NAME, GetAtt(failures, "QueueName"))


def consumer_statements(stream: kinesis.Stream, key: Ref, queues: Sequence[sqs.Queue],
                        log_group: logs.LogGroup,
                        security_group: ec2.SecurityGroup) -> list[Statement]:
    stream_arn = GetAtt(stream, "Arn")
    queue_arns = [GetAtt(q, "Arn") for q in queues]
    network_interfaces = policies.arn("ec2", "network-interface/*")
    return [
        # AWS: "Using Lambda with Kinesis Data Streams" (execution role permissions): what the
        # event source mapping reads with this role (SubscribeToShard only for enhanced
        # fan-out, which this mapping does not use).
        Statement(
            Effect=Allow,
            Action=[awacs.kinesis.DescribeStream, awacs.kinesis.DescribeStreamSummary,
                    awacs.kinesis.GetRecords, awacs.kinesis.GetShardIterator,
                    awacs.kinesis.ListShards],
            Resource=[stream_arn],
        ),
        # AWS: "Permissions to use user-generated KMS keys" (Kinesis Data Streams): consumers
        # of a stream encrypted with a customer managed key need Decrypt.
        policies.key_use_in_context(key, [awacs.kms.Decrypt], "kinesis", "aws:kinesis:arn",
                                    [stream_arn]),
        # AWS: "Capturing discarded batches for a Kinesis Data Streams event source" (an SQS
        # on-failure destination) and "Adding a dead-letter queue" (Lambda): SendMessage.
        Statement(Effect=Allow, Action=[awacs.sqs.SendMessage], Resource=queue_arns),
        # AWS: "Encryption at rest in Amazon SQS" (key management): sending to a queue
        # encrypted with a customer managed key takes GenerateDataKey and Decrypt.
        policies.key_use_in_context(key, [awacs.kms.GenerateDataKey, awacs.kms.Decrypt], "sqs",
                                    "aws:sqs:arn", queue_arns),
        # AWS: "Sending Lambda function logs to CloudWatch Logs": streams and events in the
        # function's (pre-created) log group.
        Statement(
            Effect=Allow,
            Action=[awacs.logs.CreateLogStream, awacs.logs.PutLogEvents],
            Resource=[policies.arn("logs", "log-group:${%s}:*" % log_group.title)],
        ),
        # AWS: "Giving Lambda functions access to resources in an Amazon VPC" (execution role
        # permissions): Lambda creates the function's network interfaces with this role.
        Statement(
            Effect=Allow,
            Action=[awacs.ec2.CreateNetworkInterface],
            Resource=[network_interfaces, policies.arn("ec2", "subnet/*"),
                      policies.arn("ec2", "security-group/${%s.GroupId}"
                                   % security_group.title)],
        ),
        # AWS: same page: and deletes them, and assigns and unassigns their addresses.
        Statement(
            Effect=Allow,
            Action=[awacs.ec2.DeleteNetworkInterface, awacs.ec2.AssignPrivateIpAddresses,
                    awacs.ec2.UnassignPrivateIpAddresses],
            Resource=[network_interfaces],
        ),
        # AWS: same page (DescribeNetworkInterfaces, DescribeSubnets) and "Visualize Lambda
        # function invocations using AWS X-Ray" (PutTraceSegments, PutTelemetryRecords with
        # active tracing). EC2 Describe actions and X-Ray's write actions have no resource-level
        # permissions: AWS accepts nothing narrower than "*" for them.
        Statement(
            Effect=Allow,
            Action=[awacs.ec2.DescribeNetworkInterfaces, awacs.ec2.DescribeSubnets,
                    awacs.xray.PutTraceSegments, awacs.xray.PutTelemetryRecords],
            Resource=["*"],
        ),
    ]
