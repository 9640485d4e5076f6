"""The delivery pipeline deploys environments in other accounts and regions through their
bootstrap roles (stages/cicd.py, bootstrap.py), read from the rendered home cicd stack of
examples/three-accounts.yaml the way CodePipeline, IAM, S3 and KMS would read it.

dev is the home environment (us-east-1, the home account); staging is in account 222222222222;
prod in account 333333333333 and in eu-west-1. moto does not enforce bucket or key policies nor
run CodePipeline, so who may read the artifact stores is decided here on the policies
(tests/deploy/test_accounts.py drives the deploy action's calls against moto).
"""

from pathlib import Path

import pytest
import yaml

from mlops_cfn import bootstrap, config, pipeline
from mlops_cfn.errors import UserError

from .template_eval import ACCOUNT, Request, Resolver, key_policy_statements, role_statements

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "three-accounts.yaml"
STAGING, PROD, STRANGER = "222222222222", "333333333333", "444444444444"
HOME_KEY = "arn:aws:kms:us-east-1:111111111111:key/mrk-1234abcd12ab34cd56ef1234567890ab"


def role(account: str, kind: str, env: str) -> str:
    return f"arn:aws:iam::{account}:role/MlopsCfn{kind}-fraud-scoring-{env}"


def cicd_template(path: Path = EXAMPLE, env: str = "dev") -> dict:
    built = pipeline.build(config.load(path, env))
    [stage] = [s for s in built.stages if s.name == "cicd"]
    return stage.template.to_dict()


@pytest.fixture(scope="module")
def home():
    template = cicd_template()
    return template, Resolver(template, {"EnvironmentName": "dev"})


def actions(resolver: Resolver, stage: str) -> dict[str, dict]:
    pipeline_ = resolver.value(resolver.resources["DeliveryPipeline"]["Properties"])
    [found] = [s for s in pipeline_["Stages"] if s["Name"] == stage]
    return {a["Name"]: a for a in found["Actions"]}


# --- the deploy actions -------------------------------------------------------------------------

def test_stagings_actions_assume_its_delivery_role_and_deploy_with_its_execution_role(home):
    _, resolver = home
    staging = actions(resolver, "Deploy-staging")
    assert staging["CreateChangeSet"]["RoleArn"] == role(STAGING, "Delivery", "staging")
    assert staging["CreateChangeSet"]["Configuration"]["RoleArn"] == \
        role(STAGING, "Execution", "staging")
    assert staging["ExecuteChangeSet"]["RoleArn"] == role(STAGING, "Delivery", "staging")
    # Same region as the pipeline: no Region on its actions.
    assert "Region" not in staging["CreateChangeSet"]
    assert "Region" not in staging["ExecuteChangeSet"]
    # The smoke build runs in the home account and cannot reach staging's endpoint.
    assert set(staging) == {"CreateChangeSet", "ExecuteChangeSet"}


def test_prods_actions_run_in_eu_west_1_with_its_roles_after_the_approval(home):
    _, resolver = home
    prod = actions(resolver, "Deploy-prod")
    assert set(prod) == {"CreateChangeSet", "Approve", "ExecuteChangeSet"}
    for name in ("CreateChangeSet", "ExecuteChangeSet"):
        assert prod[name]["Region"] == "eu-west-1"
        assert prod[name]["RoleArn"] == role(PROD, "Delivery", "prod")
    assert prod["CreateChangeSet"]["Configuration"]["RoleArn"] == role(PROD, "Execution", "prod")
    assert "RoleArn" not in prod["Approve"] and "Region" not in prod["Approve"]


def test_the_home_environment_is_deployed_as_before_with_the_home_deploy_role(home):
    _, resolver = home
    dev = actions(resolver, "Deploy-dev")
    assert "RoleArn" not in dev["CreateChangeSet"] and "Region" not in dev["CreateChangeSet"]
    assert dev["CreateChangeSet"]["Configuration"]["RoleArn"] == \
        resolver.get_att("DeployRole", "Arn")
    assert "SmokeTest" in dev


