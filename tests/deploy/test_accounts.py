"""Several accounts on one moto server: moto keeps one state per account id, and credentials
from sts:AssumeRole act in the role's account.

The scenario of README "Several accounts": an administrator of the target account B bootstraps
the staging environment of examples/three-accounts.yaml; the home account A then does what the
rendered pipeline's Deploy-staging actions do with the roles they name: assume B's delivery role
(the action's RoleArn) and, reading the packaged template from the home artifact bucket, create
and execute the change set with B's execution role (the configuration's RoleArn). moto runs no
CodePipeline execution and enforces no trust, bucket or key policy, so who may assume or read
what is checked on the templates (tests/test_bootstrap.py, tests/test_delivery_targets.py).
The whole order of commands runs too: the home environment deployed in A, staging bootstrapped
with the home stack's values and deployed by hand in B, then updated through the pipeline's
route (package in A reading B's live stack, change set with B's roles).
"""

import json
from pathlib import Path

import boto3
import pytest

from mlops_cfn import bootstrap, config, pipeline

from ..template_eval import Resolver
from .conftest import REGION, run

pytestmark = pytest.mark.slow

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "three-accounts.yaml"
HOME = "123456789012"  # moto's default account: the credentials the fixtures set
TARGET = "222222222222"  # staging's account in the example
HOME_ROLE = f"arn:aws:iam::{HOME}:role/fraud-scoring-dev-PipelineRole-0123456789AB"
HOME_OPTIONS = ("--pipeline-role-arn", HOME_ROLE,
                "--artifact-bucket", f"fraud-scoring-dev-delivery-{HOME}-us-east-1",
                "--artifact-key-arn",
                f"arn:aws:kms:us-east-1:{HOME}:key/1234abcd-12ab-34cd-56ef-1234567890ab")
# prod deploys in eu-west-1: its roles read the region support stack's store there.
REGION_OPTIONS = tuple(value.replace("us-east-1", "eu-west-1") for value in HOME_OPTIONS)
STACK = bootstrap.stack_name("fraud-scoring", "staging")


def home_session():
    """The home account's credentials, whatever the environment variables say meanwhile."""
    return boto3.session.Session(aws_access_key_id="testing", aws_secret_access_key="testing",
                                 region_name=REGION)


def credentials_in(account: str, role: str, session=None) -> dict[str, str]:
    """Credentials of `role` in `account`, assumed from `session` (default: the home account's)."""
    sts = (session or home_session()).client("sts")
    given = sts.assume_role(RoleArn=f"arn:aws:iam::{account}:role/{role}",
                            RoleSessionName="mlops-cfn-test")["Credentials"]
    return {"AWS_ACCESS_KEY_ID": given["AccessKeyId"],
            "AWS_SECRET_ACCESS_KEY": given["SecretAccessKey"],
            "AWS_SESSION_TOKEN": given["SessionToken"]}


