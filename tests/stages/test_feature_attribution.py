"""Feature attribution drift beside the other model monitors: the SHAP baseline the training
pipeline computes is what the schedule reads, the baseline and the runs compute SHAP values
alike through a shadow endpoint of a model, the alarm watches the metric AWS documents and
starts retraining, the roles reach only Clarify's shadow endpoints, and what cannot run is a
one-line error.

moto (5.2.6) has no CloudFormation model of ModelExplainabilityJobDefinition or
MonitoringSchedule, so the deploy scenario (tests/deploy/test_model_monitors.py) creates them
as placeholders: these tests read the templates as SageMaker would."""

import csv
import json

import pytest

from mlops_cfn.config import load
from mlops_cfn.errors import UserError
from mlops_cfn.stages import monitoring, network, training
from mlops_cfn.stages.monitoring_models import EXPLAINABILITY_CONFIG_FILE
from mlops_cfn.stages.training import EXPLAINABILITY_CONFIG
from tests.helpers import (config_with, resources_of_type, statements, template_dict,
                           with_action)
from tests.stages.test_model_monitors import BUCKET, EVALUATE, EXAMPLE, job, step_output, uri
from tests.stages.test_training import definition, steps

ATTRIBUTION = {"monitoring": {"model_monitor": {"feature_attribution_drift": {
    "enabled": True, "feature": "value"}}}}


@pytest.fixture(scope="module")
def example():
    return load(EXAMPLE, "dev").config


@pytest.fixture(scope="module")
def stacks(example):
    return template_dict(training.build(example)), template_dict(monitoring.build(example))


def asset(stage, name: str) -> dict:
    [found] = [a for a in stage.assets if a.file_name == name]
    return json.loads(found.content)


def test_the_schedule_reads_the_shap_baseline_the_clarify_check_step_writes(stacks):
    pipeline, monitors = stacks
    written = step_output(pipeline, "BaselineExplainability")
    definition_ = job(monitors, "AWS::SageMaker::ModelExplainabilityJobDefinition")
    # Clarify writes analysis.json (the global SHAP values): the monitor's constraints.
    assert uri(definition_["ModelExplainabilityBaselineConfig"]["ConstraintsResource"][
        "S3Uri"]) == written + "analysis.json"
    assert written.startswith(f"s3://{BUCKET}/monitoring/baseline/model-explainability/")
    app = steps(definition(pipeline))["BaselineExplainability"]["Arguments"]["AppSpecification"]
    image = definition_["ModelExplainabilityAppSpecification"]["ImageUri"]
    assert app["ImageUri"] == uri(image).replace("<Account>", "<ClarifyAccount>")
    assert definition_["ModelExplainabilityAppSpecification"]["Environment"] == {
        "publish_cloudwatch_metrics": "Enabled"}


def test_the_baseline_calls_a_model_the_pipeline_creates_from_the_archive_that_passed(stacks):
    pipeline, _ = stacks
    found = steps(definition(pipeline))
    model, check = found["CreateShadowModel"], found["BaselineExplainability"]
    # Both only after the metric check passes, beside RegisterModel.
    if_steps = [s["Name"] for s in found["CheckMetric"]["Arguments"]["IfSteps"]]
    assert {"CreateShadowModel", "BaselineExplainability"} <= set(if_steps)
    assert model["Type"] == "Model"
    assert model["Arguments"]["PrimaryContainer"]["ModelDataUrl"] == found["RegisterModel"][
        "Arguments"]["InferenceSpecification"]["Containers"][0]["ModelDataUrl"]
    # Clarify applies the model's VPC configuration to its shadow endpoint: the jobs' network.
    assert model["Arguments"]["VpcConfig"] == found["EvaluateModel"]["Arguments"][
        "NetworkConfig"]["VpcConfig"]
    assert check["Type"] == "ClarifyCheck"
    assert check["CheckType"] == "MODEL_EXPLAINABILITY"
    assert check["ModelName"] == {"Get": "Steps.CreateShadowModel.ModelName"}
    assert (check["SkipCheck"], check["RegisterNewBaseline"]) == (True, True)
    inputs = {i["InputName"]: i["S3Input"] for i in check["Arguments"]["ProcessingInputs"]}
    assert inputs["analysis_config"]["LocalPath"] == "/opt/ml/processing/input/config"
    assert inputs["dataset"]["LocalPath"] == "/opt/ml/processing/input/data"
    # Clarify must reach the shadow endpoint: only its job runs without network isolation.
    assert check["Arguments"]["NetworkConfig"]["EnableNetworkIsolation"] is False
    assert found["EvaluateModel"]["Arguments"]["NetworkConfig"]["EnableNetworkIsolation"] is True
    assert check["Arguments"]["ProcessingResources"]["ClusterConfig"]["VolumeKmsKeyId"] == (
        "<DataKeyArn>")


