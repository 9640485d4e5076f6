"""Serverless and asynchronous endpoints deploy, serve an approved package and delete, on moto.

Each kind's example config's serving settings, with the stages serving reads from (network,
storage): created without a model, then updated to serve an approved package, then deleted.
What moto cannot show, in one line: moto creates SageMaker models, endpoint configs and
endpoints as records without running anything (and keeps none of the serverless or
asynchronous settings it does not model), so the settings themselves are checked on the
rendered templates (tests/stages/test_endpoint_kinds.py).
"""

import pytest
import yaml

from .conftest import BUCKET, run, write_config
from .test_delivery_runs import approved_package
from .test_deploy import known_stages, outputs, parameters

pytestmark = pytest.mark.slow

EXAMPLES = "examples"
STACK = "mlops-demo-dev"


def serving_of(example: str) -> dict:
    from pathlib import Path

    data = yaml.safe_load((Path(__file__).resolve().parents[2] / EXAMPLES
                           / f"{example}.yaml").read_text())
    return data["stages"]["serving"]


@pytest.mark.parametrize("example, expected", [
    ("serving-serverless", {"Model", "Endpoint"}),
    ("serving-async", {"Model", "Endpoint", "AsyncSuccessTopic", "AsyncErrorTopic",
                       "EndpointScalingTarget", "EndpointScalingPolicy",
                       "ScaleFromZeroPolicy", "BacklogWithoutCapacityAlarm"}),
])
def test_each_endpoint_kind_deploys_serves_an_approved_package_and_deletes(
        aws, tmp_path, example, expected):
    data = known_stages(stages={"serving": {"enabled": True, **serving_of(example)}})
    config_file = write_config(tmp_path / "pipeline.yaml", data)
    aws.bucket()
    first = run("deploy", "--config", config_file, "--stack-name", STACK, "--bucket", BUCKET,
                "--no-validate", "--yes")
    assert first.exit_code == 0, first.output
    serving = aws.nested(STACK)["ServingStack"]
    assert outputs(serving)["EndpointExists"] == "false"
    before = set(aws.resources(serving["StackId"]))
    assert not expected & {"Model", "Endpoint"} & before, "no model yet: no endpoint"

    package = approved_package(aws)
    served = run("deploy", "--config", config_file, "--stack-name", STACK, "--bucket", BUCKET,
                 "--no-validate", "--yes", "--latest-approved-model")
    assert served.exit_code == 0, served.output
    serving = aws.nested(STACK)["ServingStack"]
    assert parameters(serving)["ModelPackageArn"] == package
    assert outputs(serving)["EndpointExists"] == "true"
    assert expected <= set(aws.resources(serving["StackId"]))
    if example == "serving-async":
        assert outputs(serving)["AsyncInputS3Uri"].endswith("/async/input")

    aws.cfn.delete_stack(StackName=STACK)
    assert not [name for name in aws.stacks() if name.startswith(STACK)]
