"""Organization-wide hand-off: the portfolio shared with accounts and organizational units, the
launch role every recipient account needs, and the service-managed StackSets of stack-set.yaml.

Packaging is real (moto's in-process S3); the launch role's statements come from a recording
stub except where a test lints or scans the templates (tests/test_servicecatalog.py explains).
"""

import json

import boto3
import cfn_flip
import pytest
from click.testing import CliRunner
from moto import mock_aws

from mlops_cfn import config
from mlops_cfn.cli import cli
from mlops_cfn.errors import UserError
from mlops_cfn.servicecatalog import (default_catalog, handoff, share_with_organization,
                                      write_bundle)
from tests.helpers import config_with, default_data, only_resource, resources_of_type
from tests.test_servicecatalog import BUCKET, REGION, RecordingStatements, lint, real_statements

ACCOUNTS = ["222222222222", "111111111111"]
UNITS = ["ou-ab12-cd34ef56", "ou-ab12-gh78ij90"]
STACK_SET_UNITS = ["ou-ab12-kl12mn34", "r-ab12"]
SHARE = {"accounts": ACCOUNTS, "organizational_units": UNITS}
STACK_SET = {"enabled": True, "organizational_units": STACK_SET_UNITS, "regions": [REGION],
             "environment": "prod", "call_as": "DELEGATED_ADMIN",
             "max_concurrent_percentage": 50, "failure_tolerance_percentage": 10,
             "concurrency_mode": "SOFT_FAILURE_TOLERANCE",
             "retain_stacks_on_account_removal": True}


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


def organization(share=None, stack_set=None) -> dict:
    section = {}
    if share is not None:
        section["share"] = share
    if stack_set is not None:
        section["stack_set"] = stack_set
    return {"servicecatalog": section}


def make(s3, changes, statements=None, **catalog_fields):
    loaded = config_with(changes)
    catalog = default_catalog(loaded, list(loaded.merged), **catalog_fields)
    return handoff(loaded, BUCKET, catalog, s3=s3,
                   deployment_statements=statements or RecordingStatements())


def template(result, name) -> dict:
    return cfn_flip.load_yaml(result.files[name])


# --- account shares and the local launch role -----------------------------------------------------

def test_each_shared_account_gets_a_portfolio_share(s3):
    result = make(s3, organization({"accounts": ACCOUNTS, "share_tag_options": True}))
    shares = resources_of_type(template(result, "portfolio.yaml"),
                               "AWS::ServiceCatalog::PortfolioShare")
    assert sorted(s["Properties"]["AccountId"] for s in shares.values()) == sorted(ACCOUNTS)
    for share in shares.values():
        assert share["Properties"]["PortfolioId"] == {"Ref": "Portfolio"}
        assert share["Properties"]["ShareTagOptions"] is True


def test_organizational_units_are_not_shared_by_the_template(s3):
    """CloudFormation's PortfolioShare takes an AccountId only: units are `mlops-cfn share`'s."""
    result = make(s3, organization({"organizational_units": UNITS}))
    portfolio = template(result, "portfolio.yaml")
    assert not resources_of_type(portfolio, "AWS::ServiceCatalog::PortfolioShare")
    assert "mlops-cfn share --portfolio-id" in result.files["README.md"]


def test_a_shared_portfolio_launches_as_the_role_of_one_name_in_every_account(s3):
    result = make(s3, organization({"accounts": ACCOUNTS}))
    portfolio = template(result, "portfolio.yaml")
    constraint = only_resource(portfolio, "AWS::ServiceCatalog::LaunchRoleConstraint")
    assert constraint["Properties"]["LocalRoleName"] == "mlops-demo-servicecatalog-launch"
    assert "RoleArn" not in constraint["Properties"]
    # The role must exist in the catalog account before the constraint names it.
    assert "LaunchRole" in constraint["DependsOn"]
    role = only_resource(portfolio, "AWS::IAM::Role")
    assert role["Properties"]["RoleName"] == "mlops-demo-servicecatalog-launch"
    # launch-role.yaml: the same role, the same policies, for the recipients.
    recipient = template(result, "launch-role.yaml")
    assert only_resource(recipient, "AWS::IAM::Role") == role
    assert resources_of_type(recipient, "AWS::IAM::ManagedPolicy") == \
        resources_of_type(portfolio, "AWS::IAM::ManagedPolicy")