def test_baseline_and_runs_compute_shap_alike_on_the_columns_they_read(example, tmp_path):
    baseline = asset(training.build(example), EXPLAINABILITY_CONFIG)
    runs = asset(monitoring.build(example), EXPLAINABILITY_CONFIG_FILE)
    features = ["tenure_months", "monthly_spend", "support_calls", "senior"]
    assert baseline["methods"] == runs["methods"] == {"shap": {
        "num_samples": 100, "agg_method": "mean_abs", "use_logit": False,
        "save_local_shap_values": False}}
    assert baseline["predictor"] == runs["predictor"]
    # Pipelines hands the baseline its model (the step's ModelName); the runs use the
    # endpoint's: neither file names one.
    assert "model_name" not in baseline["predictor"] and "model_name" not in runs["predictor"]
    # The runs read the captured requests: the features alone, no label.
    assert runs["headers"] == features and "label" not in runs
    # The baseline reads evaluate.py's bias rows: label, features, prediction.
    namespace: dict = {}
    exec(compile(EVALUATE.read_text(), str(EVALUATE), "exec"), namespace)
    namespace["write_predictions"]("binary_classification", tmp_path, [1.0],
                                   [[12.0, 30.5, 1.0, 0.0]], [0.9])
    with (tmp_path / "bias" / "predictions.csv").open() as handle:
        first = next(csv.reader(handle))
    assert len(baseline["headers"]) == len(first)
    assert baseline["headers"] == ["churned", *features, "prediction"]
    assert baseline["label"] == "churned"
    # The prediction column is never sent to the model as a feature.
    assert baseline["excluded_columns"] == ["prediction"]


def test_the_alarm_watches_the_feature_s_global_shap_value_and_starts_retraining(stacks):
    _, monitors = stacks
    alarm = monitors["Resources"]["FeatureAttributionAlarm"]
    assert alarm["Condition"] == "HasEndpoint"
    props = alarm["Properties"]
    [query] = props["Metrics"]
    text = query["Expression"]["Fn::Sub"]
    assert ('AVG(feature_monthly_spend) FROM SCHEMA('
            '"aws/sagemaker/Endpoints/explainability-metrics", Endpoint, MonitoringSchedule, '
            'ExplainabilityMethod, Label, ValueType)') in text
    schedule = monitors["Resources"]["FeatureAttributionSchedule"]["Properties"]
    assert f"MonitoringSchedule = '{schedule['MonitoringScheduleName']['Fn::Sub']}'" in text
    assert "Endpoint = '${EndpointName}'" in text
    assert props["ComparisonOperator"] == "LessThanThreshold"
    assert props["Threshold"] == {"Ref": "FeatureAttributionThreshold"}
    assert schedule["MonitoringScheduleConfig"]["MonitoringType"] == "ModelExplainability"
    retrain = monitors["Resources"]["RetrainSubscription"]["Properties"]["FilterPolicy"]
    assert {"Ref": "FeatureAttributionAlarm"} in retrain["AlarmName"]
    # Its runs with violations (the ranking moved) are drift too.
    rule = monitors["Resources"]["MonitorViolationRule"]["Properties"]["EventPattern"]
    assert {"Fn::GetAtt": ["FeatureAttributionSchedule", "MonitoringScheduleArn"]} in rule[
        "detail"]["MonitoringScheduleArn"]


def test_the_monitor_follows_the_endpoint_and_encrypts_in_the_private_subnets(stacks):
    _, monitors = stacks
    for name in ("FeatureAttributionSchedule", "ModelExplainabilityJobDefinition"):
        assert monitors["Resources"][name]["Condition"] == "HasEndpoint"
    props = job(monitors, "AWS::SageMaker::ModelExplainabilityJobDefinition")
    assert props["ModelExplainabilityJobOutputConfig"]["KmsKeyId"] == {"Ref": "DataKeyArn"}
    assert props["JobResources"]["ClusterConfig"]["VolumeKmsKeyId"] == {"Ref": "DataKeyArn"}
    network_ = props["NetworkConfig"]
    assert network_["VpcConfig"]["Subnets"] == {"Ref": "PrivateSubnetIds"}
    assert network_["VpcConfig"]["SecurityGroupIds"] == [
        {"Fn::GetAtt": ["MonitorSecurityGroup", "GroupId"]}]
    endpoint = props["ModelExplainabilityJobInput"]["EndpointInput"]
    assert endpoint["EndpointName"] == {"Ref": "EndpointName"}
    # SHAP explains the score (XGBoost's probability), not a thresholded label.
    assert endpoint["ProbabilityAttribute"] == "0"
    assert "ProbabilityThresholdAttribute" not in endpoint
    assert props["StoppingCondition"]["MaxRuntimeInSeconds"] == {
        "Ref": "FeatureAttributionMaxRuntimeSeconds"}