def test_an_artifact_store_in_each_region_where_actions_run(home):
    template, resolver = home
    properties = resolver.value(resolver.resources["DeliveryPipeline"]["Properties"])
    assert "ArtifactStore" not in properties
    stores = {s["Region"]: s["ArtifactStore"] for s in properties["ArtifactStores"]}
    assert set(stores) == {"us-east-1", "eu-west-1"}
    assert stores["us-east-1"]["Location"] == resolver.physical_id("ArtifactBucket")
    there = stores["eu-west-1"]
    assert there["Location"] == f"fraud-scoring-dev-delivery-{ACCOUNT}-eu-west-1"
    # The replica of the multi-Region delivery key: the primary's key id, in eu-west-1, by ARN
    # (an alias is not recognized for cross-account actions).
    assert template["Resources"]["DeliveryKey"]["Properties"]["MultiRegion"] is True
    assert there["EncryptionKey"] == {
        "Id": f"arn:aws:kms:eu-west-1:{ACCOUNT}:key/{resolver.ref('DeliveryKey')}",
        "Type": "KMS"}


def test_prod_is_packaged_into_the_store_of_its_region(home):
    _, resolver = home
    project = resolver.value(resolver.resources["BuildProject"]["Properties"])
    variables = {v["Name"]: v["Value"] for v in project["Environment"]["EnvironmentVariables"]}
    assert variables["ARTIFACT_BUCKET_EU_WEST_1"] == \
        f"fraud-scoring-dev-delivery-{ACCOUNT}-eu-west-1"
    commands = yaml.safe_load(project["Source"]["BuildSpec"])["phases"]["build"]["commands"]
    [prod] = [c for c in commands if c.startswith("mlops-cfn package") and "templates/prod" in c]
    [staging] = [c for c in commands if c.startswith("mlops-cfn package")
                 and "templates/staging" in c]
    assert '--bucket "$ARTIFACT_BUCKET_EU_WEST_1"' in prod
    assert '--bucket "$ARTIFACT_BUCKET"' in staging
    statements = role_statements(resolver, "BuildRole")
    objects = f"arn:aws:s3:::fraud-scoring-dev-delivery-{ACCOUNT}-eu-west-1/delivery/x.yaml"
    assert Request("s3:PutObject", objects).allowed_by(statements)
    key = f"arn:aws:kms:eu-west-1:{ACCOUNT}:key/{resolver.ref('DeliveryKey')}"
    through_s3 = (("kms:ViaService", "s3.eu-west-1.amazonaws.com"),)
    assert Request("kms:GenerateDataKey", key, through_s3).allowed_by(statements)
    assert not Request("kms:GenerateDataKey", key).allowed_by(statements)


def test_the_build_reads_each_targets_live_stack_where_it_is(home):
    # package --stack-name keeps a stack's live model and image; a target's stack is not in the
    # home account, so the build reads it through the target's reader role, in its region (a
    # stack it could not see would be deployed with the parameters' defaults: serving down).
    _, resolver = home
    project = resolver.value(resolver.resources["BuildProject"]["Properties"])
    commands = yaml.safe_load(project["Source"]["BuildSpec"])["phases"]["build"]["commands"]
    packages = {env: c for env in ("dev", "staging", "prod") for c in commands
                if c.startswith("mlops-cfn package") and f"templates/{env}" in c}
    assert "--stack-account" not in packages["dev"] and "--stack-region" not in packages["dev"]
    assert f"--stack-name fraud-scoring-staging --stack-account {STAGING} " in \
        packages["staging"]
    assert "--stack-region" not in packages["staging"]
    assert (f"--stack-name fraud-scoring-prod --stack-account {PROD} --stack-region eu-west-1 "
            in packages["prod"])
    statements = role_statements(resolver, "BuildRole")
    readers = {env: f"arn:aws:iam::{account}:role/MlopsCfnStackReader-fraud-scoring-{env}"
               for env, account in (("staging", STAGING), ("prod", PROD))}
    for reader in readers.values():
        assert Request("sts:AssumeRole", reader).allowed_by(statements), reader
    for other in (role(STAGING, "Delivery", "staging"), role(PROD, "Execution", "prod"),
                  f"arn:aws:iam::{STRANGER}:role/MlopsCfnStackReader-fraud-scoring-staging"):
        assert not Request("sts:AssumeRole", other).allowed_by(statements), other
    home_stack = f"arn:aws:cloudformation:us-east-1:{ACCOUNT}:stack/fraud-scoring-dev/id"
    assert Request("cloudformation:DescribeStacks", home_stack).allowed_by(statements)
    # Not a stack of a target's name in the home account, where it is not.
    assert not Request("cloudformation:DescribeStacks",
                       home_stack.replace("-dev/", "-staging/")).allowed_by(statements)


