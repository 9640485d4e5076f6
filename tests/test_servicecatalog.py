"""Service Catalog hand-off: the pipeline as one product of a portfolio the platform team deploys.

Packaging is real (package.py against moto's in-process S3). The launch role's resource
statements come from permissions.py; where a test is about the shape of the portfolio rather than
those statements, a recording stub stands in for it and says which resource types it was asked for.
"""

import json
import re
from urllib.parse import unquote, urlparse

import boto3
import cfn_flip
import cfnlint.api
import pytest
from awacs.aws import Action, Allow, Statement
from click.testing import CliRunner
from moto import mock_aws
from troposphere import encode_to_dict

from mlops_cfn import config, permissions, policies
from mlops_cfn import boundary
from mlops_cfn.permissions import actions_for, deployment_statements
from mlops_cfn.cli import cli
from mlops_cfn.errors import UserError
from mlops_cfn.servicecatalog import (MAX_MANAGED_POLICIES, build_product,
                                      content_version, default_catalog, handoff,
                                      launch_role_statements, policy_chunks, principal_arn,
                                      write_bundle)
from tests.helpers import config_with, default_data, only_resource, resources_of_type

BUCKET = "handoff-bucket"
REGION = "us-east-1"

# The only actions the launch role may allow on every resource, and why:
STAR_RESOURCE_ACTIONS = {
    # They read a template the caller passes and support no resource-level permissions.
    "cloudformation:ValidateTemplate", "cloudformation:GetTemplateSummary",
}
# Service Catalog keeps the product's template in a bucket it owns, whose name nobody knows in
# advance; AWS documents this object-tag condition as the scope of reading it.
PROVISIONING_ARTIFACT_CONDITION = {
    "StringEquals": {"s3:ExistingObjectTag/servicecatalog:provisioning": "true"}}


# --- fixtures and helpers -------------------------------------------------------------------------

@pytest.fixture
def aws(monkeypatch):
    for name, value in (("AWS_ACCESS_KEY_ID", "testing"), ("AWS_SECRET_ACCESS_KEY", "testing"),
                        ("AWS_DEFAULT_REGION", REGION)):
        monkeypatch.setenv(name, value)
    for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    with mock_aws():
        yield


@pytest.fixture
def s3(aws):
    client = boto3.client("s3", region_name=REGION)
    client.create_bucket(Bucket=BUCKET)
    return client


class RecordingStatements:
    """Stands in for permissions.deployment_statements: one scoped statement per type."""

    def __init__(self):
        self.asked: list[list[str]] = []

    def __call__(self, types, iam_names="", **scope):
        self.asked.append(list(types))
        return [Statement(Sid=re.sub(r"\W", "", t), Effect=Allow,
                          Action=[Action("cloudformation", "DescribeStacks")],
                          Resource=[policies.arn("cloudformation", f"stack/{t}/*")])
                for t in types]


def make_handoff(s3, loaded=None, statements=None, prefix="", **catalog_fields):
    loaded = loaded or config.load(None)
    catalog = default_catalog(loaded, list(loaded.merged), **catalog_fields)
    return handoff(loaded, BUCKET, catalog, s3=s3, prefix=prefix,
                   deployment_statements=statements or RecordingStatements())


def portfolio_of(result) -> dict:
    return cfn_flip.load_yaml(result.files["portfolio.yaml"])


def launch_statements(template: dict) -> list[dict]:
    policies_ = resources_of_type(template, "AWS::IAM::ManagedPolicy").values()
    return [s for p in policies_ for s in p["Properties"]["PolicyDocument"]["Statement"]]


def as_list(value):
    return value if isinstance(value, list) else [value]


def real_statements():
    return deployment_statements


# --- one product for every environment ------------------------------------------------------------

def test_every_environment_shares_one_set_of_templates_and_keeps_its_own_values():
    product = build_product(config.load(None), ["dev", "prod"])
    assert "root.yaml" in product.files and "storage.yaml" in product.files
    assert "parameters.json" not in product.files
    values = {env: json.loads(text)["Parameters"] for env, text in product.parameters.items()}
    assert values["dev"]["EnvironmentName"] == "dev"
    assert values["prod"]["EnvironmentName"] == "prod"
    assert values["dev"]["VpcCidr"] != values["prod"]["VpcCidr"]


def test_environments_rendering_different_templates_cannot_share_a_product():
    loaded = config_with({"environments": {"prod": {
        "stages": {"ingestion": {"consumer": {"enabled": False}}}}}})
    with pytest.raises(UserError) as raised:
        build_product(loaded, ["dev", "prod"])
    message = str(raised.value)
    assert "environments dev and prod render different templates" in message
    assert "ingestion.yaml" in message and "--env" in message
    # One environment at a time is a product of its own.
    assert build_product(loaded, ["prod"]).parameters.keys() == {"prod"}


def test_the_version_is_a_hash_of_the_templates_not_of_the_values():
    version = build_product(config.load(None), ["dev", "prod"]).version
    assert re.fullmatch(r"[0-9a-f]{16}", version)
    assert build_product(config.load(None), ["dev", "prod"]).version == version
    values_only = config_with({"environments": {"prod": {"log_retention_days": 731}}})
    assert build_product(values_only, ["dev", "prod"]).version == version
    structural = config_with({"stages": {"ingestion": {"consumer": {"enabled": False}}}})
    assert build_product(structural, ["dev", "prod"]).version != version


