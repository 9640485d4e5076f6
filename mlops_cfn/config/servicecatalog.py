"""The `servicecatalog` section: who the hand-off bundle's portfolio is shared with, and the
optional service-managed StackSet that rolls the pipeline out to organizational units.

Only `mlops-cfn servicecatalog` (and `mlops-cfn share`) read it: no stage's template depends on
it, so it is set once for the whole file (config/__init__.py, _BASE_ONLY) and left out of the
structure environments are compared by (structure_of).
"""

from typing import Annotated, Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from .base import Model, described_pattern

ACCOUNT_ID_PATTERN = described_pattern(
    r"^[0-9]{12}$", "twelve digits, quoted (e.g. '210987654321')")
# AWS Organizations' ids (Organizations API Reference, OrganizationalUnit.Id and Root.Id).
ORGANIZATIONAL_UNIT_PATTERN = described_pattern(
    r"^ou-[0-9a-z]{4,32}-[a-z0-9]{8,32}$",
    "an organizational unit id: ou-, 4-32 lowercase letters or digits, -, 8-32 more "
    "(e.g. ou-ab12-cd34ef56)")
DEPLOYMENT_TARGET_PATTERN = described_pattern(
    r"^(ou-[0-9a-z]{4,32}-[a-z0-9]{8,32}|r-[0-9a-z]{4,32})$",
    "an organizational unit id (ou-ab12-cd34ef56) or the organization's root id (r-ab12)")
REGION_PATTERN = described_pattern(
    r"^[a-z]{2}(-[a-z]+)+-[0-9]{1,2}$", "a region name, e.g. eu-west-1")
# IAM's role name rule (IAM API Reference, CreateRole RoleName): 1-64 of these characters.
ROLE_NAME_PATTERN = described_pattern(
    r"^[\w+=,.@-]{1,64}$", "1-64 letters, digits and +=,.@_-")

AccountId = Annotated[str, Field(pattern=ACCOUNT_ID_PATTERN)]


# What one item of each listing field is, for "lists ... more than once".
_ITEM = {"accounts": "account", "organizational_units": "organizational unit",
         "regions": "region"}


def _unique(value: list, what: str) -> list:
    repeated = sorted({item for item in value if value.count(item) > 1})
    if repeated:
        raise ValueError(f"lists {what} {', '.join(repeated)} more than once")
    return value


def _quoted(value):
    # YAML reads unquoted digits as a number, and an account id's leading zeros are lost.
    if isinstance(value, list) and any(isinstance(v, int) and not isinstance(v, bool)
                                       for v in value):
        raise ValueError("must be twelve-digit account ids in quotes: YAML reads unquoted "
                         "digits as a number, which loses an account id's leading zeros")
    return value


class ShareConfig(Model):
    """Accounts and organizational units the portfolio is shared with."""

    accounts: Annotated[
        list[AccountId],
        Field(description="Accounts the portfolio is shared with, twelve digits in quotes: "
                          "one AWS::ServiceCatalog::PortfolioShare each in portfolio.yaml. "
                          "Each account's administrator accepts the share and associates "
                          "its own principals (an account share carries none)."),
    ] = []
    organizational_units: Annotated[
        list[Annotated[str, Field(pattern=ORGANIZATIONAL_UNIT_PATTERN)]],
        Field(description="Organizational units (ou-...) the portfolio is shared with, every "
                          "account in them included. CloudFormation shares only with accounts, "
                          "so `mlops-cfn share --portfolio-id ID` makes these shares "
                          "(CreatePortfolioShare with an OrganizationNode) from the management "
                          "account or a delegated administrator, once Service Catalog's AWS "
                          "Organizations access is enabled; run again, it creates only the "
                          "missing ones."),
    ] = []
    share_tag_options: Annotated[
        bool, Field(description="Share the portfolio's tag options with the recipients.")
    ] = False
    launch_role_name: Annotated[
        str | None,
        Field(pattern=ROLE_NAME_PATTERN,
              description="Name of the launch role when the portfolio is shared. A shared "
                          "portfolio's launch constraint names the role by name "
                          "(LocalRoleName), and Service Catalog uses the role of that name in "
                          "the account that launches, so the bundle's launch-role.yaml must "
                          "be deployed in every recipient account (the StackSet of "
                          "stack-set.yaml does it for the organizational units). Unset: "
                          "<project>-servicecatalog-launch."),
    ] = None

    @field_validator("accounts", mode="before")
    @classmethod
    def _accounts_quoted(cls, value):
        return _quoted(value)

    @field_validator("accounts", "organizational_units")
    @classmethod
    def _no_repeats(cls, value, info: ValidationInfo):
        return _unique(value, _ITEM[info.field_name])

    @property
    def shared(self) -> bool:
        return bool(self.accounts or self.organizational_units)


