"""The operating story on the moto sandbox, as one scenario (issue 12, "How to keep it fixed").

A user's repository holds the bundled default pipeline (environments dev, the delivery
pipeline's home, and prod, protected) and its rendered templates. In order:

1. The first deployment (`mlops-cfn deploy --env dev`), with no model and no image, completes,
   and nothing created names the endpoint or the API service that do not exist yet: no Model
   Monitor schedule, no alarm or dashboard widget on them (finding 1).
2. A model package is registered and approved in the environment's model package group;
   `deploy --latest-approved-model` creates the model, the endpoint and what watches it.
3. The delivery pipeline runs with no new model: its build phase's commands as rendered (package
   every environment with `--stack-name`, copy the packaged roots and template configurations),
   then the Deploy-dev stage's change set with the template configuration the build wrote.
   Serving is unchanged: same model, endpoint config and endpoint (finding 6).
4. prod's first deployment is an administrator's (`mlops-cfn deploy --env prod`): it creates
   prod's permissions boundary, which the pipeline's deploy role may not write (evaluated here,
   as moto evaluates no IAM). The same run's Deploy-prod stage then updates prod from the home
   environment's packages (the artifact bucket, `delivery/`, the DeliveryKey), and what was
   deployed passes the asset-access
   check of finding 4: every asset reference in prod's live stacks names an uploaded object,
   which its reader may get and decrypt through S3 (tests/asset_access.py).
5. Deleting the dev stack keeps the data: every resource with DeletionPolicy Retain outlives it,
   with what it holds.

What moto cannot model, one line each:
- The ModelApiImage action (docker build and push) is not replayed: no image registry here;
  tests/test_model_api_image.py builds and runs the image, and step 3 checks its tag is deployed.
- CodePipeline and CodeBuild do not run: the build phase's commands and the deploy actions are
  replayed as rendered (as test_delivery_runs.py does); the build's install and pre_build phases
  are left out (test_delivery_runs.py installs the wheel on a fresh Python, test_validate.py
  validates), the manual approval is given by going on, and the protect action's one AWS CLI
  call is made with boto3.
- The model package group, Model Monitor, CloudWatch alarms, Glue and Redshift are placeholders
  (moto_support.py): steps 1 and 2 read the properties CloudFormation resolved for them, step 2
  creates the model package group itself, step 5 reads their DeletionPolicy in the deployed
  templates.
- moto names a SageMaker endpoint itself (it ignores EndpointName): serving is compared by ARN,
  what watches the endpoint by the name the templates give it.
- moto evaluates no IAM policy: the asset-access check evaluates the deployed roles' and key's
  policies itself (tests/template_eval.py).
"""

import json
from dataclasses import dataclass, field
from types import SimpleNamespace

import pytest
import yaml

from mlops_cfn.assets import ASSETS_BUCKET, ASSETS_KEY_ARN, ASSETS_PREFIX
from mlops_cfn import model_api
from mlops_cfn.deploy import MODEL_PACKAGE_PARAMETER
from mlops_cfn.stages import cicd
from mlops_cfn.stages import cicd_buildspec as spec
from tests import asset_access
from tests import iam_policy
from tests.helpers import default_data, statements
from tests.template_eval import Resolver

from . import moto_support
from .conftest import run, write_config
from .test_delivery_runs import (MODEL_GROUP, build_environment, cicd_template, deploy_action,
                                 shell)
from .test_deploy import outputs, parameters

pytestmark = pytest.mark.slow

PROJECT = "mlops-demo"
HOME, SECOND = "dev", "prod"
DEV, PROD = cicd.stack_name(PROJECT, HOME), cicd.stack_name(PROJECT, SECOND)
# The bucket `deploy` packages into when none is named (moto's account, the sandbox's region).
USER_BUCKET = "mlops-cfn-123456789012-us-east-1"
SERVING = {"AWS::SageMaker::Model", "AWS::SageMaker::EndpointConfig", "AWS::SageMaker::Endpoint"}
MODEL_MONITOR = {"AWS::SageMaker::DataQualityJobDefinition", "AWS::SageMaker::MonitoringSchedule"}


def _has_key(aws, key_id: str) -> bool:
    return key_id in [k["KeyId"] for k in aws.client("kms").list_keys()["Keys"]]


