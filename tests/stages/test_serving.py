"""The serving stage as a whole: which parts each target builds, the outputs monitoring reads,
the API Gateway switch, the config rules, and a clean template for every main variant.

The parts are specified in test_serving_sagemaker.py and test_serving_fargate.py; the helpers
here are shared with them.
"""

import re

import cfnlint.api
import pytest

from mlops_cfn import outputs, pipeline
from mlops_cfn.errors import UserError
from mlops_cfn.stages import network, serving
from tests.helpers import config_with, resources_of_type, template_dict

CERTIFICATE = "arn:aws:acm:eu-west-1:111122223333:certificate/12345678-1234-1234-1234-123456789012"
KEY = {"Ref": outputs.DATA_KEY_ARN.name}

SAGEMAKER_OUTPUTS = {outputs.ENDPOINT_NAME.name, outputs.DATA_CAPTURE_URI.name,
                     outputs.BATCH_TRANSFORM_STATE_MACHINE_ARN.name}
FARGATE_OUTPUTS = {outputs.LOAD_BALANCER_DNS_NAME.name, outputs.LOAD_BALANCER_FULL_NAME.name,
                   outputs.TARGET_GROUP_FULL_NAME.name, outputs.ECS_CLUSTER_NAME.name,
                   outputs.ECS_SERVICE_NAME.name, outputs.API_LOG_GROUP_NAME.name}


# --- helpers shared by the serving tests ---------------------------------------------------

def serving_config(changes: dict | None = None, env: str = "dev", **top):
    """The bundled default with serving on and `changes` merged into stages.serving."""
    return config_with({"stages": {"serving": {"enabled": True, **(changes or {})}}, **top},
                       env=env)


def build(changes: dict | None = None, env: str = "dev"):
    return serving.build(serving_config(changes, env).config)


def template(changes: dict | None = None, env: str = "dev") -> dict:
    return template_dict(build(changes, env))


def resource(t: dict, logical_id: str) -> dict:
    return t["Resources"][logical_id]


def props(t: dict, logical_id: str) -> dict:
    return t["Resources"][logical_id]["Properties"]


def types_in(t: dict) -> set[str]:
    return {r["Type"] for r in t["Resources"].values()}



def sub_text(value) -> str:
    """The pattern of a Fn::Sub (with or without variables), or the text itself."""
    if isinstance(value, dict) and "Fn::Sub" in value:
        pattern = value["Fn::Sub"]
        return pattern if isinstance(pattern, str) else pattern[0]
    return value


def lint(stage) -> list:
    return cfnlint.api.lint(stage.template.to_yaml(),
                            config=cfnlint.api.ManualArgs(regions=["us-east-1"]))


# --- targets -------------------------------------------------------------------------------

def test_the_default_serves_from_both_sagemaker_and_fargate():
    t = template()
    assert {"AWS::SageMaker::Endpoint", "AWS::ECS::Service",
            "AWS::StepFunctions::StateMachine"} <= types_in(t)


def test_target_sagemaker_builds_no_container_service():
    t = template({"target": "sagemaker"})
    assert "AWS::SageMaker::Endpoint" in types_in(t)
    assert not {ty for ty in types_in(t) if ty.startswith(("AWS::ECS::", "AWS::ECR::",
                                                             "AWS::ElasticLoadBalancingV2::"))}


def test_target_fargate_builds_nothing_on_sagemaker():
    t = template({"target": "fargate"})
    assert "AWS::ECS::Service" in types_in(t)
    assert not {ty for ty in types_in(t) if ty.startswith("AWS::SageMaker::")}
    assert "AWS::StepFunctions::StateMachine" not in types_in(t)


@pytest.mark.parametrize("target, present, absent", [
    ("sagemaker", SAGEMAKER_OUTPUTS, FARGATE_OUTPUTS),
    ("fargate", FARGATE_OUTPUTS, SAGEMAKER_OUTPUTS),
    ("both", SAGEMAKER_OUTPUTS | FARGATE_OUTPUTS, set()),
])
def test_each_output_exists_only_when_its_part_does(target, present, absent):
    offered = {w.name for w in build({"target": target}).outputs}
    assert present <= offered
    assert not absent & offered
    assert outputs.API_URL.name in offered


