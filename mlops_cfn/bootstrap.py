"""The bootstrap stack of an environment in another account or region (placement.py): the two
roles through which the home account's delivery pipeline deploys it, and nothing else.

Why a stack of its own, made by hand: the home pipeline can act in another account only through
a role that account made to trust it ("Create a pipeline in CodePipeline that uses resources
from another AWS account", CodePipeline User Guide). An administrator of the target account
creates it once, `mlops-cfn bootstrap --env <env> --deploy` with that account's credentials;
re-running it with the same templates changes nothing (an empty change set).

What it holds (`build`):
- DeliveryRole, `MlopsCfnDelivery-<project>-<env>`: what the home pipeline's deploy actions
  assume. Its trust names the home account as principal and admits only the pipeline role's ARN
  (aws:PrincipalArn, "AWS global condition context keys", IAM User Guide: a role session is
  matched by its role's ARN, so the trust survives the role's sessions; a principal naming the
  role itself would break if the role were ever re-created). No external id: CodePipeline
  passes none when it assumes an action's role, and the guard an external id gives a third
  party ("The confused deputy problem", IAM User Guide) is the PrincipalArn condition here, as
  both accounts are the user's own. It may create, execute and delete the environment's one
  change set on its one stack, read that stack's events, pass ExecutionRole to CloudFormation
  and read the pipeline's artifacts (the artifact bucket's objects, decrypted with its key
  through S3). The home pipeline's Deploy-<env> actions name it as their RoleArn
  (stages/cicd.py: deploy_actions), and the home role may assume exactly these roles.
- ExecutionRole, `MlopsCfnExecution-<project>-<env>`: the role CloudFormation deploys the
  environment's stacks with, as the home DeployRole does at home: the permissions the
  environment's templates need, derived from the resource types they contain
  (permissions.deployment_statements, scoped to this account and region, the project's stacks,
  roles under the project's boundary, keys and buckets), plus reading the packaged templates and
  assets from the home artifact bucket. Resources only the home environment creates (the
  delivery pipeline's own, under cicd's IsDeliveryHome) are left out: no target account deploys
  them.
- StackReaderRole, `MlopsCfnStackReader-<project>-<env>` (an environment in another account):
  what the home build reads the environment's stack with, to keep its live model and image
  (`stack_reader_role`; package --stack-account).
- With approved models deployed by the pipeline (stages.cicd.deploy_approved_models):
  ApprovalForwardRule sends a package approved in the environment's registry group to the home
  account's default bus, with ApprovalForwardRole (`MlopsCfnForward-<project>-<env>`), which may
  put events on that bus only (`approval_forwarding`; the home bus admits this account,
  stages/cicd.py's ApprovalBusPolicy).

The role names start with `MlopsCfn`, which no project's names start with (projects are
lowercase; IAM matches ARNs case-sensitively): the execution role may manage the project's roles
(`<project>-...`) but never its own, nor the delivery role; the stack is
`MlopsCfnBootstrap-<project>-<env>` for the same reason (the execution role's stack actions reach
`<project>-...` only).

The home account's values (the pipeline role's ARN, the artifact bucket's name, its key's ARN)
are parameters, since they live in the home account and exist once the home environment is
deployed; a re-run keeps the values the stack has unless new ones are given. The bucket and key
are those of the artifact store in the environment's region, where its deploy actions run: the
home ones, or in another region the region support stack's (`region_support`); a key of
another region is refused (`_check_store_region`). Those stores' bucket and key policies admit
these two roles by name (stages/cicd.py: store_reads, store_key_use), as a cross-account read
needs both sides.

`region_support` is the home account's stack in each other region where environments deploy:
the artifact store there (its docstring).

What this does not do yet (README, "Several accounts"): share the model registry and the API
image with the target, or let the roles of the target's stacks read packaged assets in the
home account's stores at run time.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Mapping

import awacs.cloudformation
import awacs.iam
import awacs.kms
import awacs.s3
import awacs.sts
from awacs.aws import Allow, ArnEquals, Condition, Principal, Statement, StringEquals
from troposphere import (GetAtt, Output, Parameter, Ref, Select, Split, Sub, Template, iam, kms,
                         s3)

from . import __version__, permissions, policies
from .errors import UserError

if TYPE_CHECKING:
    from .config import LoadedConfig

PIPELINE_ROLE_ARN = "PipelineRoleArn"
ARTIFACT_BUCKET = "ArtifactBucketName"
ARTIFACT_KEY_ARN = "ArtifactKeyArn"
# The parameters, with the CLI option that gives each.
PARAMETERS = {PIPELINE_ROLE_ARN: "--pipeline-role-arn", ARTIFACT_BUCKET: "--artifact-bucket",
              ARTIFACT_KEY_ARN: "--artifact-key-arn"}
DELIVERY_ROLE = "DeliveryRole"
EXECUTION_ROLE = "ExecutionRole"
STACK_READER_ROLE = "StackReaderRole"
# Names no project's own start with: projects are lowercase (config.PROJECT_PATTERN).
NAME_PREFIX = "MlopsCfn"


def stack_name(project: str, environment: str) -> str:
    return f"{NAME_PREFIX}Bootstrap-{project}-{environment}"


def region_support_stack_name(project: str, region: str) -> str:
    return f"{NAME_PREFIX}Region-{project}-{region}"


def delivery_role_name(project: str, environment: str) -> str:
    """The role the home pipeline assumes in the environment's account (at most 60 characters:
    a project of 32 and an environment of 10)."""
    return f"{NAME_PREFIX}Delivery-{project}-{environment}"


def execution_role_name(project: str, environment: str) -> str:
    return f"{NAME_PREFIX}Execution-{project}-{environment}"


def stack_reader_role_name(project: str, environment: str) -> str:
    """The role the home pipeline's build assumes to read the environment's stack (at most 62
    characters, as delivery_role_name)."""
    return f"{NAME_PREFIX}StackReader-{project}-{environment}"


@dataclass(frozen=True)
class Bootstrap:
    """One environment's bootstrap stack: its template and the parameter values given."""

    environment: str
    account: str | None  # None: the home account (a target by its region alone)
    region: str | None  # None: the home region
    stack_name: str
    template: Template
    parameters: dict[str, str] = field(default_factory=dict)

    def files(self) -> dict[str, str]:
        """root.yaml and parameters.json, as `render` writes an environment (the form
        `mlops-cfn validate` and the Control Tower checks read)."""
        from .render import PARAMETERS_FILE, ROOT_NAME, template_text

        return {f"{ROOT_NAME}.yaml": template_text(self.template, "yaml"),
                PARAMETERS_FILE: json.dumps({"Parameters": dict(sorted(
                    self.parameters.items()))}, indent=2, sort_keys=True) + "\n"}