class StackSetConfig(Model):
    """A service-managed StackSet deploying the packaged pipeline to organizational units."""

    enabled: Annotated[
        bool, Field(description="Render stack-set.yaml with the pipeline's StackSet.")
    ] = False
    organizational_units: Annotated[
        list[Annotated[str, Field(pattern=DEPLOYMENT_TARGET_PATTERN)]],
        Field(description="Organizational units (ou-...) or the root (r-...) whose accounts "
                          "get the pipeline, at least one when enabled: a service-managed "
                          "StackSet deploys to organizational units only."),
    ] = []
    regions: Annotated[
        list[Annotated[str, Field(pattern=REGION_PATTERN)]],
        Field(description="Regions of the stack instances, at least one when enabled, in the "
                          "order a SEQUENTIAL deployment takes them. Lambda reads its code only "
                          "from a bucket in its own region, so each must be the --bucket's "
                          "region."),
    ] = []
    environment: Annotated[
        str | None,
        Field(description="The environment whose parameter values the StackSet deploys. "
                          "Unset: the one environment handed off (--env), required when the "
                          "bundle holds several."),
    ] = None
    auto_deployment: Annotated[
        bool,
        Field(description="Deploy to accounts that join the organizational units later (and "
                          "remove the stacks of accounts that leave, unless "
                          "retain_stacks_on_account_removal)."),
    ] = True
    retain_stacks_on_account_removal: Annotated[
        bool,
        Field(description="Keep an account's stack (and its data) when the account leaves "
                          "the organizational units; only with auto_deployment."),
    ] = False
    call_as: Annotated[
        Literal["SELF", "DELEGATED_ADMIN"],
        Field(description="SELF when stack-set.yaml is deployed in the management account, "
                          "DELEGATED_ADMIN in a delegated administrator account for "
                          "CloudFormation StackSets. This and the operation preferences below "
                          "apply to the launch role's StackSet too, enabled or not."),
    ] = "SELF"
    region_concurrency: Annotated[
        Literal["SEQUENTIAL", "PARALLEL"],
        Field(description="Deploy the regions one after the other (in the order of regions) "
                          "or all at once."),
    ] = "SEQUENTIAL"
    concurrency_mode: Annotated[
        Literal["STRICT_FAILURE_TOLERANCE", "SOFT_FAILURE_TOLERANCE"],
        Field(description="STRICT_FAILURE_TOLERANCE lowers the concurrency to at most one "
                          "more account than the failure tolerance; SOFT_FAILURE_TOLERANCE "
                          "keeps max_concurrent_percentage whatever fails."),
    ] = "STRICT_FAILURE_TOLERANCE"
    max_concurrent_percentage: Annotated[
        int, Field(ge=1, le=100, description="Percentage of an organizational unit's accounts "
                                              "deployed at once, per region (rounded down, at "
                                              "least one).")
    ] = 25
    failure_tolerance_percentage: Annotated[
        int, Field(ge=0, le=100, description="Percentage of accounts, per region, that may "
                                              "fail before the operation stops in that region "
                                              "(rounded down).")
    ] = 0

    @field_validator("organizational_units", "regions")
    @classmethod
    def _no_repeats(cls, value, info: ValidationInfo):
        return _unique(value, _ITEM[info.field_name])

    @model_validator(mode="after")
    def _targets_when_enabled(self):
        if self.enabled and not self.organizational_units:
            raise ValueError("enabled: true needs organizational_units: a service-managed "
                             "StackSet (and its auto-deployment) targets organizational units "
                             "(ou-...) or the root (r-...)")
        if self.enabled and not self.regions:
            raise ValueError("enabled: true needs regions: the regions of the stack instances")
        if not self.auto_deployment and self.retain_stacks_on_account_removal:
            raise ValueError("retain_stacks_on_account_removal: true needs auto_deployment: "
                             "true (CloudFormation retains stacks only of accounts that "
                             "auto-deployment removes)")
        return self


class ServiceCatalogConfig(Model):
    """What `mlops-cfn servicecatalog` adds to the hand-off bundle for an organization."""

    share: Annotated[
        ShareConfig,
        Field(description="Share the portfolio with accounts and organizational units."),
    ] = ShareConfig()
    stack_set: Annotated[
        StackSetConfig,
        Field(description="A service-managed StackSet in stack-set.yaml that deploys the "
                          "packaged pipeline, with one environment's parameter values, to "
                          "every account of organizational units."),
    ] = StackSetConfig()