def test_the_launch_role_name_comes_from_the_config(s3):
    result = make(s3, organization({"accounts": ACCOUNTS, "launch_role_name": "ml-launch"}))
    constraint = only_resource(template(result, "portfolio.yaml"),
                               "AWS::ServiceCatalog::LaunchRoleConstraint")
    assert constraint["Properties"]["LocalRoleName"] == "ml-launch"
    assert only_resource(template(result, "launch-role.yaml"),
                         "AWS::IAM::Role")["Properties"]["RoleName"] == "ml-launch"


def test_an_unshared_portfolio_keeps_its_role_by_arn_and_no_organization_files(s3):
    result = make(s3, {})
    constraint = only_resource(template(result, "portfolio.yaml"),
                               "AWS::ServiceCatalog::LaunchRoleConstraint")
    assert constraint["Properties"]["RoleArn"] == {"Fn::GetAtt": ["LaunchRole", "Arn"]}
    assert "LocalRoleName" not in constraint["Properties"]
    assert not {"launch-role.yaml", "stack-set.yaml"} & result.files.keys()
    assert "CAPABILITY_IAM" in result.files["README.md"]


# --- the StackSets ------------------------------------------------------------------------------

def test_units_shared_with_get_the_launch_role_by_a_stack_set(s3):
    result = make(s3, organization({"organizational_units": UNITS}))
    stack_sets = template(result, "stack-set.yaml")
    (stack_set,) = resources_of_type(stack_sets, "AWS::CloudFormation::StackSet").values()
    properties = stack_set["Properties"]
    assert properties["PermissionModel"] == "SERVICE_MANAGED"
    assert properties["AutoDeployment"] == {"Enabled": True,
                                            "RetainStacksOnAccountRemoval": False}
    (group,) = properties["StackInstancesGroup"]
    assert group == {"DeploymentTargets": {"OrganizationalUnitIds": UNITS},
                     "Regions": [REGION]}
    assert properties["Capabilities"] == ["CAPABILITY_NAMED_IAM"]
    # The template StackSets read is launch-role.yaml, uploaded beside the packaged ones.
    key = properties["TemplateURL"].split(".amazonaws.com/", 1)[1]
    stored = s3.get_object(Bucket=BUCKET, Key=key)["Body"].read().decode()
    assert stored == result.files["launch-role.yaml"]


def test_the_launch_roles_stack_set_takes_call_as_and_preferences_from_the_section(s3):
    """A delegated administrator shares without rolling the pipeline out: the stack_set
    section's CallAs and preferences apply while it is not enabled."""
    result = make(s3, organization({"organizational_units": UNITS}, {
        "call_as": "DELEGATED_ADMIN", "max_concurrent_percentage": 100,
        "failure_tolerance_percentage": 20}))
    resources = template(result, "stack-set.yaml")["Resources"]
    assert set(resources) == {"LaunchRoleStackSet"}
    properties = resources["LaunchRoleStackSet"]["Properties"]
    assert properties["CallAs"] == "DELEGATED_ADMIN"
    assert properties["OperationPreferences"] == {
        "ConcurrencyMode": "STRICT_FAILURE_TOLERANCE", "FailureTolerancePercentage": 20,
        "MaxConcurrentPercentage": 100}
    assert "Deploy `stack-set.yaml` in a delegated administrator account" in \
        result.files["README.md"]


