"""Serverless and asynchronous SageMaker endpoints beside the real-time one (issue 15,
"Endpoint kinds"): what each renders, what AWS refuses about each, said as config errors.

AWS pages the assertions follow: "Deploy models with Amazon SageMaker Serverless Inference"
(feature exclusions: no VPC configuration, network isolation, data capture or Model Monitor),
"ProductionVariantServerlessConfig" (1024-6144 MB in 1 GB steps, concurrency 1-200, provisioned
at most the maximum), "Asynchronous inference" and "Complete the prerequisites" (S3 in and out,
SNS notifications through the model's role), "Autoscale an asynchronous endpoint" (the backlog
metric, scaling to zero and the optional policy that scales up from zero), deployment
guardrails' "Exclusions" (blue/green is excluded for neither kind; only rolling deployments
exclude serverless endpoints).
"""

import re

import pytest

from mlops_cfn import outputs
from mlops_cfn.config import setting_values
from mlops_cfn.errors import UserError
from mlops_cfn.stages import cicd, monitoring, serving
from tests.helpers import (config_with, only_resource, resources_of_type, statements,
                           template_dict, with_action)
from tests.stages.test_serving import KEY, serving_config, sub_text

SERVERLESS = {"target": "sagemaker",
              "sagemaker": {"kind": "serverless", "deployment": {"traffic_shifting": "all_at_once"}}}
ASYNC = {"target": "sagemaker",
         "sagemaker": {"kind": "asynchronous",
                       "deployment": {"traffic_shifting": "all_at_once"}}}
NO_MONITOR = {"monitoring": {"model_monitor": {"enabled": False}}}


def merged(base: dict, **sagemaker) -> dict:
    return {**base, "sagemaker": {**base["sagemaker"], **sagemaker}}


def loaded_with(changes: dict, **stages):
    """The bundled default with `changes` in stages.serving and `stages` beside it."""
    return config_with({"stages": {"serving": {"enabled": True, **changes}, **stages}})


def rendered(changes: dict, **stages) -> dict:
    return template_dict(serving.build(loaded_with(changes, **stages).config))


def variant(t: dict) -> dict:
    return only_resource(t, "AWS::SageMaker::EndpointConfig")["Properties"][
        "ProductionVariants"][0]


def problems(changes: dict, **stages) -> list[str]:
    with pytest.raises(UserError) as raised:
        config_with({"stages": {"serving": {"enabled": True, **changes}, **stages}})
    return list(raised.value.problems)


# --- serverless ----------------------------------------------------------------------------

def test_a_serverless_endpoint_is_sized_by_memory_and_concurrency_not_instances():
    t = rendered(SERVERLESS, **NO_MONITOR)
    found = variant(t)
    assert found["ServerlessConfig"] == {"MemorySizeInMB": {"Ref": "ServerlessMemoryMb"},
                                         "MaxConcurrency": {"Ref": "ServerlessMaxConcurrency"}}
    assert "InstanceType" not in found and "InitialInstanceCount" not in found
    assert not resources_of_type(t, "AWS::ApplicationAutoScaling::ScalableTarget"), (
        "SageMaker scales a serverless endpoint up to max_concurrency itself")
    # The image SageMaker keeps is encrypted with the data key.
    assert only_resource(t, "AWS::SageMaker::EndpointConfig")["Properties"]["KmsKeyId"] == KEY


def test_serverless_memory_and_concurrency_are_values_per_environment():
    loaded = loaded_with(merged(SERVERLESS, serverless={"memory_mb": 4096,
                                                        "max_concurrency": 50}), **NO_MONITOR)
    values = setting_values(loaded.config)
    assert (values["ServerlessMemoryMb"], values["ServerlessMaxConcurrency"]) == (4096, 50)


def test_provisioned_concurrency_keeps_workers_warm():
    t = rendered(merged(SERVERLESS, serverless={"max_concurrency": 20,
                                                "provisioned_concurrency": 5}), **NO_MONITOR)
    assert variant(t)["ServerlessConfig"]["ProvisionedConcurrency"] == 5