def build(loaded: LoadedConfig, values: Mapping[str, str] | None = None) -> Bootstrap:
    """The bootstrap stack of `loaded`'s environment, which must be a target (placement.py).

    `values` are the home account's values by parameter name (PARAMETERS), each checked against
    the parameter's pattern here, as CloudFormation would at deploy time.
    """
    from . import pipeline, placement

    environment = loaded.environment
    if not placement.is_target(loaded):
        raise UserError(
            f"{loaded.source}: environments.{environment}: deploys into the home account and "
            "region (it names no other account or region), where the delivery pipeline deploys "
            "it with its own role: bootstrap is for environments in other accounts or regions"
            + _targets_hint(loaded))
    built = pipeline.build(loaded)  # also refuses a region the templates do not support
    project = loaded.config.project
    values = dict(values or {})
    unknown = sorted(set(values) - set(PARAMETERS))
    if unknown:
        raise UserError(*(f"bootstrap: no parameter {name} (it has: {', '.join(PARAMETERS)})"
                          for name in unknown))
    t = Template(Description=f"mlops-cfn bootstrap of {project} {environment}: the roles the "
                             f"home account's delivery pipeline deploys it with (mlops-cfn "
                             f"{__version__})")
    specs = _parameters()
    for parameter in specs.values():
        t.add_parameter(parameter)
    problems = [problem for name, value in values.items()
                for problem in _value_problems(specs[name], PARAMETERS[name], value)]
    if problems:
        raise UserError(*problems)
    _check_store_region(loaded, values.get(ARTIFACT_KEY_ARN))
    execution = t.add_resource(execution_role(project, environment, _requirements(built)))
    for policy in execution_policies(project, _requirements(built), execution):
        t.add_resource(policy)
    delivery = t.add_resource(delivery_role(project, environment, execution))
    from .placement import home_of

    if loaded.config.account not in (None, home_of(loaded).account):
        reader = t.add_resource(stack_reader_role(loaded, environment))
        t.add_output(Output(STACK_READER_ROLE + "Arn", Value=GetAtt(reader, "Arn"),
                            Description="The role the home pipeline's build reads the "
                                        "environment's stack with"))
    from .stages.cicd import deploying_approved_models

    if deploying_approved_models(loaded.config):
        for resource in approval_forwarding(project, environment, home_of(loaded).region):
            t.add_resource(resource)
    t.add_output(Output(DELIVERY_ROLE + "Arn", Value=GetAtt(delivery, "Arn"),
                        Description="The role the home pipeline's deploy actions assume here"))
    t.add_output(Output(EXECUTION_ROLE + "Arn", Value=GetAtt(execution, "Arn"),
                        Description="The role CloudFormation deploys the environment with"))
    config = loaded.config
    return Bootstrap(environment, config.account, config.region,
                     stack_name(project, environment), t, values)


