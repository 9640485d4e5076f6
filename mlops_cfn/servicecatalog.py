"""Service Catalog hand-off: the pipeline as one product of a portfolio the platform team deploys.

`handoff(loaded, bucket, catalog)` renders the pipeline, packages it to S3 (package.py) and returns
the files of a hand-off bundle; the CLI writes them with `write_bundle`. Everything else here is
pure: the same config, bucket and packaged URL always give the same bytes.

The bundle (`mlops-cfn servicecatalog --out DIR`):
    portfolio.yaml        the template the platform team deploys in the catalog account:
                            Portfolio, one CloudFormationProduct (the packaged root as its
                            provisioning artifact, named by the content hash of the templates),
                            PortfolioProductAssociation, LaunchRoleConstraint with its launch role
                            (policies derived from what the templates contain: permissions.py),
                            PortfolioPrincipalAssociation per principal, TagOption + association
                            per tag option
    packaged-root.yaml    the packaged root the product's provisioning artifact points at
    templates/            the rendered templates and assets (before packaging), for review
    parameters/<env>.json every environment's parameter values (CodePipeline/Service Catalog form)
    README.md             for the platform team: what to deploy, and every parameter of the product
    launch-role.yaml      (portfolio shared: config servicecatalog.share) the launch role, to deploy
                            in every recipient account
    stack-set.yaml        (portfolio shared with organizational units, or servicecatalog.stack_set)
                            service-managed StackSets: the launch role to the shared organizational
                            units, the pipeline itself to the StackSet's

Sharing (config/servicecatalog.py). An account share is an AWS::ServiceCatalog::PortfolioShare in
portfolio.yaml. CloudFormation's PortfolioShare takes only an AccountId, so organizational-unit
shares are CreatePortfolioShare calls with an OrganizationNode, made by `mlops-cfn share` after
the portfolio is deployed (`share_with_organization`): a command rather than a custom resource,
because only the management account or a delegated administrator may make them, once Service
Catalog's AWS Organizations access is enabled, and a custom resource would add a Lambda function
(its role, code bucket and logs) to the portfolio for one idempotent call per unit. A shared
portfolio's launch constraint names its role by name (AWS::ServiceCatalog::LaunchRoleConstraint,
LocalRoleName: account-agnostic, the role of that name in the account that launches; it must
exist there and in the account that creates the constraint), so the launch role gets that name in
the catalog account and launch-role.yaml creates the same role in each recipient account.

With `sagemaker_projects` the product is what SageMaker Projects offers in Studio: the root takes
the two parameters SageMaker passes (SageMakerProjectName, SageMakerProjectId), the product is
tagged `sagemaker:studio-visibility=true`, and the environments' values are written as
`<env>-config.json` beside the templates, as SageMaker's own project templates ship them
(`staging-config.json`, `prod-config.json`). Every project launched from the product is a
deployment of its own, so physical names come from the project's id, not from an environment
name a second project would repeat (as SageMaker's own templates name resources
`sagemaker-project-${SageMakerProjectId}`): the root passes the id, without its hyphen, to the
nested stacks as their EnvironmentName, and the product's names are built for that 13-character
token (naming.environment_token).

One product serves every environment: environments that differ only in values render identical
templates (docs/architecture.md, "Environments: values as parameters"), so their parameters
files are the only difference. Environments whose templates differ cannot share a product; hand
them off one at a time (`--env`).

No delivery pipeline in the product: Service Catalog names the stacks it provisions
(`SC-<account>-pp-<id>`), while the cicd stage's pipeline deploys stacks of fixed names
(`<project>-<env>`); its first run would create a second copy of the pipeline beside the
provisioned one, colliding on every physical name. So the product leaves the cicd stage out
(saying so in one line, `Product.notes`), and a config that enables it explicitly
(`stages.cicd.enabled: true`) cannot be handed off: that is an error.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Sequence

import awacs.cloudformation as cloudformation
import awacs.s3 as s3
from awacs.aws import Allow, Condition, Statement, StringEquals
from troposphere import GetAtt, Join, Output, Parameter, Ref, Split, Sub, Tags, Template, iam
from troposphere import cloudformation as cfn
from troposphere.cloudformation import Stack
from troposphere import servicecatalog as sc

from . import __version__, naming, permissions, pipeline, policies
from .config import LoadedConfig, PipelineConfig
from .config.servicecatalog import StackSetConfig
from .errors import UserError
from .settings import ENVIRONMENT_NAME
from .render import PARAMETERS_FILE, render_files, template_text

if TYPE_CHECKING:  # package.py is imported only when packaging runs
    from .package import Packaged

PORTFOLIO_FILE = "portfolio.yaml"
PACKAGED_ROOT_FILE = "packaged-root.yaml"
README_FILE = "README.md"
TEMPLATES_DIR = "templates"
PARAMETERS_DIR = "parameters"
LAUNCH_ROLE_FILE = "launch-role.yaml"
STACK_SET_FILE = "stack-set.yaml"
# The local launch role's name when the config names none (at most 32 + 21 characters of IAM's 64).
LAUNCH_ROLE_SUFFIX = "-servicecatalog-launch"
# What the pipeline's templates need from CloudFormation (deploy.CAPABILITIES): the nested stacks
# create IAM roles, some of them named.
STACK_SET_CAPABILITIES = ["CAPABILITY_IAM", "CAPABILITY_NAMED_IAM"]

# SageMaker Projects lists a product in Studio only with this tag, and passes these two
# parameters to every project template it provisions (the template must declare them).
STUDIO_VISIBILITY_TAG = ("sagemaker:studio-visibility", "true")
SAGEMAKER_PROJECT_NAME = "SageMakerProjectName"
SAGEMAKER_PROJECT_ID = "SageMakerProjectId"
# What SageMaker's CreateProject accepts as ProjectName (Amazon SageMaker API Reference,
# CreateProject): a leading digit is a valid project name.
SAGEMAKER_PROJECT_NAME_PATTERN = r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,31}$"
SAGEMAKER_PROJECT_NAME_MAX_LENGTH = 32
# The ids SageMaker generates, `p-` and 12 lowercase letters or digits (p-ypcnnfv6l5mn; its own
# project templates put them in S3 bucket names: sagemaker-project-${SageMakerProjectId}). The
# API admits up to 20 characters; every physical name here is sized for this form, so another
# would be refused at launch by this pattern rather than by a name limit halfway through.
SAGEMAKER_PROJECT_ID_PATTERN = r"^p-[a-z0-9]{12}$"
# The id without its hyphen, in the environment's place in every physical name.
SAGEMAKER_PROJECT_TOKEN_LENGTH = 13

# Service Catalog names the stack of a provisioned product `SC-<account>-pp-<id>`, and
# CloudFormation names nested stacks after their parent, so this pattern covers the product's
# root and every nested stack and no other stack of the account.
PROVISIONED_STACKS = "stack/SC-${AWS::AccountId}-pp-*/*"

NESTED_STACK = permissions.NESTED_STACK
# Managed policies one role may have attached (IAM's default quota).
MAX_MANAGED_POLICIES = permissions.MAX_MANAGED_POLICIES
# The prefix of the stacks Service Catalog provisions (PROVISIONED_STACKS), for permissions.py.
PROVISIONED_STACK_PREFIX = "SC-${AWS::AccountId}-pp-"

_TAG_KEY = re.compile(r"^[\w.:/=+\-@ ]{1,128}$")
_IAM_NAME = r"[\w+=,.@/*?-]+"
_PRINCIPAL_ARN = re.compile(rf"^arn:[a-z-]+:iam::(\d{{12}})?:(role|user|group)/({_IAM_NAME})$")
_PRINCIPAL_SHORT = re.compile(rf"^(role|user|group)/({_IAM_NAME})$")
_TAG_OPTION_ID = re.compile(r"^tag-[A-Za-z0-9]{1,96}$")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


@dataclass(frozen=True)
class Catalog:
    """What the platform team sees of the product, and who may launch it."""

    portfolio_name: str
    provider: str
    product_name: str
    owner: str
    description: str
    support_email: str | None = None
    support_url: str | None = None
    support_description: str | None = None
    # IAM principals allowed to launch: full ARNs or `role/Name`, `group/Name`, `user/Name`
    # (in the account the portfolio is deployed to); `*` or `?` make a name pattern.
    principals: tuple[str, ...] = ()
    # Tags end users may (for a key with several values: must pick one to) put on the product.
    tag_options: tuple[tuple[str, str], ...] = ()
    # TagOptions already in the account (IDs, tag-...), associated instead of created: a
    # TagOption is unique per account and region, so a second portfolio re-uses the first's.
    existing_tag_options: tuple[str, ...] = ()
    sagemaker_projects: bool = False
    # Sharing (config servicecatalog.share): accounts get a PortfolioShare in the template,
    # organizational units a CreatePortfolioShare call from `mlops-cfn share`.
    shared_accounts: tuple[str, ...] = ()
    shared_units: tuple[str, ...] = ()
    share_tag_options: bool = False
    # Set when the portfolio is shared: the launch constraint's LocalRoleName.
    local_launch_role: str | None = None

    @property
    def shared(self) -> bool:
        return bool(self.shared_accounts or self.shared_units)


def default_catalog(loaded: LoadedConfig, environments: Sequence[str], **given: Any) -> Catalog:
    """The catalog from the config, with any `given` field (not None) taking precedence.

    Tag options default to the tags `deploy` puts on every stack (the config's tags, the project,
    and one `mlops-cfn:environment` value per environment), so a provisioned product carries the
    same tags as a pipeline deployed with `mlops-cfn deploy`. With existing tag options given,
    none are created unless named: the defaults are the ones most likely to exist already.
    """
    config = loaded.base
    defaults: dict[str, Any] = {
        "portfolio_name": f"{config.project} MLOps pipeline"[:100],
        "provider": config.project,
        "product_name": config.project,
        "owner": config.project,
        "description": config.description,
        "tag_options": () if given.get("existing_tag_options")
        else default_tag_options(loaded, environments),
    }
    share = config.servicecatalog.share
    if share.shared:
        defaults.update(
            shared_accounts=tuple(share.accounts), shared_units=tuple(share.organizational_units),
            share_tag_options=share.share_tag_options,
            local_launch_role=share.launch_role_name or f"{config.project}{LAUNCH_ROLE_SUFFIX}")
    values = {**defaults, **{k: v for k, v in given.items() if v not in (None, ())}}
    values["principals"] = tuple(values.get("principals", ()))
    values["tag_options"] = tuple(values["tag_options"])
    values["existing_tag_options"] = tuple(values.get("existing_tag_options", ()))
    catalog = Catalog(**values)
    check_catalog(catalog)
    return catalog


def default_tag_options(loaded: LoadedConfig, environments: Sequence[str]) -> list[tuple[str, str]]:
    options: set[tuple[str, str]] = set()
    for name in environments:
        built_tags = {"mlops-cfn:project": loaded.base.project, "mlops-cfn:environment": name,
                      **loaded.merged[name].tags}
        options.update(built_tags.items())
    return sorted(options)


def check_catalog(catalog: Catalog) -> None:
    """Refuse values Service Catalog would reject, each with the option that set it."""
    problems = []
    for principal in catalog.principals:
        try:
            principal_arn(principal)
        except UserError as error:
            problems.extend(error.problems)
    for key, value in catalog.tag_options:
        if not _TAG_KEY.match(key) or key.lower().startswith("aws:"):
            problems.append(f"--tag-option {key}={value}: the key must be 1-128 characters "
                            f"(letters, digits, spaces and _.:/=+-@) and not start with aws:")
        if not 1 <= len(value) <= 256:
            problems.append(f"--tag-option {key}={value}: the value must be 1-256 characters")
    for option_id in catalog.existing_tag_options:
        if not _TAG_OPTION_ID.match(option_id):
            problems.append(f"--existing-tag-option {option_id}: not a TagOption ID (tag- "
                            f"followed by letters and digits, as `aws servicecatalog "
                            f"list-tag-options` shows)")
    if catalog.support_email is not None and not _EMAIL.match(catalog.support_email):
        problems.append(f"--support-email {catalog.support_email}: not an email address")
    if catalog.support_url is not None and not re.match(r"^https?://\S+$", catalog.support_url):
        problems.append(f"--support-url {catalog.support_url}: must start with https:// or http://")
    for option, value, limit in (("--portfolio-name", catalog.portfolio_name, 100),
                                 ("--provider", catalog.provider, 50),
                                 ("--owner", catalog.owner, 8191),
                                 ("--product-name", catalog.product_name, 8191)):
        if not 1 <= len(value) <= limit:
            problems.append(f"{option} {value!r}: must be 1-{limit} characters")
    if problems:
        raise UserError(*problems)


def principal_arn(text: str) -> tuple[str | Sub, str]:
    """(PrincipalARN, PrincipalType) for one `--principal`.

    A short form names a principal of the account the portfolio is deployed in. A name with `*`
    or `?` is an IAM_PATTERN, which Service Catalog matches by name in every account the portfolio
    is shared with, and which must therefore carry no account.
    """
    short = _PRINCIPAL_SHORT.match(text)
    if short:
        kind, name = short.groups()
        if _is_pattern(name):
            return Sub(f"arn:${{AWS::Partition}}:iam:::{kind}/{name}"), "IAM_PATTERN"
        return policies.arn("iam", f"{kind}/{name}", regional=False), "IAM"
    full = _PRINCIPAL_ARN.match(text)
    if full:
        account, _, name = full.groups()
        if account is None:
            return text, "IAM_PATTERN"
        if _is_pattern(name):
            raise UserError(f"--principal {text}: a name pattern (* or ?) must not name an "
                            f"account: write arn:<partition>:iam:::{full.group(2)}/{name}")
        return text, "IAM"
    raise UserError(f"--principal {text}: expected an IAM role, user or group ARN, or "
                    f"role/NAME, group/NAME, user/NAME")


def _is_pattern(name: str) -> bool:
    return "*" in name or "?" in name


# --- the product: rendered templates shared by the environments --------------------------------

@dataclass(frozen=True)
class Product:
    """The templates one product version consists of, and each environment's values."""

    # Relative path -> content: the root, the stage templates, the assets (no parameters file).
    files: dict[str, str | bytes]
    # Environment -> its parameters.json text.
    parameters: dict[str, str]
    # The root template as data (parameters for the README).
    root: dict
    resource_types: tuple[str, ...]
    sagemaker_projects: bool = False
    # What the templates require of the launch role (permissions.template_requirements).
    requirements: tuple[str, ...] = ()
    # What the product leaves out of the config, one line each (the cicd stage).
    notes: tuple[str, ...] = ()

    @property
    def version(self) -> str:
        return content_version(self.files)