def test_content_version_depends_on_names_and_bytes():
    base = content_version({"a.yaml": "x", "b.yaml": b"y"})
    assert content_version({"b.yaml": b"y", "a.yaml": "x"}) == base
    assert content_version({"a.yaml": "x", "b.yaml": b"z"}) != base
    assert content_version({"c.yaml": "x", "b.yaml": b"y"}) != base


def test_resource_types_are_those_of_the_rendered_templates():
    product = build_product(config.load(None), ["dev", "prod"])
    rendered = [cfn_flip.load_yaml(text) for name, text in product.files.items()
                if name.endswith(".yaml")]
    in_files = {r["Type"] for t in rendered for r in t["Resources"].values()}
    assert set(product.resource_types) == in_files
    assert {"AWS::CloudFormation::Stack", "AWS::Kinesis::Stream", "AWS::S3::Bucket"} <= in_files
    without = build_product(config_with({"stages": {"ingestion": {"enabled": False}}}), ["dev"])
    assert "AWS::Kinesis::Stream" not in without.resource_types


# --- the portfolio template -----------------------------------------------------------------------

def test_the_product_version_is_the_packaged_root_in_s3(s3):
    result = make_handoff(s3)
    template = portfolio_of(result)
    product = only_resource(template, "AWS::ServiceCatalog::CloudFormationProduct")["Properties"]
    (artifact,) = product["ProvisioningArtifactParameters"]
    assert artifact["Name"] == result.version
    assert artifact["Type"] == "CLOUD_FORMATION_TEMPLATE"
    assert artifact["Info"] == {"LoadTemplateFromURL": result.artifact_url}
    url = urlparse(result.artifact_url)
    assert url.scheme == "https" and url.hostname.startswith(f"{BUCKET}.s3.")
    stored = s3.get_object(Bucket=BUCKET, Key=unquote(url.path.lstrip("/")))["Body"].read()
    assert stored.decode() == result.files["packaged-root.yaml"]
    # The packaged root names its nested templates by URLs in the same bucket.
    packaged = cfn_flip.load_yaml(result.files["packaged-root.yaml"])
    nested = resources_of_type(packaged, "AWS::CloudFormation::Stack")
    assert nested
    for stack in nested.values():
        assert stack["Properties"]["TemplateURL"].startswith(f"https://{BUCKET}.s3.")


def test_the_portfolio_holds_the_product_with_names_and_support_from_the_options(s3):
    result = make_handoff(s3, support_email="ml-platform@example.com",
                          support_url="https://wiki.example.com/mlops",
                          support_description="Ask in #ml-platform", provider="ML Platform")
    template = portfolio_of(result)
    portfolio = only_resource(template, "AWS::ServiceCatalog::Portfolio")["Properties"]
    assert portfolio["DisplayName"] == "mlops-demo MLOps pipeline"
    assert portfolio["ProviderName"] == "ML Platform"
    product = only_resource(template, "AWS::ServiceCatalog::CloudFormationProduct")["Properties"]
    assert product["Name"] == "mlops-demo" and product["Owner"] == "mlops-demo"
    assert product["Description"] == config.load(None).base.description
    assert product["SupportEmail"] == "ml-platform@example.com"
    assert product["SupportUrl"] == "https://wiki.example.com/mlops"
    assert product["SupportDescription"] == "Ask in #ml-platform"
    association = only_resource(template, "AWS::ServiceCatalog::PortfolioProductAssociation")
    assert association["Properties"] == {"PortfolioId": {"Ref": "Portfolio"},
                                         "ProductId": {"Ref": "Product"}}


def test_support_fields_are_left_out_when_not_given(s3):
    product = only_resource(portfolio_of(make_handoff(s3)),
                            "AWS::ServiceCatalog::CloudFormationProduct")["Properties"]
    assert not {"SupportEmail", "SupportUrl", "SupportDescription"} & product.keys()


def test_the_launch_constraint_binds_a_role_only_service_catalog_assumes(s3):
    template = portfolio_of(make_handoff(s3))
    constraint = only_resource(template, "AWS::ServiceCatalog::LaunchRoleConstraint")
    assert constraint["Properties"]["RoleArn"] == {"Fn::GetAtt": ["LaunchRole", "Arn"]}
    assert constraint["Properties"]["ProductId"] == {"Ref": "Product"}
    # A constraint needs the product in the portfolio first.
    assert constraint["DependsOn"] == ["PortfolioProduct"]
    role = template["Resources"]["LaunchRole"]["Properties"]
    (trust,) = role["AssumeRolePolicyDocument"]["Statement"]
    assert trust["Principal"] == {"Service": "servicecatalog.amazonaws.com"}
    assert "Policies" not in role
    managed_policies = resources_of_type(template, "AWS::IAM::ManagedPolicy")
    assert managed_policies
    for managed in managed_policies.values():
        assert managed["Properties"]["Roles"] == [{"Ref": "LaunchRole"}]


