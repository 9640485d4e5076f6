"""Several accounts on one moto server: moto keeps one state per account id, and credentials
from sts:AssumeRole act in the role's account.

The scenario of README "Several accounts": an administrator of the target account B bootstraps
the staging environment of examples/three-accounts.yaml; the home account A then assumes B's
delivery role and creates a stack with B's execution role, as the home pipeline's deploy action
does. moto enforces no trust policy or permission, so who may assume which role is checked on
the template (tests/test_bootstrap.py); CodePipeline executions across accounts are not modelled
by moto and not driven here.
"""

from pathlib import Path

import boto3
import pytest

from mlops_cfn import bootstrap

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

    # The home pipeline's deploy action: assume the delivery role from the home account, make
    # the environment's change set with the execution role, execute it.
    delivery = session_of(credentials_in(TARGET, delivery_arn.split("/", 1)[1], home))
    cfn = delivery.client("cloudformation")
    body = ('{"Resources": {"Data": {"Type": "AWS::S3::Bucket", '
            '"Properties": {"BucketName": "fraud-scoring-staging-data-check"}}}}')
    created = cfn.create_change_set(StackName="fraud-scoring-staging",
                                    ChangeSetName="fraud-scoring-staging-delivery",
                                    ChangeSetType="CREATE", TemplateBody=body,
                                    RoleARN=execution_arn)
    cfn.get_waiter("change_set_create_complete").wait(ChangeSetName=created["Id"])
    cfn.execute_change_set(ChangeSetName=created["Id"])
    cfn.get_waiter("stack_create_complete").wait(StackName="fraud-scoring-staging")
    [stack] = cfn.describe_stacks(StackName="fraud-scoring-staging")["Stacks"]
    assert stack["RoleARN"] == execution_arn
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


def test_a_target_in_another_region_is_bootstrapped_there(aws, monkeypatch, tmp_path):
    admin = credentials_in("333333333333", "OrganizationAccountAccessRole")
    for name, value in admin.items():
        monkeypatch.setenv(name, value)
    result = run("bootstrap", "--config", EXAMPLE, "--env", "prod", "--out", tmp_path / "b",
                 "--deploy", "--yes", "--no-validate", *HOME_OPTIONS)
    assert result.exit_code == 0, result.output
    name = bootstrap.stack_name("fraud-scoring", "prod")
    in_region = session_of(admin).client("cloudformation", region_name="eu-west-1")
    assert in_region.describe_stacks(StackName=name)["Stacks"]
    assert name not in stack_names(session_of(admin))  # not in us-east-1
    wrong = run("bootstrap", "--config", EXAMPLE, "--env", "prod", "--out", tmp_path / "b",
                "--deploy", "--yes", "--no-validate", "--region", "us-east-1", *HOME_OPTIONS)
    assert wrong.exit_code == 2
    assert "environments.prod.region is eu-west-1" in wrong.output