def build_product(loaded: LoadedConfig, environments: Sequence[str],
                  sagemaker_projects: bool = False) -> Product:
    """Render `environments`; they must share their templates to be one product."""
    loaded, notes = product_config(loaded, environments)
    rendered = {}
    root: dict = {}
    for name in environments:
        if sagemaker_projects:
            # Names sized for a project id in the environment's place (module docstring).
            with naming.environment_token(SAGEMAKER_PROJECT_TOKEN_LENGTH):
                built = pipeline.build(loaded.for_environment(name))
            # A SageMaker project names itself (its id): its values carry no EnvironmentName.
            built = pipeline.Pipeline(
                built.environment, built.protected, sagemaker_root(built.root), built.stages,
                {k: v for k, v in built.parameters.items() if k != ENVIRONMENT_NAME},
                built.tags)
        else:
            built = pipeline.build(loaded.for_environment(name))
        rendered[name] = render_files(built)
        root = root or built.root.to_dict()
    first, *others = environments
    shared = {k: v for k, v in rendered[first].items() if k != PARAMETERS_FILE}
    problems = []
    for name in others:
        theirs = {k: v for k, v in rendered[name].items() if k != PARAMETERS_FILE}
        differing = sorted(k for k in shared.keys() | theirs.keys()
                           if shared.get(k) != theirs.get(k))
        if differing:
            problems.append(
                f"{loaded.source}: environments {first} and {name} render different templates "
                f"({', '.join(differing[:5])}): one product needs one set of templates; hand "
                f"off one environment at a time with --env")
    if problems:
        raise UserError(*problems)
    parameters = {name: files[PARAMETERS_FILE] for name, files in rendered.items()}
    # What the templates going to S3 create and resolve, read from their text.
    templates = [_template_data(text) for name, text in shared.items()
                 if name.endswith(".yaml") and "/" not in name]
    requirements = set().union(*(permissions.template_requirements(t) for t in templates))
    return Product(shared, parameters, root, tuple(sorted(resource_types(templates))),
                   sagemaker_projects, tuple(sorted(requirements)), tuple(notes))