def test_the_launch_role_is_derived_from_the_resource_types_the_templates_contain(s3):
    recording = RecordingStatements()
    result = make_handoff(s3, statements=recording)
    product = build_product(config.load(None), ["dev", "prod"])
    # What the templates contain and resolve (the admin password's secret, until Redshift
    # manages it), nested stacks included.
    expected = sorted(set(product.requirements) | {"AWS::CloudFormation::Stack"})
    assert set(product.resource_types) <= set(product.requirements)
    assert recording.asked == [expected]
    sids = {s.get("Sid") for s in launch_statements(portfolio_of(result))}
    assert {re.sub(r"\W", "", t) for t in expected} <= sids


def test_the_launch_role_runs_only_service_catalog_stacks_and_reads_only_its_packages(s3):
    statements = {s["Sid"]: s for s in launch_statements(portfolio_of(
        make_handoff(s3, prefix="/mlops", statements=real_statements()))) if "Sid" in s}
    stacks = statements["ProvisionedStacks"]
    assert stacks["Resource"] == [{"Fn::Sub": "arn:${AWS::Partition}:cloudformation:"
                                   "${AWS::Region}:${AWS::AccountId}:"
                                   "stack/SC-${AWS::AccountId}-pp-*/*"}]
    # What the nested stacks' registry handlers list is granted on the same stacks only.
    derived = statements["ManageCloudformation"]
    assert derived["Resource"] == stacks["Resource"]
    scoped = {a for a in actions_for(["AWS::CloudFormation::Stack"])
              if permissions.supports_resource_scope(a) and a != "iam:PassRole"}
    assert scoped <= set(derived["Action"])
    packages = statements["ReadPackagedTemplatesAndAssets"]
    assert packages["Action"] == ["s3:GetObject"]
    assert packages["Resource"] == [{"Fn::Sub": f"arn:${{AWS::Partition}}:s3:::{BUCKET}/mlops/*"}]
    artifact = statements["ReadProvisioningArtifact"]
    assert artifact["Resource"] == ["*"]
    assert artifact["Condition"] == PROVISIONING_ARTIFACT_CONDITION


def test_launch_statements_are_packed_into_managed_policies_that_fit(s3):
    from mlops_cfn.permissions import MANAGED_POLICY_LIMIT

    many = [f"AWS::Service{i}::Resource{i}" for i in range(150)]
    template = portfolio_of(make_handoff(s3, statements=lambda _, **__: RecordingStatements()(
        many)))
    managed = resources_of_type(template, "AWS::IAM::ManagedPolicy")
    assert len(managed) > 1
    for policy in managed.values():
        document = policy["Properties"]["PolicyDocument"]
        assert len(json.dumps(document, separators=(",", ":"))) <= MANAGED_POLICY_LIMIT
    sids = [s.get("Sid") for s in launch_statements(template)]
    assert [sid for sid in sids if sid.startswith("AWSService")] == \
        [re.sub(r"\W", "", t) for t in many]


def test_a_launch_role_needing_more_policies_than_iam_attaches_is_refused():
    many = RecordingStatements()([f"AWS::Service{i}::Resource{i}" for i in range(100)])
    assert len(policy_chunks(many)) <= MAX_MANAGED_POLICIES
    with pytest.raises(UserError, match="more than IAM attaches to one role"):
        policy_chunks(many * MAX_MANAGED_POLICIES)


@pytest.mark.parametrize("given, expected_arn, expected_type", [
    ("role/DataScientist",
     {"Fn::Sub": "arn:${AWS::Partition}:iam::${AWS::AccountId}:role/DataScientist"}, "IAM"),
    ("group/ml/Engineers",
     {"Fn::Sub": "arn:${AWS::Partition}:iam::${AWS::AccountId}:group/ml/Engineers"}, "IAM"),
    ("role/ml-*", {"Fn::Sub": "arn:${AWS::Partition}:iam:::role/ml-*"}, "IAM_PATTERN"),
    ("arn:aws:iam::123456789012:role/Studio", "arn:aws:iam::123456789012:role/Studio", "IAM"),
    ("arn:aws:iam:::role/Studio*", "arn:aws:iam:::role/Studio*", "IAM_PATTERN"),
])
def test_principals_are_arns_or_short_names_in_the_portfolio_account(given, expected_arn,
                                                                     expected_type):
    arn, kind = principal_arn(given)
    assert (arn if isinstance(arn, str) else arn.to_dict()) == expected_arn
    assert kind == expected_type


@pytest.mark.parametrize("given, message", [
    ("DataScientist", "expected an IAM role, user or group ARN"),
    ("arn:aws:s3:::bucket", "expected an IAM role, user or group ARN"),
    ("arn:aws:iam::123456789012:role/ml-*", "must not name an account"),
])
def test_a_principal_that_is_no_iam_principal_is_refused(given, message):
    with pytest.raises(UserError, match=message):
        principal_arn(given)


