"""The ingestion stage: an encrypted Kinesis stream, Firehose into the raw bucket, a producer
policy, and an optional real-time consumer Lambda inside the VPC."""

import json
import re

import cfnlint.api
import pytest

from mlops_cfn.errors import UserError
from mlops_cfn.outputs import (CONSUMER_FAILURE_QUEUE_NAME, CONSUMER_FUNCTION_NAME,
                               DELIVERY_STREAM_ARN, DELIVERY_STREAM_NAME, PRIVATE_SUBNET_IDS,
                               PRODUCER_POLICY_ARN, RAW_DATA_PREFIX, STREAM_ARN, STREAM_NAME,
                               VPC_CIDR, VPC_ID)
from mlops_cfn.stages import ingestion
from tests.helpers import (config_with, only_resource, resources_of_type, template_dict,
                           statements, with_action)

KEY = {"Ref": "DataKeyArn"}
STREAM_ARN_VALUE = {"Fn::GetAtt": ["IngestStream", "Arn"]}
PARTITION = "year=!{timestamp:yyyy}/month=!{timestamp:MM}/day=!{timestamp:dd}/hour=!{timestamp:HH}/"
VPC_WIRES = {VPC_ID.name, VPC_CIDR.name, PRIVATE_SUBNET_IDS.name}


def build(env: str = "dev", **changes):
    return ingestion.build(config_with({"stages": {"ingestion": changes}}, env=env).config)


def template(**changes) -> dict:
    return template_dict(build(**changes))


def without_consumer(**changes) -> dict:
    return template(consumer={"enabled": False}, **changes)




def names_in(value) -> set[str]:
    """Logical ids and parameters a value refers to (Ref, GetAtt, Sub variables)."""
    if isinstance(value, dict):
        if "Ref" in value:
            return {value["Ref"]}
        if "Fn::GetAtt" in value:
            return {value["Fn::GetAtt"][0]}
        if "Fn::Sub" in value:
            pattern = value["Fn::Sub"]
            text = pattern if isinstance(pattern, str) else pattern[0]
            found = {m.split(".")[0] for m in re.findall(r"\$\{([^}!]+)\}", text)}
            return {n for n in found if not n.startswith("AWS::")}
        return set().union(*(names_in(v) for v in value.values())) if value else set()
    if isinstance(value, list):
        return set().union(*(names_in(v) for v in value)) if value else set()
    return set()


def lint(stage) -> list:
    return cfnlint.api.lint(stage.template.to_yaml(),
                            config=cfnlint.api.ManualArgs(regions=["us-east-1"]))


# --- the stream ------------------------------------------------------------------------------

def test_on_demand_stream_has_no_shard_count():
    t = without_consumer(stream_mode="on_demand")
    stream = only_resource(t, "AWS::Kinesis::Stream")["Properties"]
    assert stream["StreamModeDetails"] == {"StreamMode": "ON_DEMAND"}
    assert "ShardCount" not in stream
    assert "StreamShardCount" not in t["Parameters"]


def test_provisioned_stream_takes_its_shard_count_from_the_setting():
    t = without_consumer(stream_mode="provisioned", shards=7)
    stream = only_resource(t, "AWS::Kinesis::Stream")["Properties"]
    assert stream["StreamModeDetails"] == {"StreamMode": "PROVISIONED"}
    assert stream["ShardCount"] == {"Ref": "StreamShardCount"}
    assert t["Parameters"]["StreamShardCount"]["Type"] == "Number"
    assert "7" not in json.dumps(stream)


def test_stream_is_encrypted_with_the_data_key_and_keeps_records_per_setting():
    stream = only_resource(template(), "AWS::Kinesis::Stream")["Properties"]
    assert stream["StreamEncryption"] == {"EncryptionType": "KMS", "KeyId": KEY}
    assert stream["RetentionPeriodHours"] == {"Ref": "StreamRetentionHours"}
    assert "${EnvironmentName}" in stream["Name"]["Fn::Sub"]


def test_stream_is_offered_to_other_stages():
    outputs = template()["Outputs"]
    assert outputs[STREAM_NAME.name]["Value"] == {"Ref": "IngestStream"}
    assert outputs[STREAM_ARN.name]["Value"] == STREAM_ARN_VALUE


def test_environments_differing_only_in_values_render_the_same_template():
    # prod changes retention_hours and reserved_concurrency in the bundled config.
    assert build("dev").template.to_yaml() == build("prod").template.to_yaml()