def product_config(loaded: LoadedConfig,
                   environments: Sequence[str]) -> tuple[LoadedConfig, list[str]]:
    """The config as a Service Catalog product can deploy it: without the cicd stage (module
    docstring), and a note saying so when it was on; an error when the file enables it
    explicitly, in its shared settings or in one of `environments`."""
    explicit = []
    if _explicitly_on(loaded.base):
        explicit.append("stages.cicd.enabled")
    for name in environments:
        override = ((loaded.base.environments.get(name) or {}).get("stages") or {}).get("cicd")
        if isinstance(override, dict) and override.get("enabled") is True:
            explicit.append(f"environments.{name}.stages.cicd.enabled")
    if explicit:
        raise UserError(*(
            f"{loaded.source}: {field}: true cannot be honoured in a Service Catalog product "
            f"(Service Catalog names the provisioned stacks, the delivery pipeline deploys "
            f"fixed stack names): set it to false or remove it for the hand-off"
            for field in explicit))
    notes = []
    if any(loaded.merged[name].stages.cicd.enabled for name in environments):
        notes.append("the cicd stage is left out of the product: Service Catalog names the "
                     "stacks it provisions, and the delivery pipeline deploys stacks of fixed "
                     "names")
    without = dataclasses.replace(
        loaded, base=_without_cicd(loaded.base),
        merged={name: _without_cicd(c) for name, c in loaded.merged.items()})
    return without, notes


def _explicitly_on(config: PipelineConfig) -> bool:
    cicd = config.stages.cicd
    return cicd.enabled and "enabled" in cicd.model_fields_set


def _without_cicd(config: PipelineConfig) -> PipelineConfig:
    stages = config.stages.model_copy(update={
        "cicd": config.stages.cicd.model_copy(update={"enabled": False})})
    return config.model_copy(update={"stages": stages})


def sagemaker_root(root: Template) -> Template:
    """The root as a SageMaker project template: it declares the two parameters SageMaker
    passes when a Studio user creates a project (provisioning fails on an undeclared one), and
    names every resource after the project's id (module docstring).

    The name's constraints are CreateProject's; the id's, the form SageMaker generates (see
    SAGEMAKER_PROJECT_ID_PATTERN). SageMaker fills both.
    """
    project = copy.deepcopy(root)
    project.add_parameter(Parameter(
        SAGEMAKER_PROJECT_NAME, Type="String", MinLength=1,
        MaxLength=SAGEMAKER_PROJECT_NAME_MAX_LENGTH,
        AllowedPattern=SAGEMAKER_PROJECT_NAME_PATTERN,
        Description="Name of the SageMaker project (set by SageMaker)"))
    project.add_parameter(Parameter(
        SAGEMAKER_PROJECT_ID, Type="String", AllowedPattern=SAGEMAKER_PROJECT_ID_PATTERN,
        ConstraintDescription="a project id as SageMaker generates it: p- and 12 lowercase "
                              "letters or digits",
        Description="Service generated id of the SageMaker project (set by SageMaker); names "
                    "every resource of the project"))
    # The id without its hyphen (p-ypcnnfv6l5mn -> pypcnnfv6l5mn): what an environment name
    # may hold, sized for by build_product.
    token = Join("", Split("-", Ref(SAGEMAKER_PROJECT_ID)))
    for resource in project.resources.values():
        if isinstance(resource, Stack) and ENVIRONMENT_NAME in resource.Parameters:
            resource.Parameters[ENVIRONMENT_NAME] = token
    if ENVIRONMENT_NAME in project.parameters:
        del project.parameters[ENVIRONMENT_NAME]
        interface = project.metadata.get("AWS::CloudFormation::Interface", {})
        for group in interface.get("ParameterGroups", []):
            group["Parameters"] = [p for p in group["Parameters"] if p != ENVIRONMENT_NAME]
        interface["ParameterGroups"] = [g for g in interface.get("ParameterGroups", [])
                                        if g["Parameters"]]
    project.add_output(Output(
        "SageMakerProject", Description="The SageMaker project this pipeline belongs to",
        Value=Sub(f"${{{SAGEMAKER_PROJECT_NAME}}} (${{{SAGEMAKER_PROJECT_ID}}})")))
    return project


def resource_types(templates: Iterable[dict]) -> set[str]:
    """Every resource type the templates create."""
    return {resource["Type"] for template in templates
            for resource in (template.get("Resources") or {}).values()}


