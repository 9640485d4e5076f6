"""The EMR Serverless stream consumer deploys, offers its application and deletes, on moto.

The ingestion-emr-consumer example's ingestion settings (the EMR consumer on) with the network
and storage it reads from: the application, the job run's custom resource, the supervisor
Lambda with its rules, queues and roles are created, and the application id comes out as the
output the monitoring stage's failure rule reads. What moto cannot show, in one line: moto's
CloudFormation models neither AWS::EMRServerless::Application nor
AWS::CloudFormation::CustomResource (placeholders stand in, moto_support.placeholders), so no
supervisor runs and no job run starts; the supervisor and the job are checked on the rendered
templates and in-process (tests/stages/test_ingestion_emr.py, tests/test_consumer.py).
"""

from pathlib import Path

import pytest
import yaml

from .conftest import BUCKET, run, write_config
from .test_deploy import known_stages, outputs

pytestmark = pytest.mark.slow

STACK = "mlops-demo-dev"
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "ingestion-emr-consumer.yaml"


def test_the_emr_consumer_deploys_with_its_supervisor_and_offers_its_application(aws, tmp_path):
    example = yaml.safe_load(EXAMPLE.read_text())["stages"]
    data = known_stages(stages={"ingestion": example["ingestion"]})
    config_file = write_config(tmp_path / "pipeline.yaml", data)
    aws.bucket()
    result = run("deploy", "--config", config_file, "--stack-name", STACK, "--bucket", BUCKET,
                 "--no-validate", "--yes")
    assert result.exit_code == 0, result.output
    ingestion = aws.nested(STACK)["IngestionStack"]
    created = set(aws.resources(ingestion["StackId"]))
    assert {"EmrConsumerApplication", "EmrConsumerJob", "EmrConsumerJobRole",
            "EmrConsumerSupervisor", "EmrConsumerSupervisorRole", "EmrConsumerRunEndedRule",
            "EmrConsumerCheckRule", "EmrConsumerSecurityGroup",
            "EmrConsumerSupervisorDeadLetterQueue", "EmrConsumerLogGroup"} <= created
    stood_in = {p.resource_type: p for p in aws.placeholders}
    assert {"AWS::EMRServerless::Application",
            "AWS::CloudFormation::CustomResource"} <= set(stood_in)
    application = outputs(ingestion)["EmrConsumerApplicationId"]
    assert application == stood_in["AWS::EMRServerless::Application"].physical_resource_id
    # The supervisor is told which application to start and stop.
    supervisor = aws.client("lambda").get_function(
        FunctionName=aws.resources(ingestion["StackId"])["EmrConsumerSupervisor"][
            "PhysicalResourceId"])["Configuration"]
    assert application in supervisor["Environment"]["Variables"].values()

    aws.cfn.delete_stack(StackName=STACK)
    assert not [name for name in aws.stacks() if name.startswith(STACK)]