def test_no_capture_and_no_batch_means_no_capture_uri_and_no_state_machine_output():
    offered = {w.name for w in build({"target": "sagemaker", "sagemaker": {
        "data_capture": {"enabled": False}, "batch_transform": {"enabled": False}}}).outputs}
    assert outputs.DATA_CAPTURE_URI.name not in offered
    assert outputs.BATCH_TRANSFORM_STATE_MACHINE_ARN.name not in offered
    assert outputs.ENDPOINT_NAME.name in offered


def test_names_monitoring_needs_are_known_before_the_things_they_name_exist():
    # The endpoint and the ECS service exist only once a model or image is supplied; their
    # names are fixed, so the outputs hold without them.
    t = template()
    endpoint, service = ("mlops-demo-${EnvironmentName}-endpoint",
                         "mlops-demo-${EnvironmentName}-model-api")
    assert sub_text(t["Outputs"]["EndpointName"]["Value"]) == endpoint
    assert sub_text(t["Outputs"]["EcsServiceName"]["Value"]) == service
    assert sub_text(props(t, "Endpoint")["EndpointName"]) == endpoint
    assert sub_text(props(t, "ApiService")["ServiceName"]) == service


def test_inputs_are_the_wires_of_the_enabled_parts():
    sagemaker_only = {w.name for w in build({"target": "sagemaker"}).inputs}
    fargate_only = {w.name for w in build({"target": "fargate"}).inputs}
    assert outputs.ACCESS_LOGS_BUCKET_NAME.name in fargate_only
    assert outputs.ACCESS_LOGS_BUCKET_NAME.name not in sagemaker_only
    assert outputs.PROCESSED_BUCKET_NAME.name in sagemaker_only
    assert outputs.PROCESSED_BUCKET_NAME.name not in fargate_only
    assert {outputs.PRIVATE_SUBNET_IDS.name, outputs.VPC_ID.name,
            outputs.DATA_KEY_ARN.name} <= sagemaker_only & fargate_only


def test_the_pipeline_wires_every_input_from_the_stage_that_offers_it():
    built = pipeline.build(serving_config())
    root = built.root.to_dict()
    stack = root["Resources"]["ServingStack"]["Properties"]["Parameters"]
    assert stack["PrivateSubnetIds"] == {"Fn::GetAtt": ["NetworkStack", "Outputs.PrivateSubnetIds"]}
    assert stack["AccessLogsBucketName"] == {
        "Fn::GetAtt": ["StorageStack", "Outputs.AccessLogsBucketName"]}
    assert stack["EndpointInstanceType"] == {"Ref": "EndpointInstanceType"}


# --- API Gateway ---------------------------------------------------------------------------

def test_without_api_gateway_the_url_is_the_load_balancer_or_the_runtime():
    assert not {ty for ty in types_in(template()) if ty.startswith("AWS::ApiGateway")}
    both = template()["Outputs"]["ApiUrl"]["Value"]
    assert sub_text(both) == "http://${LoadBalancer.DNSName}"
    https = template({"fargate": {"certificate_arn": CERTIFICATE}})["Outputs"]["ApiUrl"]["Value"]
    assert sub_text(https) == "https://${LoadBalancer.DNSName}"
    runtime = template({"target": "sagemaker"})["Outputs"]["ApiUrl"]["Value"]
    assert sub_text(runtime) == ("https://runtime.sagemaker.${AWS::Region}.${AWS::URLSuffix}"
                                 "/endpoints/mlops-demo-${EnvironmentName}-endpoint/invocations")


@pytest.mark.parametrize("target, expected", [
    ("fargate", "AWS::ApiGatewayV2::Api"), ("both", "AWS::ApiGatewayV2::Api"),
    ("sagemaker", "AWS::ApiGateway::RestApi"),
])
def test_api_gateway_type_follows_the_target_unless_given(target, expected):
    t = template({"target": target, "api_gateway": {"enabled": True}})
    assert expected in types_in(t)


