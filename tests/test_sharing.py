"""The model registry and the serving image shared with environments in other accounts
(sharing.py), on examples/three-accounts.yaml: dev in the home account, staging in 222222222222,
prod in 333333333333 and eu-west-1.

Each policy is read the way its service evaluates it: a cross-account request is allowed when
the caller's own policy allows it and the resource's policy admits the caller ("Policy
evaluation logic", cross-account requests, IAM User Guide). The resource policies name the home
account as principal and its one role by aws:PrincipalArn, so a request is evaluated with
principal `arn:aws:iam::<home>:root` and the caller's role ARN in the context.

moto gaps: moto has no ModelPackageGroupPolicy, enforces no ECR repository or event bus policy,
runs no CodeBuild and its TestEventPattern answers no Result, so the policies are evaluated here
on the rendered templates and the forwarded approval with moto's pattern matcher itself.
"""

import json
import os
import subprocess
from pathlib import Path

import pytest
import yaml

from mlops_cfn import bootstrap, config, pipeline, sharing
from mlops_cfn.package import Registry, template_configuration
from mlops_cfn.render import render_files
from mlops_cfn.stages import cicd_buildspec as spec

from .template_eval import ACCOUNT, Request, Resolver

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "three-accounts.yaml"
HOME = "111111111111"  # the account the delivery pipeline runs in (DeliveryAccountId)
STAGING, PROD = "222222222222", "333333333333"
BUILD_ROLE = f"arn:aws:iam::{HOME}:role/fraud-scoring-dev-delivery-build"
IMAGE_ROLE = f"arn:aws:iam::{HOME}:role/fraud-scoring-dev-delivery-image"
HOME_ROOT = f"arn:aws:iam::{HOME}:root"


@pytest.fixture(scope="module")
def built():
    loaded = config.load(EXAMPLE)
    return {env: pipeline.build(loaded.for_environment(env)) for env in loaded.merged}


def stage(built, env: str, name: str) -> dict:
    return next(s for s in built[env].stages if s.name == name).template.to_dict()


def resolved(template: dict, logical_id: str, delivery_account: str, env: str) -> dict:
    """The resource's properties as CloudFormation would deploy them in the fake account
    (template_eval.ACCOUNT, us-east-1) with DeliveryAccountId given."""
    resolver = Resolver(template, {sharing.DELIVERY_ACCOUNT: delivery_account,
                                   "EnvironmentName": env})
    return resolver.value(template["Resources"][logical_id]["Properties"])


def admits(policy: dict, action: str, resource: str, role: str) -> bool:
    """Whether a resource policy admits `role` (its account as principal, the role as
    aws:PrincipalArn) for `action` on `resource`."""
    account = role.split(":")[4]
    return Request(action, resource, (("aws:PrincipalArn", role),)).allowed_by(
        policy["Statement"], principal=f"arn:aws:iam::{account}:root")


# --- a file without targets --------------------------------------------------------------------

def test_a_file_with_targets_differs_from_the_same_file_without_only_by_what_it_shares():
    data = yaml.safe_load(EXAMPLE.read_text())
    for overrides in data["environments"].values():
        overrides.pop("account", None)
        overrides.pop("region", None)
    without = config.load_data(data, "pipeline.yaml")
    with_targets = config.load(EXAMPLE)
    for env in with_targets.merged:
        mine = render_files(pipeline.build(with_targets.for_environment(env)))
        before = render_files(pipeline.build(without.for_environment(env)))
        assert {name for name in mine if mine[name] != before[name]} == {
            "root.yaml", "cicd.yaml", "training.yaml", "serving.yaml",
            # The boundary follows its roles' services: the pipeline role assumes the
            # targets' delivery roles (sts).
            "boundary.yaml"}, env
        assert not any(sharing.DELIVERY_ACCOUNT in text for text in before.values()
                       if isinstance(text, str))
        assert "ApprovalBusPolicy" not in before["cicd.yaml"]


# --- 1. the registry ---------------------------------------------------------------------------

def group_policy(built, env: str, delivery_account: str) -> dict | None:
    props = resolved(stage(built, env, "training"), "ModelPackageGroup", delivery_account, env)
    return props.get("ModelPackageGroupPolicy")


