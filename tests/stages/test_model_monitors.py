"""Model quality and bias drift beside data quality: what the training pipeline writes is what
the schedules read, the ground truth comes from the configured prefix, the alarms watch the
metrics AWS documents, and what AWS does not support is a one-line error.

moto (5.2.6) has no CloudFormation model of ModelQualityJobDefinition, ModelBiasJobDefinition or
MonitoringSchedule: the deploy scenario (tests/deploy/test_model_monitors.py) creates them as
placeholders, and these tests read the templates as SageMaker would."""

import csv
import json
import re
from pathlib import Path

import pytest

from mlops_cfn.config import load
from mlops_cfn.errors import UserError
from mlops_cfn.stages import monitoring, training
from mlops_cfn.stages.training import BIAS_CONFIG
from tests.helpers import (config_with, only_resource, resources_of_type, statements,
                           template_dict, with_action)
from tests.stages.test_training import definition, steps

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "monitoring-model-quality.yaml"
EVALUATE = Path(__file__).resolve().parents[2] / "mlops_cfn" / "data" / "training" / "evaluate.py"
# What the storage stage feeds both stacks as ArtifactsBucketName (the same wire).
BUCKET = "<ArtifactsBucketName>"
NAMES = re.compile(r"\$\{([^}]+)\}")


@pytest.fixture(scope="module")
def example():
    return load(EXAMPLE, "dev").config


@pytest.fixture(scope="module")
def stacks(example):
    return template_dict(training.build(example)), template_dict(monitoring.build(example))


def uri(value) -> str:
    """An S3 URI of the monitoring template as the job receives it (wires as `<Name>`)."""
    text = value["Fn::Sub"] if isinstance(value, dict) else value
    if isinstance(text, list):  # [pattern, variables]
        text = text[0]
    return NAMES.sub(lambda m: f"<{m.group(1)}>", text)


def step_output(t: dict, step: str) -> str:
    [output] = steps(definition(t))[step]["Arguments"]["ProcessingOutputConfig"]["Outputs"]
    return output["S3Output"]["S3Uri"]


def job(t: dict, resource_type: str) -> dict:
    return only_resource(t, resource_type)["Properties"]


def test_the_quality_schedule_reads_the_constraints_the_pipeline_step_writes(stacks):
    pipeline, monitors = stacks
    written = step_output(pipeline, "BaselineModelQuality")
    definition_ = job(monitors, "AWS::SageMaker::ModelQualityJobDefinition")
    read = uri(definition_["ModelQualityBaselineConfig"]["ConstraintsResource"]["S3Uri"])
    # The analyzer writes constraints.json into its output folder.
    assert read == written + "constraints.json"
    assert read.startswith(f"s3://{BUCKET}/")


def test_the_bias_schedule_reads_the_analysis_the_clarify_step_writes(stacks):
    pipeline, monitors = stacks
    written = step_output(pipeline, "BaselineBias")
    definition_ = job(monitors, "AWS::SageMaker::ModelBiasJobDefinition")
    # Clarify writes analysis.json, which the bias monitor takes as its constraints.
    assert uri(definition_["ModelBiasBaselineConfig"]["ConstraintsResource"]["S3Uri"]) == (
        written + "analysis.json")
    app = steps(definition(pipeline))["BaselineBias"]["Arguments"]["AppSpecification"]
    image = definition_["ModelBiasAppSpecification"]["ImageUri"]
    assert app["ImageUri"] == uri(image).replace("<Account>", "<ClarifyAccount>")
    # Both look the account up in the same table of the region's.
    pipeline_variables = pipeline["Resources"]["TrainingPipeline"]["Properties"][
        "PipelineDefinition"]["PipelineDefinitionBody"]["Fn::Sub"][1]
    assert image["Fn::Sub"][1]["Account"] == pipeline_variables["ClarifyAccount"]
    assert app["ImageUri"].endswith("/sagemaker-clarify-processing:1.0")


def test_both_monitors_merge_the_ground_truth_under_the_configured_prefix(stacks, example):
    _, monitors = stacks
    prefix = example.stages.monitoring.model_monitor.ground_truth_prefix
    for resource_type, field in (("AWS::SageMaker::ModelQualityJobDefinition",
                                  "ModelQualityJobInput"),
                                 ("AWS::SageMaker::ModelBiasJobDefinition", "ModelBiasJobInput")):
        job_input = job(monitors, resource_type)[field]
        assert uri(job_input["GroundTruthS3Input"]["S3Uri"]) == f"s3://{BUCKET}/{prefix}"
        endpoint = job_input["EndpointInput"]
        assert endpoint["EndpointName"] == {"Ref": "EndpointName"}
        assert endpoint["StartTimeOffset"] == {"Ref": "GroundTruthStartTimeOffset"}
        assert endpoint["EndTimeOffset"] == {"Ref": "GroundTruthEndTimeOffset"}
        # XGBoost's binary:logistic answers one probability per CSV line.
        assert (endpoint["ProbabilityAttribute"], endpoint["ProbabilityThresholdAttribute"]) == (
            "0", 0.5)
    role = monitors["Resources"]["MonitorRole"]
    reads = [r for s in with_action(statements(role), "s3:GetObject") for r in s["Resource"]]
    assert {"Fn::Sub": f"${{ArtifactsBucketArn}}/{prefix}*"} in reads


