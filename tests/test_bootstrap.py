"""Environments in other accounts and regions (placement.py) and their bootstrap stacks
(bootstrap.py), read the way IAM and CloudFormation would read them.

What moto cannot check (it enforces no trust policy or permission) is checked here on the
rendered template: who may assume the delivery role, what the execution role may do.
"""

import json
from pathlib import Path

import pytest
import yaml

from mlops_cfn import bootstrap, config, permissions, pipeline
from mlops_cfn.cli import cli
from mlops_cfn.errors import UserError
from mlops_cfn.render import drift

from .iam_policy import allowed
from .template_eval import ACCOUNT, Resolver

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "three-accounts.yaml"
GOLDEN = REPO / "examples" / "bootstrap" / "three-accounts"
HOME_ROLE = "arn:aws:iam::111111111111:role/example-PipelineRole-0123456789AB"
HOME_BUCKET = "example-delivery-111111111111-us-east-1"
HOME_KEY = "arn:aws:kms:us-east-1:111111111111:key/mrk-1234abcd12ab34cd56ef1234567890ab"
VALUES = {bootstrap.PIPELINE_ROLE_ARN: HOME_ROLE, bootstrap.ARTIFACT_BUCKET: HOME_BUCKET,
          bootstrap.ARTIFACT_KEY_ARN: HOME_KEY}
# prod deploys in eu-west-1: its roles read the artifact store there (the region support stack's).
REGION_BUCKET = HOME_BUCKET.replace("us-east-1", "eu-west-1")
REGION_KEY = HOME_KEY.replace("us-east-1", "eu-west-1")
PROD_VALUES = {**VALUES, bootstrap.ARTIFACT_BUCKET: REGION_BUCKET,
               bootstrap.ARTIFACT_KEY_ARN: REGION_KEY}


def values_of(env: str) -> dict[str, str]:
    return PROD_VALUES if env == "prod" else VALUES


def run(*args):
    from click.testing import CliRunner

    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def loaded(env: str, data: dict | None = None, tmp_path: Path | None = None):
    if data is None:
        return config.load(EXAMPLE, env)
    return config.load_data(data, "pipeline.yaml", env)


def example_data() -> dict:
    return yaml.safe_load(EXAMPLE.read_text())


def stack_template(env: str) -> dict:
    return bootstrap.build(loaded(env), values_of(env)).template.to_dict()


# --- where environments deploy -----------------------------------------------------------------

# A file naming no account renders byte-identical to before (the golden trees of every other
# example); one with targets differs from the same file without only by what it shares with
# them (tests/test_sharing.py).


def test_the_example_renders_its_golden_bootstrap_trees_byte_for_byte():
    targets = sorted(p.name for p in GOLDEN.iterdir())
    # dev is the home environment: nothing to bootstrap; eu-west-1 gets a region support stack.
    assert targets == ["prod", "region-eu-west-1", "staging"]
    for env in ("prod", "staging"):
        values = json.loads((GOLDEN / env / "parameters.json").read_text())["Parameters"]
        assert values == values_of(env)
        assert drift(bootstrap.build(loaded(env), values).files(), GOLDEN / env) == [], \
            "refresh with: scripts/render-examples"
    region = GOLDEN / "region-eu-west-1"
    values = json.loads((region / "parameters.json").read_text())["Parameters"]
    assert values == {bootstrap.PRIMARY_KEY_ARN: HOME_KEY}
    assert drift(bootstrap.region_support(loaded("dev"), "eu-west-1", values).files(),
                 region) == [], "refresh with: scripts/render-examples"


@pytest.mark.parametrize("account, message", [
    (222222222222, "environments.staging.account: must be twelve digits in quotes"),
    ("2222", "environments.staging.account: must be twelve digits, quoted"),
])
def test_an_account_is_twelve_quoted_digits(account, message):
    data = example_data()
    data["environments"]["staging"]["account"] = account
    with pytest.raises(UserError) as raised:
        config.load_data(data, "pipeline.yaml")
    assert [p for p in raised.value.problems if message in p], raised.value.problems