def content_version(files: dict[str, str | bytes]) -> str:
    """A short hash of the templates and assets: the same content, the same version name."""
    digest = hashlib.sha256()
    for name in sorted(files):
        content = files[name]
        data = content.encode("utf-8") if isinstance(content, str) else content
        digest.update(name.encode("utf-8") + b"\0" + hashlib.sha256(data).digest())
    return digest.hexdigest()[:16]


# --- the launch role ------------------------------------------------------------------------------

def provisioning_statements(bucket: str, prefix: str = "") -> list[Statement]:
    """What Service Catalog does with the launch role besides creating the resources: run the
    product's CloudFormation stacks, read the product's template from the bucket Service Catalog
    keeps it in, and read the packaged templates and assets (CloudFormation fetches nested
    templates, and Lambda its code, with the caller's credentials)."""
    stacks = policies.arn("cloudformation", PROVISIONED_STACKS)
    # Each statement is what "AWS Service Catalog launch constraints" (Service Catalog
    # Administrator Guide) asks of a launch role for a CloudFormation product: run the stacks,
    # read templates, and read the provisioning artifact by its servicecatalog:provisioning tag.
    return [
        Statement(
            Sid="ProvisionedStacks",
            Effect=Allow,
            Action=[cloudformation.CreateStack, cloudformation.UpdateStack,
                    cloudformation.DeleteStack, cloudformation.DescribeStacks,
                    cloudformation.DescribeStackEvents, cloudformation.DescribeStackResource,
                    cloudformation.DescribeStackResources, cloudformation.GetTemplate,
                    cloudformation.SetStackPolicy, cloudformation.CreateChangeSet,
                    cloudformation.DescribeChangeSet, cloudformation.ExecuteChangeSet,
                    cloudformation.DeleteChangeSet, cloudformation.TagResource,
                    cloudformation.UntagResource],
            Resource=[stacks],
        ),
        Statement(
            Sid="ReadTemplates",
            Effect=Allow,
            # Neither action supports resource-level permissions: `*` is the only resource
            # AWS accepts (both only read a template the caller passes).
            Action=[cloudformation.ValidateTemplate, cloudformation.GetTemplateSummary],
            Resource=["*"],
        ),
        Statement(
            Sid="ReadProvisioningArtifact",
            Effect=Allow,
            # Service Catalog copies the product's template into a bucket it owns, whose name is
            # not known in advance; AWS documents this object-tag condition as the scope.
            Action=[s3.GetObject],
            Resource=["*"],
            Condition=Condition(StringEquals(
                "s3:ExistingObjectTag/servicecatalog:provisioning", "true")),
        ),
        # Nested templates and Lambda code are read with the stack operation's credentials
        # (AWS::CloudFormation::Stack TemplateURL; AWS::Lambda::Function Code.S3Bucket).
        Statement(
            Sid="ReadPackagedTemplatesAndAssets",
            Effect=Allow,
            Action=[s3.GetObject],
            Resource=[policies.arn("s3", f"{bucket}/{prefix}*", regional=False,
                                   in_account=False)],
        ),
    ]


def launch_role_statements(requirements: Iterable[str], bucket: str, prefix: str = "",
                           deployment_statements: Callable[..., list[Statement]]
                           | None = None, project: str | None = None) -> list[Statement]:
    """Provisioning plus what deploying the templates' requirements takes (permissions.py).

    The nested stacks' calls reach only the stacks Service Catalog provisions, and no role is
    passed to CloudFormation: Service Catalog runs the stacks with the launch role itself.
    With `project`, roles and policies only those of the provisioned stacks (CloudFormation
    names them after the stack: `SC-<account>-pp-...`), each role under the project's
    permissions boundary, which the product's root creates (boundary.py), and keys and bucket
    policies only the project's.
    """
    if deployment_statements is None:
        deployment_statements = permissions.deployment_statements
    managed = sorted({*requirements, NESTED_STACK})
    scope = ({} if project is None else
             {"project": project, "iam_names": PROVISIONED_STACK_PREFIX, "creates_boundary": True})
    return [*provisioning_statements(bucket, prefix),
            *deployment_statements(managed, stacks=PROVISIONED_STACK_PREFIX,
                                   service_role=False, **scope)]


def policy_chunks(statements: Sequence[Statement]) -> list[list[Statement]]:
    """The statements packed into as few managed policies as hold them (permissions.py)."""
    chunks = [list(document.Statement) for document in permissions.policy_documents(statements)]
    if len(chunks) > MAX_MANAGED_POLICIES:
        raise UserError(f"the launch role needs {len(chunks)} managed policies, more than IAM "
                        f"attaches to one role by default ({MAX_MANAGED_POLICIES})")
    return chunks


# --- the portfolio template -----------------------------------------------------------------------

def portfolio_template(catalog: Catalog, product: Product, artifact_url: str,
                       statements: Sequence[Statement], project: str) -> Template:
    """Portfolio, product, launch constraint, principals and tag options for one product version.

    `statements` are the launch role's (see `launch_role_statements`).
    """
    version = product.version
    t = Template(Description=f"{project}: Service Catalog portfolio offering the pipeline as a "
                             f"product (version {version}, mlops-cfn {__version__})")
    tags = [("mlops-cfn:project", project)]
    product_tags = tags + ([STUDIO_VISIBILITY_TAG] if catalog.sagemaker_projects else [])
    portfolio = t.add_resource(sc.Portfolio(
        "Portfolio",
        DisplayName=catalog.portfolio_name,
        ProviderName=catalog.provider,
        Description=catalog.description,
        Tags=Tags(**dict(tags)),
    ))
    support = {key: value for key, value in (("SupportEmail", catalog.support_email),
                                             ("SupportUrl", catalog.support_url),
                                             ("SupportDescription", catalog.support_description))
               if value is not None}
    product_resource = t.add_resource(sc.CloudFormationProduct(
        "Product",
        Name=catalog.product_name,
        Owner=catalog.owner,
        Description=catalog.description,
        Distributor="mlops-cfn",
        ProvisioningArtifactParameters=[sc.ProvisioningArtifactProperties(
            Name=version,
            Description=f"Templates with content hash {version}, rendered by mlops-cfn "
                        f"{__version__}",
            Type="CLOUD_FORMATION_TEMPLATE",
            Info=sc.Info(LoadTemplateFromURL=artifact_url),
        )],
        Tags=Tags(**dict(product_tags)),
        **support,
    ))
    association = t.add_resource(sc.PortfolioProductAssociation(
        "PortfolioProduct", PortfolioId=Ref(portfolio), ProductId=Ref(product_resource)))

    role = add_launch_role(t, statements, project, catalog.local_launch_role)
    if catalog.local_launch_role is None:
        constraint = {"DependsOn": [association.title], "RoleArn": GetAtt(role, "Arn")}
    else:
        # Shared: the role of this name in the launching account (AWS::ServiceCatalog::
        # LaunchRoleConstraint, LocalRoleName); it must exist here too when the constraint is
        # created.
        constraint = {"DependsOn": [association.title, role.title],
                      "LocalRoleName": catalog.local_launch_role}
    t.add_resource(sc.LaunchRoleConstraint(
        "LaunchConstraint",
        # The product must be in the portfolio before a constraint can name the pair.
        Description=f"Launch {catalog.product_name} as its own role, not the end user's",
        PortfolioId=Ref(portfolio),
        ProductId=Ref(product_resource),
        **constraint,
    ))
    for account in sorted(set(catalog.shared_accounts)):
        # AWS::ServiceCatalog::PortfolioShare: one account per share (organizational units are
        # `mlops-cfn share`'s, module docstring).
        t.add_resource(sc.PortfolioShare(
            f"Share{account}", PortfolioId=Ref(portfolio), AccountId=account,
            ShareTagOptions=catalog.share_tag_options))

    for principal in sorted(set(catalog.principals)):
        arn, kind = principal_arn(principal)
        t.add_resource(sc.PortfolioPrincipalAssociation(
            f"Principal{_short_hash(principal)}",
            PortfolioId=Ref(portfolio), PrincipalARN=arn, PrincipalType=kind))
    for key, value in sorted(set(catalog.tag_options)):
        suffix = _short_hash(f"{key}={value}")
        option = t.add_resource(sc.TagOption(f"TagOption{suffix}", Key=key, Value=value,
                                             Active=True))
        t.add_resource(sc.TagOptionAssociation(
            f"TagOptionAssociation{suffix}", ResourceId=Ref(portfolio),
            TagOptionId=Ref(option)))
    for option_id in sorted(set(catalog.existing_tag_options)):
        t.add_resource(sc.TagOptionAssociation(
            f"ExistingTagOptionAssociation{_short_hash(option_id)}", ResourceId=Ref(portfolio),
            TagOptionId=option_id))

    t.add_output(Output("PortfolioId", Value=Ref(portfolio),
                        Description="Share this portfolio or add principals to it"))
    t.add_output(Output("ProductId", Value=Ref(product_resource),
                        Description="The pipeline product"))
    t.add_output(Output("ProvisioningArtifactIds",
                        Value=GetAtt(product_resource, "ProvisioningArtifactIds"),
                        Description=f"Provisioning artifact of version {version}"))
    t.add_output(Output("LaunchRoleArn", Value=GetAtt(role, "Arn"),
                        Description="Role Service Catalog provisions the pipeline with"))
    return t


