"""Upgrading a deployed pipeline: an in-place update and a replacement of stateless resources go
through; a replacement of data stores is refused unless --allow-replacement.

The pipeline is deployed on moto at one config, then deployed again at three others. moto's change
sets list no nested change sets and never say whether a change replaces a resource, so here each
change set's DescribeChangeSet answers come from botocore's Stubber, written as CloudFormation
answers them for that config change (changesets.py); everything else (creating, waiting for,
executing and deleting the change set, following the events) is moto, which really applies the
first two upgrades.
"""

import boto3
import pytest
from botocore.stub import ANY, Stubber

from mlops_cfn.deploy import Aws

from .changesets import (change_set_arn, describe_response, detail, nested_stack_change,
                         resource_change)
from .conftest import BUCKET, REGION, run, write_config
from .test_deploy import known_stages, outputs, parameters

pytestmark = pytest.mark.slow


STACK = "upgraded"
CHANGE_SET = "mlops-cfn-upgrade"


class DescribedByStubber:
    """moto's CloudFormation client, but DescribeChangeSet answered by a Stubber."""

    def __init__(self, real, responses: list[tuple[dict, dict]]):
        self._real = real
        self._stubbed = boto3.client("cloudformation", region_name=REGION)
        self._stubber = Stubber(self._stubbed)
        for response, expected in responses:
            self._stubber.add_response("describe_change_set", response, expected)
        self._stubber.activate()

    def describe_change_set(self, **kwargs):
        return self._stubbed.describe_change_set(**kwargs)

    def __getattr__(self, name):
        return getattr(self._real, name)

    def assert_all_read(self):
        self._stubber.assert_no_pending_responses()


@pytest.fixture
def change_sets(monkeypatch):
    """`change_sets.report(root_changes, {nested logical id: changes})` sets what the next
    deploy's DescribeChangeSet calls answer."""
    clients: list[DescribedByStubber] = []
    planned: list = []
    original = Aws.client

    def client(self, service):
        real = original(self, service)
        if service != "cloudformation" or not planned:
            return real
        clients.append(DescribedByStubber(real, planned.pop()))
        return clients[-1]

    class Plan:
        @staticmethod
        def report(nested: dict[str, list[dict]], extra_root: list[dict] = ()):
            root = change_set_arn(CHANGE_SET)
            root_changes = [nested_stack_change(name, STACK, change_set_arn(CHANGE_SET, name))
                            for name in nested] + list(extra_root)
            responses = [(describe_response(STACK, CHANGE_SET, root_changes),
                          {"ChangeSetName": ANY})]
            for name, changes in nested.items():
                responses.append((describe_response(STACK, CHANGE_SET, changes, nested=name,
                                                    parent=root, root=root),
                                  {"ChangeSetName": change_set_arn(CHANGE_SET, name)}))
            planned.append(responses)

        @staticmethod
        def all_read():
            for stubbed in clients:
                stubbed.assert_all_read()
            return True

    monkeypatch.setattr(Aws, "client", client)
    return Plan


def vpc(aws, cidr: str) -> dict:
    """A VPC with two subnets in two zones, as a platform team would provide."""
    ec2 = aws.client("ec2")
    vpc_id = ec2.create_vpc(CidrBlock=cidr)["Vpc"]["VpcId"]
    base = cidr.split(".")
    subnets = [ec2.create_subnet(VpcId=vpc_id, CidrBlock=f"{base[0]}.{base[1]}.{i * 16}.0/20",
                                 AvailabilityZone=f"{REGION}{zone}")["Subnet"]["SubnetId"]
               for i, zone in enumerate("ab")]
    return {"mode": "existing", "vpc_id": vpc_id, "subnet_ids": subnets, "cidr": cidr}


def deploy(config_file, *extra, input=None):
    return run("deploy", "--config", config_file, "--stack-name", STACK, "--bucket", BUCKET,
               "--no-validate", *extra, input=input)


def group_of(aws, logical_id: str, stack: dict) -> dict:
    group_id = aws.resources(stack["StackId"])[logical_id]["PhysicalResourceId"]
    return aws.client("ec2").describe_security_groups(GroupIds=[group_id])["SecurityGroups"][0]