def test_a_serverless_model_runs_outside_the_vpc_because_aws_allows_no_other_way():
    t = rendered(merged(SERVERLESS, batch_transform={"enabled": False}), **NO_MONITOR)
    model = only_resource(t, "AWS::SageMaker::Model")
    assert "VpcConfig" not in model["Properties"]
    assert model["Properties"]["EnableNetworkIsolation"] is False
    skips = model["Metadata"]["checkov"]["skip"]
    assert [s["id"] for s in skips] == ["CKV_AWS_370"]
    assert "Serverless Inference supports neither network isolation nor a VPC" in (
        skips[0]["comment"])
    assert "ModelSecurityGroup" not in t["Resources"]
    role = statements(t["Resources"]["ModelRole"])
    assert not [s for s in role if any(a.startswith("ec2:") for a in s["Action"])], (
        "no network interfaces to manage")


def test_a_serverless_endpoint_captures_nothing():
    t = rendered(SERVERLESS, **NO_MONITOR)
    assert "DataCaptureConfig" not in only_resource(
        t, "AWS::SageMaker::EndpointConfig")["Properties"]
    assert outputs.DATA_CAPTURE_URI.name not in t.get("Outputs", {})


def test_a_serverless_endpoint_keeps_blue_green_with_rollback_alarms():
    t = rendered(SERVERLESS, **NO_MONITOR)
    endpoint = only_resource(t, "AWS::SageMaker::Endpoint")["Properties"]
    assert endpoint["DeploymentConfig"]["AutoRollbackConfiguration"]["Alarms"]


@pytest.mark.parametrize("setting, expected", [
    ({"network_isolation": True}, "does not support network isolation"),
    ({"data_capture": {"enabled": True}}, "does not support data capture"),
    ({"instance_type": "ml.c5.large"}, "instance_type: a serverless endpoint has no instances"),
    ({"min_instances": 1, "max_instances": 3},
     "min_instances, max_instances: a serverless endpoint has no instances"),
    ({"serverless": {"max_concurrency": 4, "provisioned_concurrency": 5}},
     "provisioned_concurrency (5) exceeds max_concurrency (4)"),
    ({"serverless": {"memory_mb": 1500}}, "must be one of 1024, 2048"),
])
def test_what_serverless_inference_cannot_do_is_a_config_error(setting, expected):
    found = problems(merged(SERVERLESS, **setting), **NO_MONITOR)
    assert len(found) == 1 and expected in found[0], found
    assert found[0].startswith("pipeline.yaml: stages.serving.sagemaker"), found


def test_model_monitor_asked_for_on_a_serverless_endpoint_is_refused_not_dropped():
    found = problems(SERVERLESS, monitoring={"model_monitor": {"enabled": True}})
    assert any("supports neither data capture nor Model Monitor" in p for p in found), found


def test_model_monitor_left_at_its_default_simply_has_nothing_to_watch():
    loaded = serving_config(SERVERLESS)
    t = template_dict(monitoring.build(loaded.config))
    assert not resources_of_type(t, "AWS::SageMaker::MonitoringSchedule")


def test_model_monitor_asked_for_without_data_capture_is_refused():
    found = problems({"target": "sagemaker", "sagemaker": {"data_capture": {"enabled": False}}},
                     monitoring={"model_monitor": {"enabled": True}})
    assert any("Model Monitor reads the endpoint's captured requests" in p for p in found)


def test_a_kind_section_for_another_kind_is_refused():
    found = problems({"target": "sagemaker", "sagemaker": {"serverless": {"memory_mb": 4096}}})
    assert any("serverless is for kind 'serverless' (kind is 'real_time')" in p for p in found)


# --- asynchronous --------------------------------------------------------------------------