def add_launch_role(t: Template, statements: Sequence[Statement], project: str,
                    name: str | None = None) -> iam.Role:
    """The launch role and its managed policies; `name` for a shared portfolio's local role."""
    role = t.add_resource(iam.Role(
        "LaunchRole",
        Description=f"Service Catalog launch role of the {project} pipeline product",
        # Service Catalog assumes the role for the end user; the launch constraint is what binds
        # it to this product.
        AssumeRolePolicyDocument=policies.trusted_by("servicecatalog.amazonaws.com"),
        **({} if name is None else {"RoleName": name}),
    ))
    for index, chunk in enumerate(policy_chunks(statements), start=1):
        t.add_resource(iam.ManagedPolicy(
            f"LaunchPolicy{index}",
            Description=f"What the {project} pipeline creates, part {index}",
            PolicyDocument=policies.document(chunk),
            Roles=[Ref(role)],
        ))
    return role


def launch_role_template(catalog: Catalog, statements: Sequence[Statement], project: str,
                         version: str) -> Template:
    """The shared portfolio's launch role, for every recipient account: Service Catalog uses the
    role named by the constraint's LocalRoleName in the account that launches the product.

    Its statements are the catalog account's: they name the account they are deployed in through
    pseudo parameters, and the packaged templates by their bucket (which the recipients must be
    allowed to read: README).
    """
    assert catalog.local_launch_role is not None
    t = Template(Description=f"{project}: the launch role Service Catalog provisions the shared "
                             f"pipeline product with (version {version}, mlops-cfn "
                             f"{__version__})")
    role = add_launch_role(t, statements, project, catalog.local_launch_role)
    t.add_output(Output("LaunchRoleArn", Value=GetAtt(role, "Arn"),
                        Description="Role Service Catalog provisions the pipeline with"))
    return t


def _short_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:8].upper()


# --- rolling out to an organization: StackSets and organizational-unit shares ---------------------

# What the launch role's StackSet takes without a `stack_set` section: the section's defaults.
_STACK_SET_DEFAULTS = StackSetConfig()


def operation_preferences(stack_set: StackSetConfig) -> cfn.OperationPreferences:
    """The StackSet's OperationPreferences, from the config (percentages rather than counts, so
    they follow the organizational units as accounts join)."""
    order = ({"RegionOrder": list(stack_set.regions)}
             if stack_set.region_concurrency == "SEQUENTIAL" else {})
    return cfn.OperationPreferences(
        ConcurrencyMode=stack_set.concurrency_mode,
        FailureTolerancePercentage=stack_set.failure_tolerance_percentage,
        MaxConcurrentPercentage=stack_set.max_concurrent_percentage,
        RegionConcurrencyType=stack_set.region_concurrency,
        **order)


def stack_set_template(project: str, version: str, stack_set: StackSetConfig | None,
                       pipeline_url: str | None = None, parameters: dict | None = None,
                       launch_role: tuple[str, Sequence[str], str] | None = None,
                       preferences: StackSetConfig | None = None) -> Template:
    """Service-managed StackSets for the management account (CallAs SELF) or a delegated
    administrator (DELEGATED_ADMIN).

    `stack_set` with `pipeline_url` (the packaged root) and `parameters` (one environment's
    parameters.json): the pipeline in every account of the configured organizational units and
    regions. `launch_role` = (template URL, organizational units, region): the shared
    portfolio's launch role in every account of the units the portfolio is shared with, in one
    region (IAM is global), following accounts that join them, with the CallAs and operation
    preferences of `preferences` (the config's stack_set section, enabled or not).
    """
    preferences = preferences or stack_set or _STACK_SET_DEFAULTS
    t = Template(Description=f"{project}: service-managed StackSets rolling the pipeline "
                             f"(version {version}, mlops-cfn {__version__}) out to "
                             f"organizational units")
    if launch_role is not None:
        url, units, region = launch_role
        t.add_resource(cfn.StackSet(
            "LaunchRoleStackSet",
            StackSetName=f"{project}{LAUNCH_ROLE_SUFFIX}",
            Description=f"The {project} product's Service Catalog launch role in every account "
                        f"the portfolio is shared with",
            PermissionModel="SERVICE_MANAGED",
            CallAs=preferences.call_as,
            # Accounts joining a shared unit get the role, leaving ones lose it with the share.
            AutoDeployment=cfn.AutoDeployment(Enabled=True, RetainStacksOnAccountRemoval=False),
            Capabilities=["CAPABILITY_NAMED_IAM"],
            OperationPreferences=cfn.OperationPreferences(
                ConcurrencyMode=preferences.concurrency_mode,
                FailureTolerancePercentage=preferences.failure_tolerance_percentage,
                MaxConcurrentPercentage=preferences.max_concurrent_percentage),
            StackInstancesGroup=[cfn.StackInstances(
                DeploymentTargets=cfn.DeploymentTargets(OrganizationalUnitIds=list(units)),
                Regions=[region])],
            TemplateURL=url,
            Tags=Tags(**{"mlops-cfn:project": project}),
        ))
    if stack_set is not None and pipeline_url is not None:
        values = (parameters or {}).get("Parameters", {})
        tags = (parameters or {}).get("Tags", {})
        auto = cfn.AutoDeployment(Enabled=stack_set.auto_deployment)
        if stack_set.auto_deployment:
            # CloudFormation takes it only with Enabled (AWS::CloudFormation::StackSet
            # AutoDeployment).
            auto.RetainStacksOnAccountRemoval = stack_set.retain_stacks_on_account_removal
        t.add_resource(cfn.StackSet(
            "PipelineStackSet",
            StackSetName=f"{project}-{values.get(ENVIRONMENT_NAME, 'pipeline')}",
            Description=f"The {project} MLOps pipeline in every account of the organizational "
                        f"units",
            PermissionModel="SERVICE_MANAGED",
            CallAs=stack_set.call_as,
            AutoDeployment=auto,
            Capabilities=list(STACK_SET_CAPABILITIES),
            OperationPreferences=operation_preferences(stack_set),
            Parameters=[cfn.Parameter(ParameterKey=k, ParameterValue=v)
                        for k, v in sorted(values.items())],
            StackInstancesGroup=[cfn.StackInstances(
                DeploymentTargets=cfn.DeploymentTargets(
                    OrganizationalUnitIds=list(stack_set.organizational_units)),
                Regions=list(stack_set.regions))],
            TemplateURL=pipeline_url,
            Tags=Tags(**{"mlops-cfn:project": project, **tags}),
        ))
    for name in t.resources:
        t.add_output(Output(name, Value=Ref(name), Description=f"Id of {name}"))
    return t