def _check_store_region(loaded: LoadedConfig, key_arn: str | None) -> None:
    """The roles read the artifact store of the environment's region, where its deploy actions
    run: the home one, or for a region other than the home's the region support stack's
    (`region_support`). A key of another region would fail only when the pipeline runs."""
    region = loaded.config.region
    if key_arn is None or region is None or key_arn.split(":")[3] == region:
        return
    from .placement import key_path

    raise UserError(
        f"--artifact-key-arn {key_arn}: in region {key_arn.split(':')[3]}, but "
        f"{loaded.source}: {key_path(loaded, 'region')} is {region}: give the artifact store "
        f"of {region} (the outputs ArtifactBucketName and ArtifactKeyArn of "
        f"{region_support_stack_name(loaded.config.project, region)}, `mlops-cfn bootstrap "
        f"--region-support {region}`)")


def _targets_hint(loaded: LoadedConfig) -> str:
    from .placement import targets

    names = [p.environment for p in targets(loaded)]
    return f" (the file's: {', '.join(names)})" if names else \
        " (this file names none: set environments.<env>.account or .region)"


# --- parameters ------------------------------------------------------------------------------

def _parameters() -> dict[str, Parameter]:
    return {
        PIPELINE_ROLE_ARN: Parameter(
            PIPELINE_ROLE_ARN, Type="String",
            Description="ARN of the home delivery pipeline's role (its PipelineRole): the only "
                        "principal that may assume the delivery role",
            AllowedPattern=r"^arn:aws[a-z-]*:iam::[0-9]{12}:role/[A-Za-z0-9+=,.@_/-]{1,512}$",
            ConstraintDescription="an IAM role ARN, arn:aws:iam::<home account>:role/<name>"),
        ARTIFACT_BUCKET: Parameter(
            ARTIFACT_BUCKET, Type="String",
            Description="Name of the home delivery pipeline's artifact bucket (its "
                        "ArtifactBucket), where the packaged templates and assets are",
            AllowedPattern=r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$",
            ConstraintDescription="an S3 bucket name"),
        ARTIFACT_KEY_ARN: Parameter(
            ARTIFACT_KEY_ARN, Type="String",
            Description="ARN of the home delivery pipeline's key (its DeliveryKey), which "
                        "encrypts the artifacts",
            AllowedPattern=r"^arn:aws[a-z-]*:kms:[a-z0-9-]+:[0-9]{12}:key/[A-Za-z0-9-]+$",
            ConstraintDescription="a KMS key ARN, arn:aws:kms:<region>:<account>:key/<id>"),
    }


def _value_problems(parameter: Parameter, option: str, value: str) -> list[str]:
    import re

    spec = parameter.properties
    if re.fullmatch(spec["AllowedPattern"], value):
        return []
    return [f"{option} {value!r}: must be {spec['ConstraintDescription']}"]


def _home_account():
    """The home account, from the pipeline role's ARN (arn:<partition>:iam::<account>:role/..)."""
    return Select(4, Split(":", Ref(PIPELINE_ROLE_ARN)))