@pytest.mark.parametrize("region, message", [
    ("Europe", "environments.prod.region: must be a region name, e.g. eu-west-1"),
    ("xx-east-9", "environments.prod.region: xx-east-9: not a region cfn-lint knows"),
    ("mx-central-1", "environments.prod.region: mx-central-1: SageMaker's"),
    ("cn-north-1", "environments.prod.region: cn-north-1: in partition aws-cn, but the home "
                   "region us-east-1 is in aws"),
])
def test_a_region_the_templates_do_not_support_is_refused_in_one_line_before_anything_is_written(
        tmp_path, region, message):
    data = example_data()
    data["environments"]["dev"]["region"] = "us-east-1"
    data["environments"]["prod"]["region"] = region
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump(data))
    result = run("render", "--config", path, "--all-envs", "--out", tmp_path / "out")
    assert result.exit_code == 2
    assert message in result.output
    assert all(line.startswith("error: ") for line in result.output.splitlines())
    assert not (tmp_path / "out").exists()


def test_an_environment_in_the_home_account_and_region_has_nothing_to_bootstrap(tmp_path):
    result = run("bootstrap", "--config", EXAMPLE, "--env", "dev", "--out", tmp_path / "b")
    assert result.exit_code == 2
    assert "environments.dev: deploys into the home account and region" in result.output
    assert "(the file's: staging, prod)" in result.output
    assert not (tmp_path / "b").exists()
    # Naming the home account itself changes nothing: still the home account.
    data = example_data()
    data["environments"]["dev"]["account"] = "111111111111"
    data["environments"]["staging"]["account"] = "111111111111"
    with pytest.raises(UserError, match="environments.staging: deploys into the home account"):
        bootstrap.build(loaded("staging", data))


def test_a_malformed_home_value_is_refused_naming_its_option():
    with pytest.raises(UserError, match=r"--artifact-key-arn 'alias/x': must be a KMS key ARN"):
        bootstrap.build(loaded("staging"), {**VALUES, bootstrap.ARTIFACT_KEY_ARN: "alias/x"})


# --- the delivery role ------------------------------------------------------------------------

def trust_admits(template: dict, principal_arn: str, role: str = bootstrap.DELIVERY_ROLE) -> bool:
    """Whether the role's trust (default: the delivery role's) lets `principal_arn` assume it,
    as IAM decides: the principal's account is the one named, and the conditions hold for it."""
    resolved = Resolver(template, VALUES).value(
        template["Resources"][role]["Properties"]["AssumeRolePolicyDocument"])
    account = principal_arn.split(":")[4]
    for statement in resolved["Statement"]:
        named = statement["Principal"]["AWS"]
        if named != f"arn:aws:iam::{account}:root":
            continue
        if allowed([{**statement, "Resource": "*"}], "sts:AssumeRole", "*",
                   {"aws:PrincipalArn": principal_arn}):
            return True
    return False


def test_only_the_home_pipeline_role_may_assume_the_delivery_role():
    template = stack_template("staging")
    assert trust_admits(template, HOME_ROLE)
    assert not trust_admits(template, "arn:aws:iam::111111111111:role/another-role")
    assert not trust_admits(template, "arn:aws:iam::111111111111:user/someone")
    assert not trust_admits(template, HOME_ROLE.replace("111111111111", "444444444444"))


# --- the stack reader role ----------------------------------------------------------------------

HOME_BUILD_ROLE = "arn:aws:iam::111111111111:role/fraud-scoring-dev-delivery-build"