def test_a_rest_api_can_front_the_endpoint_when_both_are_served():
    t = template({"target": "both", "api_gateway": {"enabled": True, "type": "rest"}})
    assert "AWS::ApiGateway::RestApi" in types_in(t)
    assert "AWS::ApiGatewayV2::Api" not in types_in(t)


# --- config rules --------------------------------------------------------------------------

@pytest.mark.parametrize("changes, message", [
    ({"target": "sagemaker", "api_gateway": {"enabled": True, "type": "http"}},
     "api_gateway.type 'http' fronts the Fargate load balancer"),
    ({"target": "fargate", "api_gateway": {"enabled": True, "type": "rest"}},
     "api_gateway.type 'rest' fronts the SageMaker endpoint"),
    ({"target": "fargate", "fargate": {"certificate_arn": CERTIFICATE},
      "api_gateway": {"enabled": True}},
     "api_gateway.tls_server_name is required"),
    ({"sagemaker": {"min_instances": 3, "max_instances": 2}}, "min_instances (3) exceeds"),
    ({"sagemaker": {"min_instances": 1, "initial_instance_count": 1}},
     "'canary' shifts a part of the capacity at a time and needs min_instances >= 2"),
    ({"model_source": "model_data", "model_data_url": "s3://bucket/m.tar.gz"},
     "needs both model_data_url and sagemaker.image_uri"),
    ({"model_source": "model_package", "sagemaker": {
        "image_uri": "111122223333.dkr.ecr.eu-west-1.amazonaws.com/team/model:1"}},
     "sagemaker.image_uri is for model_source 'model_data'"),
    ({"target": "fargate", "model_source": "model_data", "sagemaker": {
        "image_uri": "111122223333.dkr.ecr.eu-west-1.amazonaws.com/team/model:1"}},
     "sagemaker.image_uri is for target 'sagemaker' or 'both'"),
    ({"fargate": {"environment": {"MODEL_FEATURES": "[]"}}},
     "'MODEL_FEATURES': set by the serving stage for the model API"),
    # SageMaker pulls the image from ECR (and the model role may pull that repository only).
    ({"model_source": "model_data", "model_data_url": "s3://bucket/m.tar.gz",
      "sagemaker": {"image_uri": "registry.example.com/team/model:1"}},
     "stages.serving.sagemaker.image_uri"),
    ({"sagemaker": {"deployment": {"wait_seconds": 3600, "timeout_seconds": 3600}}},
     "timeout_seconds (3600) must exceed the baking waits"),
    ({"fargate": {"cpu": 256, "memory_mb": 4096}}, "memory_mb 4096 does not fit cpu 256"),
    ({"fargate": {"min_tasks": 5, "max_tasks": 2}}, "min_tasks (5) exceeds max_tasks (2)"),
    ({"fargate": {"environment": {"AWS_REGION": "x"}}}, "AWS_ and ECS_ names are reserved"),
    ({"fargate": {"environment": {"TOKEN": "x"}, "secrets": {"TOKEN": "app/token"}}},
     "TOKEN: in both environment and secrets"),
])
def test_config_mistakes_are_one_line_each_naming_the_fields(changes, message):
    with pytest.raises(UserError) as raised:
        serving_config(changes)
    assert any(message in problem for problem in raised.value.problems), raised.value.problems


def test_canary_and_linear_are_refused_for_one_instance_but_all_at_once_is_not():
    config = serving_config({"sagemaker": {"min_instances": 1, "initial_instance_count": 1,
                                           "deployment": {"traffic_shifting": "all_at_once"}}})
    assert config.config.stages.serving.sagemaker.min_instances == 1


def test_the_fargate_api_asks_the_network_for_the_endpoints_its_tasks_call():
    serving_section = serving_config().config.stages.serving
    # The image and logs; with a model package, SageMaker says where the archive is.
    assert serving_section.vpc_endpoints() == ("ecr.api", "ecr.dkr", "logs", "sagemaker.api")
    by_archive = serving_config({"target": "fargate", "model_source": "model_data"})
    assert by_archive.config.stages.serving.vpc_endpoints() == ("ecr.api", "ecr.dkr", "logs")
    with_secrets = serving_config({"fargate": {"secrets": {"TOKEN": "app/token"}}})
    assert "secretsmanager" in with_secrets.config.stages.serving.vpc_endpoints()
    # The model container makes no calls (network isolation); S3 is the gateway endpoint.
    assert serving_config({"target": "sagemaker"}).config.stages.serving.vpc_endpoints() == ()


