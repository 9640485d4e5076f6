"""The EC2 stream consumer deploys and its outputs flow, on moto.

The ingestion stage with the KCL consumer on (and the network's NAT gateways it needs): the
launch template, the Auto Scaling group, its scaling policies and alarms and KCL's three tables
are created, and the group and lease table names come out as outputs. What moto cannot show, in
one line: moto launches no instance that boots the user data, runs no KCL, and does not act on
IMDS, KMS key policies or scaling alarms, so those are checked on the rendered templates
(tests/stages/test_ingestion_ec2.py, tests/test_kcl_consumer.py).
"""

import pytest

from .conftest import BUCKET, run, write_config
from .test_deploy import known_stages, outputs

pytestmark = pytest.mark.slow

STACK = "mlops-demo-dev"


def consumer_config(tmp_path):
    data = known_stages(network={"internet_gateway": True},
                        stages={"ingestion": {"ec2_consumer": {"enabled": True}}})
    return write_config(tmp_path / "pipeline.yaml", data)


def test_the_ec2_consumer_deploys_with_kcls_tables_and_offers_its_names(aws, tmp_path):
    config_file = consumer_config(tmp_path)
    aws.bucket()
    # The data key's policy names Auto Scaling's service-linked role (preflight.py).
    aws.client("iam").create_service_linked_role(AWSServiceName="autoscaling.amazonaws.com")
    result = run("deploy", "--config", config_file, "--stack-name", STACK, "--bucket", BUCKET,
                 "--no-validate", "--yes")
    assert result.exit_code == 0, result.output
    ingestion = aws.nested(STACK)["IngestionStack"]
    created = set(aws.resources(ingestion["StackId"]))
    assert {"Ec2ConsumerLaunchTemplate", "Ec2ConsumerGroup", "Ec2ConsumerScaleOutPolicy",
            "Ec2ConsumerScaleInPolicy", "Ec2ConsumerScaleOutAlarm", "Ec2ConsumerScaleInAlarm",
            "Ec2ConsumerLeaseTable", "Ec2ConsumerWorkerMetricsTable",
            "Ec2ConsumerCoordinatorTable", "Ec2ConsumerInstanceProfile"} <= created
    named = outputs(ingestion)
    lease_table = named["Ec2ConsumerLeaseTableName"]
    tables = set(aws.client("dynamodb").list_tables()["TableNames"])
    assert {lease_table, f"{lease_table}-WorkerMetricStats",
            f"{lease_table}-CoordinatorState"} <= tables
    groups = aws.client("autoscaling").describe_auto_scaling_groups(
        AutoScalingGroupNames=[named["Ec2ConsumerGroupName"]])["AutoScalingGroups"]
    assert len(groups) == 1


def test_without_auto_scaling_s_service_linked_role_deploy_says_how_to_create_it(aws, tmp_path):
    """An account that never used Auto Scaling has no AWSServiceRoleForAutoScaling; the data
    key's policy naming it would be refused as an invalid principal and the stack roll back.
    deploy says so in one line before anything is uploaded."""
    config_file = consumer_config(tmp_path)
    aws.bucket()
    result = run("deploy", "--config", config_file, "--stack-name", STACK, "--bucket", BUCKET,
                 "--no-validate", "--yes")
    assert result.exit_code == 2, result.output
    assert ("IAM service-linked role AWSServiceRoleForAutoScaling does not exist in this "
            "account, and the storage stack's DataKey names it: create it once with `aws iam "
            "create-service-linked-role --aws-service-name autoscaling.amazonaws.com`"
            ) in " ".join(result.output.split())
    assert aws.keys() == [] and STACK not in aws.stacks(), "nothing uploaded, no stack"