def test_an_asynchronous_endpoint_answers_into_s3_encrypted_and_announced():
    t = rendered(ASYNC)
    config = only_resource(t, "AWS::SageMaker::EndpointConfig")["Properties"]
    output = config["AsyncInferenceConfig"]["OutputConfig"]
    assert sub_text(output["S3OutputPath"]) == "s3://${ArtifactsBucketName}/async/output"
    assert sub_text(output["S3FailurePath"]) == "s3://${ArtifactsBucketName}/async/failure"
    assert output["KmsKeyId"] == KEY
    assert output["NotificationConfig"] == {"SuccessTopic": {"Ref": "AsyncSuccessTopic"},
                                            "ErrorTopic": {"Ref": "AsyncErrorTopic"}}
    for topic in ("AsyncSuccessTopic", "AsyncErrorTopic"):
        assert t["Resources"][topic]["Properties"]["KmsMasterKeyId"] == KEY
    # Captured requests still feed Model Monitor.
    assert "DataCaptureConfig" in config
    assert {outputs.ASYNC_INPUT_URI.name, outputs.ASYNC_OUTPUT_URI.name,
            outputs.ASYNC_SUCCESS_TOPIC_ARN.name,
            outputs.ASYNC_ERROR_TOPIC_ARN.name} <= set(t["Outputs"])


def test_s3_paths_match_the_pattern_cloudformation_checks_once_the_bucket_is_known():
    t = rendered(ASYNC)
    output = only_resource(t, "AWS::SageMaker::EndpointConfig")["Properties"][
        "AsyncInferenceConfig"]["OutputConfig"]
    bucket = "mlops-demo-dev-artifacts-123456789012-us-east-1"
    for path in (output["S3OutputPath"], output["S3FailurePath"]):
        value = sub_text(path).replace("${ArtifactsBucketName}", bucket)
        # AsyncInferenceOutputConfig: pattern (https|s3)://([^/])/?(.*), at most 512.
        assert re.fullmatch(r"(https|s3)://([^/])+/?(.*)", value) and len(value) <= 512


def test_the_model_role_reads_requests_writes_answers_and_publishes_and_nothing_wider():
    t = rendered(ASYNC)
    role = statements(t["Resources"]["ModelRole"])
    [read] = [s for s in with_action(role, "s3:GetObject")
              if "async/input/*" in sub_text(s["Resource"][0])]
    assert len(read["Resource"]) == 1
    [write] = [s for s in with_action(role, "s3:PutObject")
               if any("async/" in sub_text(r) for r in s["Resource"])]
    assert sorted(sub_text(r).split("/", 1)[1] for r in write["Resource"]) == [
        "async/failure/*", "async/output/*"]
    [publish] = with_action(role, "sns:Publish")
    assert publish["Resource"] == [{"Ref": "AsyncSuccessTopic"}, {"Ref": "AsyncErrorTopic"}]
    [key] = with_action(role, "kms:GenerateDataKey")
    assert [sub_text(s) for s in key["Condition"]["StringEquals"]["kms:ViaService"]] == [
        "s3.${AWS::Region}.amazonaws.com", "sns.${AWS::Region}.amazonaws.com"]


def test_without_notifications_there_are_no_topics_and_no_publish():
    t = rendered(merged(ASYNC, asynchronous={"notifications": False}))
    assert not resources_of_type(t, "AWS::SNS::Topic")
    assert not with_action(statements(t["Resources"]["ModelRole"]), "sns:Publish")
    assert "NotificationConfig" not in only_resource(
        t, "AWS::SageMaker::EndpointConfig")["Properties"]["AsyncInferenceConfig"]["OutputConfig"]