@dataclass(frozen=True)
class Shared:
    created: list[str] = field(default_factory=list)  # units shared with by this call
    existing: list[str] = field(default_factory=list)  # units the portfolio was shared with
    tokens: list[str] = field(default_factory=list)  # PortfolioShareTokens of the new shares


def share_with_organization(catalog, portfolio_id: str, units: Sequence[str],
                            share_tag_options: bool = False) -> Shared:
    """Share `portfolio_id` with the organizational units it is not shared with yet.

    `catalog` is a Service Catalog client of the account that owns the portfolio: the management
    account or a delegated administrator (CreatePortfolioShare with an OrganizationNode), after
    Service Catalog's AWS Organizations access is enabled (EnableAWSOrganizationsAccess, run once
    in the management account). DescribePortfolioShares first, so a second run creates nothing.
    """
    status = catalog.get_aws_organizations_access_status().get("AccessStatus")
    if status != "ENABLED":
        raise UserError(f"Service Catalog's AWS Organizations access is {status}: run `aws "
                        f"servicecatalog enable-aws-organizations-access` once in the "
                        f"management account, then share from it or from a delegated "
                        f"administrator")
    existing: set[str] = set()
    token: str | None = None
    while True:
        page = catalog.describe_portfolio_shares(
            PortfolioId=portfolio_id, Type="ORGANIZATIONAL_UNIT",
            **({"PageToken": token} if token else {}))
        existing.update(d["PrincipalId"] for d in page.get("PortfolioShareDetails", []))
        token = page.get("NextPageToken")
        if not token:
            break
    result = Shared(existing=sorted(existing & set(units)))
    for unit in units:
        if unit in existing:
            continue
        answer = catalog.create_portfolio_share(
            PortfolioId=portfolio_id, ShareTagOptions=share_tag_options,
            OrganizationNode={"Type": "ORGANIZATIONAL_UNIT", "Value": unit})
        result.created.append(unit)
        if answer.get("PortfolioShareToken"):
            result.tokens.append(answer["PortfolioShareToken"])
    return result


# --- the README for the platform team -------------------------------------------------------------

def readme(catalog: Catalog, product: Product, artifact_url: str, project: str,
           packaged_root: dict | None = None, stack_set: StackSetConfig | None = None,
           bucket: str | None = None, call_as: str = "SELF") -> str:
    """Markdown for the platform team: what the bundle holds, how to deploy it, every parameter.

    `packaged_root` (the root as packaging left it) supplies defaults packaging set, such as the
    assets bucket.
    """
    version = product.version
    environments = list(product.parameters)
    values = {env: json.loads(text).get("Parameters", {})
              for env, text in product.parameters.items()}
    parameters = dict(product.root.get("Parameters", {}))
    for name, spec in ((packaged_root or {}).get("Parameters") or {}).items():
        parameters[name] = {**parameters.get(name, {}), **spec}
    values_file = ("`<env>-config.json`" if product.sagemaker_projects
                   else f"`{PARAMETERS_DIR}/<env>.json`")
    lines = [
        f"# {catalog.product_name}: Service Catalog hand-off",
        "",
        f"The {project} MLOps pipeline as one Service Catalog product, version `{version}` "
        f"(a hash of the templates; rendered by mlops-cfn {__version__}).",
        "",
        "## What is here",
        "",
        f"- `{PORTFOLIO_FILE}`: the portfolio, the product (its provisioning artifact is "
        f"{artifact_url}), a launch constraint with its launch role, principal associations "
        f"and tag options.",
        f"- `{PACKAGED_ROOT_FILE}`: the packaged root template that URL serves.",
        f"- `{TEMPLATES_DIR}/`: the rendered templates and assets, for review.",
        f"- {values_file}: each environment's parameter values "
        f"({', '.join(environments)}), in the form CodePipeline's CloudFormation action "
        f"accepts as TemplateConfiguration.",
        *([f"- `{LAUNCH_ROLE_FILE}`: the launch role `{catalog.local_launch_role}`, for every "
           f"account the portfolio is shared with."] if catalog.shared else []),
        *([f"- `{STACK_SET_FILE}`: service-managed StackSets for the organization "
           f"(\"Organization-wide hand-off\" below)."]
          if catalog.shared_units or stack_set is not None else []),
        "",
        "## Deploy the portfolio",
        "",
        "```",
        f"aws cloudformation deploy --template-file {PORTFOLIO_FILE} "
        f"--stack-name {project}-catalog --capabilities "
        + ("CAPABILITY_NAMED_IAM" if catalog.shared else "CAPABILITY_IAM"),
        "```",
        "",
        "The launch role may do what the CloudFormation registry lists for the resource types "
        "the templates contain (and a short documented supplement), and runs only "
        "the stacks Service Catalog provisions (`SC-<account>-pp-*`); it creates and changes "
        "only their roles, each under the product's permissions boundary (the boundary stack's "
        "`<project>-<environment>-permissions-boundary`), and administers only the keys tagged "
        "`mlops-cfn:project` with the project. End users need Service "
        "Catalog end-user access (e.g. AWSServiceCatalogEndUserFullAccess), not the "
        "permissions of the resources.",
        "",
        *(f"Note: {note}." for note in product.notes),
        *([""] if product.notes else []),
        *([] if product.sagemaker_projects else [
            "Physical names come from `EnvironmentName`: give every provisioned product in one "
            "account and region its own value (a second one with the same value collides on "
            "bucket, stream, function and other names).", ""]),
    ]
    if catalog.principals:
        lines += ["Principals who may launch the product:", ""]
        lines += [f"- `{p}`" for p in sorted(set(catalog.principals))]
    else:
        lines += ["No principal is associated yet: add users, groups or roles to the portfolio "
                  "(`mlops-cfn servicecatalog --principal role/NAME`, or in the console)."]
    lines += [""]
    if catalog.tag_options:
        lines += ["Tag options (a key with several values asks the user to choose one). Tag "
                  "options are unique in an account: if one of these already exists, "
                  "CloudFormation refuses to create it; choose the set with `--tag-option`, "
                  "and re-use existing ones with `--existing-tag-option ID`.", ""]
        lines += [f"- `{k}` = `{v}`" for k, v in sorted(set(catalog.tag_options))]
        lines += [""]
    if catalog.existing_tag_options:
        lines += ["Tag options already in the account, associated with the portfolio:", ""]
        lines += [f"- `{i}`" for i in sorted(set(catalog.existing_tag_options))]
        lines += [""]
    if product.sagemaker_projects:
        lines += [
            "## SageMaker Projects",
            "",
            f"The product is tagged `{STUDIO_VISIBILITY_TAG[0]}={STUDIO_VISIBILITY_TAG[1]}`, so "
            f"Studio lists it under organization templates for the principals of the portfolio "
            f"(associate the Studio users' execution role). SageMaker fills "
            f"`{SAGEMAKER_PROJECT_NAME}` and `{SAGEMAKER_PROJECT_ID}`; the user fills the rest. "
            f"Every resource of a project is named after its id (project `p-ypcnnfv6l5mn` puts "
            f"`pypcnnfv6l5mn` where an environment name would be), so projects launched from "
            f"the product never collide.",
            "",
        ]
    lines += organization_lines(catalog, stack_set, project, bucket, call_as)
    lines += [
        "## Parameters of the product",
        "",
        "| Parameter | Description | Type | Default | Allowed values | "
        + " | ".join(environments) + " |",
        "|" + "---|" * (5 + len(environments)),
    ]
    for name, spec in parameters.items():
        cells = [f"`{name}`", spec.get("Description", ""), spec.get("Type", ""),
                 _code(spec.get("Default")), _allowed(spec)]
        cells += [_code(values[env].get(name)) for env in environments]
        lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    return "\n".join(lines) + "\n"