@pytest.mark.parametrize("env", ["staging", "prod"])
def test_only_the_home_build_may_read_the_environments_stack_and_only_read_it(env):
    # `package --stack-name` in the home build keeps the stack's live model and image: it reads
    # the stack in the target account through this role, which may do nothing else.
    template = stack_template(env)
    reader = bootstrap.STACK_READER_ROLE
    assert trust_admits(template, HOME_BUILD_ROLE, reader)
    assert not trust_admits(template, HOME_ROLE, reader)  # not the pipeline role: no need
    assert not trust_admits(template, HOME_BUILD_ROLE.replace("111111111111", "444444444444"),
                            reader)
    role = Resolver(template, values_of(env)).value(template["Resources"][reader])["Properties"]
    assert role["RoleName"] == f"MlopsCfnStackReader-fraud-scoring-{env}"
    statements = [s for p in role["Policies"] for s in p["PolicyDocument"]["Statement"]]
    # (The resolver's own region: the stack's, where the bootstrap stack is deployed.)
    stack = f"arn:aws:cloudformation:us-east-1:{ACCOUNT}:stack/fraud-scoring-{env}/id"
    assert allowed(statements, "cloudformation:DescribeStacks", stack)
    assert not allowed(statements, "cloudformation:DescribeStacks",
                       stack.replace(f"fraud-scoring-{env}", "fraud-scoring-other"))
    for action in ("cloudformation:CreateChangeSet", "cloudformation:ExecuteChangeSet",
                   "cloudformation:UpdateStack", "cloudformation:GetTemplate"):
        assert not allowed(statements, action, stack), action
    # The delivery role stays the pipeline's alone.
    assert not trust_admits(template, HOME_BUILD_ROLE)


def test_an_environment_in_the_home_account_but_another_region_needs_no_reader(tmp_path):
    data = example_data()
    data["environments"]["dev"]["region"] = "us-east-1"
    data["environments"]["staging"] = {"region": "us-west-2"}
    store = {**VALUES, bootstrap.ARTIFACT_KEY_ARN: HOME_KEY.replace("us-east-1", "us-west-2"),
             bootstrap.ARTIFACT_BUCKET: HOME_BUCKET.replace("us-east-1", "us-west-2")}
    built = bootstrap.build(loaded("staging", data), store).template.to_dict()
    assert bootstrap.DELIVERY_ROLE in built["Resources"]
    assert bootstrap.STACK_READER_ROLE not in built["Resources"]


def delivery_statements(env: str) -> list[dict]:
    template = stack_template(env)
    role = Resolver(template, values_of(env)).value(template["Resources"][bootstrap.DELIVERY_ROLE])
    return [s for policy in role["Properties"]["Policies"]
            for s in policy["PolicyDocument"]["Statement"]]


def test_the_delivery_role_changes_only_its_environments_stack_through_its_change_set():
    statements = delivery_statements("staging")
    stack = f"arn:aws:cloudformation:us-east-1:{ACCOUNT}:stack/fraud-scoring-staging/id"
    own = {"cloudformation:ChangeSetName": "fraud-scoring-staging-delivery"}
    assert allowed(statements, "cloudformation:CreateChangeSet", stack, own)
    assert allowed(statements, "cloudformation:ExecuteChangeSet", stack, own)
    assert not allowed(statements, "cloudformation:CreateChangeSet", stack,
                       {"cloudformation:ChangeSetName": "another"})
    assert not allowed(statements, "cloudformation:CreateChangeSet",
                       stack.replace("fraud-scoring-staging", "fraud-scoring-prod"), own)
    assert not allowed(statements, "cloudformation:UpdateStack", stack)
    execution = f"arn:aws:iam::{ACCOUNT}:role/MlopsCfnExecution-fraud-scoring-staging"
    to_cfn = {"iam:PassedToService": "cloudformation.amazonaws.com"}
    assert allowed(statements, "iam:PassRole", execution, to_cfn)
    assert not allowed(statements, "iam:PassRole", execution,
                       {"iam:PassedToService": "lambda.amazonaws.com"})
    assert allowed(statements, "s3:GetObject", f"arn:aws:s3:::{HOME_BUCKET}/pipeline/x.zip")
    assert not allowed(statements, "s3:PutObject", f"arn:aws:s3:::{HOME_BUCKET}/pipeline/x")
    # The key of the store in the environment's region, through S3 there: staging the home
    # key in us-east-1, prod the region support stack's in eu-west-1.
    for env, key, region in (("staging", HOME_KEY, "us-east-1"),
                             ("prod", REGION_KEY, "eu-west-1")):
        other = "eu-west-1" if region == "us-east-1" else "us-east-1"
        assert allowed(delivery_statements(env), "kms:Decrypt", key,
                       {"kms:ViaService": f"s3.{region}.amazonaws.com"})
        assert not allowed(delivery_statements(env), "kms:Decrypt", key,
                           {"kms:ViaService": f"s3.{other}.amazonaws.com"})