# --- Firehose ---------------------------------------------------------------------------------

def delivery(t: dict) -> dict:
    return only_resource(t, "AWS::KinesisFirehose::DeliveryStream")["Properties"]


def test_firehose_reads_the_stream_with_its_role():
    props = delivery(template())
    assert props["DeliveryStreamType"] == "KinesisStreamAsSource"
    assert props["KinesisStreamSourceConfiguration"] == {
        "KinesisStreamARN": STREAM_ARN_VALUE, "RoleARN": {"Fn::GetAtt": ["DeliveryRole", "Arn"]}}


def test_firehose_writes_date_partitions_under_the_prefix_and_errors_apart():
    s3 = delivery(template(firehose={"prefix": "clicks/"}))["ExtendedS3DestinationConfiguration"]
    assert s3["BucketARN"] == {"Ref": "RawBucketArn"}
    assert s3["Prefix"] == "clicks/" + PARTITION
    assert s3["ErrorOutputPrefix"] == (
        "firehose-errors/clicks/!{firehose:error-output-type}/" + PARTITION)
    assert not s3["ErrorOutputPrefix"].startswith("clicks/")


def test_raw_data_prefix_is_offered_for_the_crawler():
    t = template(firehose={"prefix": "clicks/"})
    assert t["Outputs"][RAW_DATA_PREFIX.name]["Value"] == "clicks/"


@pytest.mark.parametrize("compression", ["GZIP", "Snappy"])
def test_compression_comes_from_the_config(compression):
    s3 = delivery(template(firehose={"compression": compression}))
    assert s3["ExtendedS3DestinationConfiguration"]["CompressionFormat"] == compression


def test_buffering_comes_from_the_settings():
    s3 = delivery(template())["ExtendedS3DestinationConfiguration"]
    assert s3["BufferingHints"] == {"IntervalInSeconds": {"Ref": "FirehoseBufferIntervalSeconds"},
                                    "SizeInMBs": {"Ref": "FirehoseBufferSizeMiB"}}


def test_firehose_encrypts_objects_with_the_data_key():
    s3 = delivery(template())["ExtendedS3DestinationConfiguration"]
    assert s3["EncryptionConfiguration"] == {"KMSEncryptionConfig": {"AWSKMSKeyARN": KEY}}


def test_firehose_logs_to_an_encrypted_log_group_with_retention():
    t = template()
    logging = delivery(t)["ExtendedS3DestinationConfiguration"]["CloudWatchLoggingOptions"]
    assert logging == {"Enabled": True, "LogGroupName": {"Ref": "DeliveryLogGroup"},
                       "LogStreamName": {"Ref": "DeliveryLogStream"}}
    group = t["Resources"]["DeliveryLogGroup"]["Properties"]
    assert group["KmsKeyId"] == KEY
    assert group["RetentionInDays"] == {"Ref": "LogRetentionDays"}


def test_delivery_stream_is_offered_to_other_stages():
    outputs = template()["Outputs"]
    assert outputs[DELIVERY_STREAM_NAME.name]["Value"] == {"Ref": "DeliveryStream"}
    assert outputs[DELIVERY_STREAM_ARN.name]["Value"] == {"Fn::GetAtt": ["DeliveryStream", "Arn"]}


# --- Firehose role ----------------------------------------------------------------------------

def delivery_role(t: dict | None = None) -> dict:
    return (t or template())["Resources"]["DeliveryRole"]


def test_only_firehose_of_this_account_assumes_the_delivery_role():
    [trust] = delivery_role()["Properties"]["AssumeRolePolicyDocument"]["Statement"]
    assert trust["Principal"] == {"Service": "firehose.amazonaws.com"}
    assert trust["Condition"] == {"StringEquals": {"sts:ExternalId": {"Ref": "AWS::AccountId"}}}


def test_delivery_role_is_scoped_to_the_stream_bucket_key_and_log_stream():
    allowed = {"IngestStream", "RawBucketArn", "DataKeyArn", "DeliveryLogGroup",
               "DeliveryLogStream"}
    found = statements(delivery_role())
    assert found
    for statement in found:
        assert all("*" not in a.split(":")[1] for a in statement["Action"]), statement
        assert "*" not in statement["Resource"], statement
        assert names_in(statement["Resource"]) <= allowed, statement