def test_instances_follow_the_backlog():
    t = rendered(ASYNC)
    policy = t["Resources"]["EndpointScalingPolicy"]["Properties"]
    tracking = policy["TargetTrackingScalingPolicyConfiguration"]
    metric = tracking["CustomizedMetricSpecification"]
    assert (metric["Namespace"], metric["MetricName"], metric["Statistic"]) == (
        "AWS/SageMaker", "ApproximateBacklogSizePerInstance", "Average")
    assert [d["Name"] for d in metric["Dimensions"]] == ["EndpointName"]
    assert tracking["TargetValue"] == {"Ref": "AsyncBacklogPerInstance"}
    target = t["Resources"]["EndpointScalingTarget"]["Properties"]
    assert target["MinCapacity"] == {"Ref": "EndpointMinInstances"}
    assert "ScaleFromZeroPolicy" not in t["Resources"]


def test_scale_to_zero_stops_every_instance_and_starts_one_when_a_request_waits():
    t = rendered(merged(ASYNC, asynchronous={"scale_to_zero": True}))
    assert t["Resources"]["EndpointScalingTarget"]["Properties"]["MinCapacity"] == 0
    step = t["Resources"]["ScaleFromZeroPolicy"]["Properties"]
    assert step["PolicyType"] == "StepScaling"
    assert step["StepScalingPolicyConfiguration"]["StepAdjustments"] == [
        {"MetricIntervalLowerBound": 0, "ScalingAdjustment": 1}]
    alarm = t["Resources"]["BacklogWithoutCapacityAlarm"]["Properties"]
    assert alarm["MetricName"] == "HasBacklogWithoutCapacity"
    assert alarm["AlarmActions"] == [{"Ref": "ScaleFromZeroPolicy"}]


def test_monitoring_watches_the_age_of_the_oldest_queued_request():
    loaded = serving_config(ASYNC)
    t = template_dict(monitoring.build(loaded.config))
    alarm = t["Resources"]["EndpointOldestRequestAlarm"]
    found = alarm["Properties"]
    assert found["MetricName"] == "ApproximateAgeOfOldestRequest"
    assert found["Threshold"] == {"Ref": "EndpointOldestRequestThresholdSeconds"}
    assert "HasEndpoint" in str(alarm.get("Condition", "")), "the alarm exists with the endpoint"


@pytest.mark.parametrize("changes, expected", [
    (merged(ASYNC, invocations_per_instance=10), "scales on its backlog"),
    (merged(ASYNC, asynchronous={"scale_to_zero": True}, min_instances=1),
     "min_instances: with asynchronous.scale_to_zero"),
    (merged(ASYNC, asynchronous={"scale_to_zero": True},
            deployment={"traffic_shifting": "linear"}),
     "which asynchronous.scale_to_zero can make none"),
    (merged(ASYNC, asynchronous={"input_prefix": "async/", "output_prefix": "async/out/"}),
     "output_prefix (async/out/) lies under input_prefix (async/)"),
    ({**ASYNC, "api_gateway": {"enabled": True, "type": "rest"}},
     "an asynchronous endpoint does not answer"),
])
def test_what_asynchronous_inference_cannot_do_is_a_config_error(changes, expected):
    found = problems(changes)
    assert len(found) == 1 and expected in found[0], found


def test_the_smoke_role_may_send_one_request_and_read_its_answer_in_each_environment():
    loaded = config_with({"stages": {"serving": {"enabled": True, **ASYNC}}})
    t = template_dict(cicd.build(loaded.config))
    role = statements(t["Resources"]["SmokeRole"])
    [invoke] = with_action(role, "sagemaker:InvokeEndpointAsync")
    assert [sub_text(r) for r in invoke["Resource"]] == [
        "arn:${AWS::Partition}:sagemaker:${AWS::Region}:${AWS::AccountId}:endpoint/mlops-demo-*"]
    [put] = with_action(role, "s3:PutObject")
    assert sorted(sub_text(r) for r in put["Resource"]) == [
        f"arn:${{AWS::Partition}}:s3:::mlops-demo-{env}-artifacts-${{AWS::AccountId}}-"
        f"${{AWS::Region}}/async/input/smoke/*" for env in ("dev", "prod")]
    [key] = with_action(role, "kms:GenerateDataKey")
    assert key["Condition"]["StringEquals"]["aws:ResourceTag/mlops-cfn:project"] == "mlops-demo"
    real_time = template_dict(cicd.build(config_with().config))
    assert not with_action(statements(real_time["Resources"]["SmokeRole"]),
                           "sagemaker:InvokeEndpointAsync")