def test_updates_and_stateless_replacements_go_through_data_store_replacements_do_not(
        aws, tmp_path, change_sets):
    aws.bucket()
    first_vpc, second_vpc = vpc(aws, "10.10.0.0/16"), vpc(aws, "10.20.0.0/16")
    config_file = tmp_path / "pipeline.yaml"
    write_config(config_file, known_stages(network=first_vpc))
    created = deploy(config_file, "--yes")
    assert created.exit_code == 0, created.output
    nested = aws.nested(STACK)
    stream_name = outputs(nested["IngestionStack"])["IngestStreamName"]
    function_name = outputs(nested["IngestionStack"])["ConsumerFunctionName"]
    consumer_group = group_of(aws, "ConsumerSecurityGroup", nested["IngestionStack"])
    assert consumer_group["VpcId"] == first_vpc["vpc_id"]

    # 1. Settings that update resources in place: the stream's retention, the consumer's memory.
    write_config(config_file, known_stages(network=first_vpc, stages={"ingestion": {
        "retention_hours": 48, "consumer": {"memory_mb": 512}}}))
    change_sets.report({"IngestionStack": [
        resource_change("Modify", "IngestStream", "AWS::Kinesis::Stream", replacement="False",
                        physical_id=stream_name, details=[detail(
                            "RetentionPeriodHours", "Never", source="ParameterReference",
                            causing="StreamRetentionHours")]),
        resource_change("Modify", "ConsumerFunction", "AWS::Lambda::Function",
                        replacement="False", physical_id=function_name, details=[detail(
                            "MemorySize", "Never", source="ParameterReference",
                            causing="ConsumerMemoryMiB")]),
    ]})
    updated = deploy(config_file, "--yes")
    assert updated.exit_code == 0, updated.output
    assert "IngestStream" in updated.output and "Data guard" not in updated.output
    assert f"{STACK}: UPDATE_COMPLETE" in updated.output
    kinesis = aws.client("kinesis")
    assert kinesis.describe_stream_summary(StreamName=stream_name)[
        "StreamDescriptionSummary"]["RetentionPeriodHours"] == 48
    assert aws.client("lambda").get_function(FunctionName=function_name)[
        "Configuration"]["MemorySize"] == 512

    # 2. Moving to another VPC replaces both security groups (VpcId requires replacement):
    #    stateless, so no --allow-replacement is needed.
    write_config(config_file, known_stages(network=second_vpc, stages={"ingestion": {
        "retention_hours": 48, "consumer": {"memory_mb": 512}}}))
    endpoint_group = group_of(aws, "EndpointSecurityGroup", nested["NetworkStack"])
    change_sets.report({
        "NetworkStack": [
            resource_change("Modify", "EndpointSecurityGroup", "AWS::EC2::SecurityGroup",
                            replacement="True", physical_id=endpoint_group["GroupId"],
                            details=[detail("VpcId", "Always", source="ParameterReference",
                                            causing="ExistingVpcId"),
                                     detail("SecurityGroupIngress", "Never",
                                            source="ParameterReference", causing="VpcCidr")]),
        ],
        "IngestionStack": [
            resource_change("Modify", "ConsumerSecurityGroup", "AWS::EC2::SecurityGroup",
                            replacement="True", physical_id=consumer_group["GroupId"],
                            details=[detail("VpcId", "Always", source="ParameterReference",
                                            causing="VpcId")]),
            resource_change("Modify", "ConsumerFunction", "AWS::Lambda::Function",
                            replacement="False", physical_id=function_name,
                            details=[detail("VpcConfig", "Never", source="ParameterReference",
                                            causing="PrivateSubnetIds")]),
        ],
    })
    moved = deploy(config_file, "--yes")
    assert moved.exit_code == 0, moved.output
    replaced_row = next(line for line in moved.output.splitlines()
                        if "ConsumerSecurityGroup" in line)
    assert "True" in replaced_row and "Data guard" not in moved.output
    after = aws.nested(STACK)
    new_group = group_of(aws, "ConsumerSecurityGroup", after["IngestionStack"])
    assert new_group["VpcId"] == second_vpc["vpc_id"]
    assert new_group["GroupId"] != consumer_group["GroupId"], "really replaced, on moto too"
    assert parameters(after["IngestionStack"])["VpcId"] == second_vpc["vpc_id"]

    # 3. Renaming the project renames every bucket and the stream: CloudFormation would replace
    #    them, losing their data. Refused without --allow-replacement.
    renamed = known_stages(project="mlops-next", network=second_vpc, stages={"ingestion": {
        "retention_hours": 48, "consumer": {"memory_mb": 512}}})
    write_config(config_file, renamed)
    storage = outputs(after["StorageStack"])

    def data_store_replacements():
        buckets = [resource_change("Modify", logical_id, "AWS::S3::Bucket", replacement="True",
                                   physical_id=storage[output],
                                   details=[detail("BucketName", "Always")])
                   for logical_id, output in (("RawBucket", "RawBucketName"),
                                              ("ProcessedBucket", "ProcessedBucketName"))]
        change_sets.report({
            "StorageStack": buckets + [
                resource_change("Modify", "DataKeyAlias", "AWS::KMS::Alias", replacement="True",
                                physical_id=storage["DataKeyAlias"],
                                details=[detail("AliasName", "Always")]),
            ],
            "IngestionStack": [
                resource_change("Modify", "IngestStream", "AWS::Kinesis::Stream",
                                replacement="True", physical_id=stream_name,
                                details=[detail("Name", "Always")]),
            ],
        })

    data_store_replacements()
    refused = deploy(config_file, "--yes")
    assert refused.exit_code == 1, refused.output
    assert "refused: 3 change(s) would replace or remove data" in refused.output
    guarded_rows = [line for line in refused.output.splitlines() if "replaces a" in line]
    assert sorted(row.split("│")[3].strip() for row in guarded_rows) == \
        ["IngestStream", "ProcessedBucket", "RawBucket"]
    assert not any("DataKeyAlias" in row for row in guarded_rows), "an alias holds no data"
    assert "UPDATE_IN_PROGRESS" not in refused.output, "nothing executed"
    assert [c for c in aws.cfn.list_change_sets(StackName=STACK)["Summaries"]
            if c.get("ExecutionStatus") != "EXECUTE_COMPLETE"] == [], "change set deleted"
    assert kinesis.describe_stream_summary(StreamName=stream_name)  # still there, unchanged

    # With --allow-replacement the guard steps aside: the deploy goes on to ask (declined here,
    # so moto is not asked to rename the pipeline).
    data_store_replacements()
    allowed = deploy(config_file, "--allow-replacement", input="n\n")
    assert "refused" not in allowed.output
    assert f"Execute these changes on {STACK}?" in allowed.output
    assert allowed.exit_code == 1 and "cancelled: nothing deployed" in allowed.output
    assert change_sets.all_read()