def test_roles_reach_only_clarify_s_shadow_endpoints(stacks):
    pipeline, monitors = stacks
    shadow = "sagemaker-clarify-*"
    for role in (pipeline["Resources"]["PipelineRolePolicy"], monitors["Resources"]["MonitorRole"]):
        found = statements(role)
        for action in ("sagemaker:CreateEndpoint", "sagemaker:DeleteEndpoint",
                       "sagemaker:InvokeEndpoint", "sagemaker:CreateEndpointConfig"):
            [statement] = with_action(found, action)
            assert all(r["Fn::Sub"].endswith(f"endpoint/{shadow}")
                       or r["Fn::Sub"].endswith(f"endpoint-config/{shadow}")
                       for r in statement["Resource"]), action
    [create_model] = with_action(statements(pipeline["Resources"]["PipelineRolePolicy"]),
                                 "sagemaker:CreateModel")
    assert create_model["Resource"] == [{"Fn::Sub": "arn:${AWS::Partition}:sagemaker:"
                                                    "${AWS::Region}:${AWS::AccountId}:"
                                                    "model/pipelines-*"}]
    [metrics] = with_action(statements(monitors["Resources"]["MonitorRole"]),
                            "cloudwatch:PutMetricData")
    assert "aws/sagemaker/Endpoints/explainability-metrics" in metrics["Condition"][
        "StringEquals"]["cloudwatch:namespace"]
    # The monitor reads its analysis configuration (an asset of its stack).
    [config_uri] = [job(monitors, "AWS::SageMaker::ModelExplainabilityJobDefinition")[
        "ModelExplainabilityAppSpecification"]["ConfigUri"]]
    assert EXPLAINABILITY_CONFIG_FILE in json.dumps(config_uri)


def test_the_vpc_has_the_sagemaker_api_and_runtime_endpoints_clarify_calls(example):
    endpoints = {e["Properties"]["ServiceName"]["Fn::Sub"]
                 for e in resources_of_type(template_dict(network.build(example)),
                                            "AWS::EC2::VPCEndpoint").values()}
    assert {"com.amazonaws.${AWS::Region}.sagemaker.api",
            "com.amazonaws.${AWS::Region}.sagemaker.runtime"} <= endpoints


def test_feature_attribution_is_off_by_default():
    config = config_with().config
    assert not resources_of_type(template_dict(monitoring.build(config)),
                                 "AWS::SageMaker::ModelExplainabilityJobDefinition")
    found = steps(definition(template_dict(training.build(config))))
    assert "CreateShadowModel" not in found and "BaselineExplainability" not in found


def test_it_renders_with_the_bundled_schema_when_asked():
    config = config_with({"stages": ATTRIBUTION}).config
    monitors = template_dict(monitoring.build(config))
    assert "FeatureAttributionAlarm" in monitors["Resources"]
    assert "CreateShadowModel" in steps(definition(template_dict(training.build(config))))


@pytest.mark.parametrize("changes, message", [
    ({"monitoring": {"model_monitor": {"feature_attribution_drift": {"enabled": True}}}},
     "feature_attribution_drift.feature: name the feature column"),
    ({"monitoring": {"model_monitor": {"feature_attribution_drift": {
        "enabled": True, "feature": "user_id"}}}},
     "feature_attribution_drift.feature: name the feature column"),
    ({"serving": {"sagemaker": {"kind": "asynchronous"}}, **ATTRIBUTION},
     "feature_attribution_drift.enabled: AWS documents model quality, bias drift and feature "
     "attribution drift monitoring for real-time endpoints"),
    ({"training": {"enabled": False}, **ATTRIBUTION},
     "its baseline is written by the training pipeline"),
    ({"network": {"interface_endpoints": [
        "monitoring", "sagemaker.api", "logs", "kms", "sts", "ecr.api", "ecr.dkr", "events",
        "glue", "kinesis-streams", "lambda"]}, "stages": ATTRIBUTION},
     "need sagemaker.runtime"),
    ({"monitoring": {"model_monitor": {"feature_attribution_drift": {
        "enabled": True, "feature": "value", "agg_method": "mean"}}}},
     "feature_attribution_drift.agg_method"),
])
def test_what_cannot_run_is_a_one_line_error(changes, message):
    with pytest.raises(UserError) as raised:
        config_with(changes if "stages" in changes else {"stages": changes})
    assert message in str(raised.value)
    assert "\n" not in str(raised.value)


def test_the_json_schema_describes_the_new_keys():
    """Editors and CI checks see the section and the threshold as the loader reads them."""
    import jsonschema

    from mlops_cfn.config.schema import pipeline_schema
    schema = pipeline_schema()
    data = {"stages": {"monitoring": {
        "thresholds": {"feature_attribution": 0.05},
        "model_monitor": {"feature_attribution_drift": {
            "enabled": True, "feature": "value", "alarm_when": "above", "num_samples": 50,
            "agg_method": "median", "shadow_instance_type": "ml.c5.large",
            "max_runtime_seconds": 1800}}}}}
    validator = jsonschema.Draft202012Validator(schema)
    assert not [e.message for e in validator.iter_errors(data) if "stages" in list(e.path)]
    data["stages"]["monitoring"]["model_monitor"]["feature_attribution_drift"][
        "agg_method"] = "mean"
    assert any("mean" in e.message for e in validator.iter_errors(data))