def test_the_pipeline_stack_set_follows_the_config(s3):
    result = make(s3, organization(stack_set=STACK_SET))
    stack_sets = template(result, "stack-set.yaml")
    properties = stack_sets["Resources"]["PipelineStackSet"]["Properties"]
    assert properties["PermissionModel"] == "SERVICE_MANAGED"
    assert properties["CallAs"] == "DELEGATED_ADMIN"
    assert properties["AutoDeployment"] == {"Enabled": True,
                                            "RetainStacksOnAccountRemoval": True}
    assert properties["StackInstancesGroup"] == [{
        "DeploymentTargets": {"OrganizationalUnitIds": STACK_SET_UNITS},
        "Regions": [REGION]}]
    assert properties["OperationPreferences"] == {
        "ConcurrencyMode": "SOFT_FAILURE_TOLERANCE", "FailureTolerancePercentage": 10,
        "MaxConcurrentPercentage": 50, "RegionConcurrencyType": "SEQUENTIAL",
        "RegionOrder": [REGION]}
    assert properties["Capabilities"] == ["CAPABILITY_IAM", "CAPABILITY_NAMED_IAM"]
    assert properties["TemplateURL"] == result.artifact_url
    # The chosen environment's values, as its parameters file has them, and its tags.
    prod = json.loads(result.files["parameters/prod.json"])
    assert {p["ParameterKey"]: p["ParameterValue"] for p in properties["Parameters"]} == \
        prod["Parameters"]
    assert {t["Key"]: t["Value"] for t in properties["Tags"]} == \
        {"mlops-cfn:project": "mlops-demo", **prod["Tags"]}
    assert properties["StackSetName"] == "mlops-demo-prod"
    # No unit is shared with: no launch role to roll out.
    assert "LaunchRoleStackSet" not in stack_sets["Resources"]


def test_parallel_regions_have_no_order_and_auto_deployment_off_retains_nothing(s3):
    result = make(s3, organization(stack_set={
        "enabled": True, "organizational_units": STACK_SET_UNITS, "regions": [REGION], "environment": "dev",
        "region_concurrency": "PARALLEL", "auto_deployment": False}))
    properties = template(result, "stack-set.yaml")["Resources"]["PipelineStackSet"][
        "Properties"]
    assert properties["AutoDeployment"] == {"Enabled": False}
    assert properties["OperationPreferences"]["RegionConcurrencyType"] == "PARALLEL"
    assert "RegionOrder" not in properties["OperationPreferences"]
    assert properties["CallAs"] == "SELF"


def test_one_environment_handed_off_is_the_stack_sets_without_naming_it(s3):
    changes = organization(stack_set={"enabled": True, "organizational_units": ["r-ab12"],
                                      "regions": [REGION]})
    loaded = config_with(changes)
    catalog = default_catalog(loaded, ["prod"])
    result = handoff(loaded, BUCKET, catalog, s3=s3, environments=["prod"],
                     deployment_statements=RecordingStatements())
    properties = template(result, "stack-set.yaml")["Resources"]["PipelineStackSet"][
        "Properties"]
    values = {p["ParameterKey"]: p["ParameterValue"] for p in properties["Parameters"]}
    assert values["EnvironmentName"] == "prod"


@pytest.mark.parametrize("changes, sagemaker, message", [
    (organization(stack_set={"enabled": True, "organizational_units": ["r-ab12"],
                                      "regions": [REGION]}), False,
     "servicecatalog.stack_set.environment: is required when the bundle hands off several "
     "environments (dev, prod)"),
    (organization(stack_set={**STACK_SET, "environment": "qa"}), False,
     "servicecatalog.stack_set.environment: 'qa' is not handed off"),
    (organization(stack_set={**STACK_SET, "regions": [REGION, "eu-west-1"]}), False,
     "servicecatalog.stack_set.regions: eu-west-1: not the region of the bucket"),
    (organization(stack_set=STACK_SET), True,
     "servicecatalog.stack_set: cannot be honoured with --sagemaker-projects"),
])
def test_a_stack_set_that_cannot_be_honoured_is_refused_before_anything_is_uploaded(
        s3, changes, sagemaker, message):
    with pytest.raises(UserError) as raised:
        make(s3, changes, sagemaker_projects=sagemaker)
    assert message in str(raised.value)
    assert s3.list_objects_v2(Bucket=BUCKET).get("KeyCount", 0) == 0


# --- the templates are clean ----------------------------------------------------------------------

ORGANIZATION = organization(SHARE, STACK_SET)