# --- who may read the home artifact store -------------------------------------------------------

def bucket_statements(resolver: Resolver) -> list[dict]:
    return resolver.value(resolver.resources["ArtifactBucketPolicy"]["Properties"])[
        "PolicyDocument"]["Statement"]


def admitted_accounts(statements: list[dict]) -> set[str]:
    return {principal.split(":")[4] for s in statements if s["Effect"] == "Allow"
            for principal in (s.get("Principal") or {}).get("AWS", [])}


def reads(statements, principal_arn: str, action: str, resource: str, **context) -> bool:
    account = principal_arn.split(":")[4]
    return Request(action, resource, tuple({"aws:PrincipalArn": principal_arn,
                                            **context}.items())).allowed_by(
        statements, f"arn:aws:iam::{account}:root")


def test_the_artifact_bucket_admits_exactly_stagings_roles_for_reads(home):
    _, resolver = home
    statements = bucket_statements(resolver)
    # prod reads the store of eu-west-1, not this one.
    assert admitted_accounts(statements) == {STAGING}
    bucket = f"arn:aws:s3:::{resolver.physical_id('ArtifactBucket')}"
    artifact, package = f"{bucket}/fraud-scoring-dev/Delivery/abc", f"{bucket}/delivery/x.yaml"
    delivery, execution = role(STAGING, "Delivery", "staging"), role(STAGING, "Execution",
                                                                      "staging")
    assert reads(statements, delivery, "s3:GetObject", artifact)
    assert reads(statements, delivery, "s3:GetObjectVersion", artifact)
    assert reads(statements, execution, "s3:GetObject", package)
    assert not reads(statements, execution, "s3:GetObject", artifact)  # packages only
    for action in ("s3:PutObject", "s3:DeleteObject", "s3:ListBucket"):
        assert not reads(statements, delivery, action, artifact), action
    # Another role of staging's account, a role of prod's, a stranger's: nothing.
    for other in (f"arn:aws:iam::{STAGING}:role/admin", role(PROD, "Delivery", "prod"),
                  role(STRANGER, "Delivery", "staging")):
        assert not reads(statements, other, "s3:GetObject", artifact), other


def test_the_delivery_key_lets_exactly_stagings_roles_decrypt_through_s3(home):
    _, resolver = home
    statements = [s for s in key_policy_statements(resolver, "DeliveryKey")
                  if s.get("Sid") != "KeyUseThroughIam" and s.get("Sid") !=
                  "KeyAdministrationThroughIam"]
    assert admitted_accounts(statements) == {STAGING}
    via_s3 = {"kms:ViaService": "s3.us-east-1.amazonaws.com"}
    for kind in ("Delivery", "Execution"):
        assert reads(statements, role(STAGING, kind, "staging"), "kms:Decrypt", "*", **via_s3)
        assert not reads(statements, role(STAGING, kind, "staging"), "kms:Decrypt", "*")
        for action in ("kms:Encrypt", "kms:GenerateDataKey", "kms:CreateGrant"):
            assert not reads(statements, role(STAGING, kind, "staging"), action, "*", **via_s3)
    assert not reads(statements, f"arn:aws:iam::{STAGING}:role/admin", "kms:Decrypt", "*",
                     **via_s3)
    assert not reads(statements, role(PROD, "Delivery", "prod"), "kms:Decrypt", "*", **via_s3)