def test_a_target_accounts_registry_group_admits_the_home_build_role_to_read_and_nothing_else(
        built):
    policy = group_policy(built, "staging", HOME)
    group = (f"arn:aws:sagemaker:us-east-1:{ACCOUNT}:model-package-group/"
             "fraud-scoring-staging-models")
    version = f"arn:aws:sagemaker:us-east-1:{ACCOUNT}:model-package/fraud-scoring-staging-models/3"
    # What `package --latest-approved-model` calls (deploy.newest_approved).
    assert admits(policy, "sagemaker:ListModelPackages", group, BUILD_ROLE)
    assert admits(policy, "sagemaker:ListModelPackages", version, BUILD_ROLE)
    assert admits(policy, "sagemaker:DescribeModelPackage", version, BUILD_ROLE)
    assert admits(policy, "sagemaker:DescribeModelPackageGroup", group, BUILD_ROLE)
    # Nothing that approves, changes or deploys a version.
    for action in ("sagemaker:UpdateModelPackage", "sagemaker:DeleteModelPackage",
                   "sagemaker:CreateModel", "sagemaker:DeleteModelPackageGroup"):
        assert not admits(policy, action, version, BUILD_ROLE), action
        assert not admits(policy, action, group, BUILD_ROLE), action
    # Only the build role of the home account: not another of its roles, nor that name in
    # another account, nor the image build.
    for other in (f"arn:aws:iam::{HOME}:role/someone", IMAGE_ROLE,
                  BUILD_ROLE.replace(HOME, "444444444444")):
        assert not admits(policy, "sagemaker:DescribeModelPackage", version, other), other
    # Another group's versions are not this policy's.
    assert not admits(policy, "sagemaker:DescribeModelPackage",
                      version.replace("staging-models", "prod-models"), BUILD_ROLE)


def test_the_group_has_no_policy_in_the_home_account_nor_before_packaging_names_the_home(built):
    # The home environment: DeliveryAccountId is its own account (package sets it so).
    assert group_policy(built, "dev", ACCOUNT) is None
    # A stack deployed by hand before the pipeline ever packaged it.
    assert group_policy(built, "staging", "") is None


def test_the_home_build_role_reads_exactly_the_targets_groups_in_their_accounts_and_regions(
        built):
    cicd = stage(built, "dev", "cicd")
    role = resolved(cicd, "BuildRole", "", "dev")
    assert role["RoleName"] == sharing.build_role_name("fraud-scoring", "dev") == \
        BUILD_ROLE.rsplit("/", 1)[1]
    statements = [s for p in role["Policies"] for s in p["PolicyDocument"]["Statement"]]

    def reads(arn: str) -> bool:
        return all(Request(action, arn).allowed_by(statements) for action in (
            "sagemaker:ListModelPackages", "sagemaker:DescribeModelPackage"))

    assert reads(f"arn:aws:sagemaker:us-east-1:{STAGING}:model-package/"
                 "fraud-scoring-staging-models/1")
    assert reads(f"arn:aws:sagemaker:eu-west-1:{PROD}:model-package/fraud-scoring-prod-models/1")
    assert not reads(f"arn:aws:sagemaker:us-east-1:{PROD}:model-package/"
                     "fraud-scoring-prod-models/1")
    assert not reads(f"arn:aws:sagemaker:us-east-1:{STAGING}:model-package/other-models/1")
    assert not Request("sagemaker:UpdateModelPackage", f"arn:aws:sagemaker:us-east-1:{STAGING}:"
                       "model-package/fraud-scoring-staging-models/1").allowed_by(statements)


def test_the_build_reads_each_targets_group_by_its_arn_in_its_region():
    commands = {env: next(c for c in spec.build_spec(
        ["dev", "staging", "prod"], config.load(EXAMPLE).config.stages.cicd.build,
        approved_models=True, registries={"staging": (STAGING, None), "prod": (PROD, "eu-west-1")}
    )["phases"]["build"]["commands"] if c.endswith(f"templates/{env}")) for env in
        ("dev", "staging", "prod")}
    assert "--registry" not in commands["dev"]
    assert commands["staging"].endswith(f"--latest-approved-model --registry-account {STAGING}"
                                        " templates/staging")
    assert f"--registry-account {PROD} --registry-region eu-west-1" in commands["prod"]


class Registry_:
    """A SageMaker client's two calls, recorded."""

    def __init__(self):
        self.groups = []

    def list_model_packages(self, **kwargs):
        self.groups.append(kwargs["ModelPackageGroupName"])
        return {"ModelPackageSummaryList": []}