def test_each_principal_is_associated_with_the_portfolio(s3):
    template = portfolio_of(make_handoff(s3, principals=("role/DataScientist", "role/ml-*")))
    associations = resources_of_type(template, "AWS::ServiceCatalog::PortfolioPrincipalAssociation")
    found = {json.dumps(a["Properties"]["PrincipalARN"]): a["Properties"]["PrincipalType"]
             for a in associations.values()}
    assert found == {
        json.dumps({"Fn::Sub": "arn:${AWS::Partition}:iam::${AWS::AccountId}:role/DataScientist"}):
            "IAM",
        json.dumps({"Fn::Sub": "arn:${AWS::Partition}:iam:::role/ml-*"}): "IAM_PATTERN",
    }
    assert all(a["Properties"]["PortfolioId"] == {"Ref": "Portfolio"}
               for a in associations.values())


def test_tag_options_default_to_the_tags_deploy_puts_on_every_stack(s3):
    template = portfolio_of(make_handoff(s3))
    options = {(o["Properties"]["Key"], o["Properties"]["Value"])
               for o in resources_of_type(template, "AWS::ServiceCatalog::TagOption").values()}
    assert options == {("team", "ml-platform"), ("cost-center", "ml-0001"),
                       ("mlops-cfn:project", "mlops-demo"),
                       ("mlops-cfn:environment", "dev"), ("mlops-cfn:environment", "prod")}
    associations = resources_of_type(template, "AWS::ServiceCatalog::TagOptionAssociation")
    assert len(associations) == len(options)
    assert {a["Properties"]["TagOptionId"]["Ref"] for a in associations.values()} == \
        set(resources_of_type(template, "AWS::ServiceCatalog::TagOption"))


def test_tag_options_given_replace_the_defaults(s3):
    template = portfolio_of(make_handoff(s3, tag_options=(("cost-center", "ml-0002"),)))
    options = [o["Properties"] for o in
               resources_of_type(template, "AWS::ServiceCatalog::TagOption").values()]
    assert options == [{"Active": True, "Key": "cost-center", "Value": "ml-0002"}]


def test_existing_tag_options_are_associated_and_the_defaults_not_created(s3):
    # TagOptions are unique per account: a second portfolio must re-use the first one's.
    result = make_handoff(s3, existing_tag_options=("tag-abc123def456g", "tag-0000000000001"))
    template = portfolio_of(result)
    assert resources_of_type(template, "AWS::ServiceCatalog::TagOption") == {}
    associations = resources_of_type(template, "AWS::ServiceCatalog::TagOptionAssociation")
    assert sorted(a["Properties"]["TagOptionId"] for a in associations.values()) == [
        "tag-0000000000001", "tag-abc123def456g"]
    assert all(a["Properties"]["ResourceId"] == {"Ref": "Portfolio"}
               for a in associations.values())
    assert "- `tag-abc123def456g`" in result.files["README.md"]


def test_existing_tag_options_and_new_ones_named_together(s3):
    template = portfolio_of(make_handoff(s3, tag_options=(("team", "fraud"),),
                                         existing_tag_options=("tag-abc123def456g",)))
    created = [o["Properties"]["Value"] for o in
               resources_of_type(template, "AWS::ServiceCatalog::TagOption").values()]
    assert created == ["fraud"]
    assert len(resources_of_type(template, "AWS::ServiceCatalog::TagOptionAssociation")) == 2


@pytest.mark.parametrize("field, value, message", [
    ("tag_options", (("aws:owner", "x"),), "not start with aws:"),
    ("existing_tag_options", ("team=ml",), "--existing-tag-option team=ml: not a TagOption ID"),
    ("support_email", "not-an-address", "not an email address"),
    ("support_url", "wiki.example.com", "must start with https://"),
    ("portfolio_name", "x" * 101, "must be 1-100 characters"),
])
def test_catalog_values_service_catalog_would_reject_are_refused(field, value, message):
    loaded = config.load(None)
    with pytest.raises(UserError, match=message):
        default_catalog(loaded, ["dev"], **{field: value})


def test_the_template_is_deterministic(s3):
    assert make_handoff(s3).files == make_handoff(s3).files


# --- SageMaker Projects ---------------------------------------------------------------------------

def test_a_sagemaker_projects_product_is_studio_visible_and_takes_the_project_parameters(s3):
    result = make_handoff(s3, sagemaker_projects=True)
    product = only_resource(portfolio_of(result),
                            "AWS::ServiceCatalog::CloudFormationProduct")["Properties"]
    assert {"Key": "sagemaker:studio-visibility", "Value": "true"} in product["Tags"]
    for root_file in ("packaged-root.yaml", "templates/root.yaml"):
        parameters = cfn_flip.load_yaml(result.files[root_file])["Parameters"]
        assert {"SageMakerProjectName", "SageMakerProjectId"} <= parameters.keys()
        assert "Default" not in parameters["SageMakerProjectName"]
    # The environments' values in the layout SageMaker's own project templates ship.
    assert {"dev-config.json", "prod-config.json"} <= result.files.keys()
    assert not any(name.startswith("parameters/") for name in result.files)
    assert "SageMaker Projects" in result.files["README.md"]