def _home_region():
    """The artifact store's region, from its key's ARN (arn:<partition>:kms:<region>:..): the
    home region, or for an environment in another region that region's store's (the region
    support stack's); never where the home pipeline's bus is (`home_bus_arn`)."""
    return Select(3, Split(":", Ref(ARTIFACT_KEY_ARN)))


# --- the roles -------------------------------------------------------------------------------

def _requirements(built) -> list[str]:
    """What the environment's templates require of the role that deploys them
    (permissions.template_requirements), leaving out what only the home environment creates."""
    from .stages.cicd import HOME

    found = {permissions.NESTED_STACK}
    for template in (built.root, *(stage.template for stage in built.stages)):
        data = template.to_dict()
        resources = {name: resource for name, resource in (data.get("Resources") or {}).items()
                     if resource.get("Condition") != HOME}
        found |= permissions.template_requirements({**data, "Resources": resources})
    return sorted(found)


def artifact_reads(bucket_objects: Sub, *, decrypt: bool = True) -> list[Statement]:
    """Reading objects of the home artifact bucket, which S3 decrypts with the home key in the
    reader's name."""
    statements = [
        # AWS: "Create a pipeline in CodePipeline that uses resources from another AWS account"
        # (CodePipeline User Guide): the other account's roles read the artifacts in the
        # pipeline account's bucket.
        Statement(Effect=Allow, Action=[awacs.s3.GetObject, awacs.s3.GetObjectVersion],
                  Resource=[bucket_objects]),
    ]
    if decrypt:
        statements.append(
            # AWS: same page, and "Using server-side encryption with AWS KMS keys (SSE-KMS)"
            # (Amazon S3 User Guide): S3 decrypts with the bucket's key in the reader's name,
            # from the bucket's region.
            Statement(Effect=Allow, Action=[awacs.kms.Decrypt], Resource=[Ref(ARTIFACT_KEY_ARN)],
                      Condition=Condition(StringEquals("kms:ViaService", Sub(
                          "s3.${HomeRegion}.amazonaws.com", HomeRegion=_home_region())))))
    return statements


def execution_role(project: str, environment: str, requirements) -> iam.Role:
    """CloudFormation's role for the environment's stacks (module docstring); its managed
    policies attach themselves (`execution_policies`)."""
    from .stages.cicd_buildspec import PACKAGE_PREFIX

    return iam.Role(
        EXECUTION_ROLE,
        RoleName=execution_role_name(project, environment),
        Description=f"CloudFormation deploys {project} {environment} with this role",
        AssumeRolePolicyDocument=policies.trusted_by("cloudformation.amazonaws.com"),
        Policies=[iam.Policy(PolicyName="packages", PolicyDocument=policies.document(
            # AWS: "AWS::CloudFormation::Stack" (TemplateURL) and "AWS::Lambda::Function Code":
            # nested templates and code are read with the stack operation's credentials.
            artifact_reads(Sub("arn:${AWS::Partition}:s3:::${%s}/%s*"
                               % (ARTIFACT_BUCKET, PACKAGE_PREFIX)))))],
    )


def execution_policies(project: str, requirements, role: iam.Role) -> list[iam.ManagedPolicy]:
    """ExecutionPolicy1..n: what deploying the environment's templates takes, packed within
    IAM's managed-policy size (permissions.py, as the home DeployRole's)."""
    from .stages.cicd import iam_name_prefix, stack_name as pipeline_stack

    # AWS: "Resource type schema" (CloudFormation Command Line Interface User Guide: each
    # handler lists the permissions it needs), read from the schemas cfn-lint ships.
    documents = permissions.policy_documents(permissions.deployment_statements(
        requirements, iam_names=iam_name_prefix(project), stacks=pipeline_stack(project, ""),
        project=project))
    if len(documents) > permissions.MAX_MANAGED_POLICIES:
        raise UserError(f"the bootstrap's execution role needs {len(documents)} managed "
                        f"policies, more than IAM attaches to one role by default "
                        f"({permissions.MAX_MANAGED_POLICIES})")
    return [iam.ManagedPolicy(
        f"ExecutionPolicy{index}",
        Description=f"Deploy {project}'s resources ({index}/{len(documents)})",
        PolicyDocument=document,
        Roles=[Ref(role)],
    ) for index, document in enumerate(documents, start=1)]