def test_a_file_listing_every_default_stays_valid_for_any_kind():
    """`mlops-cfn init` writes every key with its default; switching the kind then refuses only
    what the new kind cannot honour (here nothing but the two AWS exclusions, set to off)."""
    import yaml

    from mlops_cfn.config import load_data
    from mlops_cfn.reference import starter_config

    data = yaml.safe_load(starter_config("churn"))
    sagemaker = data["stages"]["serving"]["sagemaker"]
    sagemaker.update(kind="serverless", network_isolation=False)
    sagemaker["data_capture"]["enabled"] = False
    sagemaker["deployment"]["traffic_shifting"] = "all_at_once"
    data["stages"]["monitoring"]["model_monitor"]["enabled"] = False
    assert load_data(data, "pipeline.yaml", None).config.stages.serving.sagemaker.kind == (
        "serverless")


def test_batch_transform_beside_a_serverless_endpoint_keeps_its_model_in_the_private_subnets():
    """AWS: "Give Batch Transform Jobs Access to Resources in Your Amazon VPC": a transform job
    runs where its model's VpcConfig says; the endpoint's serverless model has none."""
    t = rendered(SERVERLESS, **NO_MONITOR)
    transform = t["Resources"]["TransformModel"]["Properties"]
    assert transform["VpcConfig"]["SecurityGroupIds"] == [
        {"Fn::GetAtt": ["ModelSecurityGroup", "GroupId"]}]
    assert transform["EnableNetworkIsolation"] is True
    assert "VpcConfig" not in t["Resources"]["Model"]["Properties"]
    machine = json_text(t["Resources"]["BatchTransformStateMachine"])
    assert "TransformModel" in machine and '"Model"' not in machine.replace(
        '"TransformModel"', "")
    assert variant(t)["ModelName"] == {"Fn::GetAtt": ["Model", "ModelName"]}
    role = statements(t["Resources"]["ModelRole"])
    assert with_action(role, "ec2:CreateNetworkInterface"), "the transform jobs' interfaces"


def json_text(value) -> str:
    import json

    return json.dumps(value)


def test_serverless_memory_takes_only_the_sizes_sagemaker_accepts_even_as_a_parameter():
    t = rendered(SERVERLESS, **NO_MONITOR)
    assert t["Parameters"]["ServerlessMemoryMb"]["AllowedValues"] == [
        "1024", "2048", "3072", "4096", "5120", "6144"]


def test_the_api_url_of_an_asynchronous_endpoint_is_its_async_invocations_path():
    t = rendered(ASYNC)
    assert sub_text(t["Outputs"][outputs.API_URL.name]["Value"]).endswith(
        "-endpoint/async-invocations")


def test_the_smoke_role_may_list_where_it_waits_so_a_missing_answer_is_404_not_403():
    """AWS: "GetObject" (S3 API Reference, Permissions): without s3:ListBucket, a key that
    does not exist answers 403 Access Denied."""
    loaded = config_with({"stages": {"serving": {"enabled": True, **ASYNC}}})
    t = template_dict(cicd.build(loaded.config))
    [listing] = with_action(statements(t["Resources"]["SmokeRole"]), "s3:ListBucket")
    assert sorted(sub_text(r) for r in listing["Resource"]) == [
        f"arn:${{AWS::Partition}}:s3:::mlops-demo-{env}-artifacts-${{AWS::AccountId}}-"
        "${AWS::Region}" for env in ("dev", "prod")]
    assert listing["Condition"] == {"StringLike": {"s3:prefix": ["async/output/*",
                                                                  "async/failure/*"]}}