def test_a_plain_product_is_not_offered_in_studio(s3):
    result = make_handoff(s3)
    product = only_resource(portfolio_of(result),
                            "AWS::ServiceCatalog::CloudFormationProduct")["Properties"]
    assert all(tag["Key"] != "sagemaker:studio-visibility" for tag in product["Tags"])
    assert "SageMakerProjectName" not in cfn_flip.load_yaml(result.files["packaged-root.yaml"])[
        "Parameters"]
    assert {"parameters/dev.json", "parameters/prod.json"} <= result.files.keys()


def test_a_sagemaker_project_names_every_resource_after_its_project_id():
    """Issue 12, finding 17: a second SageMaker project launched from the product must not
    collide with the first on any physical name."""
    product = build_product(config.load(None), ["dev", "prod"], sagemaker_projects=True)
    root = cfn_flip.load_yaml(product.files["root.yaml"])
    assert "EnvironmentName" not in root["Parameters"]
    token = {"Fn::Join": ["", {"Fn::Split": ["-", {"Ref": "SageMakerProjectId"}]}]}
    stacks = resources_of_type(root, "AWS::CloudFormation::Stack")
    assert stacks and all(s["Properties"]["Parameters"]["EnvironmentName"] == token
                          for s in stacks.values())
    for env, text in product.parameters.items():
        assert "EnvironmentName" not in json.loads(text)["Parameters"], env
    storage = cfn_flip.load_yaml(product.files["storage.yaml"])
    names = {project_id: [_substitute(b["Properties"]["BucketName"]["Fn::Sub"], project_id)
                          for b in resources_of_type(storage, "AWS::S3::Bucket").values()]
             for project_id in ("p-ypcnnfv6l5mn", "p-000000000000")}
    first, second = names.values()
    assert not set(first) & set(second)
    for name in first + second:
        # The longest region name, and S3's own rule for bucket names.
        assert len(name) <= 63 and re.fullmatch(r"[a-z0-9][a-z0-9.-]*[a-z0-9]", name), name


def _substitute(pattern: str, project_id: str) -> str:
    token = project_id.replace("-", "")
    return (pattern.replace("${EnvironmentName}", token)
            .replace("${AWS::AccountId}", "123456789012").replace("${AWS::Region}",
                                                                  "us-isof-south-1"))


def test_every_nested_stack_of_a_sagemaker_project_admits_the_project_token():
    product = build_product(config.load(None), ["dev"], sagemaker_projects=True)
    token = "p-ypcnnfv6l5mn".replace("-", "")
    nested = [name for name in product.files
              if name.endswith(".yaml") and name != "root.yaml" and "/" not in name]
    assert nested
    for name, text in product.files.items():
        if name in nested:
            parameter = cfn_flip.load_yaml(text)["Parameters"]["EnvironmentName"]
            assert len(token) <= parameter["MaxLength"], name
            assert re.fullmatch(parameter["AllowedPattern"], token), name


@pytest.mark.parametrize("name, accepted", [
    ("churn", True), ("1churn-model", True), ("a", True), ("a" * 32, True),
    ("Churn--Model-2", True), ("a" * 33, False), ("churn-", False), ("-churn", False),
    ("churn_model", False),
])
def test_the_project_name_parameter_accepts_what_sagemaker_accepts(name, accepted):
    """SageMaker's CreateProject takes ProjectName ^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,31}: a
    leading digit included (issue 12, finding 17)."""
    product = build_product(config.load(None), ["dev"], sagemaker_projects=True)
    parameter = cfn_flip.load_yaml(product.files["root.yaml"])["Parameters"][
        "SageMakerProjectName"]
    fits = (parameter["MinLength"] <= len(name) <= parameter["MaxLength"]
            and re.fullmatch(parameter["AllowedPattern"], name) is not None)
    assert fits == accepted


def test_the_project_id_parameter_takes_the_ids_sagemaker_generates():
    product = build_product(config.load(None), ["dev"], sagemaker_projects=True)
    pattern = cfn_flip.load_yaml(product.files["root.yaml"])["Parameters"][
        "SageMakerProjectId"]["AllowedPattern"]
    assert re.fullmatch(pattern, "p-ypcnnfv6l5mn")
    assert not re.fullmatch(pattern, "P-YPCNNFV6L5MN")


# --- no delivery pipeline in the product ----------------------------------------------------------

def test_the_product_leaves_the_delivery_pipeline_out_and_says_so():
    """Issue 12, finding 17: Service Catalog names the stacks; the pipeline deploys fixed names."""
    loaded = config.load(None)
    assert loaded.config.stages.cicd.enabled
    for sagemaker in (False, True):
        product = build_product(loaded, ["dev", "prod"], sagemaker_projects=sagemaker)
        assert "cicd.yaml" not in product.files
        assert "AWS::CodePipeline::Pipeline" not in product.resource_types
        (note,) = product.notes
        assert "cicd stage is left out" in note
    without = config_with({"stages": {"cicd": {"enabled": False}}})
    assert build_product(without, ["dev"]).notes == ()


@pytest.mark.parametrize("changes, field", [
    ({"stages": {"cicd": {"enabled": True}}}, "stages.cicd.enabled"),
    ({"environments": {"dev": {"stages": {"cicd": {"enabled": True}}}, "prod": {}}},
     "environments.dev.stages.cicd.enabled"),
])
def test_a_delivery_pipeline_enabled_explicitly_cannot_be_handed_off(changes, field):
    with pytest.raises(UserError) as raised:
        build_product(config_with(changes), ["dev"])
    (problem,) = raised.value.problems
    assert problem.startswith(f"pipeline.yaml: {field}: true cannot be honoured")