def test_package_lists_a_target_group_by_its_arn_and_fills_in_the_delivery_account(tmp_path):
    tree = tmp_path / "staging"
    loaded = config.load(EXAMPLE).for_environment("staging")
    tree.mkdir()
    for name, content in render_files(pipeline.build(loaded)).items():
        path = tree / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
    assert sharing.DELIVERY_ACCOUNT not in json.loads((tree / "parameters.json").read_text())[
        "Parameters"]

    class Cfn:
        def describe_stacks(self, StackName):
            return {"Stacks": [{"Parameters": []}]}

    sagemaker = Registry_()
    written = template_configuration(tree, "fraud-scoring-staging", Cfn(), sagemaker=sagemaker,
                                     registry=Registry(STAGING, "us-east-1"),
                                     caller_account=lambda: HOME)
    assert sagemaker.groups == [f"arn:aws:sagemaker:us-east-1:{STAGING}:model-package-group/"
                                "fraud-scoring-staging-models"]
    values = json.loads(written.path.read_text())["Parameters"]
    assert values[sharing.DELIVERY_ACCOUNT] == HOME
    # In the build's own account and region, the name as before.
    assert Registry(None, "eu-west-1").group("g") == "g"
    assert Registry(PROD, "cn-north-1").group("g") == \
        f"arn:aws-cn:sagemaker:cn-north-1:{PROD}:model-package-group/g"


# --- 2. approvals ------------------------------------------------------------------------------

def test_the_home_default_bus_admits_exactly_the_target_accounts_model_state_changes(built):
    policy = resolved(stage(built, "dev", "cicd"), "ApprovalBusPolicy", "", "dev")
    statement = policy["Statement"]
    assert policy["EventBusName"] == "default"
    assert sorted(statement["Principal"]["AWS"]) == [f"arn:aws:iam::{STAGING}:root",
                                                     f"arn:aws:iam::{PROD}:root"]
    assert statement["Action"] == "events:PutEvents"
    assert statement["Resource"] == f"arn:aws:events:us-east-1:{ACCOUNT}:event-bus/default"
    assert statement["Condition"] == {"ForAllValues:StringEquals": {
        "events:source": ["aws.sagemaker"],
        "events:detail-type": ["SageMaker Model Package State Change"]}}
    assert stage(built, "dev", "cicd")["Resources"]["ApprovalBusPolicy"]["Condition"] == \
        "IsDeliveryHome"


def test_a_target_by_its_region_alone_needs_no_bus_policy():
    data = yaml.safe_load(EXAMPLE.read_text())
    data["environments"]["staging"].pop("account")
    data["environments"]["prod"].pop("account")
    loaded = config.load_data(data, "pipeline.yaml")
    cicd = next(s for s in pipeline.build(loaded).stages if s.name == "cicd").template.to_dict()
    assert "ApprovalBusPolicy" not in cicd["Resources"]


def forwarding(env: str) -> dict:
    from tests.test_bootstrap import values_of

    template = bootstrap.build(config.load(EXAMPLE, env), values_of(env)).template.to_dict()
    resolver = Resolver(template, values_of(env))
    return {name: resolver.value(template["Resources"][name]["Properties"])
            for name in (bootstrap.FORWARD_RULE, bootstrap.FORWARD_ROLE)}


def test_a_target_forwards_its_groups_approvals_to_the_home_bus_only():
    for env, region in (("staging", "us-east-1"), ("prod", "us-east-1")):
        found = forwarding(env)
        rule, role = found[bootstrap.FORWARD_RULE], found[bootstrap.FORWARD_ROLE]
        # The home region, for prod too, whose artifact store (and key) is eu-west-1's.
        home_bus = f"arn:aws:events:{region}:{HOME}:event-bus/default"
        assert rule["Targets"] == [{"Id": "HomeDefaultBus", "Arn": home_bus,
                                    "RoleArn": rule["Targets"][0]["RoleArn"]}]
        assert rule["EventPattern"]["detail"]["ModelPackageGroupName"] == [
            f"fraud-scoring-{env}-models"]
        statements = [s for p in role["Policies"] for s in p["PolicyDocument"]["Statement"]]
        assert Request("events:PutEvents", home_bus).allowed_by(statements)
        assert not Request("events:PutEvents", home_bus.replace(HOME, "444444444444")
                           ).allowed_by(statements)
        assert not Request("events:PutEvents", home_bus.replace("default", "other")
                           ).allowed_by(statements)
        trust = role["AssumeRolePolicyDocument"]["Statement"][0]
        assert trust["Principal"] == {"Service": "events.amazonaws.com"}
        assert trust["Condition"] == {"StringEquals": {"aws:SourceAccount": ACCOUNT}}


