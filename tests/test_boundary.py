"""Issue 12, finding 18: every role under the project's permissions boundary; the deploy and
launch roles create and change roles only under it, attach only the project's policies, and
administer only the project's keys and bucket policies; only named publishers write the source.

The policies are read as rendered and evaluated against requests as IAM would (iam_policy.py).
"""

import subprocess
import sys
from functools import lru_cache
from pathlib import Path

import pytest
from troposphere import encode_to_dict

from mlops_cfn import boundary, config, permissions, pipeline, servicecatalog
from mlops_cfn.errors import UserError
from tests.helpers import config_with, default_data, resources_of_type
from tests.iam_policy import allowed, decide, DENY

REPO = Path(__file__).resolve().parents[1]
CONFIGS = [None, *sorted((REPO / "examples").glob("*.yaml"))]
CONFIG_IDS = ["default" if p is None else p.stem for p in CONFIGS]

ACCOUNT = "arn:aws:iam::123456789012"
BOUNDARY = f"{ACCOUNT}:policy/mlops-demo-dev-permissions-boundary"
ROLE = f"{ACCOUNT}:role/mlops-demo-dev-StorageStack-1-DataRole-ABC"
KEY = "arn:aws:kms:eu-west-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
PROJECT_KEY = {"aws:ResourceTag/mlops-cfn:project": "mlops-demo"}


@lru_cache(maxsize=None)
def built(path: Path | None, env: str):
    loaded = config.load(path)
    return pipeline.build(loaded.for_environment(env))


def rendered(path: Path | None, env: str) -> list[tuple[str, dict]]:
    """("root", root) and (stage name, template) for each stage of one environment."""
    result = built(path, env)
    return [("root", result.root.to_dict()),
            *((s.name, s.template.to_dict()) for s in result.stages)]


def deploy_role_statements() -> list[dict]:
    (cicd,) = [t for name, t in rendered(None, "dev") if name == "cicd"]
    return [s for name, r in resources_of_type(cicd, "AWS::IAM::ManagedPolicy").items()
            if name.startswith("DeployPolicy")
            for s in r["Properties"]["PolicyDocument"]["Statement"]]


def boundary_policy(path=None, env="dev") -> dict:
    (template,) = [t for name, t in rendered(path, env) if name == boundary.NAME]
    return template["Resources"][boundary.RESOURCE]


def boundary_statements(path=None, env="dev") -> list[dict]:
    return boundary_policy(path, env)["Properties"]["PolicyDocument"]["Statement"]


# --- every role is under the boundary ----------------------------------------------------------

@pytest.mark.parametrize("path", CONFIGS, ids=CONFIG_IDS)
def test_every_role_of_every_stage_carries_the_boundary_stages_policy(path):
    loaded = config.load(path)
    roles = 0
    for env in loaded.merged:
        result = built(path, env)
        root = result.root.to_dict()
        assert boundary.NAME in {s.name for s in result.stages}
        for stage in result.stages:
            template = stage.template.to_dict()
            found = resources_of_type(template, "AWS::IAM::Role")
            for logical_id, role in found.items():
                assert role["Properties"]["PermissionsBoundary"] == {
                    "Ref": boundary.WIRE.name}, (env, stage.name, logical_id)
                roles += 1
            passed = root["Resources"][stage.logical_id]["Properties"]["Parameters"].get(
                boundary.WIRE.name)
            assert passed == ({"Fn::GetAtt": ["BoundaryStack", "Outputs.PermissionsBoundaryArn"]}
                              if found else None), (env, stage.name)
    assert roles > 0


def test_the_boundary_is_named_per_environment_and_matched_by_the_project_pattern():
    name = boundary_policy()["Properties"]["ManagedPolicyName"]
    assert name == {"Fn::Sub": "mlops-demo-${EnvironmentName}-permissions-boundary"}
    assert boundary.arn_pattern("mlops-demo").endswith(":policy/mlops-demo-*-permissions-boundary")


def test_a_sagemaker_project_names_its_boundary_after_the_project_id():
    product = servicecatalog.build_product(config.load(None), ["dev"], sagemaker_projects=True)
    stack = product.root["Resources"]["BoundaryStack"]["Properties"]["Parameters"]
    assert stack["EnvironmentName"] == {"Fn::Join": ["", {"Fn::Split": [
        "-", {"Ref": "SageMakerProjectId"}]}]}


# --- the boundary is a ceiling without a way out ----------------------------------------------