def _has_log_group(aws, name: str) -> bool:
    groups = aws.client("logs").describe_log_groups(logGroupNamePrefix=name)["logGroups"]
    return name in [g["logGroupName"] for g in groups]


# What holds data (README, "First deployment": deleting a stack keeps it).
DATA = {"AWS::S3::Bucket", "AWS::KMS::Key", "AWS::ECR::Repository", "AWS::Glue::Database",
        "AWS::SageMaker::ModelPackageGroup", "AWS::RedshiftServerless::Namespace"}
# How to find a retained resource after its stack is gone, for the types moto models (a
# placeholder, for the others, held nothing to begin with).
STILL_THERE = {
    "AWS::S3::Bucket": lambda aws, name: aws.s3.head_bucket(Bucket=name) is not None,
    "AWS::KMS::Key": _has_key,
    "AWS::ECR::Repository": lambda aws, name: aws.client("ecr").describe_repositories(
        repositoryNames=[name])["repositories"] != [],
    "AWS::Logs::LogGroup": _has_log_group,
}


def endpoint_answers(aws, body: str) -> None:
    """What moto's SageMaker Runtime answers the next invocation with."""
    import urllib.request

    urllib.request.urlopen(urllib.request.Request(
        f"{aws.url}/moto-api/static/sagemaker/endpoint-results", method="POST",
        data=json.dumps({"results": [{"Body": body, "ContentType": "text/csv"}]}).encode(),
        headers={"Content-Type": "application/json"})).read()


def deploy_role_statements(template: dict) -> list[dict]:
    """Every statement the delivery pipeline's deploy role is granted, as rendered: its inline
    policies and the managed policies attached to it."""
    role = template["Resources"]["DeployRole"]
    found = statements(role)
    for attached in role["Properties"].get("ManagedPolicyArns", []):
        found += statements(template["Resources"][attached["Ref"]])
    return found


def deploy(*extra: str):
    """`mlops-cfn deploy --env dev` in the repository, as the README's first deployment runs it
    (plus --yes, and --no-validate: validation has its own tests and here would add minutes)."""
    return run("deploy", "--env", HOME, "--no-validate", "--yes", *extra)


def approve_a_model(aws) -> str:
    """A model package registered in dev's group, then approved, as the README says. (The
    training stack's ModelPackageGroup is a placeholder on moto: the group is created here.)"""
    sagemaker = aws.client("sagemaker")
    sagemaker.create_model_package_group(ModelPackageGroupName=MODEL_GROUP)
    arn = sagemaker.create_model_package(
        ModelPackageGroupName=MODEL_GROUP, ModelApprovalStatus="PendingManualApproval",
        InferenceSpecification={
            "Containers": [{"Image": "123456789012.dkr.ecr.us-east-1.amazonaws.com/m:1"}],
            "SupportedContentTypes": ["text/csv"],
            "SupportedResponseMIMETypes": ["text/csv"]})["ModelPackageArn"]
    sagemaker.update_model_package(ModelPackageArn=arn, ModelApprovalStatus="Approved")
    return arn


def types_of(aws, stack_id: str) -> dict[str, str]:
    return {logical_id: r["ResourceType"] for logical_id, r in aws.resources(stack_id).items()}


# The delivery pipeline's image build names the API's ECR repository, whose name is the ECS
# service's too: it pushes to the repository, and never names the service.
NAMES_THE_REPOSITORY = {"ImageProject"}


def placeholders_naming(aws, names: set[str]) -> list[tuple[str, str, str]]:
    """Placeholders (resources moto does not model) whose resolved properties name any of
    `names`: (stack, logical id, name)."""
    return [(p.stack_name, p.logical_resource_id, name) for p in aws.placeholders
            if p.logical_resource_id not in NAMES_THE_REPOSITORY
            for name in names if name in json.dumps(p.properties, default=str)]


def serving(aws) -> dict[str, str]:
    """What serves in dev: the model package and the physical id of each serving resource."""
    stack = aws.nested(DEV)["ServingStack"]["StackId"]
    live = {r["ResourceType"]: r["PhysicalResourceId"] for r in aws.resources(stack).values()
            if r["ResourceType"] in SERVING}
    return {"model": parameters(aws.stacks()[DEV])[MODEL_PACKAGE_PARAMETER], **live}


