"""Approving a model deploys it, and nothing else does (issue 13, "Done when"), on moto.

The bundled pipeline, its home environment deployed once by hand. Then, as the delivery
pipeline's own commands would after each start (the approval's EventBridge rule, or a push):
the build phase as rendered, and Deploy-dev's change set with the template configuration the
build wrote.

1. A package approved in dev's group: the change set sets that package and the model API's
   image (its content tag), and the run serves them.
2. A run with nothing new: the template configuration is the stack's live parameters, and the
   change set is empty (CloudFormation refuses it: "didn't contain changes").
3. Newer versions pending or rejected: neither is chosen; the change set is empty again and the
   approved one serves on.

What moto cannot show, one line each: CodePipeline executions and EventBridge deliveries do not
run (the commands are replayed; the rule's pattern is checked in tests/stages/test_cicd.py);
moto does not create a nested stack's resources
whose condition turns true in a change-set update, so serving is read from the serving stack's
parameters (the operating story sees the endpoint created by `deploy`).
"""

import json

import pytest
import yaml

from mlops_cfn import model_api
from mlops_cfn.stages import cicd_buildspec as spec
from tests.helpers import default_data

from .conftest import run, write_config
from .test_delivery_runs import (MODEL_GROUP, build_environment, cicd_template, deploy_action,
                                 shell)
from .test_deploy import parameters

pytestmark = pytest.mark.slow

DEV = "mlops-demo-dev"
USER_BUCKET = "mlops-cfn-123456789012-us-east-1"


def register(aws, status: str) -> str:
    sagemaker = aws.client("sagemaker")
    arn = sagemaker.create_model_package(
        ModelPackageGroupName=MODEL_GROUP, ModelApprovalStatus="PendingManualApproval",
        InferenceSpecification={
            "Containers": [{"Image": "123456789012.dkr.ecr.us-east-1.amazonaws.com/m:1"}],
            "SupportedContentTypes": ["text/csv"],
            "SupportedResponseMIMETypes": ["text/csv"]})["ModelPackageArn"]
    if status != "PendingManualApproval":
        sagemaker.update_model_package(ModelPackageArn=arn, ModelApprovalStatus=status)
    return arn


def test_an_approval_deploys_the_package_and_the_image_and_nothing_else_does(aws, tmp_path,
                                                                          monkeypatch):
    repository = tmp_path / "repository"
    repository.mkdir()
    monkeypatch.chdir(repository)
    write_config(repository / "pipeline.yaml", default_data())
    assert run("render", "--all-envs").exit_code == 0
    aws.bucket(USER_BUCKET)
    bootstrap = run("deploy", "--env", "dev", "--no-validate", "--yes")
    assert bootstrap.exit_code == 0, bootstrap.output
    aws.client("sagemaker").create_model_package_group(ModelPackageGroupName=MODEL_GROUP)
    template = cicd_template(repository)
    build_spec = yaml.safe_load(template["Resources"]["BuildProject"]["Properties"]["Source"][
        "BuildSpec"])
    resources = aws.resources(aws.nested(DEV)["CicdStack"]["StackId"])
    artifacts = resources["ArtifactBucket"]["PhysicalResourceId"]
    deploy_role = aws.client("iam").get_role(
        RoleName=resources["DeployRole"]["PhysicalResourceId"])["Role"]["Arn"]
    configuration_file = repository / spec.OUTPUT_DIR / "dev" / spec.CONFIGURATION_FILE

    def build() -> dict[str, str]:
        """The build phase as rendered; the template configuration it wrote for dev."""
        shell("\n".join(c for c in build_spec["phases"]["build"]["commands"]
                        if spec.HASH_VARIABLE not in c),
              repository, build_environment(ARTIFACT_BUCKET=artifacts))
        return json.loads(configuration_file.read_text())["Parameters"]

    # (1) Approved: the change set sets the package and the image, and the run serves them.
    approved = register(aws, "Approved")
    chosen = build()
    assert chosen["ModelPackageArn"] == approved
    assert chosen["ApiImageTag"] == model_api.image_tag()
    deploy_action(aws, repository, template, "dev", deploy_role)
    live = parameters(aws.stacks()[DEV])
    assert (live["ModelPackageArn"], live["ApiImageTag"]) == (approved, model_api.image_tag())
    serving = parameters(aws.nested(DEV)["ServingStack"])
    assert (serving["ModelPackageArn"], serving["ApiImageTag"]) == (
        approved, model_api.image_tag()), "the serving stack gets both"

    # (2) Nothing new: what the change set would apply is what the stack has, and
    # CloudFormation's answer to it is a change set without changes.
    again = build()
    live = parameters(aws.stacks()[DEV])
    assert {k: v for k, v in again.items() if k in live} == {
        k: v for k, v in live.items() if k in again}, "no parameter would change"
    assert again == chosen
    assert empty_change_set(aws, repository, template, deploy_role)

    # (3) A newer version pending, another rejected: neither is deployed.
    register(aws, "PendingManualApproval")
    register(aws, "Rejected")
    assert build()["ModelPackageArn"] == approved
    assert empty_change_set(aws, repository, template, deploy_role)
    assert parameters(aws.stacks()[DEV])["ModelPackageArn"] == approved


def empty_change_set(aws, repository, template, deploy_role) -> bool:
    """Deploy-dev's change set is refused as empty ("didn't contain changes")."""
    from botocore.exceptions import WaiterError

    with pytest.raises(WaiterError):
        deploy_action(aws, repository, template, "dev", deploy_role)
    found = aws.cfn.describe_change_set(StackName=DEV, ChangeSetName=f"{DEV}-delivery")
    empty = found["Status"] == "FAILED" and "didn't contain changes" in found["StatusReason"]
    aws.cfn.delete_change_set(StackName=DEV, ChangeSetName=f"{DEV}-delivery")
    return empty and not found.get("Changes")