def test_the_boundary_allows_what_the_roles_do():
    statements = boundary_statements()
    for action, resource in [("s3:GetObject", "arn:aws:s3:::mlops-demo-dev-raw/x"),
                             ("sagemaker:CreateTrainingJob", "arn:aws:sagemaker:eu-west-1:"
                                                              "123456789012:training-job/x"),
                             ("iam:PassRole", ROLE)]:
        assert decide(statements, action, resource) == "Allow", action


@pytest.mark.parametrize("action, resource", [
    ("iam:CreateUser", f"{ACCOUNT}:user/intruder"),
    ("iam:CreateAccessKey", f"{ACCOUNT}:user/admin"),
    ("organizations:LeaveOrganization", "*"),
    ("account:PutAlternateContact", "*"),
    ("iam:DeleteRolePermissionsBoundary", ROLE),
    ("iam:CreatePolicyVersion", BOUNDARY),
])
def test_the_boundary_allows_no_account_organization_user_or_boundary_change(action, resource):
    assert decide(boundary_statements(), action, resource, {
        "iam:PermissionsBoundary": BOUNDARY}) != "Allow"


def test_a_bounded_role_may_not_create_a_role_without_the_boundary():
    statements = boundary_statements()
    assert decide(statements, "iam:CreateRole", ROLE) == DENY
    assert decide(statements, "iam:CreateRole", ROLE, {
        "iam:PermissionsBoundary": f"{ACCOUNT}:policy/anything-goes"}) == DENY
    assert decide(statements, "iam:CreateRole", ROLE, {
        "iam:PermissionsBoundary": BOUNDARY}) == "Allow"


def test_the_boundary_fits_a_managed_policy_in_every_example():
    import json

    for path in CONFIGS:
        for env in config.load(path).merged:
            document = boundary_policy(path, env)["Properties"]["PolicyDocument"]
            text = json.dumps(document, separators=(",", ":"))
            assert len(text) <= permissions.MANAGED_POLICY_LIMIT, (path, env)


# --- the deploy role: roles only under the boundary --------------------------------------------

def test_the_deploy_role_creates_a_role_only_with_the_project_boundary():
    statements = deploy_role_statements()
    assert allowed(statements, "iam:CreateRole", ROLE, {"iam:PermissionsBoundary": BOUNDARY})
    assert not allowed(statements, "iam:CreateRole", ROLE)
    assert not allowed(statements, "iam:CreateRole", ROLE, {
        "iam:PermissionsBoundary": f"{ACCOUNT}:policy/mlops-demo-dev-wide-open"})
    # And only the project's roles.
    assert not allowed(statements, "iam:CreateRole", f"{ACCOUNT}:role/other-team-role", {
        "iam:PermissionsBoundary": BOUNDARY})


@pytest.mark.parametrize("action", ["iam:PutRolePolicy", "iam:DeleteRolePolicy",
                                    "iam:DetachRolePolicy", "iam:PutRolePermissionsBoundary"])
def test_the_deploy_role_changes_only_roles_under_the_boundary(action):
    statements = deploy_role_statements()
    assert allowed(statements, action, ROLE, {"iam:PermissionsBoundary": BOUNDARY})
    assert not allowed(statements, action, ROLE)


def test_the_deploy_role_never_removes_a_boundary_nor_writes_one():
    statements = deploy_role_statements()
    assert decide(statements, "iam:DeleteRolePermissionsBoundary", ROLE,
                  {"iam:PermissionsBoundary": BOUNDARY}) == DENY
    for action in boundary.POLICY_WRITES:
        assert decide(statements, action, BOUNDARY) == DENY, action
    # Its own managed policies it still manages.
    assert allowed(statements, "iam:CreatePolicyVersion",
                   f"{ACCOUNT}:policy/mlops-demo-dev-CicdStack-1-DeployPolicy1-X")


def test_the_deploy_role_attaches_only_the_projects_policies():
    statements = deploy_role_statements()
    request = {"iam:PermissionsBoundary": BOUNDARY}
    project_policy = f"{ACCOUNT}:policy/mlops-demo-dev-CicdStack-1-DeployPolicy1-X"
    assert allowed(statements, "iam:AttachRolePolicy", ROLE,
                   {**request, "iam:PolicyARN": project_policy})
    for refused in ["arn:aws:iam::aws:policy/AdministratorAccess",
                    "arn:aws:iam::aws:policy/IAMFullAccess", BOUNDARY]:
        assert not allowed(statements, "iam:AttachRolePolicy", ROLE,
                           {**request, "iam:PolicyARN": refused}), refused