@dataclass
class Deployed(Resolver):
    """A deployed stack read as CloudFormation resolved it: its template, the parameter values
    it was deployed with, and its resources' physical ids as moto gave them (a Ref or GetAtt
    of a resource of the stack then names the live resource)."""

    physical_ids: dict[str, str] = field(default_factory=dict)

    def physical_id(self, logical_id: str) -> str:
        return self.physical_ids.get(logical_id) or super().physical_id(logical_id)


def deployed(aws, stack: dict) -> Deployed:
    import cfn_flip

    body = aws.cfn.get_template(StackName=stack["StackId"])["TemplateBody"]
    template = body if isinstance(body, dict) else cfn_flip.load(body)[0]
    live = {logical_id: r["PhysicalResourceId"]
            for logical_id, r in aws.resources(stack["StackId"]).items()}
    return Deployed(template, parameters(stack), stack=stack["StackName"], physical_ids=live)


def deployed_asset_reads(aws, env_stack: str, home_cicd: Resolver):
    """The asset-access check (tests/asset_access.py) applied to a deployed environment: each
    nested stack's template with its live parameters, the packages where its parameters say
    they are, the delivery pipeline's deploy role reading the templates."""
    root = deployed(aws, aws.stacks()[env_stack])
    given = root.values  # the packaged root's defaults: where package put the assets
    place = asset_access.Place(given[ASSETS_BUCKET], given[ASSETS_PREFIX],
                               given[ASSETS_KEY_ARN] or None, (home_cicd, "DeliveryKey"))
    deployer = (home_cicd, "DeployRole")
    environment = env_stack.rsplit("-", 1)[1]
    report = asset_access.Report()
    for logical_id, stack in aws.nested(env_stack).items():
        resolver = deployed(aws, stack)
        for read, reader_template, reader in asset_access.reads_of(
                environment, SimpleNamespace(logical_id=logical_id), resolver, place, deployer):
            report.reads.append(read)
            report.problems += asset_access.evaluate(read, reader_template, reader, place)
    for logical_id, resource in root.live_resources().items():
        if resource["Type"] == "AWS::CloudFormation::Stack":
            key = root.value(resource["Properties"]["TemplateURL"]).split(".amazonaws.com/")[1]
            read = asset_access.Read(environment, f"{logical_id} template", "DeployRole",
                                     asset_access.object_arn(place.bucket, key), place.key_arn)
            report.reads.append(read)
            report.problems += asset_access.evaluate(read, *deployer, place)
    return place, report