def session_of(credentials: dict[str, str]):
    return boto3.session.Session(
        aws_access_key_id=credentials["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=credentials["AWS_SECRET_ACCESS_KEY"],
        aws_session_token=credentials["AWS_SESSION_TOKEN"], region_name=REGION)


def stack_names(session) -> set[str]:
    return {s["StackName"] for s in session.client("cloudformation").describe_stacks()["Stacks"]
            if s["StackStatus"] != "DELETE_COMPLETE"}


def deploy_action_roles(env: str) -> tuple[str, str]:
    """The roles the rendered home pipeline's CreateChangeSet action of `env` names: the
    action's RoleArn (assumed by CodePipeline) and its configuration's (CloudFormation's)."""
    built = pipeline.build(config.load(EXAMPLE, "dev"))
    [stage] = [s for s in built.stages if s.name == "cicd"]
    template = stage.template.to_dict()
    resolved = Resolver(template, {"EnvironmentName": "dev"}).value(
        template["Resources"]["DeliveryPipeline"]["Properties"])
    [deploy] = [s for s in resolved["Stages"] if s["Name"] == f"Deploy-{env}"]
    [create] = [a for a in deploy["Actions"] if a["Name"] == "CreateChangeSet"]
    return create["RoleArn"], create["Configuration"]["RoleArn"]


def bootstrap_staging(monkeypatch, tmp_path, credentials, *extra):
    for name, value in credentials.items():
        monkeypatch.setenv(name, value)
    return run("bootstrap", "--config", EXAMPLE, "--env", "staging", "--out",
               tmp_path / "bootstrap", "--deploy", "--yes", "--no-validate", *extra)


def test_a_target_account_is_bootstrapped_and_deployed_into_from_the_home_account(
        aws, monkeypatch, tmp_path):
    home = home_session()
    admin_of_target = credentials_in(TARGET, "OrganizationAccountAccessRole")

    result = bootstrap_staging(monkeypatch, tmp_path, admin_of_target, *HOME_OPTIONS)
    assert result.exit_code == 0, result.output
    assert f"{STACK}: CREATE_COMPLETE" in result.output
    target = session_of(admin_of_target)
    assert STACK in stack_names(target)
    assert STACK not in stack_names(home)
    outputs = {o["OutputKey"]: o["OutputValue"] for o in target.client(
        "cloudformation").describe_stacks(StackName=STACK)["Stacks"][0]["Outputs"]}
    delivery_arn, execution_arn = outputs["DeliveryRoleArn"], outputs["ExecutionRoleArn"]
    assert delivery_arn == (f"arn:aws:iam::{TARGET}:role/"
                            f"{bootstrap.delivery_role_name('fraud-scoring', 'staging')}")
    roles = {r["RoleName"] for r in target.client("iam").list_roles()["Roles"]}
    assert {bootstrap.delivery_role_name("fraud-scoring", "staging"),
            bootstrap.execution_role_name("fraud-scoring", "staging")} <= roles

    # Again, without the home values: the stack keeps its own, and nothing changes.
    again = bootstrap_staging(monkeypatch, tmp_path, admin_of_target)
    assert again.exit_code == 0, again.output
    assert f"no changes: {STACK} is up to date" in again.output

    # The home pipeline's deploy action, with the roles the rendered pipeline names (the very
    # roles the bootstrap created): assume the delivery role from the home account, make the
    # environment's change set with the execution role from the package in the home artifact
    # bucket, execute it.
    action_role, cloudformation_role = deploy_action_roles("staging")
    assert (action_role, cloudformation_role) == (delivery_arn, execution_arn)
    artifacts = HOME_OPTIONS[3]
    home.client("s3").create_bucket(Bucket=artifacts)
    body = ('{"Resources": {"Data": {"Type": "AWS::S3::Bucket", '
            '"Properties": {"BucketName": "fraud-scoring-staging-data-check"}}}}')
    home.client("s3").put_object(Bucket=artifacts, Key="delivery/staging/root.json",
                                 Body=body.encode())
    delivery = session_of(credentials_in(TARGET, action_role.split("/", 1)[1], home))
    cfn = delivery.client("cloudformation")
    created = cfn.create_change_set(
        StackName="fraud-scoring-staging", ChangeSetName="fraud-scoring-staging-delivery",
        ChangeSetType="CREATE", RoleARN=cloudformation_role,
        TemplateURL=f"https://{artifacts}.s3.amazonaws.com/delivery/staging/root.json")
    cfn.get_waiter("change_set_create_complete").wait(ChangeSetName=created["Id"])
    cfn.execute_change_set(ChangeSetName=created["Id"])
    cfn.get_waiter("stack_create_complete").wait(StackName="fraud-scoring-staging")
    [stack] = cfn.describe_stacks(StackName="fraud-scoring-staging")["Stacks"]
    assert stack["RoleARN"] == cloudformation_role
    assert "fraud-scoring-staging" in stack_names(target)
    assert "fraud-scoring-staging" not in stack_names(home)
    assert "fraud-scoring-staging-data-check" in {
        b["Name"] for b in target.client("s3").list_buckets()["Buckets"]}
    assert "fraud-scoring-staging-data-check" not in {
        b["Name"] for b in home.client("s3").list_buckets()["Buckets"]}


def test_bootstrapping_with_credentials_of_another_account_is_refused_before_any_change(
        aws, monkeypatch, tmp_path):
    # The home account's credentials, for staging in account B.
    result = bootstrap_staging(monkeypatch, tmp_path, {"AWS_ACCESS_KEY_ID": "testing"},
                               *HOME_OPTIONS)
    assert result.exit_code == 2
    assert (f"error: the credentials are for account {HOME}, but {EXAMPLE}: "
            f"environments.staging.account is {TARGET}") in result.output
    assert STACK not in stack_names(home_session())


def test_a_first_bootstrap_needs_the_home_values(aws, monkeypatch, tmp_path):
    result = bootstrap_staging(monkeypatch, tmp_path,
                               credentials_in(TARGET, "OrganizationAccountAccessRole"))
    assert result.exit_code == 2
    assert ("bootstrap --deploy: --pipeline-role-arn, --artifact-bucket, --artifact-key-arn "
            "needed") in result.output


def test_the_region_support_stack_is_deployed_in_its_region_from_the_home_account(
        aws, tmp_path):
    primary = home_session().client("kms").create_key(MultiRegion=True)["KeyMetadata"]["Arn"]
    result = run("bootstrap", "--config", EXAMPLE, "--region-support", "eu-west-1", "--out",
                 tmp_path / "r", "--deploy", "--yes", "--no-validate",
                 "--artifact-key-arn", primary)
    assert result.exit_code == 0, result.output
    name = bootstrap.region_support_stack_name("fraud-scoring", "eu-west-1")
    there = home_session().client("cloudformation", region_name="eu-west-1")
    [stack] = there.describe_stacks(StackName=name)["Stacks"]
    outputs = {o["OutputKey"]: o["OutputValue"] for o in stack["Outputs"]}
    assert outputs["ArtifactBucketName"] == f"fraud-scoring-dev-delivery-{HOME}-eu-west-1"
    # moto has no AWS::KMS::ReplicaKey (a placeholder stands in): that the replica keeps the
    # primary's key id, as the pipeline's ArtifactStores assume, is AWS KMS's documented
    # behaviour, and the template's use of it is read in tests/test_delivery_targets.py.
    assert name not in stack_names(home_session())  # not in us-east-1


def test_a_target_in_another_region_is_bootstrapped_there(aws, monkeypatch, tmp_path):
    admin = credentials_in("333333333333", "OrganizationAccountAccessRole")
    for name, value in admin.items():
        monkeypatch.setenv(name, value)
    refused = run("bootstrap", "--config", EXAMPLE, "--env", "prod", "--out", tmp_path / "b",
                  "--deploy", "--yes", "--no-validate", *HOME_OPTIONS)
    assert refused.exit_code == 2
    assert "give the artifact store of eu-west-1" in refused.output
    result = run("bootstrap", "--config", EXAMPLE, "--env", "prod", "--out", tmp_path / "b",
                 "--deploy", "--yes", "--no-validate", *REGION_OPTIONS)
    assert result.exit_code == 0, result.output
    name = bootstrap.stack_name("fraud-scoring", "prod")
    in_region = session_of(admin).client("cloudformation", region_name="eu-west-1")
    assert in_region.describe_stacks(StackName=name)["Stacks"]
    assert name not in stack_names(session_of(admin))  # not in us-east-1
    wrong = run("bootstrap", "--config", EXAMPLE, "--env", "prod", "--out", tmp_path / "b",
                "--deploy", "--yes", "--no-validate", "--region", "us-east-1", *REGION_OPTIONS)
    assert wrong.exit_code == 2
    assert "environments.prod.region is eu-west-1" in wrong.output


def test_the_home_build_keeps_a_target_stacks_live_model_and_image(aws, monkeypatch, tmp_path):
    # `package --stack-name --stack-account` as the home build runs it for staging: the stack
    # is in account B, read through B's reader role, and its live run-time values (set by hand,
    # none in the config) go into the template configuration; the home account has no such
    # stack, where reading would have found nothing and served the parameters' defaults.
    admin_of_target = credentials_in(TARGET, "OrganizationAccountAccessRole")
    result = bootstrap_staging(monkeypatch, tmp_path, admin_of_target, *HOME_OPTIONS)
    assert result.exit_code == 0, result.output
    target = session_of(admin_of_target)
    roles = {r["RoleName"] for r in target.client("iam").list_roles()["Roles"]}
    assert bootstrap.stack_reader_role_name("fraud-scoring", "staging") in roles
    live = {"ApiImageTag": "0123456789abcdef",
            "ModelPackageArn": f"arn:aws:sagemaker:{REGION}:{TARGET}:model-package/"
                               "fraud-scoring-staging-models/3"}
    body = {"Parameters": {name: {"Type": "String", "Default": ""} for name in live},
            "Resources": {"Nothing": {"Type": "AWS::SNS::Topic"}}}
    target.client("cloudformation").create_stack(
        StackName="fraud-scoring-staging", TemplateBody=json.dumps(body),
        Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in live.items()])
    for name in admin_of_target:  # the home account's credentials again, as the build's
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    rendered = run("render", "--config", EXAMPLE, "--env", "staging", "--out", tmp_path / "t")
    assert rendered.exit_code == 0, rendered.output
    tree = tmp_path / "t"
    bucket = HOME_OPTIONS[3]
    home_session().client("s3").create_bucket(Bucket=bucket)

    def package(*extra):
        result = run("package", tree, "--bucket", bucket, "--prefix", "delivery/",
                     "--stack-name", "fraud-scoring-staging", *extra)
        assert result.exit_code == 0, result.output
        return json.loads((tree / "packaged-parameters.json").read_text())["Parameters"]

    there = package("--stack-account", TARGET)
    assert {name: there.get(name) for name in live} == live
    assert there["DeliveryAccountId"] == HOME  # the account packaging runs in
    # In the home account, where the stack is not: nothing kept (what the build did before).
    assert not {name for name in live if package().get(name)}


