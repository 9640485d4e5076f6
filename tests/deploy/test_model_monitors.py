"""The model monitors deploy, follow the endpoint's existence and delete, on moto.

The monitoring-model-quality example's record schema and its serving, training and monitoring
settings (model quality, bias drift and feature attribution drift on), with the stages they read
from: created before any model is approved (no endpoint, so no monitoring schedule, job
definition or alarm that needs one, and no retrain Lambda; the training pipeline with its
baseline steps exists), then updated to serve an approved package (every monitor's job
definition, schedule and alarm appear, with the retrain Lambda), then deleted. What moto cannot
show, in one line: moto's CloudFormation models no SageMaker job definition, monitoring schedule
or pipeline (placeholders with their names stand in, moto_support.placeholders) and runs no
monitoring job, so what the jobs read and write is checked on the rendered templates
(tests/stages/test_model_monitors.py, tests/stages/test_feature_attribution.py).
"""

from pathlib import Path

import pytest
import yaml

from .conftest import BUCKET, run, write_config
from .test_delivery_runs import approved_package
from .test_deploy import known_stages, outputs

pytestmark = pytest.mark.slow

STACK = "mlops-demo-dev"
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "monitoring-model-quality.yaml"
# What exists only with the endpoint (monitoring_gates.py: HasEndpoint).
WITH_ENDPOINT = {
    "DataQualityJobDefinition", "DataQualitySchedule",
    "ModelQualityJobDefinition", "ModelQualitySchedule", "ModelQualityAlarm",
    "ModelBiasJobDefinition", "BiasDriftSchedule", "BiasDriftAlarm",
    "ModelExplainabilityJobDefinition", "FeatureAttributionSchedule", "FeatureAttributionAlarm",
    "MonitorViolationRule", "MonitorFailureRule", "RetrainFunction", "RetrainSubscription",
}
# Placeholders stand in for these (moto_support.placeholders).
UNMODELLED = {"AWS::SageMaker::DataQualityJobDefinition",
              "AWS::SageMaker::ModelQualityJobDefinition",
              "AWS::SageMaker::ModelBiasJobDefinition",
              "AWS::SageMaker::ModelExplainabilityJobDefinition",
              "AWS::SageMaker::MonitoringSchedule"}


def example_data() -> dict:
    example = yaml.safe_load(EXAMPLE.read_text())
    stages = example["stages"]
    return known_stages(
        record_schema=example["record_schema"],
        stages={"serving": {"enabled": True, **stages["serving"]},
                "training": {"enabled": True, **stages["training"]},
                "monitoring": {"enabled": True, **stages["monitoring"]}})


def test_the_model_monitors_follow_the_endpoint_and_delete(aws, tmp_path):
    config_file = write_config(tmp_path / "pipeline.yaml", example_data())
    aws.bucket()
    first = run("deploy", "--config", config_file, "--stack-name", STACK, "--bucket", BUCKET,
                "--no-validate", "--yes")
    assert first.exit_code == 0, first.output
    nested = aws.nested(STACK)
    monitoring = nested["MonitoringStack"]
    before = set(aws.resources(monitoring["StackId"]))
    assert {"MonitorRole", "MonitorSecurityGroup", "AlarmTopic"} <= before
    assert not WITH_ENDPOINT & before, "no model yet: nothing that needs the endpoint"
    assert "TrainingPipeline" in aws.resources(nested["TrainingStack"]["StackId"])

    approved_package(aws)
    served = run("deploy", "--config", config_file, "--stack-name", STACK, "--bucket", BUCKET,
                 "--no-validate", "--yes", "--latest-approved-model")
    assert served.exit_code == 0, served.output
    nested = aws.nested(STACK)
    assert outputs(nested["ServingStack"])["EndpointExists"] == "true"
    monitoring = nested["MonitoringStack"]
    after = aws.resources(monitoring["StackId"])
    assert WITH_ENDPOINT <= set(after)
    assert outputs(monitoring)["RetrainFunctionExists"] == "true"
    stood_in = {p.resource_type for p in aws.placeholders}
    assert UNMODELLED <= stood_in
    schedules = {p.physical_resource_id for p in aws.placeholders
                 if p.resource_type == "AWS::SageMaker::MonitoringSchedule"}
    assert {"mlops-demo-dev-feature-attribution", "mlops-demo-dev-bias-drift",
            "mlops-demo-dev-model-quality", "mlops-demo-dev-data-quality"} <= schedules

    aws.cfn.delete_stack(StackName=STACK)
    assert not [name for name in aws.stacks() if name.startswith(STACK)]
