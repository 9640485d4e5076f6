"""The first deployment, read the way CloudFormation would: no model and no API image yet.

The bundled default serves from a SageMaker endpoint and a Fargate service. Before a model
package is approved (ModelPackageArn empty) and an image pushed (ApiImageTag empty), neither
exists. Nothing CloudFormation creates then may need them: SageMaker's CreateMonitoringSchedule
and CreateDataQualityJobDefinition refuse an endpoint that does not exist, and an alarm, graph
or subscription over one watches nothing. Once both are supplied, all of it is there.

moto cannot say this (it creates a monitoring schedule for any endpoint name), so this reads the
rendered templates with tests/cloudformation.py.
"""

import pytest

from mlops_cfn import pipeline

from .cloudformation import create, references, strings
from .helpers import config_with

FIRST = {"ModelPackageArn": "", "ApiImageTag": ""}
SUPPLIED = {
    "ModelPackageArn": "arn:aws:sagemaker:eu-west-1:111122223333:model-package/models/3",
    "ApiImageTag": "2024.06.1",
}
# The conditional wires' values in their consumers, replaced by marker text to follow them.
ENDPOINT, SERVICE = "<the endpoint's name>", "<the ECS service's name>"
TAINT = {"EndpointName": ENDPOINT, "EcsServiceName": SERVICE}

# Where the serving stack may write the endpoint's name before the endpoint exists: text that
# SageMaker or IAM never resolves to the endpoint. (resource type, first keys of the path)
NAME_ONLY = {
    # SageMaker writes the container logs there; made first so that it is encrypted.
    ("AWS::Logs::LogGroup", ("Properties", "LogGroupName")),
    # An ARN in a policy grants nothing about a resource that is not there.
    ("AWS::IAM::Role", ("Properties", "Policies")),
    # API Gateway stores the integration's path; calls fail until the endpoint exists.
    ("AWS::ApiGateway::Method", ("Properties", "Integration", "Uri")),
}
# Outputs that are names or URLs, each offered with its presence (outputs.py).
NAME_OUTPUTS = {"EndpointName", "ApiUrl"}


@pytest.fixture(scope="module")
def built():
    return pipeline.build(config_with())


@pytest.fixture(scope="module")
def first(built):
    return create(built, FIRST, taint=TAINT)


@pytest.fixture(scope="module")
def supplied(built):
    return create(built, SUPPLIED, taint=TAINT)


def test_the_first_deployment_has_neither_endpoint_nor_service(first):
    serving = first["serving"]
    assert {"Model", "Endpoint", "ApiService", "ApiTaskDefinition"} <= serving.dropped
    assert serving.outputs["EndpointExists"] == "false"
    assert serving.outputs["ApiServiceExists"] == "false"
    assert first["monitoring"].conditions["HasEndpoint"] is False
    assert first["monitoring"].conditions["HasApiService"] is False


def test_no_stack_uses_the_endpoint_or_service_names_it_was_given(first):
    uses = [(stack.name, logical_id, path)
            for stack in first.values()
            for logical_id, resource in [*stack.resources.items(), *stack.outputs.items()]
            for path, text in strings(resource)
            if ENDPOINT in text or SERVICE in text]
    assert uses == []


def test_nothing_created_refers_to_a_resource_that_is_not(first):
    assert first
    for stack in first.values():
        for logical_id, resource in [*stack.resources.items(), *stack.outputs.items()]:
            assert not references(resource) & stack.dropped, (stack.name, logical_id)


def test_the_serving_stack_writes_the_endpoints_name_only_where_it_needs_no_endpoint(first):
    serving = first["serving"]
    name = serving.outputs["EndpointName"]
    assert name == "mlops-demo-dev-endpoint"
    found = set()
    for logical_id, resource in serving.resources.items():
        for path, text in strings(resource):
            if name in text:
                kind = resource["Type"]
                assert any(kind == k and path[:len(p)] == p for k, p in NAME_ONLY), (
                    logical_id, path, text)
                found.add(kind)
    assert "AWS::Logs::LogGroup" in found
    named = {k for k, v in serving.outputs.items() if isinstance(v, str) and name in v}
    assert "EndpointName" in named and named <= NAME_OUTPUTS


def test_once_a_model_and_an_image_are_supplied_monitoring_watches_them(supplied):
    serving, monitoring = supplied["serving"], supplied["monitoring"]
    assert {"Model", "Endpoint", "ApiService"} <= set(serving.resources)
    assert serving.outputs["EndpointExists"] == serving.outputs["ApiServiceExists"] == "true"
    watching = {logical_id for logical_id, resource in monitoring.resources.items()
                for _, text in strings(resource) if ENDPOINT in text or SERVICE in text}
    assert {"DataQualityJobDefinition", "DataQualitySchedule", "EndpointModelLatencyAlarm",
            "Endpoint4xxErrorsAlarm", "Endpoint5xxErrorsAlarm", "ServiceCpuAlarm",
            "ServiceMemoryAlarm", "Dashboard"} == watching
    assert monitoring.resources["DataQualitySchedule"]["Properties"]["EndpointName"] == ENDPOINT
    assert {"MonitorViolationRule", "MonitorFailureRule", "MonitorViolationsAlarm",
            "RetrainFunction", "RetrainSubscription"} <= set(monitoring.resources)
    assert not monitoring.dropped - {"AlarmEmailSubscription"}


def test_the_first_deployment_still_watches_what_exists(first):
    monitoring = first["monitoring"]
    assert {"StreamIteratorAgeAlarm", "Target5xxErrorsAlarm", "ServingDegradedAlarm",
            "Dashboard", "AlarmTopicPolicy"} <= set(monitoring.resources)
    assert {"DataQualitySchedule", "DataQualityJobDefinition", "MonitorViolationRule",
            "RetrainFunction", "EndpointModelLatencyAlarm", "ServiceCpuAlarm"} <= (
        monitoring.dropped)
    rule = monitoring.resources["ServingDegradedAlarm"]["Properties"]["AlarmRule"]
    assert "Endpoint" not in rule["Fn::Sub"]