def test_the_home_environment_and_a_target_environment_each_land_in_their_account(
        aws, monkeypatch, tmp_path):
    # README "Several accounts", in order, with the example's dev (home, account A) and staging
    # (account B): deploy the home environment; bootstrap staging with the home stack's own
    # values; deploy staging once by hand in B; then the pipeline's route for staging, with
    # the roles its Deploy-staging action names: the home build packages staging into the home
    # artifact bucket (reading B's live stack through B's reader role), the action assumes B's
    # delivery role and CloudFormation updates B's stack with B's execution role. What moto
    # cannot show, in one line: CodePipeline does not run (its actions are replayed), and no
    # trust, bucket or key policy is enforced (read on the templates: tests/test_bootstrap.py,
    # tests/test_delivery_targets.py, tests/test_sharing.py).
    home = home_session()
    repository = tmp_path / "repository"
    repository.mkdir()
    monkeypatch.chdir(repository)
    (repository / "pipeline.yaml").write_text(EXAMPLE.read_text())
    aws.bucket("fraud-scoring-uploads-a")
    first = run("deploy", "--env", "dev", "--bucket", "fraud-scoring-uploads-a", "--no-validate",
                "--yes")
    assert first.exit_code == 0, first.output
    cicd = aws.resources(aws.nested("fraud-scoring-dev")["CicdStack"]["StackId"])
    pipeline_role = home.client("iam").get_role(
        RoleName=cicd["PipelineRole"]["PhysicalResourceId"])["Role"]["Arn"]
    artifacts = cicd["ArtifactBucket"]["PhysicalResourceId"]
    # (moto's DescribeKey fails on the multi-Region key the example's eu-west-1 target asks
    # for: its ARN from its id.)
    key = f"arn:aws:kms:{REGION}:{HOME}:key/{cicd['DeliveryKey']['PhysicalResourceId']}"

    admin_of_target = credentials_in(TARGET, "OrganizationAccountAccessRole")
    booted = bootstrap_staging(monkeypatch, tmp_path, admin_of_target,
                               "--pipeline-role-arn", pipeline_role,
                               "--artifact-bucket", artifacts, "--artifact-key-arn", key)
    assert booted.exit_code == 0, booted.output
    target = session_of(admin_of_target)
    target.client("s3").create_bucket(Bucket="fraud-scoring-uploads-b")
    by_hand = run("deploy", "--env", "staging", "--bucket", "fraud-scoring-uploads-b",
                  "--no-validate", "--yes")
    assert by_hand.exit_code == 0, by_hand.output
    assert "fraud-scoring-staging" in stack_names(target)
    assert "fraud-scoring-staging" not in stack_names(home)
    assert "fraud-scoring-dev" in stack_names(home)
    assert "fraud-scoring-dev" not in stack_names(target)

    # The pipeline's route, from the home account.
    for name in admin_of_target:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    rendered = run("render", "--env", "staging", "--out", tmp_path / "staging")
    assert rendered.exit_code == 0, rendered.output
    packaged = run("package", tmp_path / "staging", "--bucket", artifacts, "--prefix",
                   "delivery/", "--stack-name", "fraud-scoring-staging", "--stack-account",
                   TARGET)
    assert packaged.exit_code == 0, packaged.output
    configuration = json.loads((tmp_path / "staging" / "packaged-parameters.json").read_text())
    assert configuration["Parameters"]["DeliveryAccountId"] == HOME
    # The build's output artifact holds the packaged root; the action reads it from the
    # artifact bucket (here at a key of its own).
    key_name = "delivery/staging/packaged-root.yaml"
    home.client("s3").put_object(
        Bucket=artifacts, Key=key_name,
        Body=(tmp_path / "staging" / "packaged-root.yaml").read_bytes())

    action_role, cloudformation_role = deploy_action_roles("staging")
    delivery = session_of(credentials_in(TARGET, action_role.split("/", 1)[1], home))
    cfn = delivery.client("cloudformation")
    created = cfn.create_change_set(
        StackName="fraud-scoring-staging", ChangeSetName="fraud-scoring-staging-delivery",
        ChangeSetType="UPDATE", RoleARN=cloudformation_role,
        TemplateURL=f"https://{artifacts}.s3.amazonaws.com/{key_name}",
        Parameters=[{"ParameterKey": k, "ParameterValue": v}
                    for k, v in configuration["Parameters"].items()],
        Capabilities=["CAPABILITY_IAM", "CAPABILITY_NAMED_IAM", "CAPABILITY_AUTO_EXPAND"])
    cfn.get_waiter("change_set_create_complete").wait(ChangeSetName=created["Id"])
    cfn.execute_change_set(ChangeSetName=created["Id"])
    cfn.get_waiter("stack_update_complete").wait(StackName="fraud-scoring-staging")
    [stack] = target.client("cloudformation").describe_stacks(
        StackName="fraud-scoring-staging")["Stacks"]
    assert stack["StackStatus"] == "UPDATE_COMPLETE"
    # (moto keeps no RoleARN for a change set's update; a create keeps it: the first test.)
    assert {p["ParameterKey"]: p["ParameterValue"] for p in stack["Parameters"]}[
        "DeliveryAccountId"] == HOME
    assert "fraud-scoring-staging" not in stack_names(home)
    # Every nested stack of each environment is in its own account, and only there.
    in_target, at_home = stack_names(target), stack_names(home)
    assert [n for n in in_target if n.startswith("fraud-scoring-staging-")]
    assert not [n for n in at_home if n.startswith("fraud-scoring-staging")]
    assert [n for n in at_home if n.startswith("fraud-scoring-dev-")]
    assert not [n for n in in_target if n.startswith("fraud-scoring-dev")]