def delivery_role(project: str, environment: str, execution: iam.Role) -> iam.Role:
    """What the home pipeline's deploy actions assume (module docstring)."""
    from .stages.cicd import change_set_name, stack_name as pipeline_stack

    stack = Sub("arn:${AWS::Partition}:cloudformation:${AWS::Region}:${AWS::AccountId}:"
                f"stack/{pipeline_stack(project, environment)}/*")
    statements = [
        # AWS: "AWS CloudFormation deploy action reference" (CodePipeline User Guide,
        # CHANGE_SET_REPLACE and CHANGE_SET_EXECUTE): the action's role makes the change set
        # on the environment's stack, and only its own change set.
        Statement(
            Effect=Allow,
            Action=[awacs.cloudformation.CreateChangeSet, awacs.cloudformation.DescribeChangeSet,
                    awacs.cloudformation.ExecuteChangeSet, awacs.cloudformation.DeleteChangeSet],
            Resource=[stack],
            Condition=Condition(StringEquals("cloudformation:ChangeSetName",
                                             change_set_name(project, environment)))),
        # AWS: same page: DescribeStacks, and DescribeStackEvents to name a failed resource.
        Statement(Effect=Allow, Action=[awacs.cloudformation.DescribeStacks,
                                        awacs.cloudformation.DescribeStackEvents],
                  Resource=[stack]),
        # AWS: "Manage the CodePipeline service role" (iam:PassRole, PassedToService
        # cloudformation.amazonaws.com): the deploy action's RoleArn, the execution role.
        Statement(Effect=Allow, Action=[awacs.iam.PassRole],
                  Resource=[GetAtt(execution, "Arn")],
                  Condition=Condition(StringEquals("iam:PassedToService",
                                                   "cloudformation.amazonaws.com"))),
        *artifact_reads(Sub("arn:${AWS::Partition}:s3:::${%s}/*" % ARTIFACT_BUCKET)),
    ]
    # AWS: "Create a pipeline in CodePipeline that uses resources from another AWS account":
    # the other account's role trusts the pipeline account; "AWS global condition context
    # keys" (aws:PrincipalArn): only the pipeline's role, by its ARN.
    trust = policies.document(Statement(
        Effect=Allow,
        Principal=Principal("AWS", Sub("arn:${AWS::Partition}:iam::${HomeAccount}:root",
                                       HomeAccount=_home_account())),
        Action=[awacs.sts.AssumeRole],
        Condition=Condition(ArnEquals("aws:PrincipalArn", Ref(PIPELINE_ROLE_ARN)))))
    return iam.Role(
        DELIVERY_ROLE,
        RoleName=delivery_role_name(project, environment),
        Description=f"The home delivery pipeline deploys {project} {environment} through this "
                    "role",
        AssumeRolePolicyDocument=trust,
        Policies=[iam.Policy(PolicyName="delivery",
                             PolicyDocument=policies.document(statements))],
    )


def stack_reader_role(loaded: LoadedConfig, environment: str) -> iam.Role:
    """What the home pipeline's build assumes to read the environment's stack: `package
    --stack-name` keeps the stack's live model and image where the file leaves them empty
    (package.template_configuration); a stack it cannot see would be deployed with the
    parameters' defaults, taking serving down on every pipeline run. Only DescribeStacks on the
    environment's one stack, unlike the delivery role (which may change it and whose trust the
    build, running the repository's own commands, must not get). Trusted by the home build role
    alone, by its fixed name (sharing.build_role_name) and aws:PrincipalArn, as DeliveryRole is
    by the pipeline role."""
    from .sharing import build_role_name
    from .stages.cicd import home_environment, stack_name as pipeline_stack

    project = loaded.config.project
    build_role = Sub(f"arn:${{AWS::Partition}}:iam::${{HomeAccount}}:role/"
                     f"{build_role_name(project, home_environment(loaded.config))}",
                     HomeAccount=_home_account())
    # AWS: "How to use trust policies with IAM roles" and "AWS global condition context keys"
    # (aws:PrincipalArn), IAM User Guide: the other account as principal, one role of it.
    trust = policies.document(Statement(
        Effect=Allow,
        Principal=Principal("AWS", Sub("arn:${AWS::Partition}:iam::${HomeAccount}:root",
                                       HomeAccount=_home_account())),
        Action=[awacs.sts.AssumeRole],
        Condition=Condition(ArnEquals("aws:PrincipalArn", build_role))))
    stack = Sub("arn:${AWS::Partition}:cloudformation:${AWS::Region}:${AWS::AccountId}:"
                f"stack/{pipeline_stack(project, environment)}/*")
    return iam.Role(
        STACK_READER_ROLE,
        RoleName=stack_reader_role_name(project, environment),
        Description=f"The home delivery pipeline's build reads {project} {environment}'s stack "
                    "through this role",
        AssumeRolePolicyDocument=trust,
        Policies=[iam.Policy(PolicyName="read-stack", PolicyDocument=policies.document(
            # AWS: "DescribeStacks" (AWS CloudFormation API Reference): the stack's parameters,
            # whose live model and image `package --stack-name` keeps.
            Statement(Effect=Allow, Action=[awacs.cloudformation.DescribeStacks],
                      Resource=[stack])))],
    )