def test_the_problem_type_follows_the_training_metric(stacks):
    pipeline, monitors = stacks
    assert job(monitors, "AWS::SageMaker::ModelQualityJobDefinition")[
        "ModelQualityAppSpecification"]["ProblemType"] == "BinaryClassification"
    environment = steps(definition(pipeline))["BaselineModelQuality"]["Arguments"]["Environment"]
    assert environment["problem_type"] == "BinaryClassification"
    regression = config_with({"stages": {
        "training": {"metric": "rmse", "hyperparameters": {"objective": "reg:squarederror",
                                                           "eval_metric": "rmse"}},
        "monitoring": {"thresholds": {"model_quality": 2.5},
                       "model_monitor": {"model_quality": {"enabled": True}}}}}).config
    definition_ = job(template_dict(monitoring.build(regression)),
                      "AWS::SageMaker::ModelQualityJobDefinition")
    assert definition_["ModelQualityAppSpecification"]["ProblemType"] == "Regression"
    assert definition_["ModelQualityJobInput"]["EndpointInput"]["InferenceAttribute"] == "0"


def test_the_quality_baseline_reads_the_columns_evaluate_writes(stacks, tmp_path):
    """The baseline's attributes name the header evaluate.py writes; Clarify's headers match
    the header-less bias rows."""
    pipeline, _ = stacks
    namespace: dict = {}
    exec(compile(EVALUATE.read_text(), str(EVALUATE), "exec"), namespace)
    namespace["write_predictions"]("binary_classification", tmp_path, [1.0, 0.0],
                                   [[12.0, 30.5, 1.0, 0.0], [3.0, 80.0, 4.0, 1.0]], [0.9, 0.2])
    with (tmp_path / "quality" / "predictions.csv").open() as handle:
        header, *rows = list(csv.reader(handle))
    environment = steps(definition(pipeline))["BaselineModelQuality"]["Arguments"]["Environment"]
    assert {environment["ground_truth_attribute"], environment["inference_attribute"],
            environment["probability_attribute"]} == set(header)
    assert rows[0][header.index("prediction")] == "1"
    assert json.loads(environment["dataset_format"]) == {"csv": {"header": True}}
    with (tmp_path / "bias" / "predictions.csv").open() as handle:
        first = next(csv.reader(handle))
    [asset] = [a for a in training.build(load(EXAMPLE, "dev").config).assets
               if a.file_name == BIAS_CONFIG]
    analysis = json.loads(asset.content)
    assert len(analysis["headers"]) == len(first)
    assert analysis["headers"][0] == "churned" and analysis["headers"][-1] == "prediction"
    assert analysis["predicted_label"] == "prediction"
    assert analysis["facet"] == [{"name_or_index": "senior", "value_or_threshold": [1]}]


def test_alarms_watch_the_metrics_aws_documents_and_start_retraining(stacks):
    _, monitors = stacks
    quality = monitors["Resources"]["ModelQualityAlarm"]["Properties"]
    assert (quality["Namespace"], quality["MetricName"]) == (
        "aws/sagemaker/Endpoints/model-metrics", "f1")
    assert [d["Name"] for d in quality["Dimensions"]] == ["Endpoint", "MonitoringSchedule"]
    schedule_name = monitors["Resources"]["ModelQualitySchedule"]["Properties"][
        "MonitoringScheduleName"]
    assert quality["Dimensions"][1]["Value"] == schedule_name
    assert quality["ComparisonOperator"] == "LessThanThreshold"
    bias = monitors["Resources"]["BiasDriftAlarm"]["Properties"]
    [query] = bias["Metrics"]
    text = query["Expression"]["Fn::Sub"]
    assert 'MAX(bias_metric_DPPL) FROM SCHEMA("aws/sagemaker/Endpoints/bias-metrics", ' \
           "Endpoint, MonitoringSchedule, BiasStage, Label, LabelValue, Facet, FacetValue)" in text
    bias_schedule = monitors["Resources"]["BiasDriftSchedule"]["Properties"][
        "MonitoringScheduleName"]["Fn::Sub"]
    assert f"MonitoringSchedule = '{bias_schedule}'" in text
    retrain = monitors["Resources"]["RetrainSubscription"]["Properties"]["FilterPolicy"]
    assert {"Ref": "ModelQualityAlarm"} in retrain["AlarmName"]
    assert {"Ref": "BiasDriftAlarm"} in retrain["AlarmName"]