def approval_event(account: str, region: str, group: str, status: str = "Approved") -> str:
    """A SageMaker state change as it reaches the home bus from a target: its own account."""
    return json.dumps({
        "version": "0", "id": "1", "source": "aws.sagemaker",
        "detail-type": "SageMaker Model Package State Change", "account": account,
        "time": "2026-01-01T00:00:00Z", "region": region, "resources": [],
        "detail": {"ModelPackageGroupName": group, "ModelApprovalStatus": status}})


def test_a_forwarded_approval_matches_the_home_trigger_as_eventbridge_matches_it(built):
    # moto's own matcher (its TestEventPattern answers no Result).
    from moto.events.models import EventPattern

    home = stage(built, "dev", "cicd")["Resources"]["ApprovalTriggerRule"]["Properties"]
    pattern = json.dumps(home["EventPattern"])
    forward = json.dumps(forwarding("prod")[bootstrap.FORWARD_RULE]["EventPattern"])

    def matches(pattern: str, event: str) -> bool:
        return EventPattern.load(pattern).matches_event(json.loads(event))

    approved = approval_event(PROD, "eu-west-1", "fraud-scoring-prod-models")
    assert matches(forward, approved)  # the target's rule sends it
    assert matches(pattern, approved)  # the home rule starts the pipeline on it
    assert not matches(forward, approval_event(PROD, "eu-west-1", "fraud-scoring-prod-models",
                                               "Rejected"))
    assert not matches(forward, approval_event(PROD, "eu-west-1", "another-models"))


# --- 3. the serving image ----------------------------------------------------------------------

def test_a_target_accounts_api_repository_admits_the_home_image_build_to_push_and_nothing_else(
        built):
    props = resolved(stage(built, "prod", "serving"), "ApiRepository", HOME, "prod")
    policy = props["RepositoryPolicyText"]
    repository = f"arn:aws:ecr:us-east-1:{ACCOUNT}:repository/fraud-scoring-prod-model-api"
    for action in ("ecr:InitiateLayerUpload", "ecr:UploadLayerPart", "ecr:CompleteLayerUpload",
                   "ecr:PutImage", "ecr:BatchCheckLayerAvailability", "ecr:DescribeImages"):
        assert admits(policy, action, repository, IMAGE_ROLE), action
    for action in ("ecr:BatchDeleteImage", "ecr:SetRepositoryPolicy", "ecr:DeleteRepository",
                   "ecr:PutLifecyclePolicy", "ecr:GetDownloadUrlForLayer"):
        assert not admits(policy, action, repository, IMAGE_ROLE), action
    for other in (BUILD_ROLE, f"arn:aws:iam::{HOME}:role/someone",
                  IMAGE_ROLE.replace(HOME, "444444444444")):
        assert not admits(policy, "ecr:PutImage", repository, other), other
    assert "RepositoryPolicyText" not in resolved(stage(built, "dev", "serving"),
                                                  "ApiRepository", ACCOUNT, "dev")


def test_the_home_image_role_pushes_to_each_environments_repository_in_its_account(built):
    role = resolved(stage(built, "dev", "cicd"), "ImageRole", "", "dev")
    assert role["RoleName"] == IMAGE_ROLE.rsplit("/", 1)[1]
    statements = [s for p in role["Policies"] for s in p["PolicyDocument"]["Statement"]]
    expected = {f"arn:aws:ecr:us-east-1:{ACCOUNT}:repository/fraud-scoring-dev-model-api",
                f"arn:aws:ecr:us-east-1:{STAGING}:repository/fraud-scoring-staging-model-api",
                f"arn:aws:ecr:eu-west-1:{PROD}:repository/fraud-scoring-prod-model-api"}
    pushing = next(s for s in statements if "ecr:PutImage" in s["Action"])
    assert set(pushing["Resource"]) == expected
    assert not Request("ecr:PutImage", f"arn:aws:ecr:us-east-1:{ACCOUNT}:repository/"
                       "fraud-scoring-staging-model-api").allowed_by(statements)