def test_diff_marks_data_store_replacements_and_deploy_refuses_them(aws, tmp_path, change_sets):
    """The guard through the CLI on a pipeline in a VPC of its own (whatever the composer does
    with list parameters): a project rename, as CloudFormation would describe it."""
    aws.bucket()
    config_file = write_config(tmp_path / "pipeline.yaml", known_stages())
    assert deploy(config_file, "--yes").exit_code == 0
    storage = outputs(aws.nested(STACK)["StorageStack"])
    write_config(config_file, known_stages(project="mlops-next"))

    def rename():
        change_sets.report({"StorageStack": [
            resource_change("Modify", "RawBucket", "AWS::S3::Bucket", replacement="True",
                            physical_id=storage["RawBucketName"],
                            details=[detail("BucketName", "Always")]),
            resource_change("Modify", "DataKey", "AWS::KMS::Key", replacement="False",
                            physical_id=storage["DataKeyArn"],
                            details=[detail("Description", "Never")]),
        ]})

    rename()
    diff = run("diff", "--config", config_file, "--stack-name", STACK, "--bucket", BUCKET,
               "--no-validate")
    assert diff.exit_code == 0, diff.output
    lines = diff.output.splitlines()
    assert any("StorageStack" in line and "RawBucket" in line and "replaces a bucket" in line
               for line in lines)
    assert any(STACK in line and "StorageStack" in line and "AWS::CloudFormation::Stack" in line
               for line in lines), "the root's row for the nested stack, then its own changes"
    assert not any("DataKey " in line and "replaces" in line for line in lines)
    assert "1 change(s) would replace or remove data" in diff.output
    assert "nothing executed; the change set was deleted" in diff.output

    rename()
    refused = deploy(config_file, "--yes")
    assert refused.exit_code == 1
    assert "refused: 1 change(s) would replace or remove data" in refused.output
    assert aws.cfn.describe_stacks(StackName=STACK)["Stacks"][0]["StackStatus"] == \
        "CREATE_COMPLETE", "nothing executed"
    assert change_sets.all_read()