def test_every_schedule_needs_the_endpoint_and_violations_of_any_count_as_drift(stacks):
    _, monitors = stacks
    schedules = resources_of_type(monitors, "AWS::SageMaker::MonitoringSchedule")
    assert set(schedules) == {"DataQualitySchedule", "ModelQualitySchedule", "BiasDriftSchedule",
                              "FeatureAttributionSchedule"}
    for name in ("ModelQualitySchedule", "BiasDriftSchedule", "ModelQualityJobDefinition",
                 "ModelBiasJobDefinition", "ModelQualityAlarm", "BiasDriftAlarm"):
        assert monitors["Resources"][name]["Condition"] == "HasEndpoint"
    rule = monitors["Resources"]["MonitorViolationRule"]["Properties"]["EventPattern"]
    assert rule["detail"]["MonitoringScheduleArn"] == [
        {"Fn::GetAtt": [name, "MonitoringScheduleArn"]}
        for name in ("DataQualitySchedule", "ModelQualitySchedule", "BiasDriftSchedule",
                     "FeatureAttributionSchedule")]


def test_outputs_and_volumes_are_encrypted_with_the_data_key(stacks):
    _, monitors = stacks
    for resource_type, output in (("AWS::SageMaker::ModelQualityJobDefinition",
                                   "ModelQualityJobOutputConfig"),
                                  ("AWS::SageMaker::ModelBiasJobDefinition",
                                   "ModelBiasJobOutputConfig")):
        props = job(monitors, resource_type)
        assert props[output]["KmsKeyId"] == {"Ref": "DataKeyArn"}
        assert props["JobResources"]["ClusterConfig"]["VolumeKmsKeyId"] == {"Ref": "DataKeyArn"}
        assert props["NetworkConfig"]["EnableInterContainerTrafficEncryption"] is True


def test_the_new_monitors_are_off_by_default():
    t = template_dict(monitoring.build(config_with().config))
    assert not resources_of_type(t, "AWS::SageMaker::ModelQualityJobDefinition")
    assert not resources_of_type(t, "AWS::SageMaker::ModelBiasJobDefinition")
    assert "BaselineModelQuality" not in steps(definition(template_dict(
        training.build(config_with().config))))


@pytest.mark.parametrize("changes, message", [
    ({"serving": {"sagemaker": {"kind": "asynchronous"}},
      "monitoring": {"model_monitor": {"model_quality": {"enabled": True}}}},
     "model_quality.enabled: AWS documents model quality, bias drift and feature attribution "
     "drift monitoring for real-time endpoints"),
    ({"serving": {"sagemaker": {"kind": "serverless"}},
      "monitoring": {"model_monitor": {"enabled": False, "bias_drift": {
          "enabled": True, "facets": [{"name": "value"}]}}}},
     "bias_drift.enabled: needs Model Monitor"),
    ({"monitoring": {"model_monitor": {"model_quality": {"enabled": True,
                                                         "problem_type": "Regression"}}}},
     "model_quality.problem_type: 'Regression' does not fit stages.training.metric"),
    ({"monitoring": {"model_monitor": {"model_quality": {"enabled": True, "metric": "rmse"}}}},
     "model_quality.metric: 'rmse' is not a BinaryClassification metric"),
    ({"monitoring": {"model_monitor": {"bias_drift": {"enabled": True}}}},
     "bias_drift.facets: name at least one"),
    ({"monitoring": {"model_monitor": {"bias_drift": {"enabled": True,
                                                      "facets": [{"name": "user_id"}]}}}},
     "bias_drift.facets[0].name: 'user_id' is not a feature of record_schema"),
    ({"training": {"enabled": False},
      "monitoring": {"model_monitor": {"model_quality": {"enabled": True}}}},
     "its baseline is written by the training pipeline"),
    ({"monitoring": {"model_monitor": {"model_quality": {"enabled": True},
                                       "ground_truth_prefix": "monitoring/baseline/labels/"}}},
     "ground_truth_prefix: must not overlap"),
])
def test_what_aws_does_not_support_is_a_one_line_error(changes, message):
    with pytest.raises(UserError) as raised:
        config_with({"stages": changes})
    assert message in str(raised.value)
    assert "\n" not in str(raised.value)
