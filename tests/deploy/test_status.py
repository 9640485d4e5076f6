"""`mlops-cfn status` reads what serves where from the live stacks and the services."""

import json

from mlops_cfn.deploy import connect
from mlops_cfn.status import status

from .conftest import REGION, run

PROJECT = "mlops-demo"  # the bundled pipeline.yaml's project, environments dev and prod
GROUP = "mlops-demo-dev-models"

# A stand-in root stack: the parameters and outputs `status` reads, as the real root has them.
ROOT = {
    "Parameters": {name: {"Type": "String", "Default": ""} for name in (
        "ModelPackageArn", "ApiImageTag", "EndpointName", "EndpointExists", "EcsClusterName",
        "EcsServiceName", "ApiServiceExists")},
    "Resources": {"Nothing": {"Type": "AWS::CloudFormation::WaitConditionHandle"}},
    "Outputs": {name: {"Value": {"Ref": name}} for name in (
        "EndpointName", "EndpointExists", "EcsClusterName", "EcsServiceName",
        "ApiServiceExists")},
}


def approved_package(aws) -> str:
    sagemaker = aws.client("sagemaker")
    sagemaker.create_model_package_group(ModelPackageGroupName=GROUP)
    arn = sagemaker.create_model_package(
        ModelPackageGroupName=GROUP, ModelApprovalStatus="PendingManualApproval",
        InferenceSpecification={
            "Containers": [{"Image": "123456789012.dkr.ecr.us-east-1.amazonaws.com/m:1",
                            "ModelDataUrl": "s3://artifacts/training/models/1/model.tar.gz"}],
            "SupportedContentTypes": ["text/csv"],
            "SupportedResponseMIMETypes": ["text/csv"]})["ModelPackageArn"]
    sagemaker.update_model_package(ModelPackageArn=arn, ModelApprovalStatus="Approved")
    return arn


def serving_dev(aws) -> str:
    """dev serving a package on an endpoint and an ECS service; prod not deployed."""
    arn = approved_package(aws)
    sagemaker = aws.client("sagemaker")
    sagemaker.create_model(ModelName="m", ExecutionRoleArn="arn:aws:iam::123456789012:role/r",
                           PrimaryContainer={"ModelPackageName": arn})
    sagemaker.create_endpoint_config(EndpointConfigName="c", ProductionVariants=[{
        "VariantName": "AllTraffic", "ModelName": "m", "InitialInstanceCount": 1,
        "InstanceType": "ml.m5.large"}])
    sagemaker.create_endpoint(EndpointName="mlops-demo-dev-endpoint", EndpointConfigName="c")
    ecs = aws.client("ecs")
    ecs.create_cluster(clusterName="mlops-demo-dev-api")
    task = ecs.register_task_definition(family="api", containerDefinitions=[
        {"name": "model-api", "image": "repo:abc", "memory": 512}])["taskDefinition"]
    ecs.create_service(cluster="mlops-demo-dev-api", serviceName="mlops-demo-dev-model-api",
                       taskDefinition=task["taskDefinitionArn"], desiredCount=2)
    values = {"ModelPackageArn": arn, "ApiImageTag": "0123abcd4567ef89",
              "EndpointName": "mlops-demo-dev-endpoint", "EndpointExists": "true",
              "EcsClusterName": "mlops-demo-dev-api",
              "EcsServiceName": "mlops-demo-dev-model-api", "ApiServiceExists": "true"}
    aws.cfn.create_stack(StackName="mlops-demo-dev", TemplateBody=json.dumps(ROOT),
                         Parameters=[{"ParameterKey": k, "ParameterValue": v}
                                     for k, v in values.items()])
    return arn


def test_before_any_deployment_every_environment_says_not_deployed(aws):
    result = run("status", "--region", REGION)
    assert result.exit_code == 0, result.output
    assert "mlops-demo-dev: not deployed" in result.output
    assert "mlops-demo-prod: not deployed" in result.output


def test_each_environment_shows_its_package_version_image_and_the_states_behind_them(aws):
    arn = serving_dev(aws)
    dev, prod = status(connect(region=REGION), PROJECT, ["dev", "prod"])
    assert (dev.stack_name, dev.stack_status) == ("mlops-demo-dev", "CREATE_COMPLETE")
    assert (dev.model, dev.model_version, dev.model_approval) == (arn, "1", "Approved")
    assert dev.image_tag == "0123abcd4567ef89"
    assert dev.endpoint == "mlops-demo-dev-endpoint" and dev.endpoint_status == "InService"
    assert dev.service == "mlops-demo-dev-model-api"
    assert dev.service_state.startswith("ACTIVE, ") and dev.service_state.endswith("/2 tasks "
                                                                                  "running")
    assert not prod.deployed
    shown = run("status", "--region", REGION, "--env", "dev").output
    assert "v1 (Approved)" in shown and "0123abcd4567ef89" in shown and "InService" in shown
    assert "prod" not in shown


def test_a_package_rejected_after_deployment_shows_as_rejected(aws):
    arn = serving_dev(aws)
    aws.client("sagemaker").update_model_package(ModelPackageArn=arn,
                                                 ModelApprovalStatus="Rejected")
    [dev] = status(connect(region=REGION), PROJECT, ["dev"])
    assert dev.model_approval == "Rejected"


def test_before_a_model_and_an_image_nothing_is_described(aws):
    aws.cfn.create_stack(StackName="mlops-demo-dev", TemplateBody=json.dumps(ROOT),
                         Parameters=[{"ParameterKey": "EndpointExists",
                                      "ParameterValue": "false"}])
    [dev] = status(connect(region=REGION), PROJECT, ["dev"])
    assert dev.deployed and (dev.model, dev.image_tag, dev.endpoint, dev.service) == (
        "", "", "", "")
    assert "none yet" in run("status", "--region", REGION, "--env", "dev").output


def test_an_unknown_environment_is_one_line_and_exit_2(aws):
    result = run("status", "--region", REGION, "--env", "staging")
    assert result.exit_code == 2
    assert result.output.strip().splitlines()[-1].startswith("error: --env staging: ")
    assert "dev, prod" in result.output