def test_delivery_role_reads_only_the_stream():
    found = statements(delivery_role())
    [read] = with_action(found, "kinesis:GetRecords")
    assert read["Resource"] == [STREAM_ARN_VALUE]
    assert not [s for s in found for a in s["Action"] if a.startswith("kinesis:Put")]


def test_delivery_role_writes_only_under_the_data_and_error_prefixes():
    found = statements(delivery_role(template(firehose={"prefix": "clicks/"})))
    objects = [r["Fn::Sub"] for s in with_action(found, "s3:PutObject") for r in s["Resource"]]
    assert sorted(objects) == ["${RawBucketArn}/clicks/*", "${RawBucketArn}/firehose-errors/clicks/*"]
    assert not with_action(found, "s3:DeleteObject")


def test_delivery_role_holds_aws_documented_s3_destination_policy():
    """AWS, "Controlling access with Amazon Data Firehose", "Grant Firehose access to an Amazon
    S3 destination": GetObject on the objects and ListBucket with no condition are part of it
    (Firehose lists and reads back what it wrote); nothing beyond the six actions listed."""
    found = statements(delivery_role(template(firehose={"prefix": "clicks/"})))
    s3_actions = {a for s in found for a in s["Action"] if a.startswith("s3:")}
    assert s3_actions == {"s3:AbortMultipartUpload", "s3:GetBucketLocation", "s3:GetObject",
                          "s3:ListBucket", "s3:ListBucketMultipartUploads", "s3:PutObject"}
    [listing] = with_action(found, "s3:ListBucket")
    assert listing["Resource"] == [{"Ref": "RawBucketArn"}] and "Condition" not in listing
    [read] = with_action(found, "s3:GetObject")
    assert sorted(r["Fn::Sub"] for r in read["Resource"]) == [
        "${RawBucketArn}/clicks/*", "${RawBucketArn}/firehose-errors/clicks/*"]


def test_delivery_role_uses_the_key_only_through_kinesis_and_s3_for_its_resources():
    found = [s for s in statements(delivery_role()) if s["Resource"] == [KEY]]
    assert found and all(a in ("kms:Decrypt", "kms:GenerateDataKey")
                         for s in found for a in s["Action"])
    by_service = {s["Condition"]["StringEquals"]["kms:ViaService"]["Fn::Sub"]: s for s in found}
    assert set(by_service) == {"kinesis.${AWS::Region}.amazonaws.com",
                               "s3.${AWS::Region}.amazonaws.com"}
    kinesis = by_service["kinesis.${AWS::Region}.amazonaws.com"]
    assert kinesis["Action"] == ["kms:Decrypt"]
    assert kinesis["Condition"]["StringEquals"]["kms:EncryptionContext:aws:kinesis:arn"] == [
        STREAM_ARN_VALUE]
    s3_context = by_service["s3.${AWS::Region}.amazonaws.com"]["Condition"]["StringLike"]
    assert names_in(s3_context["kms:EncryptionContext:aws:s3:arn"]) == {"RawBucketArn"}


def test_delivery_role_writes_only_its_own_log_stream():
    [put] = with_action(statements(delivery_role()), "logs:PutLogEvents")
    [arn] = put["Resource"]
    assert arn["Fn::Sub"].endswith(":log-group:${DeliveryLogGroup}:log-stream:${DeliveryLogStream}")
    assert arn["Fn::Sub"].startswith("arn:${AWS::Partition}:logs:${AWS::Region}:${AWS::AccountId}:")


# --- producer policy --------------------------------------------------------------------------

def test_producer_policy_allows_writing_the_stream_and_nothing_else():
    t = without_consumer()
    policy = only_resource(t, "AWS::IAM::ManagedPolicy")
    stream_statement, key_statement = statements(policy)
    assert sorted(stream_statement["Action"]) == [
        "kinesis:DescribeStreamSummary", "kinesis:ListShards", "kinesis:PutRecord",
        "kinesis:PutRecords"]
    assert stream_statement["Resource"] == [STREAM_ARN_VALUE]
    assert key_statement["Action"] == ["kms:GenerateDataKey"]
    assert key_statement["Resource"] == [KEY]
    assert key_statement["Condition"]["StringEquals"] == {
        "kms:ViaService": {"Fn::Sub": "kinesis.${AWS::Region}.amazonaws.com"},
        "kms:EncryptionContext:aws:kinesis:arn": [STREAM_ARN_VALUE]}
    assert t["Outputs"][PRODUCER_POLICY_ARN.name]["Value"] == {"Ref": "ProducerPolicy"}


