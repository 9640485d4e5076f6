"""Approving a model deploys it, and nothing else does (issue 13, "Done when"), on moto.

The bundled pipeline (serving target `both`), each environment deployed once by hand (its
first deployment creates the permissions boundary). Then, as the delivery pipeline's own
commands would after each start (the approval's EventBridge rule, or a push): the build phase
as rendered, and each Deploy-<env> stage's change set with the template configuration the build
wrote for that environment, executed with the pipeline's deploy role.

1. A package approved in dev's group: the change set sets that package and the model API's
   image (its content tag), and the run serves them; prod's configuration does not take it.
2. A run with nothing new: the template configuration is the stack's live parameters, and the
   change set is empty (CloudFormation refuses it: "didn't contain changes").
3. Newer versions pending or rejected: neither is chosen; the change set is empty again and the
   approved one serves on.
4. Production, deployed once by hand too: a package approved in prod's own group (each
   environment trains on its own data and registers in its own group) reaches Deploy-prod's
   change set with the image, behind the manual approval, and dev keeps its package; a run with
   nothing new is an empty change set in prod as well.

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
PROD = "mlops-demo-prod"
PROD_GROUP = "mlops-demo-prod-models"
USER_BUCKET = "mlops-cfn-123456789012-us-east-1"


def register(aws, status: str, group: str = MODEL_GROUP) -> str:
    sagemaker = aws.client("sagemaker")
    arn = sagemaker.create_model_package(
        ModelPackageGroupName=group, ModelApprovalStatus="PendingManualApproval",
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

    def configuration(env: str) -> dict[str, str]:
        """The template configuration the last build wrote for `env`'s change set."""
        return json.loads((repository / spec.OUTPUT_DIR / env / spec.CONFIGURATION_FILE)
                          .read_text())["Parameters"]

    def build() -> dict[str, str]:
        """The build phase as rendered; the template configuration it wrote for dev."""
        shell("\n".join(c for c in build_spec["phases"]["build"]["commands"]
                        if spec.HASH_VARIABLE not in c),
              repository, build_environment(ARTIFACT_BUCKET=artifacts))
        return configuration("dev")

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

    # (4) Production: its first deployment by hand, then an approval in its own group.
    first_prod = run("deploy", "--env", "prod", "--no-validate", "--yes")
    assert first_prod.exit_code == 0, first_prod.output
    assert not parameters(aws.stacks()[PROD]).get("ModelPackageArn"), "no model yet"
    aws.client("sagemaker").create_model_package_group(ModelPackageGroupName=PROD_GROUP)
    build()
    assert not configuration("prod").get("ModelPackageArn"), "dev's approval stays in dev"
    in_prod = register(aws, "Approved", PROD_GROUP)
    assert build()["ModelPackageArn"] == approved, "prod's approval stays in prod"
    chosen_prod = configuration("prod")
    assert (chosen_prod["ModelPackageArn"], chosen_prod["ApiImageTag"]) == (
        in_prod, model_api.image_tag())
    actions = deploy_action(aws, repository, template, "prod", deploy_role)
    assert "Approve" in actions, "prod's change set waits for a person"
    serving = parameters(aws.nested(PROD)["ServingStack"])
    assert (serving["ModelPackageArn"], serving["ApiImageTag"]) == (
        in_prod, model_api.image_tag())
    assert parameters(aws.stacks()[DEV])["ModelPackageArn"] == approved
    build()
    assert empty_change_set(aws, repository, template, deploy_role, "prod")


def empty_change_set(aws, repository, template, deploy_role, env: str = "dev") -> bool:
    """Deploy-<env>'s change set is refused as empty ("didn't contain changes")."""
    from botocore.exceptions import WaiterError

    stack = f"mlops-demo-{env}"
    with pytest.raises(WaiterError):
        deploy_action(aws, repository, template, env, deploy_role)
    found = aws.cfn.describe_change_set(StackName=stack, ChangeSetName=f"{stack}-delivery")
    empty = found["Status"] == "FAILED" and "didn't contain changes" in found["StatusReason"]
    aws.cfn.delete_change_set(StackName=stack, ChangeSetName=f"{stack}-delivery")
    return empty and not found.get("Changes")