def test_policies_the_templates_attach_by_arn_are_the_only_others_allowed():
    template = {"Resources": {"Role": {"Type": "AWS::IAM::Role", "Properties": {
        "ManagedPolicyArns": [
            {"Fn::Sub": "arn:${AWS::Partition}:iam::aws:policy/service-role/AWSGlueServiceRole"},
            {"Ref": "Own"}]}},
        "Own": {"Type": "AWS::IAM::ManagedPolicy", "Properties": {}}}}
    requirements = permissions.template_requirements(template)
    statements = [encode_to_dict(s) for s in permissions.deployment_statements(
        requirements, iam_names="p-", project="p")]
    request = {"iam:PermissionsBoundary": f"{ACCOUNT}:policy/p-dev-permissions-boundary"}
    role = f"{ACCOUNT}:role/p-dev-Role-1"
    assert allowed(statements, "iam:AttachRolePolicy", role, {
        **request, "iam:PolicyARN": "arn:aws:iam::aws:policy/service-role/AWSGlueServiceRole"})
    assert not allowed(statements, "iam:AttachRolePolicy", role, {
        **request, "iam:PolicyARN": "arn:aws:iam::aws:policy/AdministratorAccess"})


def test_a_role_attaching_a_policy_by_an_unreadable_value_is_an_error():
    template = {"Resources": {"Role": {"Type": "AWS::IAM::Role", "Properties": {
        "ManagedPolicyArns": [{"Fn::ImportValue": "SomeonesPolicy"}]}}}}
    with pytest.raises(UserError, match="Fn::ImportValue"):
        permissions.template_requirements(template)


# --- keys and buckets: only the project's ------------------------------------------------------

@pytest.mark.parametrize("action", ["kms:ScheduleKeyDeletion", "kms:PutKeyPolicy",
                                    "kms:DisableKey", "kms:Decrypt", "kms:CreateGrant"])
def test_the_deploy_role_administers_and_uses_only_the_projects_keys(action):
    statements = deploy_role_statements()
    assert allowed(statements, action, KEY, PROJECT_KEY)
    assert not allowed(statements, action, KEY)
    assert not allowed(statements, action, KEY, {"aws:ResourceTag/mlops-cfn:project": "other"})


def test_keys_are_tagged_as_the_projects_at_creation_but_no_aliased_key_of_others_is_adopted():
    statements = deploy_role_statements()
    tag = {"aws:RequestTag/mlops-cfn:project": "mlops-demo"}
    assert allowed(statements, "kms:TagResource", KEY, tag)
    assert not allowed(statements, "kms:TagResource", KEY,
                       {**tag, "kms:ResourceAliases": ["alias/payroll"]})
    assert allowed(statements, "kms:TagResource", KEY,
                   {**tag, "kms:ResourceAliases": ["alias/mlops-demo-dev-data"]})
    assert not allowed(statements, "kms:TagResource", KEY,
                       {"aws:RequestTag/mlops-cfn:project": "other"})


def test_dynamic_references_decrypt_only_through_the_service_that_stores_them():
    statements = [encode_to_dict(s) for s in permissions.deployment_statements(
        ["AWS::SQS::Queue", permissions.RESOLVE_SECRETSMANAGER], iam_names="p-", project="p")]
    via = {"kms:ViaService": "secretsmanager.eu-west-1.amazonaws.com"}
    assert allowed(statements, "kms:Decrypt", KEY, via)
    assert not allowed(statements, "kms:Decrypt", KEY)


def test_every_key_carries_the_project_tag():
    keys = 0
    for _, template in rendered(None, "dev"):
        for key in resources_of_type(template, "AWS::KMS::Key").values():
            assert {"Key": boundary.PROJECT_TAG, "Value": "mlops-demo"} in key["Properties"][
                "Tags"]
            keys += 1
    assert keys >= 2


def test_aliases_only_the_projects():
    statements = deploy_role_statements()
    alias = "arn:aws:kms:eu-west-1:123456789012:alias/"
    assert allowed(statements, "kms:CreateAlias", alias + "mlops-demo-dev-data")
    assert not allowed(statements, "kms:CreateAlias", alias + "someone-elses")


@pytest.mark.parametrize("action", ["s3:PutBucketPolicy", "s3:DeleteBucketPolicy",
                                    "s3:PutBucketPublicAccessBlock"])