def test_the_organization_templates_have_zero_cfn_lint_findings(s3):
    result = make(s3, ORGANIZATION, statements=real_statements())
    for name in ("portfolio.yaml", "launch-role.yaml", "stack-set.yaml"):
        assert lint(result.files[name]) == [], name


@pytest.mark.slow
def test_the_organization_bundle_passes_validate_with_checkov(s3, tmp_path):
    from mlops_cfn.validate import validate

    write_bundle(make(s3, ORGANIZATION, statements=real_statements()).files, tmp_path / "b")
    report = validate([tmp_path / "b" / name for name in
                       ("portfolio.yaml", "launch-role.yaml", "stack-set.yaml")], security=True)
    assert report.ok, report.render()
    assert not report.findings, report.render()


# --- config errors --------------------------------------------------------------------------------

def _write(tmp_path, changes) -> str:
    data = default_data()
    data.update(changes)
    (tmp_path / "pipeline.yaml").write_text(json.dumps(data))
    return "pipeline.yaml"


@pytest.mark.parametrize("changes, message", [
    (organization({"accounts": [111111111111]}),
     "pipeline.yaml: servicecatalog.share.accounts: must be twelve-digit account ids in quotes"),
    (organization({"accounts": ["11111111111"]}),
     "pipeline.yaml: servicecatalog.share.accounts[0]: must be twelve digits, quoted"),
    (organization({"accounts": ["111111111111", "111111111111"]}),
     "servicecatalog.share.accounts: lists account 111111111111 more than once"),
    (organization({"organizational_units": ["ou-bad"]}),
     "servicecatalog.share.organizational_units[0]: must be an organizational unit id"),
    (organization({"organizational_units": ["r-ab12"]}),
     "servicecatalog.share.organizational_units[0]: must be an organizational unit id"),
    (organization({"launch_role_name": "no spaces"}),
     "servicecatalog.share.launch_role_name: must be 1-64 letters"),
    (organization(stack_set={**STACK_SET, "organizational_units": []}),
     "servicecatalog.stack_set: enabled: true needs organizational_units"),
    (organization(stack_set={**STACK_SET, "regions": []}),
     "servicecatalog.stack_set: enabled: true needs regions"),
    (organization(stack_set={**STACK_SET, "region_concurrency": "SERIAL"}),
     "servicecatalog.stack_set.region_concurrency: must be one of 'SEQUENTIAL' or 'PARALLEL'"),
    (organization(stack_set={**STACK_SET, "call_as": "ADMIN"}),
     "servicecatalog.stack_set.call_as: must be one of 'SELF' or 'DELEGATED_ADMIN'"),
    (organization(stack_set={**STACK_SET, "max_concurrent_percentage": 0}),
     "servicecatalog.stack_set.max_concurrent_percentage: must be >= 1 (got 0)"),
    (organization(stack_set={**STACK_SET, "failure_tolerance_percentage": 101}),
     "servicecatalog.stack_set.failure_tolerance_percentage: must be <= 100 (got 101)"),
    (organization(stack_set={**STACK_SET, "auto_deployment": False}),
     "servicecatalog.stack_set: retain_stacks_on_account_removal: true needs "
     "auto_deployment: true"),
    (organization(stack_set={**STACK_SET, "organizational_units": ["ou-nope"]}),
     "servicecatalog.stack_set.organizational_units[0]: must be an organizational unit id"),
    (organization(stack_set={**STACK_SET, "regions": ["mars"]}),
     "servicecatalog.stack_set.regions[0]: must be a region name"),
    (organization(stack_set={"enabled": True, "regions": [REGION]}),
     "servicecatalog.stack_set: enabled: true needs organizational_units"),
    (organization({"acounts": ACCOUNTS}), "servicecatalog.share.acounts"),
    ({"environments": {"dev": {"servicecatalog": {"share": {"accounts": ACCOUNTS}}}}},
     "environments.dev.servicecatalog: is set once for the whole file"),
])
def test_a_bad_servicecatalog_section_exits_2_in_one_line_and_writes_nothing(
        s3, tmp_path, monkeypatch, changes, message):
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli, ["servicecatalog", "--bucket", BUCKET,
                                      "--config", _write(tmp_path, changes)])
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    assert message in lines[0]
    assert not (tmp_path / "servicecatalog").exists()
    assert s3.list_objects_v2(Bucket=BUCKET).get("KeyCount", 0) == 0