# --- consumer ---------------------------------------------------------------------------------

CONSUMER_TYPES = ("AWS::Lambda::Function", "AWS::Lambda::EventSourceMapping", "AWS::SQS::Queue",
                  "AWS::EC2::SecurityGroup")


def test_without_the_consumer_there_is_no_lambda_and_no_network_wire():
    stage = build(consumer={"enabled": False})
    t = template_dict(stage)
    for resource_type in CONSUMER_TYPES:
        assert not resources_of_type(t, resource_type), resource_type
    assert not VPC_WIRES & {w.name for w in stage.inputs}
    assert not {o.name for o in stage.outputs} & {CONSUMER_FUNCTION_NAME.name,
                                                   CONSUMER_FAILURE_QUEUE_NAME.name}
    assert not [p for p in stage.settings if p.startswith("Consumer")]


def test_with_the_consumer_the_stage_needs_the_network_wires():
    stage = build()
    assert VPC_WIRES <= {w.name for w in stage.inputs}
    outputs = template_dict(stage)["Outputs"]
    assert outputs[CONSUMER_FUNCTION_NAME.name]["Value"] == {"Ref": "ConsumerFunction"}
    assert outputs[CONSUMER_FAILURE_QUEUE_NAME.name]["Value"] == {
        "Fn::GetAtt": ["ConsumerFailureQueue", "QueueName"]}


def function(t: dict | None = None) -> dict:
    return only_resource(t or template(), "AWS::Lambda::Function")["Properties"]


def test_consumer_runs_the_bundled_code_inline():
    props = function()
    assert props["Runtime"] == "python3.12"
    assert props["Handler"] == "index.handler"
    assert props["Code"]["ZipFile"] == ingestion.CONSUMER_SOURCE.read_text(encoding="utf-8")


def test_consumer_code_over_the_inline_limit_is_refused(tmp_path, monkeypatch):
    big = tmp_path / "consumer.py"
    big.write_text("#" * (ingestion.INLINE_CODE_LIMIT + 1))
    monkeypatch.setattr(ingestion, "CONSUMER_SOURCE", big)
    with pytest.raises(ValueError, match="4096"):
        build()


def test_consumer_runs_in_the_private_subnets_with_https_to_the_vpc_only():
    t = template()
    vpc = function(t)["VpcConfig"]
    assert vpc == {"SubnetIds": {"Ref": "PrivateSubnetIds"},
                   "SecurityGroupIds": [{"Ref": "ConsumerSecurityGroup"}]}
    group = t["Resources"]["ConsumerSecurityGroup"]["Properties"]
    assert group["VpcId"] == {"Ref": "VpcId"}
    assert "SecurityGroupIngress" not in group
    [egress] = group["SecurityGroupEgress"]
    assert (egress["IpProtocol"], egress["FromPort"], egress["ToPort"]) == ("tcp", 443, 443)
    assert egress["CidrIp"] == {"Ref": "VpcCidrBlock"}


def test_consumer_sizes_come_from_the_settings():
    props = function()
    assert props["MemorySize"] == {"Ref": "ConsumerMemoryMiB"}
    assert props["Timeout"] == {"Ref": "ConsumerTimeoutSeconds"}
    assert props["ReservedConcurrentExecutions"] == {"Ref": "ConsumerReservedConcurrency"}


def test_consumer_is_encrypted_traced_and_logs_to_its_encrypted_group():
    t = template()
    props = function(t)
    assert props["KmsKeyArn"] == KEY
    assert props["Environment"]["Variables"]["STREAM_NAME"] == {"Ref": "IngestStream"}
    assert props["TracingConfig"] == {"Mode": "Active"}
    assert props["LoggingConfig"]["LogGroup"] == {"Ref": "ConsumerLogGroup"}
    group = t["Resources"]["ConsumerLogGroup"]["Properties"]
    assert group["KmsKeyId"] == KEY
    assert group["RetentionInDays"] == {"Ref": "LogRetentionDays"}