def test_first_deployment_model_pipeline_run_second_environment_and_deletion(aws, tmp_path,
                                                                             monkeypatch):
    repository = tmp_path / "repository"
    repository.mkdir()
    monkeypatch.chdir(repository)
    write_config(repository / "pipeline.yaml", default_data())
    rendered = run("render", "--all-envs")
    assert rendered.exit_code == 0, rendered.output
    assert sorted(p.name for p in (repository / "templates").iterdir()) == [HOME, SECOND]
    aws.bucket(USER_BUCKET)

    # (1) The first deployment: no model, no image; nothing names what does not exist.
    first = deploy()
    assert first.exit_code == 0, first.output
    assert f"{DEV}: CREATE_COMPLETE" in first.output
    nested = aws.nested(DEV)
    assert {s["StackStatus"] for s in nested.values()} == {"CREATE_COMPLETE"}
    serving_out = outputs(nested["ServingStack"])
    assert serving_out["EndpointExists"] == "false"
    assert serving_out["ApiServiceExists"] == "false"
    endpoint_name, service_name = serving_out["EndpointName"], serving_out["EcsServiceName"]
    serving_types = set(types_of(aws, nested["ServingStack"]["StackId"]).values())
    assert not serving_types & (SERVING | {"AWS::ECS::Service"})
    assert aws.client("sagemaker").list_endpoints()["Endpoints"] == []
    monitoring_types = set(types_of(aws, nested["MonitoringStack"]["StackId"]).values())
    assert not monitoring_types & MODEL_MONITOR, "no Model Monitor on a missing endpoint"
    assert placeholders_naming(aws, {endpoint_name, service_name}) == [], \
        "no alarm, rule or schedule names the missing endpoint or service"
    dashboard = outputs(nested["MonitoringStack"])["DashboardName"]
    body = aws.client("cloudwatch").get_dashboard(DashboardName=dashboard)["DashboardBody"]
    assert endpoint_name not in body and service_name not in body

    # (2) A model package approved in the environment's group; the latest approved package
    # then serves, and Model Monitor and the alarms follow the endpoint.
    model = approve_a_model(aws)
    served = deploy("--latest-approved-model")
    assert served.exit_code == 0, served.output
    assert f"serving {model} (approved last in {MODEL_GROUP})" in served.output
    before = serving(aws)
    assert before["model"] == model and set(before) == {"model"} | SERVING
    [endpoint] = aws.client("sagemaker").list_endpoints()["Endpoints"]
    assert endpoint["EndpointArn"] == before["AWS::SageMaker::Endpoint"]
    monitoring_types = set(types_of(aws, aws.nested(DEV)["MonitoringStack"]["StackId"]).values())
    assert MODEL_MONITOR <= monitoring_types
    watching = placeholders_naming(aws, {endpoint_name})
    assert {logical_id for _, logical_id, _ in watching} >= {
        "DataQualityJobDefinition", "DataQualitySchedule", "Endpoint5xxErrorsAlarm"}, \
        "what watches the endpoint names it"

    # (3) The delivery pipeline runs with no new model: the build phase as rendered, then
    # Deploy-dev with the template configuration the build wrote.
    template = cicd_template(repository, HOME)
    build_spec = yaml.safe_load(template["Resources"]["BuildProject"]["Properties"]["Source"][
        "BuildSpec"])
    cicd_stack = aws.nested(DEV)["CicdStack"]
    cicd_resources = aws.resources(cicd_stack["StackId"])
    artifacts = cicd_resources["ArtifactBucket"]["PhysicalResourceId"]
    deploy_role = aws.client("iam").get_role(
        RoleName=cicd_resources["DeployRole"]["PhysicalResourceId"])["Role"]["Arn"]
    shell("\n".join(build_spec["phases"]["build"]["commands"]), repository,
          build_environment(ARTIFACT_BUCKET=artifacts))
    configuration = json.loads((repository / spec.OUTPUT_DIR / HOME / spec.CONFIGURATION_FILE)
                               .read_text())
    assert configuration["Parameters"][MODEL_PACKAGE_PARAMETER] == model
    # The API image is the shipped model API's, by its content tag (the ModelApiImage action
    # pushed it: Docker and ECR pushes are not replayed here).
    assert configuration["Parameters"]["ApiImageTag"] == model_api.image_tag()
    deploy_action(aws, repository, template, HOME, deploy_role)
    assert aws.stacks()[DEV]["StackStatus"] == "UPDATE_COMPLETE"
    assert serving(aws) == before, "the run left serving as it was"
    assert [e["EndpointArn"] for e in aws.client("sagemaker").list_endpoints()["Endpoints"]] == [
        before["AWS::SageMaker::Endpoint"]]
    # The stage ends with the smoke test: one sample record to what dev serves (moto runs no
    # model: the endpoint's answer is set through moto's endpoint-results API).
    smoke_spec = yaml.safe_load(template["Resources"]["SmokeProject"]["Properties"]["Source"][
        "BuildSpec"])
    smoke_commands = "\n".join(smoke_spec["phases"]["build"]["commands"])
    endpoint_answers(aws, "0.42\n")
    checked = shell(smoke_commands, repository,
                    build_environment(**{spec.ENVIRONMENT_VARIABLE: HOME}))
    assert f"ok: endpoint {endpoint_name}: 0.42" in checked.stdout

    # (4) prod. Its first deployment creates prod's permissions boundary, which the pipeline's
    # deploy role may not write (whoever writes the source would choose its contents:
    # boundary.py), so an administrator deploys it once by hand; moto evaluates no IAM policy,
    # so the deploy role's statements are evaluated here.
    boundary_arn = f"arn:aws:iam::{iam_policy.SAMPLE['${AWS::AccountId}']}:policy/" \
                   f"{PROD}-permissions-boundary"
    granted = deploy_role_statements(template)
    assert not iam_policy.allowed(granted, "iam:CreatePolicy", boundary_arn), \
        "the pipeline cannot create prod's boundary"
    assert iam_policy.allowed(granted, "iam:CreateRole", boundary_arn.replace(
        f"policy/{PROD}-permissions-boundary", f"role/{PROD}-etl-job"),
        {"iam:PermissionsBoundary": boundary_arn}), "it creates prod's roles under it"
    bootstrap = run("deploy", "--env", SECOND, "--no-validate", "--yes")
    assert bootstrap.exit_code == 0, bootstrap.output
    # Then the same run deploys prod from the home environment's packages; it can read them.
    actions = deploy_action(aws, repository, template, SECOND, deploy_role)
    assert "Approve" in actions, "prod is protected: its change set waits for an approval"
    protect = next(a for s in template["Resources"]["DeliveryPipeline"]["Properties"]["Stages"]
                   if s["Name"] == f"Deploy-{SECOND}" for a in s["Actions"]
                   if a["Name"] == "ProtectStack")
    # Its build runs one AWS CLI call (not installed everywhere the suite runs): made here.
    assert spec.protect_spec()["phases"]["build"]["commands"][-1] == (
        "aws cloudformation update-termination-protection --enable-termination-protection"
        f' --stack-name "${spec.STACK_VARIABLE}"')
    assert json.loads(protect["Configuration"]["EnvironmentVariables"]) == [
        {"name": spec.STACK_VARIABLE, "value": PROD, "type": "PLAINTEXT"}]
    aws.cfn.update_termination_protection(EnableTerminationProtection=True, StackName=PROD)
    prod = aws.stacks()[PROD]
    assert prod["StackStatus"] == "UPDATE_COMPLETE"
    assert prod["EnableTerminationProtection"] is True
    assert {s["StackStatus"] for s in aws.nested(PROD).values()} <= {"CREATE_COMPLETE",
                                                                     "UPDATE_COMPLETE"}
    home_cicd = deployed(aws, cicd_stack)
    place, report = deployed_asset_reads(aws, PROD, home_cicd)
    assert place.bucket == artifacts and place.prefix == spec.PACKAGE_PREFIX
    assert place.key_arn and place.key_arn.endswith(
        cicd_resources["DeliveryKey"]["PhysicalResourceId"])
    assert report.problems == []
    found = {read.what for read in report.reads}
    assert {"EtlStack Glue script", "TrainingStack pipeline step code"} <= found
    assert {f"{logical_id} template" for logical_id in aws.nested(PROD)} <= found
    for read in report.reads:
        key = read.object_arn.split(":::", 1)[1].split("/", 1)[1]
        aws.s3.head_object(Bucket=place.bucket, Key=key)  # every reference was uploaded

    # (5) Deleting the dev stack keeps the data: whatever the deployed templates retain, and
    # what it holds. (prod cannot be deleted at all: termination protection.)
    with pytest.raises(aws.cfn.exceptions.ClientError, match="TerminationProtection"):
        aws.cfn.delete_stack(StackName=PROD)
    stacks = [deployed(aws, stack) for stack in aws.nested(DEV).values()]
    resources = [(resource["Type"], stack.physical_id(logical_id),
                  resource.get("DeletionPolicy") == "Retain")
                 for stack in stacks for logical_id, resource in stack.live_resources().items()]
    retained = {(kind, physical_id) for kind, physical_id, retain in resources if retain}
    assert {kind for kind, _, _ in resources} >= DATA
    assert [(kind, physical_id) for kind, physical_id, retain in resources
            if kind in DATA and not retain] == [], "what holds data is retained"
    raw = outputs(aws.nested(DEV)["StorageStack"])["RawBucketName"]
    aws.s3.put_object(Bucket=raw, Key="events/2026/12/05/batch.json", Body=b'{"event_id": 1}')
    aws.cfn.delete_stack(StackName=DEV)
    assert not [name for name in aws.stacks() if name.startswith(DEV)]
    checked = {kind for kind, _ in retained if kind in STILL_THERE}
    assert checked >= {"AWS::S3::Bucket", "AWS::KMS::Key", "AWS::ECR::Repository"}
    for kind, physical_id in sorted(retained):
        if kind in STILL_THERE:
            assert STILL_THERE[kind](aws, physical_id), (kind, physical_id)
    unmodelled = sorted({kind for kind, _ in retained} - set(STILL_THERE))
    assert moto_support.unmodelled_types(unmodelled) == unmodelled, \
        "a retained type moto models is looked for"
    assert aws.s3.get_object(Bucket=raw, Key="events/2026/12/05/batch.json")["Body"].read() == \
        b'{"event_id": 1}'