# --- the execution role -----------------------------------------------------------------------

def execution_actions(env: str) -> set[str]:
    template = stack_template(env)
    return {action for name, resource in template["Resources"].items()
            if name.startswith("ExecutionPolicy")
            for statement in resource["Properties"]["PolicyDocument"]["Statement"]
            for action in (statement["Action"] if isinstance(statement["Action"], list)
                           else [statement["Action"]])}


def test_the_execution_role_may_do_what_the_environments_templates_need_and_no_more():
    actions = execution_actions("staging")
    built = pipeline.build(loaded("staging"))
    stage_types = {t for stage in built.stages
                   for t in permissions.template_requirements(stage.template.to_dict())}
    # Derived from the templates: what SageMaker endpoints and Glue jobs take is there...
    assert {"AWS::SageMaker::Endpoint", "AWS::Glue::Job"} <= stage_types
    assert {"sagemaker:CreateEndpoint", "glue:CreateJob"} <= actions
    # ...but not what only the home environment creates (the delivery pipeline's own), which
    # the home deploy role has.
    assert "AWS::CodePipeline::Pipeline" in stage_types
    assert not [a for a in actions if a.startswith("codepipeline:")]
    home = pipeline.build(loaded("dev"))
    [cicd] = [s.template.to_dict() for s in home.stages if s.name == "cicd"]
    home_policies = [r for n, r in cicd["Resources"].items() if n.startswith("DeployPolicy")]
    assert "codepipeline:CreatePipeline" in json.dumps(home_policies)


def test_the_execution_role_cannot_touch_the_bootstrap_roles_or_stack():
    template = stack_template("staging")
    resolver = Resolver(template, VALUES)
    statements = [s for name, resource in template["Resources"].items()
                  if name.startswith("ExecutionPolicy")
                  for s in resolver.value(resource["Properties"]["PolicyDocument"])["Statement"]]
    for role in ("MlopsCfnExecution-fraud-scoring-staging",
                 "MlopsCfnDelivery-fraud-scoring-staging"):
        arn = f"arn:aws:iam::{ACCOUNT}:role/{role}"
        for action in ("iam:PutRolePolicy", "iam:AttachRolePolicy", "iam:DeleteRole",
                       "iam:UpdateAssumeRolePolicy", "iam:PassRole"):
            assert not allowed(statements, action, arn, {
                "iam:PermissionsBoundary": f"arn:aws:iam::{ACCOUNT}:policy/x",
                "iam:PassedToService": "cloudformation.amazonaws.com"}), (action, role)
    own_role = f"arn:aws:iam::{ACCOUNT}:role/fraud-scoring-staging-TrainingRole-X"
    assert allowed(statements, "iam:DeleteRole", own_role)
    bootstrap_stack = (f"arn:aws:cloudformation:us-east-1:{ACCOUNT}:stack/"
                       "MlopsCfnBootstrap-fraud-scoring-staging/id")
    assert not allowed(statements, "cloudformation:CancelUpdateStack", bootstrap_stack)