def test_stagings_stacks_read_and_decrypt_the_packaged_assets_and_nothing_else(home):
    # A Glue job's script, a pipeline step's code: read at run time by the roles of staging's
    # stacks (named after the stack fraud-scoring-staging), across accounts.
    _, resolver = home
    statements = bucket_statements(resolver)
    bucket = f"arn:aws:s3:::{resolver.physical_id('ArtifactBucket')}"
    asset = f"{bucket}/delivery/assets/0123abcd/etl_job.py"
    glue = f"arn:aws:iam::{STAGING}:role/fraud-scoring-staging-EtlStack-1A2B-GlueJobRole-3C4D"
    assert reads(statements, glue, "s3:GetObject", asset)
    for elsewhere in (f"{bucket}/delivery/templates/0123/etl.yaml",
                      f"{bucket}/fraud-scoring-dev/Delivery/abc"):
        assert not reads(statements, glue, "s3:GetObject", elsewhere), elsewhere
    assert not reads(statements, glue, "s3:PutObject", asset)
    for other in (f"arn:aws:iam::{STAGING}:role/fraud-scoring-prod-EtlStack-GlueJobRole",
                  f"arn:aws:iam::{STAGING}:role/admin",
                  f"arn:aws:iam::{STRANGER}:role/fraud-scoring-staging-EtlStack-GlueJobRole"):
        assert not reads(statements, other, "s3:GetObject", asset), other
    key = key_policy_statements(resolver, "DeliveryKey")
    via_s3 = {"kms:ViaService": "s3.us-east-1.amazonaws.com"}
    assert reads(key, glue, "kms:Decrypt", "*", **via_s3)
    assert not reads(key, glue, "kms:Decrypt", "*")
    assert not reads(key, glue, "kms:Decrypt", "*",
                     **{"kms:ViaService": "s3.eu-west-1.amazonaws.com"})
    assert not reads(key, f"arn:aws:iam::{STAGING}:role/admin", "kms:Decrypt", "*", **via_s3)


def test_the_pipeline_role_may_assume_exactly_the_targets_delivery_roles(home):
    _, resolver = home
    statements = role_statements(resolver, "PipelineRole")
    assumed = {r for s in statements if "sts:AssumeRole" in s["Action"] for r in s["Resource"]}
    assert assumed == {role(STAGING, "Delivery", "staging"), role(PROD, "Delivery", "prod")}
    assert Request("sts:AssumeRole", role(PROD, "Delivery", "prod")).allowed_by(statements)
    assert not Request("sts:AssumeRole", role(PROD, "Execution", "prod")).allowed_by(statements)
    # It no longer changes the remote environments' stacks in the home account itself.
    stack = f"arn:aws:cloudformation:us-east-1:{ACCOUNT}:stack/fraud-scoring-prod/x"
    assert not Request("cloudformation:CreateChangeSet", stack, (
        ("cloudformation:ChangeSetName", "fraud-scoring-prod-delivery"),)).allowed_by(statements)
    # It copies the artifacts into the store of eu-west-1.
    objects = f"arn:aws:s3:::fraud-scoring-dev-delivery-{ACCOUNT}-eu-west-1/x"
    assert Request("s3:PutObject", objects).allowed_by(statements)


def test_a_file_naming_no_account_keeps_one_artifact_store_and_no_other_account(tmp_path):
    data = yaml.safe_load(EXAMPLE.read_text())
    for overrides in data["environments"].values():
        overrides.pop("account", None)
        overrides.pop("region", None)
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump(data))
    template = cicd_template(path)
    properties = template["Resources"]["DeliveryPipeline"]["Properties"]
    assert "ArtifactStore" in properties and "ArtifactStores" not in properties
    assert "MultiRegion" not in template["Resources"]["DeliveryKey"]["Properties"]
    assert "sts:AssumeRole" not in yaml.safe_dump(
        template["Resources"]["PipelineRole"]["Properties"]["Policies"])
    assert "MlopsCfn" not in yaml.safe_dump(template)


# --- the region support stack --------------------------------------------------------------------

def region_support(values=None):
    stack = bootstrap.region_support(config.load(EXAMPLE), "eu-west-1",
                                     values or {bootstrap.PRIMARY_KEY_ARN: HOME_KEY})
    template = stack.template.to_dict()
    return stack, template, Resolver(template, {bootstrap.PRIMARY_KEY_ARN: HOME_KEY},
                                     region="eu-west-1")