def test_the_command_notes_the_missing_pipeline_and_refuses_an_explicit_one(s3, in_tmp,
                                                                           monkeypatch):
    monkeypatch.setattr("mlops_cfn.permissions.deployment_statements", RecordingStatements())
    result = CliRunner().invoke(cli, ["servicecatalog", "--bucket", BUCKET])
    assert result.exit_code == 0, result.output
    assert "note: the cicd stage is left out of the product" in result.stderr
    data = default_data()
    data["stages"]["cicd"]["enabled"] = True
    (in_tmp / "explicit.yaml").write_text(json.dumps(data))
    s3.delete_objects(Bucket=BUCKET, Delete={"Objects": [
        {"Key": o["Key"]} for o in s3.list_objects_v2(Bucket=BUCKET)["Contents"]]})
    refused = CliRunner().invoke(cli, ["servicecatalog", "--bucket", BUCKET, "--config",
                                       "explicit.yaml", "--out", "explicit"])
    assert refused.exit_code == 2
    assert refused.stderr.count("\n") == 1
    assert "explicit.yaml: stages.cicd.enabled: true cannot be honoured" in refused.stderr
    assert not (in_tmp / "explicit").exists()
    assert s3.list_objects_v2(Bucket=BUCKET).get("KeyCount", 0) == 0


# --- the launch role covers what the templates contain --------------------------------------------

@pytest.mark.parametrize("sagemaker", [False, True], ids=["plain", "sagemaker-projects"])
def test_the_launch_role_grants_every_handler_permission_of_every_type_in_the_product(sagemaker):
    """Issue 12, finding 16: the launch role is derived from the registry's handler lists."""
    product = build_product(config.load(None), ["dev", "prod"], sagemaker_projects=sagemaker)
    statements = launch_role_statements(product.requirements, BUCKET)
    granted = {a.lower() for s in statements for a in as_list(encode_to_dict(s)["Action"])}
    missing = {f"{t}: {a}" for t in product.resource_types
               for name in permissions.handler_permissions(t) or ()
               for a in permissions.granted_names(name) if a.lower() not in granted}
    assert not missing
    assert {"kinesis:listtagsforresource", "sagemaker:describemodelpackage"} <= granted


# --- the hand-off bundle --------------------------------------------------------------------------

def test_the_bundle_holds_portfolio_packaged_root_templates_parameters_and_readme(s3):
    result = make_handoff(s3)
    product = build_product(config.load(None), ["dev", "prod"])
    assert {"portfolio.yaml", "packaged-root.yaml", "README.md"} <= result.files.keys()
    assert product.files and set(product.parameters) == {"dev", "prod"}
    for name, content in product.files.items():
        assert result.files[f"templates/{name}"] == content
    for env, text in product.parameters.items():
        assert result.files[f"parameters/{env}.json"] == text


def test_the_readme_lists_every_parameter_of_the_product_with_its_values(s3):
    result = make_handoff(s3)
    readme = result.files["README.md"]
    rows = {line.split("|")[1].strip().strip("`"): line for line in readme.splitlines()
            if line.startswith("| `")}
    packaged = cfn_flip.load_yaml(result.files["packaged-root.yaml"])["Parameters"]
    assert rows.keys() == packaged.keys()
    dev = json.loads(result.files["parameters/dev.json"])["Parameters"]
    prod = json.loads(result.files["parameters/prod.json"])["Parameters"]
    for name, spec in packaged.items():
        row = rows[name]
        assert spec["Description"].replace("|", "\\|") in row
        if "Default" in spec:
            assert f"`{spec['Default']}`" in row
        # A range bounded on one side reads as such, not as "0 to ".
        low, high = spec.get("MinValue"), spec.get("MaxValue")
        if low is not None and high is not None:
            assert f"{low} to {high}" in row, name
        elif low is not None:
            assert f"≥ {low}" in row and " to " not in row.split("|")[5], name
        elif high is not None:
            assert f"≤ {high}" in row, name
        for value in spec.get("AllowedValues", []):
            assert f"`{value}`" in row
        if name in dev:
            assert f"`{dev[name]}`" in row and f"`{prod[name]}`" in row, name
    # Packaging, not an environment, sets where the assets are.
    if "AssetsBucket" in packaged:
        assert "AssetsBucket" not in dev
        assert f"`{BUCKET}`" in rows["AssetsBucket"]
    assert result.artifact_url in readme
    assert "--capabilities CAPABILITY_IAM" in readme


def test_writing_a_bundle_replaces_an_earlier_one_and_refuses_other_directories(tmp_path):
    out = tmp_path / "catalog"
    write_bundle({"portfolio.yaml": "a", "parameters/old.json": "{}"}, out)
    write_bundle({"portfolio.yaml": "b", "README.md": "r"}, out)
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()) == \
        ["README.md", "portfolio.yaml"]
    foreign = tmp_path / "src"
    foreign.mkdir()
    (foreign / "main.py").write_text("print()")
    with pytest.raises(UserError, match="not a Service Catalog bundle"):
        write_bundle({"portfolio.yaml": "b"}, foreign)
    assert (foreign / "main.py").exists()