# --- the region support stack ----------------------------------------------------------------

REGION_KEY = "DeliveryKeyReplica"
REGION_BUCKET = "ArtifactBucket"
# The home key, the primary the region's key replicates.
PRIMARY_KEY_ARN = "DeliveryKeyArn"
REGION_PARAMETERS = {PRIMARY_KEY_ARN: "--artifact-key-arn"}
NO_ACCESS_LOGS = (
    "The region support stack holds only the delivery pipeline's copies of its artifacts and "
    "the packages of the environments deployed in this region, each also in the home artifact "
    "bucket, whose access is logged; an access-log bucket here would be a second bucket to "
    "secure for one region's copies. CloudTrail data events record object access if needed.")


def region_support(loaded: LoadedConfig, region: str,
                   values: Mapping[str, str] | None = None) -> Bootstrap:
    """The home account's stack in `region`, a region where environments of the file deploy
    other than the home one: the artifact store the delivery pipeline's actions there use
    (CodePipeline needs one in every region where actions run: "Add a cross-Region action in
    CodePipeline", CodePipeline User Guide; CloudFormation reads nested templates and Lambda
    its code from a bucket of the stack's region, so `package` uploads those environments'
    there). Like CDK's cross-region support stacks, one per region, deployed by hand with the
    home account's credentials (`mlops-cfn bootstrap --region-support <region> --deploy`).

    - DeliveryKeyReplica: a replica of the home DeliveryKey (multi-Region when the file has a
      target in another region), so it has the primary's key id and the pipeline names its ARN
      without a lookup (stages.cicd.region_store_key_arn). Its own key policy: this account's
      IAM policies (the pipeline and build roles), and the targets of this region in other
      accounts decrypting through S3 here, their delivery and execution roles only.
    - ArtifactBucket, named as the home artifact bucket in this region
      (stages.cicd.region_store_bucket): SSE-KMS with the replica, versioned, TLS only, public
      access blocked, retained; its policy lets the same roles read the artifacts (delivery
      role) and the packages (execution role). No access logging (NO_ACCESS_LOGS).
    """
    from . import pipeline, placement
    from .stages import cicd
    from .stages.common import OBJECT_LOCK_EXCEPTION, RETAIN, control_tower_exceptions

    project = loaded.config.project
    home = cicd.home_environment(loaded.config)
    home_loaded = loaded.for_environment(home)
    targets = cicd.targets_of(home_loaded)
    regions = cicd.other_regions(targets)
    if region not in regions:
        raise UserError(
            f"bootstrap --region-support {region}: no environment of {loaded.source} deploys "
            f"there from another region" + (
                f" (its other regions: {', '.join(regions)})" if regions else
                " (it names no environment with a region other than the home one)"))
    pipeline.build(home_loaded)  # refuses what the home environment's templates refuse
    values = dict(values or {})
    unknown = sorted(set(values) - set(REGION_PARAMETERS))
    if unknown:
        raise UserError(*(f"bootstrap --region-support: no parameter {name}" for name in unknown))
    spec = Parameter(
        PRIMARY_KEY_ARN, Type="String",
        Description="ARN of the home delivery pipeline's key (its DeliveryKey, a multi-Region "
                    "key): the key here is its replica",
        # A multi-Region key's id starts with mrk- ("Multi-Region key identifiers").
        AllowedPattern=r"^arn:aws[a-z-]*:kms:[a-z0-9-]+:[0-9]{12}:key/mrk-[a-f0-9-]+$",
        ConstraintDescription="a multi-Region KMS key ARN, "
                              "arn:aws:kms:<home region>:<account>:key/mrk-<id>")
    problems = [problem for name, value in values.items()
                for problem in _value_problems(spec, REGION_PARAMETERS[name], value)]
    if problems:
        raise UserError(*problems)
    readers = cicd.store_readers(targets, region)
    t = Template(Description=f"mlops-cfn region support of {project} in {region}: the delivery "
                             f"pipeline's artifact store there (mlops-cfn {__version__})")
    t.add_parameter(spec)
    # AWS: "Multi-Region keys in AWS KMS" (AWS KMS Developer Guide) and "AWS::KMS::ReplicaKey"
    # (CloudFormation Template Reference): a replica shares its primary's key id and rotation,
    # with a key policy of its own.
    key = t.add_resource(kms.ReplicaKey(
        REGION_KEY,
        Description=f"{project}: encrypts the delivery pipeline's artifacts and packages in "
                    f"{region}",
        PrimaryKeyArn=Ref(PRIMARY_KEY_ARN),
        PendingWindowInDays=loaded.config.stages.storage.key_deletion_window_days,
        KeyPolicy={},
        **RETAIN,
    ))
    # troposphere types a replica's KeyPolicy as a plain dict; it renders the document as it
    # renders kms.Key's.
    key.properties["KeyPolicy"] = policies.document(
        policies.key_administration_by_account(), policies.key_use_by_account(),
        policies.grants_only_for_aws_resources(), *cicd.store_key_use(project, readers))
    bucket = t.add_resource(s3.Bucket(
        REGION_BUCKET,
        BucketName=cicd.region_store_bucket(project, home, region),
        BucketEncryption=s3.BucketEncryption(ServerSideEncryptionConfiguration=[
            s3.ServerSideEncryptionRule(
                ServerSideEncryptionByDefault=s3.ServerSideEncryptionByDefault(
                    SSEAlgorithm="aws:kms", KMSMasterKeyID=GetAtt(key, "Arn")),
                BucketKeyEnabled=True)]),
        VersioningConfiguration=s3.VersioningConfiguration(Status="Enabled"),
        PublicAccessBlockConfiguration=s3.PublicAccessBlockConfiguration(
            BlockPublicAcls=True, BlockPublicPolicy=True, IgnorePublicAcls=True,
            RestrictPublicBuckets=True),
        OwnershipControls=s3.OwnershipControls(
            Rules=[s3.OwnershipControlsRule(ObjectOwnership="BucketOwnerEnforced")]),
        LifecycleConfiguration=s3.LifecycleConfiguration(Rules=[s3.LifecycleRule(
            Id="expire-noncurrent-versions", Status="Enabled",
            NoncurrentVersionExpiration=s3.NoncurrentVersionExpiration(
                NoncurrentDays=cicd.NONCURRENT_VERSION_DAYS),
            ExpiredObjectDeleteMarker=True,
            AbortIncompleteMultipartUpload=s3.AbortIncompleteMultipartUpload(
                DaysAfterInitiation=cicd.INCOMPLETE_UPLOAD_DAYS))]),
        # AWS Control Tower CT.S3.PR.4 asks every bucket for event notifications.
        NotificationConfiguration=s3.NotificationConfiguration(
            EventBridgeConfiguration=s3.EventBridgeConfiguration(EventBridgeEnabled=True)),
        Metadata={
            "checkov": {"skip": [{"id": "CKV_AWS_18", "comment": NO_ACCESS_LOGS}]},
            **control_tower_exceptions(("CT.S3.PR.2", NO_ACCESS_LOGS), OBJECT_LOCK_EXCEPTION),
        },
        **RETAIN,
    ))
    t.add_resource(s3.BucketPolicy(
        f"{REGION_BUCKET}Policy",
        Bucket=Ref(bucket),
        PolicyDocument=policies.document(
            policies.deny_insecure_transport(GetAtt(bucket, "Arn")),
            *cicd.store_reads(project, readers, GetAtt(bucket, "Arn")))))
    t.add_output(Output(ARTIFACT_BUCKET, Value=Ref(bucket),
                        Description="The artifact bucket here: --artifact-bucket of the "
                                    "bootstrap of the environments deployed in this region"))
    t.add_output(Output(ARTIFACT_KEY_ARN, Value=GetAtt(key, "Arn"),
                        Description="Its key: --artifact-key-arn of their bootstrap"))
    return Bootstrap(home, placement.home_of(loaded).account, region,
                     region_support_stack_name(project, region), t, values)