def test_the_deploy_role_writes_only_the_projects_bucket_policies(action):
    statements = deploy_role_statements()
    account = {"aws:ResourceAccount": "123456789012"}
    assert allowed(statements, action,
                   "arn:aws:s3:::mlops-demo-dev-raw-123456789012-eu-west-1", account)
    assert not allowed(statements, action, "arn:aws:s3:::payroll-exports", account)


# --- the launch role ---------------------------------------------------------------------------

def test_the_launch_role_manages_only_provisioned_roles_under_the_boundary_and_may_create_it():
    product = servicecatalog.build_product(config.load(None), ["dev"])
    statements = [encode_to_dict(s) for s in servicecatalog.launch_role_statements(
        product.requirements, "bucket", project="mlops-demo")]
    role = f"{ACCOUNT}:role/SC-123456789012-pp-abcdefgh-StorageS-DataRole-X"
    assert allowed(statements, "iam:CreateRole", role, {"iam:PermissionsBoundary": BOUNDARY})
    assert not allowed(statements, "iam:CreateRole", role)
    assert not allowed(statements, "iam:PutRolePolicy", f"{ACCOUNT}:role/Admin",
                       {"iam:PermissionsBoundary": BOUNDARY})
    assert not allowed(statements, "iam:UpdateAssumeRolePolicy", f"{ACCOUNT}:role/Admin")
    # The product's root creates the boundary, with the template the platform team published.
    assert allowed(statements, "iam:CreatePolicy", BOUNDARY)
    assert not allowed(statements, "kms:ScheduleKeyDeletion", KEY)


# --- the source bucket admits named publishers only --------------------------------------------

def source_policy(changes) -> list[dict]:
    loaded = config_with({"stages": {"cicd": {"source": changes}}})
    (cicd,) = [s for s in pipeline.build(loaded).stages if s.name == "cicd"]
    policy = cicd.template.to_dict()["Resources"]["SourceBucketPolicy"]
    return policy["Properties"]["PolicyDocument"]["Statement"]


def writes(statements, principal: str) -> str:
    (deny,) = [s for s in statements if s["Sid"] == "OnlyNamedPublishersWriteTheSource"]
    resource = "arn:aws:s3:::mlops-demo-dev-source-123456789012-eu-west-1/source/repository.zip"
    rule = {**deny, "Resource": [resource]}
    return decide([rule], "s3:PutObject", resource, {"aws:PrincipalArn": principal})


def test_only_the_named_publishers_may_write_the_source():
    ci = f"{ACCOUNT}:role/ci-publisher"
    statements = source_policy({"publishers": [ci]})
    assert writes(statements, ci) != DENY
    assert writes(statements, f"{ACCOUNT}:role/mlops-demo-dev-AnyProjectRole") == DENY
    assert writes(statements, f"{ACCOUNT}:role/Admin") == DENY


def test_without_publishers_only_the_accounts_root_user_may_write_the_source():
    statements = source_policy({})
    assert writes(statements, f"{ACCOUNT}:root") != DENY
    assert writes(statements, f"{ACCOUNT}:role/Admin") == DENY


@pytest.mark.parametrize("publishers, expected", [
    (["ci-role"], "stages.cicd.source.publishers"),
    (["arn:aws:iam::123456789012:group/devs"], "stages.cicd.source.publishers"),
    (["arn:aws:iam::123456789012:role/a", "arn:aws:iam::123456789012:role/a"], "twice"),
])
def test_a_publisher_that_is_not_a_role_or_user_arn_is_exit_2_in_one_line(
        tmp_path, publishers, expected):
    import yaml

    data = default_data()
    data.setdefault("stages", {}).setdefault("cicd", {}).setdefault("source", {})[
        "publishers"] = publishers
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump(data))
    done = subprocess.run([sys.executable, "-m", "mlops_cfn", "render", "--config", str(path),
                           "--out", str(tmp_path / "out")], capture_output=True, text=True)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "pipeline.yaml" in lines[0] and expected in lines[0], lines
    assert not (tmp_path / "out").exists()


def test_publishers_are_only_for_the_s3_source():
    data = default_data()
    data["stages"]["cicd"]["source"] = {
        "provider": "connection", "repository": "o/r",
        "connection_arn": "arn:aws:codeconnections:eu-west-1:123456789012:connection/"
                          "12345678-1234-1234-1234-123456789012",
        "publishers": [f"{ACCOUNT}:role/ci"]}
    with pytest.raises(UserError, match="publishers"):
        config.load_data(data, "pipeline.yaml", "dev")