def test_consumer_queues_are_encrypted_with_the_data_key():
    t = template()
    queues = resources_of_type(t, "AWS::SQS::Queue")
    assert set(queues) == {"ConsumerDeadLetterQueue", "ConsumerFailureQueue"}
    assert all(q["Properties"]["KmsMasterKeyId"] == KEY for q in queues.values())
    assert function(t)["DeadLetterConfig"] == {
        "TargetArn": {"Fn::GetAtt": ["ConsumerDeadLetterQueue", "Arn"]}}


def test_event_source_mapping_retries_by_bisecting_and_reports_to_the_failure_queue():
    mapping = only_resource(template(), "AWS::Lambda::EventSourceMapping")["Properties"]
    assert mapping["EventSourceArn"] == STREAM_ARN_VALUE
    assert mapping["FunctionName"] == {"Ref": "ConsumerFunction"}
    assert mapping["StartingPosition"] == "LATEST"
    assert mapping["BisectBatchOnFunctionError"] is True
    assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert mapping["DestinationConfig"] == {
        "OnFailure": {"Destination": {"Fn::GetAtt": ["ConsumerFailureQueue", "Arn"]}}}
    assert {k: mapping[k] for k in ("BatchSize", "MaximumBatchingWindowInSeconds",
                                    "ParallelizationFactor", "MaximumRetryAttempts")} == {
        "BatchSize": {"Ref": "ConsumerBatchSize"},
        "MaximumBatchingWindowInSeconds": {"Ref": "ConsumerBatchingWindowSeconds"},
        "ParallelizationFactor": {"Ref": "ConsumerParallelizationFactor"},
        "MaximumRetryAttempts": {"Ref": "ConsumerMaximumRetryAttempts"},
    }


def consumer_statements() -> list[dict]:
    return statements(template()["Resources"]["ConsumerRole"])


def test_consumer_role_is_scoped_to_its_own_resources():
    allowed = {"IngestStream", "DataKeyArn", "ConsumerDeadLetterQueue", "ConsumerFailureQueue",
               "ConsumerLogGroup", "ConsumerSecurityGroup"}
    found = consumer_statements()
    assert found
    for statement in found:
        assert all("*" not in a.split(":")[1] for a in statement["Action"]), statement
        assert names_in(statement["Resource"]) <= allowed, statement


def test_consumer_role_uses_star_only_for_actions_without_resource_level_permissions():
    [star] = [s for s in consumer_statements() if "*" in s["Resource"]]
    assert star["Resource"] == ["*"]
    assert sorted(star["Action"]) == ["ec2:DescribeNetworkInterfaces", "ec2:DescribeSubnets",
                                      "xray:PutTelemetryRecords", "xray:PutTraceSegments"]


def test_consumer_role_reads_the_stream_and_sends_only_to_its_queues():
    found = consumer_statements()
    [read] = with_action(found, "kinesis:GetRecords")
    assert read["Resource"] == [STREAM_ARN_VALUE]
    [send] = with_action(found, "sqs:SendMessage")
    assert names_in(send["Resource"]) == {"ConsumerDeadLetterQueue", "ConsumerFailureQueue"}
    key_services = {s["Condition"]["StringEquals"]["kms:ViaService"]["Fn::Sub"]
                    for s in found if s["Resource"] == [KEY]}
    assert key_services == {"kinesis.${AWS::Region}.amazonaws.com",
                            "sqs.${AWS::Region}.amazonaws.com"}


def test_consumer_role_manages_network_interfaces_in_this_account_and_region():
    found = consumer_statements()
    [create] = with_action(found, "ec2:CreateNetworkInterface")
    arns = [r["Fn::Sub"] for r in create["Resource"]]
    prefix = "arn:${AWS::Partition}:ec2:${AWS::Region}:${AWS::AccountId}:"
    assert all(a.startswith(prefix) for a in arns)
    assert prefix + "security-group/${ConsumerSecurityGroup.GroupId}" in arns


# --- config and lint --------------------------------------------------------------------------

def test_a_prefix_inside_the_error_prefix_is_refused():
    with pytest.raises(UserError) as error:
        config_with({"stages": {"ingestion": {"firehose": {"prefix": "firehose-errors/x/"}}}})
    assert "stages.ingestion.firehose.prefix" in str(error.value)


@pytest.mark.parametrize("mode", ["on_demand", "provisioned"])
@pytest.mark.parametrize("consumer", [True, False])
def test_template_has_no_cfn_lint_findings(mode, consumer):
    assert lint(build(stream_mode=mode, consumer={"enabled": consumer})) == []