def organization_lines(catalog: Catalog, stack_set: StackSetConfig | None, project: str,
                       bucket: str | None, call_as: str = "SELF") -> list[str]:
    """The README's organization-wide hand-off: what to run, in which account, in order."""
    if not catalog.shared and stack_set is None:
        return []
    location = f"s3://{bucket}" if bucket else "the packaging bucket"
    lines = [
        "## Organization-wide hand-off",
        "",
        f"Member accounts read the packaged templates and Lambda code from {location}: its "
        f"bucket policy must allow them `s3:GetObject`, e.g. for the whole organization (and, "
        f"with a customer-managed KMS key, its key policy `kms:Decrypt` on the same "
        f"condition):",
        "",
        "```json",
        json.dumps({"Sid": "OrganizationReadsPackagedTemplates", "Effect": "Allow",
                    "Principal": {"AWS": "*"}, "Action": "s3:GetObject",
                    "Resource": f"arn:aws:s3:::{bucket or '<bucket>'}/*",
                    "Condition": {"StringEquals": {"aws:PrincipalOrgID": "<o-organization-id>"}}},
                   indent=2),
        "```",
        "",
    ]
    step = 1
    if catalog.shared_units or stack_set is not None:
        lines += [f"{step}. Once, in the management account: `aws organizations "
                  f"enable-aws-service-access --service-principal "
                  f"member.org.stacksets.cloudformation.amazonaws.com` (trusted access for "
                  f"StackSets)"
                  + ("" if not catalog.shared_units else
                     " and `aws servicecatalog enable-aws-organizations-access`") + "."]
        step += 1
    if catalog.shared:
        where = ("the management account or a delegated administrator for Service Catalog "
                 "(only they share with organizational units)" if catalog.shared_units
                 else "the catalog account")
        lines += [f"{step}. Deploy `{PORTFOLIO_FILE}` (above) in {where}. It shares the "
                  f"portfolio with "
                  + (", ".join(f"`{a}`" for a in sorted(catalog.shared_accounts))
                     if catalog.shared_accounts else "no account")
                  + f"; the launch constraint names the role `{catalog.local_launch_role}` "
                    f"(LocalRoleName), which Service Catalog looks up in the account that "
                    f"launches."]
        step += 1
        if catalog.shared_units:
            lines += [f"{step}. Share with the organizational units "
                      + ", ".join(f"`{u}`" for u in catalog.shared_units)
                      + ", in the same account: `mlops-cfn share --portfolio-id <PortfolioId "
                        "output> --config <this config>` (it describes the existing shares "
                        "first: run it again after adding a unit)."]
            step += 1
    if catalog.shared_units or stack_set is not None:
        where = ("a delegated administrator account for StackSets" if call_as == "DELEGATED_ADMIN"
                 else "the management account")
        what = []
        if catalog.shared_units:
            what.append(f"`{catalog.local_launch_role}`, the launch role, in every account of "
                        f"the shared units (and accounts that join them)")
        if stack_set is not None:
            what.append("the pipeline itself in every account of "
                        + ", ".join(f"`{u}`" for u in stack_set.organizational_units)
                        + " in " + ", ".join(f"`{r}`" for r in stack_set.regions)
                        + (" (and accounts that join them)" if stack_set.auto_deployment
                           else ""))
        lines += [f"{step}. Deploy `{STACK_SET_FILE}` in {where} (CallAs {call_as}): "
                  f"`aws cloudformation deploy --template-file {STACK_SET_FILE} --stack-name "
                  f"{project}-stacksets`. Its service-managed StackSets deploy "
                  + "; and ".join(what)
                  + ". StackSets never deploy to the management account itself."]
        step += 1
    if catalog.shared_accounts:
        lines += [f"{step}. In each shared account: deploy `{LAUNCH_ROLE_FILE}` (`aws "
                  f"cloudformation deploy --template-file {LAUNCH_ROLE_FILE} --stack-name "
                  f"{project}-launch-role --capabilities CAPABILITY_NAMED_IAM`; not in an "
                  f"account the launch role's StackSet already reaches), accept the share "
                  f"(`aws servicecatalog accept-portfolio-share --portfolio-id "
                  f"<PortfolioId>`) and associate the principals who may launch "
                  f"(`aws servicecatalog associate-principal-with-portfolio`): an account share "
                  f"carries no principals."]
        step += 1
    if catalog.shared_units:
        lines += [f"{step}. In the shared units' accounts, the imported portfolio needs "
                  f"principals associated there as well, before anyone can launch."]
    lines += [""]
    return lines