# --- validation: the portfolio template is clean --------------------------------------------------

def lint(text: str):
    return cfnlint.api.lint(text, config=cfnlint.api.ManualArgs(regions=[REGION]))


VARIANTS = {
    "defaults": {},
    "sagemaker-with-principals-and-support": {
        "sagemaker_projects": True, "principals": ("role/DataScientist", "role/ml-*"),
        "support_email": "ml-platform@example.com", "support_url": "https://wiki.example.com"},
}


@pytest.mark.parametrize("variant", VARIANTS)
def test_the_portfolio_template_has_zero_cfn_lint_findings(s3, variant):
    result = make_handoff(s3, statements=real_statements(), **VARIANTS[variant])
    assert lint(result.files["portfolio.yaml"]) == []


def test_the_real_launch_role_allows_no_wildcard_action_and_star_only_where_unavoidable(s3):
    template = portfolio_of(make_handoff(s3, statements=real_statements()))
    statements = launch_statements(template)
    assert statements
    # The boundary's guards, and no adopting another alias's key into the project's by tag.
    guards = {g.Sid for g in boundary.escalation_guards("mlops-demo")} | {
        "AdoptNoAliasedKeyOfOthers"}
    for statement in statements:
        assert "NotAction" not in statement
        if statement["Effect"] == "Deny":
            assert statement["Sid"] in guards
            continue
        actions = set(as_list(statement["Action"]))
        assert not any(a == "*" or a.endswith(":*") for a in actions), actions
        if "*" in as_list(statement["Resource"]):
            if actions == {"s3:GetObject"}:
                assert statement["Condition"] == PROVISIONING_ARTIFACT_CONDITION
            else:
                assert actions <= STAR_RESOURCE_ACTIONS | _permissions_unscoped(), actions


def _permissions_unscoped() -> set[str]:
    """Actions IAM's service reference gives no resource type (permissions.py)."""
    return {a for a in actions_for(build_product(config.load(None), ["dev", "prod"]).requirements)
            if not permissions.supports_resource_scope(a)}


@pytest.mark.slow
def test_the_bundle_passes_validate_with_checkov(s3, tmp_path):
    from mlops_cfn.validate import validate

    for variant, fields in VARIANTS.items():
        out = tmp_path / variant
        write_bundle(make_handoff(s3, statements=real_statements(), **fields).files, out)
        report = validate([out / "portfolio.yaml"], security=True)
        assert report.ok, report.render()
        assert not report.findings, report.render()


# --- moto's Service Catalog creates what the template describes ----------------------------------

def test_moto_creates_the_portfolio_and_product_the_template_describes(s3):
    """moto 5.2 implements CreatePortfolio and CreateProduct but no AWS::ServiceCatalog::*
    CloudFormation type (and no associations, constraints or tag options), so the template's
    Portfolio and Product properties go to the API calls CloudFormation would make."""
    result = make_handoff(s3, sagemaker_projects=True, support_email="ml-platform@example.com")
    template = portfolio_of(result)
    catalog = boto3.client("servicecatalog", region_name=REGION)
    portfolio = only_resource(template, "AWS::ServiceCatalog::Portfolio")["Properties"]
    created = catalog.create_portfolio(
        DisplayName=portfolio["DisplayName"], ProviderName=portfolio["ProviderName"],
        Description=portfolio["Description"], Tags=portfolio["Tags"])["PortfolioDetail"]
    product = only_resource(template, "AWS::ServiceCatalog::CloudFormationProduct")["Properties"]
    (artifact,) = product["ProvisioningArtifactParameters"]
    made = catalog.create_product(
        Name=product["Name"], Owner=product["Owner"], Description=product["Description"],
        Distributor=product["Distributor"], SupportEmail=product["SupportEmail"],
        ProductType="CLOUD_FORMATION_TEMPLATE", Tags=product["Tags"],
        ProvisioningArtifactParameters=artifact)
    assert {"Key": "sagemaker:studio-visibility", "Value": "true"} in made["Tags"]
    described = catalog.describe_product(Name=product["Name"])["ProductViewSummary"]
    assert described["Owner"] == "mlops-demo"
    assert described["SupportEmail"] == "ml-platform@example.com"
    listed = catalog.list_portfolios()["PortfolioDetails"]
    assert [p["DisplayName"] for p in listed] == [created["DisplayName"]]


# --- the command line -----------------------------------------------------------------------------

def run(*args):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


@pytest.fixture
def in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_the_command_packages_and_writes_the_bundle(s3, in_tmp, monkeypatch):
    monkeypatch.setattr("mlops_cfn.permissions.deployment_statements", RecordingStatements())
    result = run("servicecatalog", "--bucket", BUCKET, "--out", "handoff",
                 "--principal", "role/DataScientist")
    assert result.exit_code == 0, result.output
    assert re.search(r"product version [0-9a-f]{16}: https://handoff-bucket\.s3\.", result.output)
    out = in_tmp / "handoff"
    assert {"portfolio.yaml", "packaged-root.yaml", "README.md", "parameters/dev.json",
            "parameters/prod.json", "templates/root.yaml"} <= \
        {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET)["Contents"]]
    assert any(k.endswith("/root.yaml") for k in keys)