def test_the_image_build_pushes_once_built_to_each_registry_lacking_the_tag(tmp_path):
    """The spec run in bash with `aws`, `docker` and `python3` stubbed: staging's repository
    has the tag, dev's and prod's do not; the image is built once and pushed to each registry
    after logging in to it in its region."""
    calls = tmp_path / "calls"
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    stubs = {
        "aws": f"""echo "aws $*" >> {calls}
case "$*" in
  "sts get-caller-identity"*) echo {HOME};;
  *"get-login-password"*) echo token;;
  *"describe-images"*"fraud-scoring-staging-model-api"*) exit 0;;
  *"describe-images"*) exit 1;;
esac""",
        "docker": f'cat > /dev/null 2>&1 || true; echo "docker $*" >> {calls}',
        "python3": 'case "$*" in *image_tag*) echo tag1;; *) echo /app;; esac',
    }
    for name, body in stubs.items():
        (bin_dir / name).write_text("#!/usr/bin/env bash\n" + body + "\n")
        (bin_dir / name).chmod(0o755)
    built_spec = spec.image_spec(config.load(EXAMPLE).config.stages.cicd.build, [
        ("fraud-scoring-dev-model-api", None, None),
        ("fraud-scoring-staging-model-api", STAGING, None),
        ("fraud-scoring-prod-model-api", PROD, "eu-west-1")])
    script = "\n".join(["set -e", *built_spec["phases"]["build"]["commands"]])
    subprocess.run(["bash", "-c", script], check=True, capture_output=True,
                   env={**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}",
                        "AWS_REGION": "us-east-1"})
    lines = calls.read_text().splitlines()
    assert sum(line.startswith("docker build") for line in lines) == 1
    pushes = [line for line in lines if line.startswith("docker push")]
    assert pushes == [
        f"docker push {HOME}.dkr.ecr.us-east-1.amazonaws.com/fraud-scoring-dev-model-api:tag1",
        f"docker push {PROD}.dkr.ecr.eu-west-1.amazonaws.com/fraud-scoring-prod-model-api:tag1"]
    assert (f"aws ecr describe-images --region eu-west-1 --registry-id {PROD} "
            "--repository-name fraud-scoring-prod-model-api --image-ids imageTag=tag1") in lines
    assert "aws ecr get-login-password --region eu-west-1" in lines
    assert f"docker login --username AWS --password-stdin {PROD}.dkr.ecr.eu-west-1." \
           "amazonaws.com" in lines


def test_package_refuses_a_registry_account_without_latest_approved_model(tmp_path):
    from click.testing import CliRunner

    from mlops_cfn.cli import cli

    result = CliRunner().invoke(cli, ["package", str(tmp_path), "--bucket", "b", "--stack-name",
                                      "s", "--registry-account", STAGING])
    assert result.exit_code == 2
    assert "--registry-account needs --latest-approved-model" in result.output


# --- what a target account's stacks admit ------------------------------------------------------

def test_a_targets_stacks_admit_no_other_target_account():
    # Nothing in staging's account can read prod's data nor the reverse: the environments'
    # stacks (all but cicd, whose resources exist only in the home account) name no account
    # but through AWS::AccountId (their own) and DeliveryAccountId (the home one, which
    # `package` fills); the only literal accounts are AWS's own, in Mappings (load balancer log
    # delivery, built-in images' registries). Read on the templates: moto enforces no
    # resource policy, so the multi-account scenario cannot show a refusal.
    import re

    built = config.load(EXAMPLE)
    for env in built.merged:
        files = render_files(pipeline.build(built.for_environment(env)))
        assert "storage.yaml" in files and "serving.yaml" in files
        for name, text in files.items():
            if name == "cicd.yaml" or not name.endswith(".yaml"):
                continue
            document = yaml.load(text, Loader=_Tolerant)
            rest = {k: v for k, v in (document or {}).items() if k != "Mappings"}
            literal = set(re.findall(r"(?<![0-9])[0-9]{12}(?![0-9])", json.dumps(rest)))
            assert not literal, (env, name, literal)
            for target in (STAGING, PROD):
                assert target not in json.dumps(rest), (env, name)


class _Tolerant(yaml.SafeLoader):
    """Reads CloudFormation's short-form tags as plain values."""


_Tolerant.add_multi_constructor("!", lambda loader, suffix, node: (
    loader.construct_scalar(node) if isinstance(node, yaml.ScalarNode)
    else loader.construct_sequence(node) if isinstance(node, yaml.SequenceNode)
    else loader.construct_mapping(node)))