def test_the_region_support_stack_is_the_store_the_pipeline_names_there():
    stack, template, resolver = region_support()
    assert stack.stack_name == "MlopsCfnRegion-fraud-scoring-eu-west-1"
    assert stack.region == "eu-west-1"
    resources = template["Resources"]
    assert resources["DeliveryKeyReplica"]["Properties"]["PrimaryKeyArn"] == \
        {"Ref": bootstrap.PRIMARY_KEY_ARN}
    bucket = resolver.value(resources["ArtifactBucket"]["Properties"])
    assert bucket["BucketName"] == f"fraud-scoring-dev-delivery-{ACCOUNT}-eu-west-1"
    rule = bucket["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]
    assert rule["ServerSideEncryptionByDefault"]["SSEAlgorithm"] == "aws:kms"
    assert rule["ServerSideEncryptionByDefault"]["KMSMasterKeyID"] == \
        resolver.get_att("DeliveryKeyReplica", "Arn")
    assert bucket["VersioningConfiguration"] == {"Status": "Enabled"}
    assert all(bucket["PublicAccessBlockConfiguration"].values())
    for name in ("DeliveryKeyReplica", "ArtifactBucket"):
        assert resources[name]["DeletionPolicy"] == "Retain"
    # The pipeline's name for it: the same bucket name in the same region.
    home_resolver = Resolver(cicd_template(), {"EnvironmentName": "dev"})
    stores = {s["Region"]: s["ArtifactStore"] for s in home_resolver.value(
        home_resolver.resources["DeliveryPipeline"]["Properties"])["ArtifactStores"]}
    assert stores["eu-west-1"]["Location"] == bucket["BucketName"]


def test_the_region_support_stack_admits_exactly_prods_roles():
    _, _, resolver = region_support()
    statements = resolver.value(resolver.resources["ArtifactBucketPolicy"]["Properties"])[
        "PolicyDocument"]["Statement"]
    assert admitted_accounts(statements) == {PROD}
    bucket = f"arn:aws:s3:::fraud-scoring-dev-delivery-{ACCOUNT}-eu-west-1"
    assert reads(statements, role(PROD, "Delivery", "prod"), "s3:GetObject", f"{bucket}/a/b",
                 **{"aws:SecureTransport": "true"})
    assert reads(statements, role(PROD, "Execution", "prod"), "s3:GetObject",
                 f"{bucket}/delivery/x.yaml")
    assert not reads(statements, role(STAGING, "Delivery", "staging"), "s3:GetObject",
                     f"{bucket}/a/b")
    key = [s for s in key_policy_statements(resolver, "DeliveryKeyReplica")
           if s.get("Sid") == "TargetRolesDecryptThroughS3"]
    assert admitted_accounts(key) == {PROD}
    assert reads(key, role(PROD, "Execution", "prod"), "kms:Decrypt", "*",
                 **{"kms:ViaService": "s3.eu-west-1.amazonaws.com"})
    assert not reads(key, role(PROD, "Execution", "prod"), "kms:Decrypt", "*",
                     **{"kms:ViaService": "s3.us-east-1.amazonaws.com"})


def test_a_region_no_environment_deploys_to_has_no_region_support():
    with pytest.raises(UserError, match=r"--region-support us-west-2: no environment .* "
                                        r"\(its other regions: eu-west-1\)"):
        bootstrap.region_support(config.load(EXAMPLE), "us-west-2")


def test_the_region_support_key_is_a_replica_of_a_multi_region_key():
    with pytest.raises(UserError, match="--artifact-key-arn .*: must be a multi-Region KMS key"):
        region_support({bootstrap.PRIMARY_KEY_ARN: HOME_KEY.replace("mrk-", "")})


def test_prods_bootstrap_refuses_a_store_of_another_region():
    values = {bootstrap.PIPELINE_ROLE_ARN: "arn:aws:iam::111111111111:role/p",
              bootstrap.ARTIFACT_BUCKET: "example-delivery-111111111111-us-east-1",
              bootstrap.ARTIFACT_KEY_ARN: HOME_KEY}
    with pytest.raises(UserError, match=r"in region us-east-1, but .*environments.prod.region "
                                        r"is eu-west-1: give the artifact store of eu-west-1"):
        bootstrap.build(config.load(EXAMPLE, "prod"), values)
    # staging deploys in the home region: the home store is its store.
    bootstrap.build(config.load(EXAMPLE, "staging"), values)


def test_a_target_in_another_region_needs_the_home_region_named(tmp_path):
    data = yaml.safe_load(EXAMPLE.read_text())
    data["environments"]["dev"].pop("region")
    with pytest.raises(UserError, match=r"environments.dev.region: needed, as "
                                        r"environments.prod.region is eu-west-1"):
        cicd_template_from(data)


def cicd_template_from(data: dict) -> dict:
    built = pipeline.build(config.load_data(data, "pipeline.yaml", "dev"))
    return [s for s in built.stages if s.name == "cicd"][0].template.to_dict()