def test_the_servicecatalog_section_changes_no_rendered_template():
    plain = config.load(None)
    shared = config_with(organization(SHARE, STACK_SET))
    from mlops_cfn.config import structure_of

    assert structure_of(shared.config) == structure_of(plain.config)


# --- the command writes the organization bundle ---------------------------------------------------

def test_the_command_writes_launch_role_and_stack_sets(s3, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("mlops_cfn.permissions.deployment_statements", RecordingStatements())
    result = CliRunner().invoke(cli, ["servicecatalog", "--bucket", BUCKET, "--out", "handoff",
                                      "--config", _write(tmp_path, ORGANIZATION)])
    assert result.exit_code == 0, result.output
    assert "portfolio.yaml, launch-role.yaml, stack-set.yaml, README.md" in result.stdout
    out = tmp_path / "handoff"
    assert {"portfolio.yaml", "launch-role.yaml", "stack-set.yaml", "README.md"} <= \
        {p.name for p in out.iterdir()}
    readme = (out / "README.md").read_text()
    # The platform team's steps, in order.
    steps = ["enable-aws-organizations-access", "Deploy `portfolio.yaml`", "mlops-cfn share",
             "Deploy `stack-set.yaml` in a delegated administrator account",
             "deploy `launch-role.yaml`"]
    positions = [readme.index(step) for step in steps]
    assert positions == sorted(positions)
    assert '"aws:PrincipalOrgID"' in readme and f"arn:aws:s3:::{BUCKET}/*" in readme
    assert "--capabilities CAPABILITY_NAMED_IAM" in readme


# --- sharing with organizational units (mlops-cfn share) ------------------------------------------

class FakeCatalog:
    """Service Catalog as far as sharing goes: moto 5.2 lists no organizational-unit shares
    (DescribePortfolioShares answers only ACCOUNT and ORGANIZATION) and has no
    GetAWSOrganizationsAccessStatus, so idempotency is shown against this stand-in."""

    def __init__(self, status="ENABLED", existing=(), page_size=1):
        self.status = status
        self.shares = list(existing)
        self.page_size = page_size
        self.created = []

    def get_aws_organizations_access_status(self):
        return {"AccessStatus": self.status}

    def describe_portfolio_shares(self, PortfolioId, Type, PageToken=None):
        assert Type == "ORGANIZATIONAL_UNIT"
        start = int(PageToken or 0)
        page = self.shares[start:start + self.page_size]
        answer = {"PortfolioShareDetails": [{"PrincipalId": u, "Type": Type} for u in page]}
        if start + self.page_size < len(self.shares):
            answer["NextPageToken"] = str(start + self.page_size)
        return answer

    def create_portfolio_share(self, PortfolioId, OrganizationNode, ShareTagOptions):
        self.created.append((PortfolioId, OrganizationNode, ShareTagOptions))
        self.shares.append(OrganizationNode["Value"])
        return {"PortfolioShareToken": f"share-{OrganizationNode['Value']}"}


def test_sharing_creates_only_the_missing_unit_shares_across_pages():
    catalog = FakeCatalog(existing=["ou-zz99-aaaaaaaa", UNITS[0]])
    result = share_with_organization(catalog, "port-abc", UNITS, share_tag_options=True)
    assert result.existing == [UNITS[0]]
    assert result.created == [UNITS[1]]
    assert catalog.created == [("port-abc", {"Type": "ORGANIZATIONAL_UNIT", "Value": UNITS[1]},
                                True)]
    # A second run finds both and creates nothing.
    again = share_with_organization(catalog, "port-abc", UNITS)
    assert again.created == [] and again.existing == sorted(UNITS)
    assert len(catalog.created) == 1


def test_sharing_needs_service_catalogs_organizations_access():
    catalog = FakeCatalog(status="DISABLED")
    with pytest.raises(UserError, match="enable-aws-organizations-access"):
        share_with_organization(catalog, "port-abc", UNITS)
    assert catalog.created == []


@pytest.fixture
def organizations_access(monkeypatch):
    """moto 5.2 has no GetAWSOrganizationsAccessStatus: answer it as an enabled account does."""
    from moto.core.responses import ActionResult
    from moto.servicecatalog.responses import ServiceCatalogResponse

    monkeypatch.setattr(ServiceCatalogResponse, "get_aws_organizations_access_status",
                        lambda self: ActionResult({"AccessStatus": "ENABLED"}), raising=False)


def test_the_share_command_shares_the_deployed_portfolio_with_the_units(
        aws, organizations_access, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    catalog = boto3.client("servicecatalog", region_name=REGION)
    portfolio = catalog.create_portfolio(DisplayName="p", ProviderName="p")["PortfolioDetail"]
    result = CliRunner().invoke(cli, ["share", "--portfolio-id", portfolio["Id"],
                                      "--config", _write(tmp_path, organization(SHARE))])
    assert result.exit_code == 0, result.output
    assert [line.split(":")[0] for line in result.stdout.splitlines()] == UNITS


def test_the_share_command_without_units_is_refused(aws, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli, ["share", "--portfolio-id", "port-abc", "--config",
                                      _write(tmp_path, organization({"accounts": ACCOUNTS}))])
    assert result.exit_code == 2
    assert "servicecatalog.share.organizational_units: lists no organizational unit" in \
        result.stderr


# --- moto deploys what the templates describe -----------------------------------------------------

def test_moto_shares_the_portfolio_with_each_account_the_template_names(s3):
    """moto 5.2 has no AWS::ServiceCatalog::* CloudFormation type, so each PortfolioShare's
    properties go to the CreatePortfolioShare call CloudFormation's handler makes."""
    portfolio_template = template(make(s3, organization(SHARE)), "portfolio.yaml")
    catalog = boto3.client("servicecatalog", region_name=REGION)
    portfolio = only_resource(portfolio_template, "AWS::ServiceCatalog::Portfolio")["Properties"]
    portfolio_id = catalog.create_portfolio(
        DisplayName=portfolio["DisplayName"],
        ProviderName=portfolio["ProviderName"])["PortfolioDetail"]["Id"]
    for share in resources_of_type(portfolio_template,
                                   "AWS::ServiceCatalog::PortfolioShare").values():
        properties = share["Properties"]
        catalog.create_portfolio_share(PortfolioId=portfolio_id, AccountId=properties["AccountId"],
                                       ShareTagOptions=properties["ShareTagOptions"])
    listed = catalog.describe_portfolio_shares(PortfolioId=portfolio_id, Type="ACCOUNT")
    assert sorted(d["PrincipalId"] for d in listed["PortfolioShareDetails"]) == sorted(ACCOUNTS)


def test_moto_rolls_the_launch_role_out_to_the_accounts_of_the_shared_unit(s3):
    """moto 5.2 runs a service-managed StackSet's instances in the organization's accounts (not
    the AWS::CloudFormation::StackSet type itself, nor AutoDeployment or OperationPreferences),
    so the template's properties go to CreateStackSet and CreateStackInstances: the role of
    the launch constraint's name then exists in the member account."""
    organizations = boto3.client("organizations", region_name=REGION)
    organizations.create_organization(FeatureSet="ALL")
    root = organizations.list_roots()["Roots"][0]["Id"]
    unit = organizations.create_organizational_unit(ParentId=root, Name="ml")[
        "OrganizationalUnit"]["Id"]
    status = organizations.create_account(AccountName="ml-team", Email="ml@example.com")
    member = status["CreateAccountStatus"]["AccountId"]
    organizations.move_account(AccountId=member, SourceParentId=root, DestinationParentId=unit)

    result = make(s3, organization({"organizational_units": [unit]}))
    properties = template(result, "stack-set.yaml")["Resources"]["LaunchRoleStackSet"][
        "Properties"]
    cloudformation = boto3.client("cloudformation", region_name=REGION)
    cloudformation.create_stack_set(
        StackSetName=properties["StackSetName"], TemplateURL=properties["TemplateURL"],
        PermissionModel=properties["PermissionModel"], Capabilities=properties["Capabilities"],
        CallAs=properties["CallAs"],
        AutoDeployment=properties["AutoDeployment"])
    (group,) = properties["StackInstancesGroup"]
    cloudformation.create_stack_instances(
        StackSetName=properties["StackSetName"], Regions=group["Regions"],
        DeploymentTargets=group["DeploymentTargets"])
    instances = cloudformation.list_stack_instances(
        StackSetName=properties["StackSetName"])["Summaries"]
    assert [(i["Account"], i["Region"]) for i in instances] == [(member, REGION)]

    credentials = boto3.client("sts", region_name=REGION).assume_role(
        RoleArn=f"arn:aws:iam::{member}:role/OrganizationAccountAccessRole",
        RoleSessionName="check")["Credentials"]
    iam = boto3.client("iam", region_name=REGION,
                       aws_access_key_id=credentials["AccessKeyId"],
                       aws_secret_access_key=credentials["SecretAccessKey"],
                       aws_session_token=credentials["SessionToken"])
    role = iam.get_role(RoleName="mlops-demo-servicecatalog-launch")["Role"]
    assert role["Arn"] == f"arn:aws:iam::{member}:role/mlops-demo-servicecatalog-launch"
    trust = role["AssumeRolePolicyDocument"]
    assert trust["Statement"][0]["Principal"] == {"Service": "servicecatalog.amazonaws.com"}


# --- the example ----------------------------------------------------------------------------------

def test_the_organization_example_hands_off_what_it_says(s3):
    loaded = config.load("examples/servicecatalog-organization.yaml")
    catalog = default_catalog(loaded, list(loaded.merged))
    result = handoff(loaded, BUCKET, catalog, s3=s3,
                     deployment_statements=RecordingStatements())
    shares = resources_of_type(template(result, "portfolio.yaml"),
                               "AWS::ServiceCatalog::PortfolioShare")
    assert sorted(s["Properties"]["AccountId"] for s in shares.values()) == \
        ["210987654321", "310987654321"]
    resources = template(result, "stack-set.yaml")["Resources"]
    launch = resources["LaunchRoleStackSet"]["Properties"]
    assert launch["StackInstancesGroup"][0]["DeploymentTargets"] == {
        "OrganizationalUnitIds": ["ou-ab12-cd34ef56"]}
    pipeline = resources["PipelineStackSet"]["Properties"]
    assert pipeline["StackInstancesGroup"][0]["DeploymentTargets"] == {
        "OrganizationalUnitIds": ["ou-ab12-kl12mn34"]}
    assert pipeline["CallAs"] == launch["CallAs"] == "DELEGATED_ADMIN"
    assert pipeline["OperationPreferences"]["FailureTolerancePercentage"] == 10


def test_moto_takes_the_pipeline_stack_set_as_the_template_describes_it(s3):
    """moto 5.2 runs a service-managed StackSet's instances by creating the template's resources
    in-process, which the pipeline's nested stacks do not survive: the StackSet is created from
    the template's properties and read back, its instances are not."""
    result = make(s3, organization(stack_set=STACK_SET))
    properties = template(result, "stack-set.yaml")["Resources"]["PipelineStackSet"][
        "Properties"]
    cloudformation = boto3.client("cloudformation", region_name=REGION)
    cloudformation.create_stack_set(
        StackSetName=properties["StackSetName"], TemplateURL=properties["TemplateURL"],
        PermissionModel=properties["PermissionModel"], Capabilities=properties["Capabilities"],
        Parameters=properties["Parameters"], Tags=properties["Tags"])
    described = cloudformation.describe_stack_set(StackSetName=properties["StackSetName"])[
        "StackSet"]
    assert described["PermissionModel"] == "SERVICE_MANAGED"
    # What the URL serves is the packaged root of the bundle.
    assert described["TemplateBody"] == result.files["packaged-root.yaml"]
    assert {p["ParameterKey"]: p["ParameterValue"] for p in described["Parameters"]} == \
        {p["ParameterKey"]: p["ParameterValue"] for p in properties["Parameters"]}