def test_without_principals_the_command_says_nobody_can_launch_yet(s3, in_tmp, monkeypatch):
    monkeypatch.setattr("mlops_cfn.permissions.deployment_statements", RecordingStatements())
    result = CliRunner().invoke(cli, ["servicecatalog", "--bucket", BUCKET])
    assert result.exit_code == 0, result.output
    assert "nobody can launch the product" in result.stderr
    assert (in_tmp / "servicecatalog" / "portfolio.yaml").is_file()


def test_the_command_hands_off_one_environment_with_env(s3, in_tmp, monkeypatch):
    monkeypatch.setattr("mlops_cfn.permissions.deployment_statements", RecordingStatements())
    assert run("servicecatalog", "--bucket", BUCKET, "--env", "prod").exit_code == 0
    written = {p.name for p in (in_tmp / "servicecatalog" / "parameters").iterdir()}
    assert written == {"prod.json"}


@pytest.mark.parametrize("args, message", [
    (["--bucket", "no-such-bucket"], "bucket 'no-such-bucket' does not exist"),
    (["--bucket", BUCKET, "--principal", "DataScientist"], "--principal DataScientist"),
    (["--bucket", BUCKET, "--tag-option", "team"], "--tag-option team: expected KEY=VALUE"),
    (["--bucket", BUCKET, "--existing-tag-option", "team"],
     "--existing-tag-option team: not a TagOption ID"),
    (["--bucket", BUCKET, "--env", "qa"], "no environment 'qa'"),
    # Lambda reads code only from its own region, so the product's stacks need a bucket there.
    (["--bucket", BUCKET, "--region", "eu-west-1"],
     f"--bucket {BUCKET}: is in {REGION}, the product launches its stacks in eu-west-1"),
    (["--bucket", "Handoff_Bucket"], "bucket 'Handoff_Bucket': not a valid bucket name"),
])
def test_bad_input_exits_2_with_the_reason_and_uploads_nothing(s3, in_tmp, args, message):
    result = CliRunner().invoke(cli, ["servicecatalog", *args])
    assert result.exit_code == 2, result.output
    assert message in result.stderr
    assert not (in_tmp / "servicecatalog").exists()
    assert s3.list_objects_v2(Bucket=BUCKET).get("KeyCount", 0) == 0


def test_a_config_whose_environments_differ_structurally_needs_env(s3, in_tmp):
    data = default_data()
    data["environments"]["prod"]["stages"]["ingestion"]["consumer"]["enabled"] = False
    (in_tmp / "pipeline.yaml").write_text(json.dumps(data))
    result = CliRunner().invoke(cli, ["servicecatalog", "--bucket", BUCKET,
                                      "--config", "pipeline.yaml"])
    assert result.exit_code == 2
    assert "hand off one environment at a time with --env" in result.stderr


@pytest.fixture
def moto_server(monkeypatch):
    from moto.server import ThreadedMotoServer

    for name, value in (("AWS_ACCESS_KEY_ID", "testing"), ("AWS_SECRET_ACCESS_KEY", "testing"),
                        ("AWS_DEFAULT_REGION", REGION)):
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.mark.slow
def test_through_a_moto_server_the_bundle_uploads_and_the_catalog_accepts_it(moto_server, in_tmp):
    """End to end over HTTP: --endpoint-url reaches S3, and the Service Catalog API of the same
    server takes the portfolio and product the template describes."""
    s3 = boto3.client("s3", region_name=REGION, endpoint_url=moto_server)
    s3.create_bucket(Bucket=BUCKET)
    result = run("servicecatalog", "--bucket", BUCKET, "--endpoint-url", moto_server,
                 "--sagemaker-projects", "--principal", "role/SageMakerStudio")
    assert result.exit_code == 0, result.output
    template = cfn_flip.load_yaml((in_tmp / "servicecatalog" / "portfolio.yaml").read_text())
    product = only_resource(template, "AWS::ServiceCatalog::CloudFormationProduct")["Properties"]
    (artifact,) = product["ProvisioningArtifactParameters"]
    key = unquote(urlparse(artifact["Info"]["LoadTemplateFromURL"]).path.lstrip("/"))
    assert s3.head_object(Bucket=BUCKET, Key=key)["ContentLength"] > 0

    catalog = boto3.client("servicecatalog", region_name=REGION, endpoint_url=moto_server)
    portfolio = only_resource(template, "AWS::ServiceCatalog::Portfolio")["Properties"]
    catalog.create_portfolio(DisplayName=portfolio["DisplayName"],
                             ProviderName=portfolio["ProviderName"])
    catalog.create_product(Name=product["Name"], Owner=product["Owner"],
                           ProductType="CLOUD_FORMATION_TEMPLATE", Tags=product["Tags"],
                           ProvisioningArtifactParameters=artifact)
    assert catalog.describe_product(Name=product["Name"])["ProductViewSummary"]["Owner"] == \
        product["Owner"]