def test_the_network_stage_creates_those_endpoints():
    t = template_dict(network.build(serving_config({"target": "fargate"}).config))
    names = {sub_text(r["Properties"]["ServiceName"])
             for r in resources_of_type(t, "AWS::EC2::VPCEndpoint").values()}
    assert {"com.amazonaws.${AWS::Region}.ecr.api", "com.amazonaws.${AWS::Region}.ecr.dkr",
            "com.amazonaws.${AWS::Region}.logs"} <= names


def test_an_explicit_endpoint_list_missing_what_the_tasks_need_is_refused():
    with pytest.raises(UserError) as raised:
        serving_config(network={"interface_endpoints": ["logs"]})
    assert any("the Fargate API in the private subnets needs ecr.api, ecr.dkr" in p
               for p in raised.value.problems)


def test_with_nat_gateways_the_tasks_need_no_endpoints_of_their_own():
    # (Monitoring, off here, has endpoint needs of its own.)
    config = config_with({"network": {"internet_gateway": True, "interface_endpoints": []},
                          "stages": {"serving": {"enabled": True},
                                     "monitoring": {"enabled": False}}}).config
    assert config.stages.serving.problems_with(config) == []


# --- environments and lint -----------------------------------------------------------------

def test_environments_that_differ_only_in_values_render_the_same_template():
    dev = build(env="dev").template.to_yaml()
    prod = build({"sagemaker": {"instance_type": "ml.c5.2xlarge", "max_instances": 10},
                  "fargate": {"cpu": 2048, "memory_mb": 8192, "deletion_protection": True}},
                 env="prod").template.to_yaml()
    assert dev == prod


def test_values_never_appear_in_the_template_literally():
    text = build({"sagemaker": {"instance_type": "ml.c5.9xlarge"},
                  "fargate": {"image_tag": "release-42"}}).template.to_yaml()
    assert "ml.c5.9xlarge" not in text and "release-42" not in text


VARIANTS = {
    "default": {},
    "sagemaker-rest": {"target": "sagemaker", "api_gateway": {"enabled": True}},
    "sagemaker-model-data-linear": {"target": "sagemaker", "model_source": "model_data",
                                    "sagemaker": {
        "network_isolation": False,
        "data_capture": {"enabled": False}, "batch_transform": {"enabled": False},
        "deployment": {"traffic_shifting": "linear", "step_percent": 25, "wait_seconds": 300}}},
    "fargate-http-api": {"target": "fargate", "api_gateway": {"enabled": True}},
    "fargate-https-http-api": {
        "target": "fargate",
        "fargate": {"certificate_arn": CERTIFICATE, "secrets": {"TOKEN": "app/token"},
                    "environment": {"LOG_LEVEL": "info"}, "cpu_architecture": "ARM64"},
        "api_gateway": {"enabled": True, "tls_server_name": "api.example.com"}},
    "both-rest-no-account-role": {"api_gateway": {
        "enabled": True, "type": "rest", "set_account_logging_role": False}},
}


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_cfn_lint_finds_nothing(name):
    assert lint(build(VARIANTS[name])) == []


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_every_log_group_is_encrypted_with_the_data_key_and_expires(name):
    groups = resources_of_type(template(VARIANTS[name]), "AWS::Logs::LogGroup")
    assert groups
    for group in groups.values():
        assert group["Properties"]["KmsKeyId"] == KEY
        assert group["Properties"]["RetentionInDays"] == {"Ref": "LogRetentionDays"}


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_every_checkov_skip_says_why(name):
    for logical_id, r in template(VARIANTS[name])["Resources"].items():
        for skip in r.get("Metadata", {}).get("checkov", {}).get("skip", []):
            assert re.match(r"^CKV2?_AWS_\d+$", skip["id"]), logical_id
            assert len(skip["comment"]) > 40, logical_id