def _allowed(spec: dict) -> str:
    parts = []
    if "AllowedValues" in spec:
        parts.append(", ".join(f"`{v}`" for v in spec["AllowedValues"]))
    if "AllowedPattern" in spec:
        parts.append(f"pattern `{spec['AllowedPattern']}`")
    if "MinValue" in spec and "MaxValue" in spec:
        parts.append(f"{spec['MinValue']} to {spec['MaxValue']}")
    elif "MinValue" in spec:
        parts.append(f"≥ {spec['MinValue']}")
    elif "MaxValue" in spec:
        parts.append(f"≤ {spec['MaxValue']}")
    if "MinLength" in spec and "MaxLength" in spec:
        parts.append(f"{spec['MinLength']}-{spec['MaxLength']} characters")
    elif "MaxLength" in spec:
        parts.append(f"at most {spec['MaxLength']} characters")
    elif "MinLength" in spec:
        parts.append(f"at least {spec['MinLength']} characters")
    return "; ".join(parts)


def _code(value: Any) -> str:
    return "" if value is None else f"`{value}`"


def _cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


# --- putting it together --------------------------------------------------------------------------

@dataclass(frozen=True)
class Handoff:
    files: dict[str, str | bytes]
    version: str
    artifact_url: str
    uploaded: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    # What the product leaves out of the config (Product.notes).
    notes: list[str] = field(default_factory=list)


def handoff(loaded: LoadedConfig, bucket: str, catalog: Catalog, *,
            environments: Sequence[str] | None = None, prefix: str = "", s3=None,
            package: Callable[..., Packaged] | None = None,
            deployment_statements: Callable[..., list[Statement]] | None = None
            ) -> Handoff:
    """Render, package (upload to `bucket`) and return the hand-off bundle's files."""
    from .package import bucket_region, normal_prefix, put_template
    from .render import replace_directory

    if package is None:
        from .package import package
    prefix = normal_prefix(prefix)
    environments = list(environments or loaded.merged)
    if s3 is None:
        import boto3

        s3 = boto3.client("s3")
    stack_set = loaded.base.servicecatalog.stack_set
    stack_set = stack_set if stack_set.enabled else None
    stack_set_environment = (None if stack_set is None else
                             check_stack_set(loaded, stack_set, environments, catalog,
                                             bucket_region(s3, bucket)))
    product = build_product(loaded, environments, catalog.sagemaker_projects)
    with tempfile.TemporaryDirectory(prefix="mlops-cfn-servicecatalog-") as tmp:
        tree = Path(tmp) / "product"
        # The tree as `render` writes it, so packaging sees what it always sees.
        replace_directory({**product.files, PARAMETERS_FILE: product.parameters[environments[0]]},
                          tree)
        packaged = package(tree, bucket, prefix=prefix, s3=s3)
        packaged_text = Path(packaged.root_path).read_text()
    project = loaded.base.project
    statements = launch_role_statements(product.requirements, bucket, prefix,
                                        deployment_statements, project)
    portfolio = portfolio_template(catalog, product, packaged.root_url, statements, project)
    files: dict[str, str | bytes] = {
        PORTFOLIO_FILE: template_text(portfolio, "yaml"),
        PACKAGED_ROOT_FILE: packaged_text,
        README_FILE: readme(catalog, product, packaged.root_url, project,
                            _template_data(packaged_text), stack_set, bucket,
                            loaded.base.servicecatalog.stack_set.call_as),
    }
    files.update({f"{TEMPLATES_DIR}/{name}": content for name, content in product.files.items()})
    for env, text in product.parameters.items():
        name = (f"{env}-config.json" if catalog.sagemaker_projects
                else f"{PARAMETERS_DIR}/{env}.json")
        files[name] = text
    uploaded, skipped = list(packaged.uploaded), list(packaged.skipped)
    launch_role = None
    if catalog.shared:
        role_text = template_text(
            launch_role_template(catalog, statements, project, product.version), "yaml")
        files[LAUNCH_ROLE_FILE] = role_text
        if catalog.shared_units:
            # The launch role's StackSet reads it from the bucket, as the pipeline's its root.
            put = put_template(s3, bucket, prefix, LAUNCH_ROLE_FILE, role_text)
            uploaded += put.uploaded
            skipped += put.skipped
            launch_role = (put.root_url, catalog.shared_units, bucket_region(s3, bucket))
    if stack_set is not None or launch_role is not None:
        parameters = (json.loads(product.parameters[stack_set_environment])
                      if stack_set_environment else None)
        files[STACK_SET_FILE] = template_text(stack_set_template(
            project, product.version, stack_set, packaged.root_url, parameters, launch_role,
            loaded.base.servicecatalog.stack_set), "yaml")
    return Handoff(files, product.version, packaged.root_url, uploaded, skipped,
                   list(product.notes))


def check_stack_set(loaded: LoadedConfig, stack_set: StackSetConfig,
                    environments: Sequence[str], catalog: Catalog, region: str) -> str:
    """The environment whose values the StackSet deploys; an error for what it cannot honour."""
    where = f"{loaded.source}: servicecatalog.stack_set"
    problems = []
    environment = stack_set.environment
    if environment is None:
        if len(environments) > 1:
            problems.append(f"{where}.environment: is required when the bundle hands off "
                            f"several environments ({', '.join(environments)}): name the one "
                            f"whose values the StackSet deploys, or hand off one with --env")
        environment = environments[0]
    elif environment not in environments:
        problems.append(f"{where}.environment: {environment!r} is not handed off (environments: "
                        f"{', '.join(environments)})")
    if catalog.sagemaker_projects:
        problems.append(f"{where}: cannot be honoured with --sagemaker-projects (a project "
                        f"template takes the id of a SageMaker project, which a StackSet has "
                        f"not): hand off without it for the StackSet")
    others = [r for r in stack_set.regions if r != region]
    if others:
        problems.append(f"{where}.regions: {', '.join(others)}: not the region of the bucket "
                        f"the templates and Lambda code are packaged to ({region}); Lambda "
                        f"reads code only from its own region: hand off once per region with "
                        f"a bucket there")
    if problems:
        raise UserError(*problems)
    return environment


def _template_data(text: str) -> dict:
    import cfn_flip

    data = cfn_flip.load_yaml(text)
    return data if isinstance(data, dict) else {}


# --- writing the bundle ---------------------------------------------------------------------------

def write_bundle(files: dict[str, str | bytes], out: Path) -> None:
    """Replace `out` with exactly `files`, or leave it untouched on failure.

    Only an empty directory or an earlier bundle (it holds portfolio.yaml) is replaced.
    """
    if out.exists():
        if not out.is_dir():
            raise UserError(f"{out}: exists and is not a directory; choose another --out")
        if any(out.iterdir()) and not (out / PORTFOLIO_FILE).is_file():
            raise UserError(f"{out}: holds files that are not a Service Catalog bundle; choose "
                            f"an empty or new directory for --out")
    from .render import replace_directory

    replace_directory(files, out)


__all__ = [
    "Catalog", "Handoff", "Product", "Shared", "add_launch_role", "build_product",
    "check_stack_set", "content_version", "default_catalog", "handoff", "launch_role_statements",
    "launch_role_template", "portfolio_template", "principal_arn", "readme", "resource_types",
    "sagemaker_root", "share_with_organization", "stack_set_template", "write_bundle",
]