# --- approvals ---------------------------------------------------------------------------------

FORWARD_ROLE = "ApprovalForwardRole"
FORWARD_RULE = "ApprovalForwardRule"


def forward_role_name(project: str, environment: str) -> str:
    return f"{NAME_PREFIX}Forward-{project}-{environment}"


def home_bus_arn(home_region: str | None) -> Sub:
    """The home account's default event bus, in the home region: the home environment's
    `region`, or where it names none, this one's (an environment deployed in a region other than
    the home one needs the home environment to name its region: stages.cicd.targets_of). Not the
    artifact key's region, which for such an environment is its own region's store's."""
    region = home_region or "${AWS::Region}"
    return Sub(f"arn:${{AWS::Partition}}:events:{region}:${{HomeAccount}}:event-bus/default",
               HomeAccount=_home_account())


def approval_forwarding(project: str, environment: str, home_region: str | None) -> list:
    """A package approved in this environment's registry group starts the home delivery
    pipeline: the rule sends SageMaker's state change to the home account's default bus, whose
    rule ApprovalTriggerRule starts the pipeline (stages/cicd.py; that bus admits this account,
    its ApprovalBusPolicy).

    AWS: "Sending and receiving events between AWS accounts in Amazon EventBridge": a rule
    whose target is the other account's bus, with a role allowed events:PutEvents on that bus;
    "Automating Amazon SageMaker AI with Amazon EventBridge": SageMaker sends "SageMaker Model
    Package State Change" to this account's default bus. The forwarded event keeps its source,
    detail-type and detail; its `account` stays this one."""
    import awacs.events
    from troposphere import events

    from .deploy import model_package_group
    from .stages.cicd import APPROVAL_DETAIL_TYPE, APPROVAL_SOURCE

    bus = home_bus_arn(home_region)
    role = iam.Role(
        FORWARD_ROLE,
        RoleName=forward_role_name(project, environment),
        Description=f"EventBridge forwards {project} {environment}'s model approvals to the "
                    "home account's default bus",
        AssumeRolePolicyDocument=policies.trusted_by(
            "events.amazonaws.com",
            # Only EventBridge acting for this account's rules (confused deputy guard).
            StringEquals("aws:SourceAccount", Ref("AWS::AccountId"))),
        Policies=[iam.Policy(PolicyName="forward", PolicyDocument=policies.document(
            # AWS: "Sending and receiving events between AWS accounts in Amazon EventBridge"
            # (the rule's role needs events:PutEvents on the receiving bus): the home default
            # bus only.
            Statement(Effect=Allow, Action=[awacs.events.PutEvents], Resource=[bus])))],
    )
    rule = events.Rule(
        FORWARD_RULE,
        Description=f"A package approved in {model_package_group(project, environment)} starts "
                    "the home delivery pipeline",
        EventPattern={
            "source": [APPROVAL_SOURCE],
            "detail-type": [APPROVAL_DETAIL_TYPE],
            "detail": {"ModelPackageGroupName": [model_package_group(project, environment)],
                       "ModelApprovalStatus": ["Approved"]},
        },
        State="ENABLED",
        Targets=[events.Target(Id="HomeDefaultBus", Arn=bus, RoleArn=GetAtt(role, "Arn"))],
    )
    return [role, rule]


__all__ = ["ARTIFACT_BUCKET", "ARTIFACT_KEY_ARN", "Bootstrap", "PARAMETERS", "PIPELINE_ROLE_ARN",
           "PRIMARY_KEY_ARN", "REGION_PARAMETERS", "build", "delivery_role_name",
           "execution_role_name", "region_support", "region_support_stack_name", "stack_name"]
