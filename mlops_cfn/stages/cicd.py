"""cicd stage: the delivery pipeline that tests this pipeline and deploys it to every environment,
and the continuous-training hook.

One pipeline per project, not per environment: it lives in the stack of the home environment
(`stages.cicd.home_environment`, by default the first environment) and deploys every
environment in the order of `environments`. Every environment's root still holds this stage,
so that environments differing only in values keep byte-identical templates; outside the home
environment the condition IsDeliveryHome is false and the stack holds only a placeholder.

Pipeline (CodePipeline V2, RestartExecutionOnUpdate: it updates itself when it deploys its own
stack, then runs again with its new definition)
1. Source: an S3 object (`source.provider: s3`: SourceBucket, started by an EventBridge rule on
   each new version) or a Git repository through a CodeConnections connection
   (`source.provider: connection`: connection ARN as the DeliverySourceConnectionArn parameter,
   repository and branch from the config).
2. Build (BuildProject, then with a Fargate API ImageProject: the shipped model API's image,
   tagged by content and pushed where missing, privileged as Docker needs): installs the
   repository, runs `mlops-cfn render --check --all-envs`,
   `mlops-cfn validate` and the tests, then `mlops-cfn package` per environment into the
   artifact bucket; its output artifact holds <env>/packaged-root.yaml and
   <env>/packaged-parameters.json, the environment's parameters.json plus, where the config
   leaves them empty, the live image of its stack and the model: with deploy_approved_models
   the latest approved package of the environment's registry group (package
   --latest-approved-model), else the stack's live one (cicd_buildspec.py).
3. Deploy-<env>, for every environment in order: CloudFormation CHANGE_SET_REPLACE on the root
   stack `<project>-<env>` with TemplateConfiguration <env>/packaged-parameters.json, then
   CHANGE_SET_EXECUTE; for an environment marked `protected`, a manual approval between the
   two, so the approver reviews the very change set that will run; with smoke_test, last, the
   SmokeTest action (SmokeProject: `mlops-cfn smoke --env <env>`, one sample record to the
   endpoint, and to the Fargate API when the build runs in the VPC), whose failure stops the
   promotion to the next environment. An environment in another account or region (a remote
   target, placement.is_target) is deployed through its bootstrap roles (bootstrap.py): its
   change set actions assume its delivery role (action RoleArn, and Region for another
   region), CloudFormation uses its execution role; it gets no ProtectStack or SmokeTest, home
   builds that reach no other account (deploy_actions).
4. Retrain (continuous training, with the training stage and `retrain.enabled`), right after
   the home environment is deployed: RetrainProject starts the home environment's SageMaker
   pipeline when the content hash of `retrain.code_paths` differs from the one it last
   started a run for. Why a step of this pipeline and not a second pipeline triggered on file
   paths: training must run the code just deployed (a second pipeline would race this one and
   train with the old pipeline definition); it works with either source (V2 file-path triggers
   exist only for Git connections; an S3 zip has no history); and a hash over the code, unlike
   "files changed in this push", still catches a change whose first run failed.

Resources (all but Placeholder only in the home environment)
- DeliveryKey: the customer-managed key of the delivery buckets, artifact store and projects;
  its own key (not the data key) because every environment's roles decrypt the packages.
- ArtifactBucket (+ policy): the pipeline's artifact store and the packages' bucket; SSE-KMS
  with the delivery key, versioned, TLS only, public access blocked, access logs to the
  access-logs bucket, retained. Its policy and the key's admit the remote targets deployed
  from the home region, their delivery and execution roles' reads only (store_reads,
  store_key_use). With targets in other regions the pipeline has an artifact store per region
  (artifact_stores: the region support stacks', bootstrap.region_support) and the key is
  multi-Region, replicated there.
- SourceBucket (+ policy), SourceTriggerRule, SourceTriggerRole: with `source.provider: s3`.
- ApprovalTriggerRule, ApprovalTriggerRole: with deploy_approved_models (and the training stage
  and model packages to serve), a package approved in any environment's registry group
  (<project>-<env>-models) starts the pipeline.
  ApprovalBusPolicy: with environments in other accounts, the default bus admits their
  forwarded model package state changes (bootstrap.py forwards them; sharing.py).
- With environments in other accounts or regions (sharing.py): BuildRole and ImageRole get
  fixed names, which the targets' registry groups and API repositories admit; the build reads
  each target's group by its ARN, and the image build pushes to each target's registry.
- BuildProject, BuildLogGroup, BuildRole; RetrainProject, RetrainLogGroup, RetrainRole (with
  retraining); BuildSecurityGroup (with `build.in_vpc`). Projects encrypted with the data key,
  privileged mode off, logs to KMS-encrypted log groups, in the private subnets when in_vpc.
- PipelineRole: the artifact and source buckets, the two projects, change sets on the
  `<project>-<env>` stacks in the home account and region, passing DeployRole to
  CloudFormation, the connection; assuming the remote targets' delivery roles; the other
  regions' artifact stores.
- DeployRole + DeployPolicy1..n: the role CloudFormation deploys every environment with: what
  the CloudFormation registry's handlers list for every resource type the deployed templates
  contain, in every environment, this stage's own included, plus permissions.py's documented
  supplement (permissions.py; the composer passes the other stages' requirements in), scoped to
  this account and region, the project's stacks and its roles; no `*` action; plus reading the
  packages.
- DeliveryPipeline; Placeholder (AWS::CloudFormation::WaitConditionHandle: a stack needs a
  resource, and outside the home environment it is the only one).

Inputs: DataKeyArn, AccessLogsBucketName; with in_vpc VpcId, PrivateSubnetIds;
with retraining TrainingStartArn (a pipeline's or a project's: the retrain build starts either,
by the ARN's service, so it need not know the training engine); with the monitoring stage and a
protected environment AlarmTopicArn (where a pending approval is announced).
Outputs: DeliveryPipelineName (in every environment: the pipeline that deploys it), with the S3
source DeliverySourceBucketName (where to upload the source zip).
Settings: EnvironmentName, LogRetentionDays, DeliveryBuildComputeType, DeliveryBuildImage,
DeliveryBuildTimeoutMinutes; with a connection DeliverySourceConnectionArn.

Operating it
- Bootstrap: an administrator deploys each environment once by hand (`mlops-cfn deploy --env
  <env>`; the home environment first, which creates the pipeline): a first deployment creates
  the environment's permissions boundary, which the deploy role may not write (boundary.py),
  and so does any deployment that changes the boundary. From then on the pipeline deploys every
  environment to the stacks `<project>-<env>`, in this account and region.
- Turning this stage off, or moving home_environment, deletes the pipeline and its deploy role:
  do that with `mlops-cfn deploy`, not through the pipeline, which would delete the role it is
  deploying with.
- Every environment's templates and assets are packaged into the home environment's artifact
  bucket under `delivery/`, encrypted with the delivery key. CloudFormation reads the templates
  (and Lambda its code) with the deploy role; a role of any environment that reads an asset at
  run time (a Glue script, a pipeline step's code) has s3:GetObject on it and kms:Decrypt on
  the delivery key through S3 (assets.py; tests/asset_access.py checks every environment).
- The deploy role can create IAM roles, so whoever can push to the source can change what it
  deploys: protect the branch (with the S3 source, only `source.publishers` may write the
  source bucket), and mark production `protected`. Every role it creates or changes must carry
  the project's permissions boundary, which it may not create or change (boundary.py): a new
  environment's first deployment, and one changing its boundary, is made by hand.

Environments: `build(config, targets, requirements)` takes every environment's name and
`protected` flag, and what the other stages' templates of every environment require of the
deploy role (pipeline.deployed_requirements). Without `targets` they are derived from this
environment's config (`targets_from`), which cannot see the base file's values: an environment
that does not set `protected` itself counts as unprotected unless no environment sets it (then
the shared value applies). Without `requirements` the deploy role manages this stage's own
resources and the root's nested stacks only.
"""

import json
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

import awacs.cloudformation
import awacs.codebuild
import awacs.codeconnections
import awacs.codepipeline
import awacs.codestar_connections
import awacs.ec2
import awacs.ecr
import awacs.iam
import awacs.kms
import awacs.logs
import awacs.s3
import awacs.sagemaker
import awacs.sns
import awacs.sts
from awacs.aws import (Action, Allow, ArnEquals, ArnLike, ArnNotEquals, Condition, Deny,
                       Principal, Statement, StringEquals, StringLike)
from troposphere import (Equals, GetAtt, Ref, Sub, cloudformation, codebuild, codepipeline, ec2,
                         events, iam, kms, s3)

from .. import assets, boundary, naming, permissions, policies
from ..config import PipelineConfig
from ..config.cicd import CicdConfig
from ..errors import UserError
from ..outputs import (ACCESS_LOGS_BUCKET_NAME, ALARM_TOPIC_ARN, DATA_KEY_ARN,
                       DELIVERY_PIPELINE_NAME,
                       DELIVERY_SOURCE_BUCKET_NAME, PRIVATE_SUBNET_IDS, TRAINING_START_ARN,
                       VPC_ID)
from .. import sharing as sharing_module
from ..sharing import Sharing
from ..stage import Stage, StageBuilder
from . import cicd_buildspec as spec
from . import cicd_partition
from .common import (OBJECT_LOCK_EXCEPTION, RETAIN, control_tower_exceptions,
                     encrypted_log_group)
from .access_logs import S3_ACCESS_LOG_PREFIX

HOME = "IsDeliveryHome"
# Artifact names inside the pipeline.
SOURCE_ARTIFACT = "Source"
BUILD_ARTIFACT = "Delivery"
BUILD_NAMESPACE = "Build"
# Capabilities the root stack needs: it creates IAM roles (some stages may name them).
CAPABILITIES = "CAPABILITY_IAM,CAPABILITY_NAMED_IAM,CAPABILITY_AUTO_EXPAND"
INCOMPLETE_UPLOAD_DAYS = 7
# Old artifact and source versions only serve re-running an old execution.
NONCURRENT_VERSION_DAYS = 90


@dataclass(frozen=True)
class DeploymentTarget:
    """One environment the pipeline deploys; `remote` for one in another account or region
    (placement.is_target), whose deploy actions assume its bootstrap's delivery role there.
    `account` is its account when that is not the home one, `region` its region when that is
    not the home one (None: the home account or region)."""

    environment: str
    protected: bool
    remote: bool = False
    account: str | None = None
    region: str | None = None

    @property
    def stage_name(self) -> str:
        return f"Deploy-{self.environment}"


# --- environments ----------------------------------------------------------------------------

def targets_of(loaded: Any) -> tuple[DeploymentTarget, ...]:
    """Every environment of a loaded file, exactly (config.LoadedConfig: its merged configs),
    with where each deploys (placement.py).

    A target in a region of its own needs the home environment to name its region: the
    pipeline's actions there run in another region, with an artifact store of that region,
    which the pipeline cannot tell from its own when it does not know where it is."""
    from .. import placement

    home = placement.home_of(loaded)
    found = []
    for name, merged in loaded.merged.items():
        if not placement.is_target(loaded, name):
            found.append(DeploymentTarget(name, merged.protected))
            continue
        where = placement.placement_of(loaded, name)
        account = where.account if where.account not in (None, home.account) else None
        region = where.region if where.region not in (None, home.region) else None
        if region is not None and home.region is None:
            raise UserError(
                f"{loaded.source}: environments.{home.environment}.region: needed, as "
                f"environments.{name}.region is {region}: the delivery pipeline runs in the "
                f"home environment's region and deploys {name} from there through an "
                "artifact store in each other region, so it must know which region is its own")
        found.append(DeploymentTarget(name, merged.protected, True, account, region))
    return tuple(found)


def targets_from(config: PipelineConfig) -> tuple[DeploymentTarget, ...]:
    """Every environment, as far as one environment's merged config tells (module docstring)."""
    overrides = {name: (o or {}) for name, o in config.environments.items()}
    anyone_sets_protected = any("protected" in o for o in overrides.values())
    # With no override anywhere, this config's value is the file's shared value.
    shared_protected = config.protected if not anyone_sets_protected else False
    return tuple(DeploymentTarget(name, bool(o.get("protected", shared_protected)))
                 for name, o in overrides.items())


def home_environment(config: PipelineConfig) -> str:
    return config.stages.cicd.home_environment or next(iter(config.environments))


def stack_name(project: str, environment: str) -> str:
    """The root stack of one environment (as `mlops-cfn deploy --stack-name` should name it)."""
    return f"{project}-{environment}"


def change_set_name(project: str, environment: str) -> str:
    return f"{stack_name(project, environment)}-delivery"


def _role_arn(name: str, target: DeploymentTarget) -> Sub:
    account = target.account or "${AWS::AccountId}"
    return Sub(f"arn:${{AWS::Partition}}:iam::{account}:role/{name}")


def delivery_role_arn(project: str, target: DeploymentTarget) -> Sub:
    """The role a remote target's deploy actions assume there (its bootstrap stack's
    DeliveryRole, named deterministically so the pipeline can name it before it exists)."""
    from ..bootstrap import delivery_role_name

    return _role_arn(delivery_role_name(project, target.environment), target)


def execution_role_arn(project: str, target: DeploymentTarget) -> Sub:
    """The role CloudFormation deploys a remote target with (its bootstrap's ExecutionRole)."""
    from ..bootstrap import execution_role_name

    return _role_arn(execution_role_name(project, target.environment), target)


def other_regions(targets: Sequence[DeploymentTarget]) -> list[str]:
    """The regions other than the home one where deploy actions run, each once, sorted."""
    return sorted({t.region for t in targets if t.region is not None})


def region_store_bucket(project: str, home: str, region: str) -> Sub:
    """The artifact bucket of the region support stack in `region` (bootstrap.region_support):
    named as the home artifact bucket is, in that region."""
    return Sub(naming.physical_name(naming.S3_BUCKET, project, "delivery").replace(
        naming.ENVIRONMENT, home).replace(naming.REGION, region))


def region_store_key_arn(region: str) -> Sub:
    """The region support stack's key in `region`: a replica of the multi-Region DeliveryKey,
    which has the primary's key id (AWS KMS Developer Guide, "Multi-Region keys in AWS KMS"), so
    its ARN is known here. An ARN, not an alias: "AWS::CodePipeline::Pipeline EncryptionKey"
    (CloudFormation Template Reference) recognizes aliases only in the key's own account, and
    cross-account actions read this store."""
    return Sub("arn:${AWS::Partition}:kms:%s:${AWS::AccountId}:key/${DeliveryKey}" % region)


def pipeline_name(project: str, home: str) -> str:
    """The pipeline's name: a literal, the same in every environment's template."""
    return naming.physical_name(naming.CODEPIPELINE, project, "delivery").replace(
        naming.ENVIRONMENT, home)


def retraining(config: PipelineConfig) -> bool:
    return config.stages.cicd.retrain.enabled and config.stages.training.enabled


def building_model_api_image(config: PipelineConfig) -> bool:
    """Whether the pipeline builds and deploys the shipped model API's image
    (CicdConfig.build_model_api_image)."""
    serving = config.stages.serving
    return (config.stages.cicd.build_model_api_image and serving.enabled
            and serving.fargate_enabled)


def model_api_repository(project: str, environment: str) -> str:
    """The serving stage's API repository in `environment` (serving_fargate.api_repository;
    a test keeps the two names equal)."""
    return naming.physical_name(naming.ECR_REPOSITORY, project, "model-api").replace(
        naming.ENVIRONMENT, environment)


def smoke_testing(config: PipelineConfig) -> bool:
    """Whether each environment's stage ends with the smoke test (CicdConfig.smoke_test)."""
    return config.stages.cicd.smoke_test and config.stages.serving.enabled


def deploying_approved_models(config: PipelineConfig) -> bool:
    """Whether an approval starts the pipeline and each run serves the latest approved package
    (CicdConfig.deploy_approved_models; switches.py refuses an explicit true it cannot honour)."""
    stages = config.stages
    return (stages.cicd.deploy_approved_models and stages.training.enabled
            and stages.serving.enabled and stages.serving.model_source == "model_package")


# --- the stage -------------------------------------------------------------------------------

def build(config: PipelineConfig,
          targets: Sequence[DeploymentTarget] | None = None,
          requirements: Iterable[str] = (), sharing: Sharing | None = None) -> Stage:
    """`sharing`: the file's environments in other accounts or regions (sharing.of), whose
    registry groups the build reads and whose API repositories the image build pushes to."""
    cicd = config.stages.cicd
    targets = tuple(targets) if targets is not None else targets_from(config)
    home = home_environment(config)
    b = StageBuilder("cicd", config.project,
                     "delivery pipeline (test, package, deploy to "
                     + ", ".join(t.environment for t in targets) + ")")
    b.template.add_condition(HOME, Equals(b.environment, home))
    cicd_partition.refuse_unavailable_partitions(b)
    b.add(cloudformation.WaitConditionHandle("Placeholder"))
    data_key = b.input(DATA_KEY_ARN)
    key = GetAtt(_home(b.add(delivery_key(config, targets))), "Arn")
    access_logs = b.input(ACCESS_LOGS_BUCKET_NAME)
    name = pipeline_name(config.project, home)

    artifacts = _home(b.add(delivery_bucket(b, "ArtifactBucket", "delivery", key, access_logs)))
    _home(b.add(tls_only_policy(artifacts, *store_reads(
        config.project, store_readers(targets, None), GetAtt(artifacts, "Arn")))))
    source_bucket = connection = None
    if cicd.source.provider == "connection":
        connection = b.setting(cicd.source, "connection_arn")
    else:
        source_bucket = _home(b.add(delivery_bucket(b, "SourceBucket", "source", key,
                                                    access_logs)))
        _home(b.add(tls_only_policy(source_bucket, publishers_only(
            source_bucket, cicd.source.publishers))))

    network = add_build_network(b) if cicd.build.in_vpc else None
    build_project = add_build_project(b, config, targets, artifacts, key, network, sharing)
    retrain_project = (add_retrain_project(b, config, artifacts, key, network)
                       if retraining(config) else None)
    deploy_role = add_deploy_role(b, artifacts, key)
    # A remote target is protected by its first deployment by hand (deploy_actions).
    protected = [t for t in targets if t.protected and not t.remote]
    protect_project = (add_protect_project(b, config, protected, artifacts, key, network)
                       if protected else None)
    # The smoke test reaches the environments of the home account and region only.
    smoke_project = (add_smoke_project(b, config, [t for t in targets if not t.remote],
                                       artifacts, key, network)
                     if smoke_testing(config) else None)
    image_project = (add_image_project(b, config, targets, artifacts, key, network, sharing)
                     if building_model_api_image(config) else None)
    projects = [p for p in (build_project, retrain_project, protect_project, smoke_project,
                            image_project) if p is not None]
    approvals = approval_topic(b, config, targets)
    pipeline_role = b.add(add_pipeline_role(config, targets, artifacts, source_bucket,
                                            connection, key, projects, deploy_role, approvals,
                                            data_key))
    source = source_action(config, source_bucket, connection)
    stages = pipeline_stages(config, targets, home, source, build_project, retrain_project,
                             deploy_role, approvals, protect_project, smoke_project,
                             image_project)
    pipeline = _home(b.add(codepipeline.Pipeline(
        "DeliveryPipeline",
        Name=name,
        PipelineType="V2",
        ExecutionMode="SUPERSEDED",
        # It deploys its own stack: after updating itself, it starts over as the new version.
        RestartExecutionOnUpdate=True,
        RoleArn=GetAtt(pipeline_role, "Arn"),
        **artifact_stores(config.project, home, targets, artifacts, key),
        Stages=stages,
    )))
    if source_bucket is not None:
        add_source_trigger(b, cicd, source_bucket, pipeline)
    if deploying_approved_models(config):
        add_approval_trigger(b, config.project, targets, pipeline, sharing)
        b.output(DELIVERY_SOURCE_BUCKET_NAME, Sub(
            naming.physical_name(naming.S3_BUCKET, config.project, "source").replace(
                naming.ENVIRONMENT, home)))
    b.output(DELIVERY_PIPELINE_NAME, name)
    add_deploy_policies(b, config.project, deploy_role, requirements)
    return b.finish()


def delivery_key(config: PipelineConfig,
                 targets: Sequence[DeploymentTarget] = ()) -> kms.Key:
    """The key of everything the pipeline carries between environments: sources, pipeline
    artifacts, packaged templates and assets.

    Its own key, not the home environment's data key, because every environment's roles
    decrypt the assets packaged here (assets.key_policies): a role of production may use this
    key, never development's data key. The account uses it through IAM policies only (each
    role is granted it by name, through S3); no service principal needs it, and grants on it
    are only for AWS resources (policies.grants_only_for_aws_resources, AWS Control Tower's
    CT.KMS.PR.3).

    With targets in other accounts it lets their delivery and execution roles decrypt through
    S3 (`store_key_use`); with targets in other regions it is a multi-Region key, replicated
    into each of those regions by the region support stack (bootstrap.region_support), so that
    the pipeline can name the replica's ARN (`region_store_key_arn`). A key becomes
    multi-Region only when created ("Multi-Region keys in AWS KMS"): adding the first target in
    another region replaces the key (the old one is retained).
    """
    multi_region = {"MultiRegion": True} if other_regions(targets) else {}
    return kms.Key(
        "DeliveryKey",
        Description=f"{config.project}: encrypts the delivery pipeline's sources, artifacts "
                    "and packages",
        EnableKeyRotation=True,
        PendingWindowInDays=config.stages.storage.key_deletion_window_days,
        KeyPolicy=policies.document(policies.key_administration_by_account(),
                                    policies.key_use_by_account(),
                                    policies.grants_only_for_aws_resources(),
                                    *store_key_use(config.project,
                                                   store_readers(targets, None))),
        **multi_region,
        # Packages of running stacks (assets a Glue job reads on every run) stay readable.
        **RETAIN,
    )


def approval_topic(b: StageBuilder, config: PipelineConfig,
                   targets: Sequence[DeploymentTarget]) -> Ref | None:
    """Where a pending approval is announced: the monitoring stage's alarm topic (its email
    subscription reaches whoever watches the pipeline), when there is one and something to
    approve."""
    if not (config.stages.monitoring.enabled and any(t.protected for t in targets)):
        return None
    return b.input(ALARM_TOPIC_ARN)


def _home(resource):
    """Created only in the home environment."""
    resource.Condition = HOME
    return resource


# --- artifact stores of remote targets -------------------------------------------------------

def store_readers(targets: Sequence[DeploymentTarget],
                  region: str | None) -> list[DeploymentTarget]:
    """The targets in other accounts whose deploy actions run in `region` (None: the home
    region), so read the artifact store there. A target in the home account needs no resource
    policy: its roles are granted the store by their own IAM policies (bootstrap.py), which the
    key's KeyUseThroughIam statement and the bucket's account honour."""
    return [t for t in targets if t.remote and t.account is not None and t.region == region]


def _accounts(readers: Sequence[DeploymentTarget]) -> list[Sub]:
    return [Sub(f"arn:${{AWS::Partition}}:iam::{account}:root")
            for account in sorted({t.account for t in readers if t.account is not None})]


def store_reads(project: str, readers: Sequence[DeploymentTarget],
                bucket_arn: Any) -> list[Statement]:
    """Bucket policy statements: the readers' delivery roles read the pipeline's artifacts, their
    execution roles the packages (delivery/), their stacks' roles the packaged assets
    (delivery/assets/), and nothing else. Each names the account as
    principal and the role by aws:PrincipalArn ("AWS global condition context keys", IAM User
    Guide), so the policy is valid before the roles exist (a principal naming a missing role is
    refused); the role's own policy must grant the read too ("Cross-account policy evaluation
    logic", IAM User Guide)."""
    if not readers:
        return []
    accounts = _accounts(readers)
    return [
        # AWS: "Create a pipeline in CodePipeline that uses resources from another AWS account"
        # (CodePipeline User Guide): the artifact bucket's policy admits the other account,
        # whose action role downloads the input artifacts (reads only: the deploy actions have
        # no output artifact).
        Statement(Sid="TargetDeliveryRolesReadArtifacts", Effect=Allow,
                  Principal=Principal("AWS", accounts),
                  Action=[awacs.s3.GetObject, awacs.s3.GetObjectVersion],
                  Resource=[Sub("${Bucket}/*", Bucket=bucket_arn)],
                  Condition=Condition(ArnEquals("aws:PrincipalArn", [
                      delivery_role_arn(project, t) for t in readers]))),
        # AWS: "AWS::CloudFormation::Stack" (TemplateURL) and "AWS::Lambda::Function Code"
        # (CloudFormation Template Reference): CloudFormation reads the packaged nested templates
        # and Lambda code with the stack's role, the target's execution role.
        Statement(Sid="TargetExecutionRolesReadPackages", Effect=Allow,
                  Principal=Principal("AWS", accounts),
                  Action=[awacs.s3.GetObject, awacs.s3.GetObjectVersion],
                  Resource=[Sub("${Bucket}/%s*" % spec.PACKAGE_PREFIX, Bucket=bucket_arn)],
                  Condition=Condition(ArnEquals("aws:PrincipalArn", [
                      execution_role_arn(project, t) for t in readers]))),
        # The target's own stacks read packaged assets at run time (a Glue job its script, a
        # SageMaker pipeline step its code, a build the wheel: assets.py); each such role's
        # policy grants it the asset, and "Cross-account policy evaluation logic" (IAM User
        # Guide) asks the bucket's policy to admit it too. Its stacks' roles, named after the
        # stack `<project>-<env>` by CloudFormation (permissions.iam_resources), read the assets
        # only, never the pipeline's artifacts or the templates.
        Statement(Sid="TargetStacksReadAssets", Effect=Allow,
                  Principal=Principal("AWS", accounts),
                  Action=[awacs.s3.GetObject, awacs.s3.GetObjectVersion],
                  Resource=[Sub("${Bucket}/%s%s/*" % (spec.PACKAGE_PREFIX, assets.ASSETS_DIR),
                                Bucket=bucket_arn)],
                  Condition=Condition(ArnLike("aws:PrincipalArn", [
                      stack_roles_arn(project, t) for t in readers]))),
    ]


def stack_roles_arn(project: str, target: DeploymentTarget) -> Sub:
    """The roles of a target environment's stacks, in its account: CloudFormation names them
    after the stack, `<project>-<env>-...`."""
    return Sub(f"arn:${{AWS::Partition}}:iam::{target.account}:role/"
               f"{stack_name(project, target.environment)}-*")


def store_key_use(project: str, readers: Sequence[DeploymentTarget]) -> list[Statement]:
    """Key policy statements: the readers' delivery and execution roles, and their stacks' roles,
    decrypt what they read, only through S3 in the store's region, and nothing else."""
    if not readers:
        return []
    # AWS: "Allowing users in other accounts to use a KMS key" (AWS KMS Developer Guide): the
    # key policy admits the external account, whose IAM policies grant its roles; "kms:ViaService"
    # (same guide): only through S3 of this region, as SSE-KMS decrypts an object for its reader;
    # "Create a pipeline in CodePipeline that uses resources from another AWS account": the
    # artifact store's key admits the other account.
    return [Statement(
        Sid="TargetRolesDecryptThroughS3", Effect=Allow,
        Principal=Principal("AWS", _accounts(readers)),
        Action=[awacs.kms.Decrypt],
        Resource=["*"],
        Condition=Condition([
            ArnEquals("aws:PrincipalArn", [arn for t in readers for arn in (
                delivery_role_arn(project, t), execution_role_arn(project, t))]),
            StringEquals("kms:ViaService", Sub("s3.${AWS::Region}.amazonaws.com"))])),
        # AWS: same pages; the target's stacks' roles decrypt the assets they read at run time
        # (store_reads, TargetStacksReadAssets), through S3 of this region only.
        Statement(
            Sid="TargetStacksDecryptAssetsThroughS3", Effect=Allow,
            Principal=Principal("AWS", _accounts(readers)),
            Action=[awacs.kms.Decrypt],
            Resource=["*"],
            Condition=Condition([
                ArnLike("aws:PrincipalArn", [stack_roles_arn(project, t) for t in readers]),
                StringEquals("kms:ViaService", Sub("s3.${AWS::Region}.amazonaws.com"))]))]


def artifact_stores(project: str, home: str, targets: Sequence[DeploymentTarget],
                    artifacts: s3.Bucket, key: Any) -> dict[str, Any]:
    """The pipeline's artifact store, or with actions in other regions one per region: the home
    bucket here, the region support stack's bucket and key in each other region
    ("AWS::CodePipeline::Pipeline ArtifactStore": a pipeline with a cross-region action must
    use ArtifactStores; CodePipeline User Guide, "Add a cross-Region action in CodePipeline":
    an artifact store in each region where actions run)."""
    home_store = codepipeline.ArtifactStore(
        Type="S3", Location=Ref(artifacts),
        EncryptionKey=codepipeline.EncryptionKey(Id=key, Type="KMS"))
    regions = other_regions(targets)
    if not regions:
        return {"ArtifactStore": home_store}
    return {"ArtifactStores": [
        codepipeline.ArtifactStoreMap(Region=Ref("AWS::Region"), ArtifactStore=home_store),
        *(codepipeline.ArtifactStoreMap(Region=region, ArtifactStore=codepipeline.ArtifactStore(
            Type="S3", Location=region_store_bucket(project, home, region),
            EncryptionKey=codepipeline.EncryptionKey(Id=region_store_key_arn(region),
                                                     Type="KMS")))
          for region in regions)]}


def region_store_statements(project: str, home: str, targets: Sequence[DeploymentTarget], *,
                            package: bool) -> list[Statement]:
    """The home roles' use of the region support stacks' stores: the pipeline role copies the
    artifacts there and reads them back; the build (`package`) uploads the templates and assets
    of the environments deployed in that region."""
    regions = other_regions(targets)
    if not regions:
        return []
    buckets = [Sub("arn:${AWS::Partition}:s3:::${Name}", Name=region_store_bucket(
        project, home, region)) for region in regions]
    objects = [Sub("${Bucket}/*", Bucket=bucket) for bucket in buckets]
    statements = [
        # AWS: "Manage the CodePipeline service role" (CodePipeline User Guide) and "Add a
        # cross-Region action in CodePipeline": the artifact store of each action's region.
        Statement(Effect=Allow,
                  Action=[awacs.s3.GetBucketAcl, awacs.s3.GetBucketLocation,
                          *([awacs.s3.ListBucket, awacs.s3.GetEncryptionConfiguration]
                            if package else [awacs.s3.GetBucketVersioning])],
                  Resource=buckets),
        # AWS: same pages: the artifacts' objects (the build: "PutObject", Amazon S3 API
        # Reference, what `mlops-cfn package` uploads).
        Statement(Effect=Allow,
                  Action=[awacs.s3.GetObject, awacs.s3.GetObjectVersion, awacs.s3.PutObject,
                          *([] if package else [awacs.s3.PutObjectAcl])],
                  Resource=objects),
    ]
    for region in regions:
        # AWS: "Using server-side encryption with AWS KMS keys (SSE-KMS)" (Amazon S3 User
        # Guide): uploads need kms:GenerateDataKey, downloads kms:Decrypt, on the store's key,
        # through S3 of its region.
        statements.append(Statement(
            Effect=Allow, Action=list(policies.KEY_READ_WRITE),
            Resource=[region_store_key_arn(region)],
            Condition=Condition(StringEquals("kms:ViaService", f"s3.{region}.amazonaws.com"))))
    return statements


# --- buckets ---------------------------------------------------------------------------------

def delivery_bucket(b: StageBuilder, title: str, purpose: str, key: Any,
                    access_logs: Ref) -> s3.Bucket:
    """A bucket of the pipeline, as secure as the data buckets: the sources and packages it
    holds decide what runs in every environment."""
    return s3.Bucket(
        title,
        BucketName=b.physical_name(naming.S3_BUCKET, purpose),
        BucketEncryption=s3.BucketEncryption(ServerSideEncryptionConfiguration=[
            s3.ServerSideEncryptionRule(
                ServerSideEncryptionByDefault=s3.ServerSideEncryptionByDefault(
                    SSEAlgorithm="aws:kms", KMSMasterKeyID=key),
                BucketKeyEnabled=True,
            )]),
        # The S3 source action needs versions; artifacts keep them for re-runs and audits.
        VersioningConfiguration=s3.VersioningConfiguration(Status="Enabled"),
        PublicAccessBlockConfiguration=s3.PublicAccessBlockConfiguration(
            BlockPublicAcls=True, BlockPublicPolicy=True, IgnorePublicAcls=True,
            RestrictPublicBuckets=True),
        OwnershipControls=s3.OwnershipControls(
            Rules=[s3.OwnershipControlsRule(ObjectOwnership="BucketOwnerEnforced")]),
        LoggingConfiguration=s3.LoggingConfiguration(
            DestinationBucketName=access_logs,
            LogFilePrefix=f"{S3_ACCESS_LOG_PREFIX}{purpose}/",
            TargetObjectKeyFormat=s3.TargetObjectKeyFormat(
                PartitionedPrefix=s3.PartitionedPrefix(PartitionDateSource="EventTime"))),
        LifecycleConfiguration=s3.LifecycleConfiguration(Rules=[s3.LifecycleRule(
            Id="expire-noncurrent-versions",
            Status="Enabled",
            NoncurrentVersionExpiration=s3.NoncurrentVersionExpiration(
                NoncurrentDays=NONCURRENT_VERSION_DAYS),
            ExpiredObjectDeleteMarker=True,
            AbortIncompleteMultipartUpload=s3.AbortIncompleteMultipartUpload(
                DaysAfterInitiation=INCOMPLETE_UPLOAD_DAYS),
        )]),
        # The S3 source starts the pipeline through an EventBridge rule on new versions; the
        # artifact bucket's events are there for audits (AWS Control Tower CT.S3.PR.4 asks
        # every bucket for event notifications).
        NotificationConfiguration=s3.NotificationConfiguration(
            EventBridgeConfiguration=s3.EventBridgeConfiguration(EventBridgeEnabled=True)),
        Metadata=control_tower_exceptions(OBJECT_LOCK_EXCEPTION),
        **RETAIN,
    )


def tls_only_policy(bucket: s3.Bucket, *more: Statement) -> s3.BucketPolicy:
    return s3.BucketPolicy(
        f"{bucket.title}Policy",
        Bucket=Ref(bucket),
        PolicyDocument=policies.document(
            policies.deny_insecure_transport(GetAtt(bucket, "Arn")), *more),
    )


def publishers_only(bucket: s3.Bucket, publishers: Sequence[str]) -> Statement:
    """Whoever writes the source decides what the pipeline deploys: only the named publishers
    (stages.cicd.source.publishers) may write or delete its objects, the account's root user
    when none is named. An explicit Deny in a bucket policy overrides every Allow of the
    principal's own policies ("Policy evaluation logic", IAM User Guide); aws:PrincipalArn is a
    role session's role ("AWS global condition context keys"). Multipart uploads and copies
    are authorized as s3:PutObject (Amazon S3 User Guide, "Policy actions for Amazon S3")."""
    allowed = list(publishers) or [policies.arn("iam", "root", regional=False)]
    return Statement(
        Sid="OnlyNamedPublishersWriteTheSource",
        Effect=Deny,
        Principal=Principal("AWS", "*"),
        Action=[awacs.s3.PutObject, awacs.s3.DeleteObject, awacs.s3.DeleteObjectVersion],
        Resource=[Sub("${%s.Arn}/*" % bucket.title)],
        Condition=Condition(ArnNotEquals("aws:PrincipalArn", allowed)),
    )


# --- build -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class BuildNetwork:
    security_group: ec2.SecurityGroup
    subnets: Ref
    vpc: Ref


def add_build_network(b: StageBuilder) -> BuildNetwork:
    vpc = b.input(VPC_ID)
    group = _home(b.add(ec2.SecurityGroup(
        "BuildSecurityGroup",
        GroupDescription="Delivery builds: HTTPS out (package index, AWS APIs)",
        VpcId=vpc,
        # The build downloads packages from the internet (through NAT) and calls AWS APIs;
        # nothing connects to it.
        SecurityGroupEgress=[ec2.SecurityGroupRule(
            Description="HTTPS", IpProtocol="tcp", FromPort=443, ToPort=443,
            CidrIp="0.0.0.0/0")],
    )))
    return BuildNetwork(group, b.input(PRIVATE_SUBNET_IDS), vpc)


def add_build_project(b: StageBuilder, config: PipelineConfig,
                      targets: Sequence[DeploymentTarget], artifacts: s3.Bucket, key: Any,
                      network: BuildNetwork | None,
                      sharing: Sharing | None = None) -> codebuild.Project:
    cicd = config.stages.cicd
    log_group = _home(encrypted_log_group(b, config, "BuildLogGroup", "delivery-build"))
    wheel = b.tool_wheel()
    approved = deploying_approved_models(config)
    role = _home(b.add(iam.Role(
        "BuildRole",
        Description="Delivery build: check, test and package the pipeline",
        AssumeRolePolicyDocument=codebuild_trust(),
        Policies=[iam.Policy(PolicyName="build", PolicyDocument=policies.document(
            build_statements(config.project, targets, artifacts, key, log_group, network),
            approved_model_statements(approved),
            shared_registry_statements(config.project, sharing if approved else None),
            # `package` of the environments deployed in other regions, into their stores.
            region_store_statements(config.project, home_environment(config), targets,
                                    package=True))),
            # The wheel it installs lies wherever this stack's assets were packaged.
            *b.asset_key_policies()],
        # A target's registry group admits it by this name (sharing.registry_policy).
        **_shared_role_name(sharing, sharing_module.build_role_name, config.project),
    )))
    build_spec = spec.build_spec(
        [t.environment for t in targets], cicd.build,
        cicd.retrain.code_paths if retraining(config) else None,
        {t.environment: stack_name(config.project, t.environment) for t in targets},
        approved_models=approved,
        model_api_image=building_model_api_image(config),
        buckets={t.environment: spec.region_bucket_variable(t.region) for t in targets
                 if t.region is not None},
        registries=_registries(sharing),
        places=_registries(sharing))
    home = home_environment(config)
    region_buckets = {spec.region_bucket_variable(region): region_store_bucket(
        config.project, home, region) for region in other_regions(targets)}
    return action_project(
        b, cicd, "BuildProject", "Checks, tests and packages the pipeline for every environment",
        role, build_spec, {spec.ARTIFACT_BUCKET_VARIABLE: Ref(artifacts),
                           spec.WHEEL_VARIABLE: wheel, **region_buckets}, key, log_group,
        network)


def _shared_role_name(sharing: Sharing | None, name_of, project: str) -> dict[str, str]:
    """A fixed RoleName with targets, which admit the role by its name (sharing.py)."""
    return {} if sharing is None else {"RoleName": name_of(project, sharing.home)}


def _registries(sharing: Sharing | None) -> dict[str, tuple[str | None, str | None]]:
    """Each target environment's account and region (None: the home's), where the build finds
    its registry group."""
    return {} if sharing is None else {t.environment: (t.account, t.region)
                                       for t in sharing.targets}


def _target_arn(service: str, target, resource: str) -> Sub:
    """An ARN in a target's account and region (the home's where it names none)."""
    region = target.region or "${AWS::Region}"
    account = target.account or "${AWS::AccountId}"
    return Sub(f"arn:${{AWS::Partition}}:{service}:{region}:{account}:{resource}")


def shared_registry_statements(project: str, sharing: Sharing | None) -> list[Statement]:
    """What `package --latest-approved-model` reads of the targets' registry groups, in their
    accounts and regions (each target's group admits this role: sharing.registry_policy)."""
    if sharing is None:
        return []
    from ..deploy import model_package_group

    groups = [(t, model_package_group(project, t.environment)) for t in sharing.targets]
    return [
        # AWS: "Set up discoverability" (SageMaker AI Developer Guide, Model Registry): a
        # group shared by its resource policy is read with DescribeModelPackageGroup on the
        # group, ListModelPackages and DescribeModelPackage on its versions; across accounts
        # the caller's own policy must allow them too ("Policy evaluation logic",
        # cross-account requests, IAM User Guide).
        Statement(Effect=Allow, Action=list(sharing_module.REGISTRY_READS),
                  Resource=[arn for target, group in groups for arn in (
                      _target_arn("sagemaker", target, f"model-package-group/{group}"),
                      _target_arn("sagemaker", target, f"model-package/{group}/*"))]),
    ]


def add_retrain_project(b: StageBuilder, config: PipelineConfig, artifacts: s3.Bucket,
                        key: Any, network: BuildNetwork | None) -> codebuild.Project:
    cicd = config.stages.cicd
    log_group = _home(encrypted_log_group(b, config, "RetrainLogGroup", "delivery-retrain"))
    training_start = b.input(TRAINING_START_ARN)
    role = _home(b.add(iam.Role(
        "RetrainRole",
        Description="Continuous training: start a training run when the training code changed",
        AssumeRolePolicyDocument=codebuild_trust(),
        Policies=[iam.Policy(PolicyName="retrain", PolicyDocument=policies.document(
            retrain_statements(artifacts, key, log_group, training_start, network)))],
    )))
    return action_project(
        b, cicd, "RetrainProject", "Starts a training run when the training code changed",
        role, spec.retrain_spec(), {spec.ARTIFACT_BUCKET_VARIABLE: Ref(artifacts),
                                    spec.TRAINING_START_VARIABLE: training_start},
        key, log_group, network)


def add_image_project(b: StageBuilder, config: PipelineConfig,
                      targets: Sequence[DeploymentTarget], artifacts: s3.Bucket, key: Any,
                      network: BuildNetwork | None,
                      sharing: Sharing | None = None) -> codebuild.Project:
    """Builds the shipped model API's image and pushes it to every environment's API
    repository (cicd_buildspec.image_spec)."""
    cicd = config.stages.cicd
    log_group = _home(encrypted_log_group(b, config, "ImageLogGroup", "delivery-image"))
    wheel = b.tool_wheel()
    repositories = [model_api_repository(config.project, t.environment) for t in targets]
    placed = _registries(sharing)
    # Where each repository is: its environment's account and region (None: the home's).
    destinations = [(name, *placed.get(t.environment, (None, None)))
                    for name, t in zip(repositories, targets)]
    role = _home(b.add(iam.Role(
        "ImageRole",
        Description="Delivery: build the model API's image and push it to the API repositories",
        AssumeRolePolicyDocument=codebuild_trust(),
        Policies=[iam.Policy(PolicyName="image", PolicyDocument=policies.document(
            # Its input artifact (CodeBuild actions take one).
            *artifact_statements(artifacts, write=False),
            # AWS: "Using server-side encryption with AWS KMS keys (SSE-KMS)": downloads
            # decrypt.
            policies.use_key(key, policies.KEY_READ, via_services=["s3"]),
            # AWS: "GetObject" (Amazon S3 API Reference): the mlops-cfn wheel it installs.
            assets.read_statement([assets.tool_wheel_arn()]),
            # AWS: "IAM permissions for pushing an image to an Amazon ECR private repository"
            # (the actions docker push needs, on the repository; ECR encrypts with the
            # repository's own KMS grant, so the pusher needs no key permission: AWS:
            # "Encryption at rest", Amazon ECR User Guide), and DescribeImages for the tag it
            # checks first; the project's API repositories only.
            Statement(Effect=Allow, Action=[
                awacs.ecr.BatchCheckLayerAvailability, awacs.ecr.BatchGetImage,
                awacs.ecr.CompleteLayerUpload, awacs.ecr.DescribeImages,
                awacs.ecr.InitiateLayerUpload, awacs.ecr.PutImage, awacs.ecr.UploadLayerPart],
                Resource=[_target_arn("ecr", _Where(account, region), f"repository/{name}")
                          if (account, region) != (None, None)
                          else policies.arn("ecr", f"repository/{name}")
                          for name, account, region in destinations]),
            # AWS: "IAM permissions for pushing an image to an Amazon ECR private repository":
            # GetAuthorizationToken on "*" (it has no resource-level permission).
            Statement(Effect=Allow, Action=[awacs.ecr.GetAuthorizationToken], Resource=["*"]),
            log_statement(log_group),
            *vpc_statements(network),
        )), *b.asset_key_policies()],
        # A target's API repository admits it by this name (sharing.repository_policy).
        **_shared_role_name(sharing, sharing_module.image_role_name, config.project),
    )))
    project = action_project(
        b, cicd, "ImageProject",
        "Builds the model API's image and pushes it to the environments' API repositories",
        role, spec.image_spec(cicd.build, destinations), {spec.WHEEL_VARIABLE: wheel}, key,
        log_group, network, privileged=True)
    project.Metadata = control_tower_exceptions((
        "CT.CODEBUILD.PR.4",
        "Docker builds the model API's image here and needs privileged mode (AWS: \"Docker "
        "in custom image sample\", CodeBuild User Guide); the project runs only the shipped "
        "Dockerfile, with a role that may push to the project's API repositories and nothing "
        "else. Where the control is active, set stages.cicd.build_model_api_image to false "
        "and push the image yourself."))
    return project


@dataclass(frozen=True)
class _Where:
    account: str | None
    region: str | None


def add_smoke_project(b: StageBuilder, config: PipelineConfig,
                      targets: Sequence[DeploymentTarget], artifacts: s3.Bucket, key: Any,
                      network: BuildNetwork | None) -> codebuild.Project:
    """The smoke test each environment's stage ends with (cicd_buildspec.smoke_spec)."""
    cicd = config.stages.cicd
    log_group = _home(encrypted_log_group(b, config, "SmokeLogGroup", "delivery-smoke"))
    wheel = b.tool_wheel()
    stacks = [policies.arn("cloudformation",
                           f"stack/{stack_name(config.project, t.environment)}/*")
              for t in targets]
    statements = [
        # Its input artifact, the source (the pipeline file): CodeBuild actions take one.
        *artifact_statements(artifacts, write=False),
        # AWS: "Using server-side encryption with AWS KMS keys (SSE-KMS)": downloads decrypt.
        policies.use_key(key, policies.KEY_READ, via_services=["s3"]),
        # AWS: "GetObject" (Amazon S3 API Reference): the mlops-cfn wheel it installs.
        assets.read_statement([assets.tool_wheel_arn()]),
        # AWS: "DescribeStacks" (AWS CloudFormation API Reference): what the stack serves.
        Statement(Effect=Allow, Action=[awacs.cloudformation.DescribeStacks], Resource=stacks),
        log_statement(log_group),
        *vpc_statements(network),
    ]
    serving = config.stages.serving
    if serving.sagemaker_enabled:
        # AWS: "InvokeEndpoint" (Amazon SageMaker Runtime API Reference;
        # sagemaker:InvokeEndpoint on the endpoint): the project's endpoints only.
        statements.append(Statement(
            Effect=Allow, Action=[awacs.sagemaker.InvokeEndpoint],
            Resource=[policies.arn("sagemaker", f"endpoint/{config.project}-*")]))
    if serving.sagemaker_enabled and serving.sagemaker.kind == "asynchronous":
        statements += async_smoke_statements(config, targets)
    if serving.fargate_enabled and serving.api_type == "http" and network is not None:
        # AWS: "Control access to HTTP APIs with IAM authorization" (execute-api:Invoke on
        # <api-id>/<stage>/<method>/<path>): the two routes the smoke test calls.
        statements.append(Statement(
            Effect=Allow, Action=[Action("execute-api", "Invoke")],
            Resource=[policies.arn("execute-api", "*/*/GET/health"),
                      policies.arn("execute-api", "*/*/POST/predict")]))
    role = _home(b.add(iam.Role(
        "SmokeRole",
        Description="Delivery: send one sample record to what an environment serves",
        AssumeRolePolicyDocument=codebuild_trust(),
        Policies=[iam.Policy(PolicyName="smoke",
                             PolicyDocument=policies.document(statements)),
                  *b.asset_key_policies()],
    )))
    return action_project(
        b, cicd, "SmokeProject",
        "Sends one sample record to an environment's endpoint and API after its deployment",
        role, spec.smoke_spec(cicd.build, endpoint_only=network is None),
        {spec.WHEEL_VARIABLE: wheel}, key, log_group, network)


def async_smoke_statements(config: PipelineConfig,
                           targets: Sequence[DeploymentTarget]) -> list[Statement]:
    """What the smoke check of an asynchronous endpoint does (smoke.check_async_endpoint) in
    each environment's artifacts bucket: write one request under the endpoint's input prefix
    (its smoke/ folder only), read the answer or the error SageMaker writes, through the
    environment's data key."""
    prefixes = config.stages.serving.sagemaker.asynchronous
    buckets = [naming.physical_name(naming.S3_BUCKET, config.project, "artifacts")
               .replace(naming.ENVIRONMENT, t.environment) for t in targets]

    def objects(prefix: str) -> list[Sub]:
        return [Sub(f"arn:${{AWS::Partition}}:s3:::{bucket}/{prefix}*") for bucket in buckets]

    return [
        # AWS: "InvokeEndpointAsync" (Amazon SageMaker Runtime API Reference;
        # sagemaker:InvokeEndpointAsync on the endpoint): the project's endpoints only.
        Statement(Effect=Allow, Action=[awacs.sagemaker.InvokeEndpointAsync],
                  Resource=[policies.arn("sagemaker", f"endpoint/{config.project}-*")]),
        # AWS: "PutObject" and "GetObject" (Amazon S3 API Reference): the request it writes,
        # the answer or error SageMaker writes back.
        Statement(Effect=Allow, Action=[awacs.s3.PutObject],
                  Resource=objects(f"{prefixes.input_prefix}smoke/")),
        # AWS: "GetObject" (Amazon S3 API Reference): the answer or the error it waits for.
        Statement(Effect=Allow, Action=[awacs.s3.GetObject],
                  Resource=objects(prefixes.output_prefix) + objects(prefixes.failure_prefix)),
        # AWS: "GetObject" (Amazon S3 API Reference, Permissions): without s3:ListBucket a key
        # that does not exist yet answers 403, not 404, so waiting for the answer needs it;
        # listing only under the output and failure prefixes.
        Statement(Effect=Allow, Action=[awacs.s3.ListBucket],
                  Resource=[Sub(f"arn:${{AWS::Partition}}:s3:::{bucket}") for bucket in buckets],
                  Condition=Condition(StringLike("s3:prefix", [
                      f"{prefixes.output_prefix}*", f"{prefixes.failure_prefix}*"]))),
        # AWS: "Using server-side encryption with AWS KMS keys (SSE-KMS)": writing an object
        # under the bucket's key needs kms:GenerateDataKey, reading it kms:Decrypt. The data
        # keys of the project's environments, known by their project tag (AWS: "ABAC for AWS
        # KMS"), through S3 only.
        Statement(
            Effect=Allow, Action=[awacs.kms.GenerateDataKey, awacs.kms.Decrypt],
            Resource=[policies.arn("kms", "key/*")],
            Condition=Condition(StringEquals({
                f"aws:ResourceTag/{boundary.PROJECT_TAG}": config.project,
                "kms:ViaService": Sub("s3.${AWS::Region}.amazonaws.com")}))),
    ]


def add_protect_project(b: StageBuilder, config: PipelineConfig,
                        protected: Sequence[DeploymentTarget], artifacts: s3.Bucket, key: Any,
                        network: BuildNetwork | None) -> codebuild.Project:
    cicd = config.stages.cicd
    log_group = _home(encrypted_log_group(b, config, "ProtectLogGroup", "delivery-protect"))
    stacks = [policies.arn("cloudformation",
                           f"stack/{stack_name(config.project, t.environment)}/*")
              for t in protected]
    role = _home(b.add(iam.Role(
        "ProtectRole",
        Description="Delivery: termination protection for the protected environments' stacks",
        AssumeRolePolicyDocument=codebuild_trust(),
        Policies=[iam.Policy(PolicyName="protect", PolicyDocument=policies.document(
            # Its input artifact: CodeBuild actions take one.
            *artifact_statements(artifacts, write=False),
            # AWS: "Using server-side encryption with AWS KMS keys (SSE-KMS)": downloads
            # decrypt.
            policies.use_key(key, policies.KEY_READ, via_services=["s3"]),
            # AWS: "UpdateTerminationProtection" (AWS CloudFormation API Reference).
            Statement(Effect=Allow,
                      Action=[awacs.cloudformation.UpdateTerminationProtection],
                      Resource=stacks),
            log_statement(log_group),
            *vpc_statements(network),
        ))],
    )))
    return action_project(
        b, cicd, "ProtectProject",
        "Turns termination protection on for a protected environment's stack",
        role, spec.protect_spec(), {}, key, log_group, network)


def action_project(b: StageBuilder, cicd: CicdConfig, title: str, description: str,
                   role: iam.Role, build_spec: dict, variables: dict[str, Any], key: Any,
                   log_group, network: BuildNetwork | None,
                   privileged: bool = False) -> codebuild.Project:
    """A CodeBuild project one of the pipeline's actions runs: the build image and size of
    `stages.cicd.build`, encrypted with the data key, logging to its own group."""
    return _home(b.add(codebuild.Project(
        title,
        Description=description,
        ServiceRole=GetAtt(role, "Arn"),
        Source=codebuild.Source(Type="CODEPIPELINE", BuildSpec=spec.as_text(build_spec)),
        Artifacts=codebuild.Artifacts(Type="CODEPIPELINE"),
        Environment=build_environment(b, cicd, variables, privileged),
        EncryptionKey=key,
        TimeoutInMinutes=b.setting(cicd.build, "timeout_minutes"),
        LogsConfig=project_logs(log_group),
        **project_network(network),
    )))


def build_environment(b: StageBuilder, cicd: CicdConfig, variables: dict[str, Any],
                      privileged: bool = False) -> codebuild.Environment:
    return codebuild.Environment(
        Type="LINUX_CONTAINER",
        ComputeType=b.setting(cicd.build, "compute_type"),
        Image=b.setting(cicd.build, "image"),
        ImagePullCredentialsType="CODEBUILD",
        # Only the image project builds a container image (Docker needs privileged mode); the
        # others get no Docker daemon and no root on the host.
        PrivilegedMode=privileged,
        EnvironmentVariables=[
            codebuild.EnvironmentVariable(Name=name, Type="PLAINTEXT", Value=value)
            for name, value in sorted(variables.items())],
    )


def project_logs(log_group) -> codebuild.LogsConfig:
    return codebuild.LogsConfig(
        CloudWatchLogs=codebuild.CloudWatchLogs(Status="ENABLED", GroupName=Ref(log_group)),
        S3Logs=codebuild.S3Logs(Status="DISABLED"))


def project_network(network: BuildNetwork | None) -> dict[str, Any]:
    if network is None:
        return {}
    return {"VpcConfig": codebuild.VpcConfig(
        VpcId=network.vpc, Subnets=network.subnets,
        SecurityGroupIds=[GetAtt(network.security_group, "GroupId")])}


def codebuild_trust():
    # CodeBuild's confused-deputy guard: only for projects of this account.
    return policies.trusted_by("codebuild.amazonaws.com",
                               StringEquals("aws:SourceAccount", Ref("AWS::AccountId")))


def artifact_statements(artifacts: s3.Bucket, *, write: bool) -> list[Statement]:
    """A CodeBuild project's input and output artifacts in the pipeline's store (CodeBuild User
    Guide, AWS: "Allow CodeBuild to interact with other AWS services": the service role policy
    for projects CodePipeline runs)."""
    return [
        Statement(Effect=Allow, Action=[awacs.s3.GetBucketAcl, awacs.s3.GetBucketLocation],
                  Resource=[GetAtt(artifacts, "Arn")]),
        Statement(Effect=Allow,
                  Action=[awacs.s3.GetObject, awacs.s3.GetObjectVersion,
                          *([awacs.s3.PutObject] if write else [])],
                  Resource=[Sub("${%s.Arn}/*" % artifacts.title)]),
    ]


def build_statements(project: str, targets: Sequence[DeploymentTarget], artifacts: s3.Bucket,
                     key: Any, log_group, network: BuildNetwork | None) -> list[Statement]:
    bucket = GetAtt(artifacts, "Arn")
    return [
        # Its input and output artifacts; and what `mlops-cfn package` does under delivery/.
        *artifact_statements(artifacts, write=True),
        # AWS: "HeadObject" (Amazon S3 API Reference): without s3:ListBucket a missing key
        # answers 403, not 404 (package checks each key before uploading it).
        Statement(Effect=Allow, Action=[awacs.s3.ListBucket], Resource=[bucket]),
        # AWS: "GetBucketEncryption" (Amazon S3 API Reference; s3:GetEncryptionConfiguration):
        # package names the bucket's key for the roles that read the assets (package.py).
        Statement(Effect=Allow, Action=[awacs.s3.GetEncryptionConfiguration], Resource=[bucket]),
        # AWS: "Using server-side encryption with AWS KMS keys (SSE-KMS)" (Amazon S3 User
        # Guide): uploads need kms:GenerateDataKey, downloads kms:Decrypt, on the delivery key.
        policies.use_key(key, via_services=["s3"]),
        # AWS: "GetObject" (Amazon S3 API Reference: s3:GetObject): the mlops-cfn wheel its
        # install commands download (wheel.py; assets.py).
        assets.read_statement([assets.tool_wheel_arn()]),
        # AWS: "DescribeStacks" (AWS CloudFormation API Reference): package --stack-name keeps
        # each live stack's model and image (package.template_configuration).
        Statement(Effect=Allow, Action=[awacs.cloudformation.DescribeStacks],
                  Resource=[Sub(f"arn:${{AWS::Partition}}:cloudformation:"
                                f"{t.region or '${AWS::Region}'}:${{AWS::AccountId}}:"
                                f"stack/{stack_name(project, t.environment)}/*")
                            for t in targets if t.account is None]),
        *stack_reader_statements(project, targets),
        log_statement(log_group),
        *vpc_statements(network),
    ]


def stack_reader_role_arn(project: str, target: DeploymentTarget) -> Sub:
    """The role the build reads a target's stack with in its account (its bootstrap stack's
    StackReaderRole)."""
    from ..bootstrap import stack_reader_role_name

    return _role_arn(stack_reader_role_name(project, target.environment), target)


def stack_reader_statements(project: str,
                            targets: Sequence[DeploymentTarget]) -> list[Statement]:
    """A stack in another account is read through that account's reader role
    (bootstrap.stack_reader_role): `package --stack-account`."""
    readers = [t for t in targets if t.account is not None]
    if not readers:
        return []
    # AWS: "Granting a user permissions to switch roles" (IAM User Guide): the caller's own
    # policy allows sts:AssumeRole on the role of the other account, which trusts it.
    return [Statement(Effect=Allow, Action=[awacs.sts.AssumeRole],
                      Resource=[stack_reader_role_arn(project, t) for t in readers])]


def approved_model_statements(on: bool) -> list[Statement]:
    """What `package --latest-approved-model` asks of SageMaker (deploy.newest_approved)."""
    if not on:
        return []
    return [
        # AWS: "Actions, resources, and condition keys for Amazon SageMaker AI":
        # ListModelPackages and DescribeModelPackage are authorized on the model-package
        # resource type; which ARN a listing is checked against is not documented, so the
        # statement names this account's and region's packages, not one group's. It lists the
        # approved versions and reads when each was last approved (deploy.newest_approved).
        Statement(Effect=Allow, Action=[awacs.sagemaker.ListModelPackages,
                                        awacs.sagemaker.DescribeModelPackage],
                  Resource=[policies.arn("sagemaker", "model-package/*")]),
    ]


def retrain_statements(artifacts: s3.Bucket, key: Any, log_group, training_start: Ref,
                       network: BuildNetwork | None) -> list[Statement]:
    state = Sub("${%s.Arn}/%s" % (artifacts.title, spec.RETRAIN_STATE_KEY))
    return [
        # Its input artifact (CodeBuild actions take one); reading the remembered hash.
        *artifact_statements(artifacts, write=False),
        # AWS: "PutObject" (Amazon S3 API Reference): remembering the hash it started a run
        # for.
        Statement(Effect=Allow, Action=[awacs.s3.PutObject], Resource=[state]),
        # AWS: "Using server-side encryption with AWS KMS keys (SSE-KMS)", as for the build.
        policies.use_key(key, via_services=["s3"]),
        # AWS: "StartPipelineExecution" (Amazon SageMaker API Reference) and "StartBuild"
        # (AWS CodeBuild API Reference), on the one thing that starts a training run (the
        # wire TrainingStartArn: the training pipeline, or the training project with engine
        # codebuild). IAM matches an action only against a resource of its own service, so
        # only one of the two ever applies, and the stage need not know which.
        Statement(Effect=Allow, Action=[awacs.sagemaker.StartPipelineExecution,
                                        awacs.codebuild.StartBuild],
                  Resource=[training_start]),
        log_statement(log_group),
        *vpc_statements(network),
    ]


def log_statement(log_group) -> Statement:
    """CodeBuild User Guide, AWS: "Allow CodeBuild to interact with other AWS services": the
    build writes its logs to the project's (existing, encrypted) log group."""
    return Statement(
        Effect=Allow,
        Action=[awacs.logs.CreateLogStream, awacs.logs.PutLogEvents],
        Resource=[policies.arn("logs", "log-group:${%s}:*" % log_group.title)],
    )


def vpc_statements(network: BuildNetwork | None) -> list[Statement]:
    """What CodeBuild does with the project's role to run a build in the VPC (CodeBuild User
    Guide, AWS: "Allow CodeBuild access to AWS services required to create a VPC network
    interface")."""
    if network is None:
        return []
    interfaces = policies.arn("ec2", "network-interface/*")
    return [
        Statement(
            Effect=Allow,
            Action=[awacs.ec2.CreateNetworkInterface],
            Resource=[interfaces, policies.arn("ec2", "subnet/*"),
                      policies.arn("ec2", "security-group/${%s.GroupId}"
                                   % network.security_group.title)],
        ),
        Statement(Effect=Allow, Action=[awacs.ec2.DeleteNetworkInterface], Resource=[interfaces]),
        Statement(
            Effect=Allow,
            Action=[awacs.ec2.CreateNetworkInterfacePermission],
            Resource=[interfaces],
            Condition=Condition([
                StringEquals("ec2:AuthorizedService", "codebuild.amazonaws.com"),
                ArnLike("ec2:Subnet", policies.arn("ec2", "subnet/*")),
            ]),
        ),
        # EC2's Describe actions have no resource-level permissions: "*" is the only resource.
        Statement(
            Effect=Allow,
            Action=[awacs.ec2.DescribeDhcpOptions, awacs.ec2.DescribeNetworkInterfaces,
                    awacs.ec2.DescribeSubnets, awacs.ec2.DescribeSecurityGroups,
                    awacs.ec2.DescribeVpcs],
            Resource=["*"],
        ),
    ]


# --- deploy ----------------------------------------------------------------------------------

def add_deploy_role(b: StageBuilder, artifacts: s3.Bucket, key: Any) -> iam.Role:
    """The role CloudFormation deploys every environment's stacks with; its managed policies
    come last (`add_deploy_policies`), once the stage's own resources are known.

    It can create IAM roles with any policy, so it is as powerful as the templates on the
    source branch: whoever can push there can change what it deploys (protect the branch; the
    approval guards protected environments). It can create, change and pass only roles and
    policies named like the project's stacks (`<project>-<environment>-...`), never another
    role of the account, and change only the project's stacks.
    """
    return _home(b.add(iam.Role(
        "DeployRole",
        Description="CloudFormation deploys the pipeline's environments with this role",
        AssumeRolePolicyDocument=policies.trusted_by("cloudformation.amazonaws.com"),
        ManagedPolicyArns=[],
        Policies=[iam.Policy(PolicyName="packages", PolicyDocument=policies.document(
            package_read_statements(artifacts, key)))],
    )))


def deploy_requirements(b: StageBuilder, requirements: Iterable[str]) -> list[str]:
    """What the deploy role must be able to deploy: what the other stages require (passed in
    by the composer), what this stage's own template requires (the pipeline deploys the stack
    it lives in), and the managed policies it is about to get."""
    own = permissions.template_requirements(b.template.to_dict())
    return sorted({*requirements, *own, permissions.NESTED_STACK, "AWS::IAM::ManagedPolicy"})


def add_deploy_policies(b: StageBuilder, project: str, deploy_role: iam.Role,
                        requirements: Iterable[str]) -> None:
    """DeployPolicy1..n, packed within IAM's managed-policy size, attached to the deploy role."""
    prefix = iam_name_prefix(project)
    # AWS: "Resource type schema" (CloudFormation Command Line Interface User Guide: each
    # handler lists the permissions it needs), read from the schemas cfn-lint ships
    # (permissions.py, with its documented supplement).
    documents = permissions.policy_documents(permissions.deployment_statements(
        deploy_requirements(b, requirements), iam_names=prefix,
        stacks=stack_name(project, ""), project=project))
    if len(documents) > permissions.MAX_MANAGED_POLICIES:
        raise UserError(f"the delivery pipeline's deploy role needs {len(documents)} managed "
                        f"policies, more than IAM attaches to one role by default "
                        f"({permissions.MAX_MANAGED_POLICIES})")
    managed = [_home(b.add(iam.ManagedPolicy(
        f"DeployPolicy{index}",
        Description=f"Delivery deployments: manage the pipeline's resources ({index}/"
                    f"{len(documents)})",
        PolicyDocument=document,
    ))) for index, document in enumerate(documents, start=1)]
    deploy_role.ManagedPolicyArns = [Ref(policy) for policy in managed]


# A generated IAM role name that would pass 64 characters keeps at most this many characters of
# its stack's name (CloudFormation keeps 13 for a random tail and its hyphen and splits the
# rest, less one hyphen, between stack name and logical id).
GENERATED_ROLE_NAME_STACK_PART = 25


def iam_name_prefix(project: str) -> str:
    """What every role and policy CloudFormation names in the project's stacks starts with:
    the stacks are `<project>-<environment>...`, cut as CloudFormation cuts a long name."""
    return f"{project}-"[:GENERATED_ROLE_NAME_STACK_PART]


def package_read_statements(artifacts: s3.Bucket, key: Any) -> list[Statement]:
    """CloudFormation fetches nested templates, and Lambda its code, with the deploy role."""
    return [
        # AWS: "AWS::CloudFormation::Stack" (TemplateURL, CloudFormation Template Reference)
        # and "AWS::Lambda::Function Code" (whose registry create handler lists s3:GetObject):
        # nested templates and Lambda code are read with the stack operation's credentials.
        Statement(Effect=Allow, Action=[awacs.s3.GetObject, awacs.s3.GetObjectVersion],
                  Resource=[Sub("${%s.Arn}/%s*" % (artifacts.title, spec.PACKAGE_PREFIX))]),
        # AWS: "Using server-side encryption with AWS KMS keys (SSE-KMS)" (Amazon S3 User
        # Guide): the packages are SSE-KMS with the DeliveryKey, S3 decrypts them in the
        # reader's name.
        policies.use_key(key, policies.KEY_READ, via_services=["s3"]),
    ]


def add_pipeline_role(config: PipelineConfig, targets: Sequence[DeploymentTarget],
                      artifacts: s3.Bucket, source_bucket: s3.Bucket | None,
                      connection: Ref | None, key: Any, projects: Sequence[codebuild.Project],
                      deploy_role: iam.Role, approvals: Ref | None = None,
                      data_key: Ref | None = None) -> iam.Role:
    # The stacks it changes with its own role: a remote target's its delivery role changes.
    home_targets = [t for t in targets if not t.remote]
    stacks = [policies.arn("cloudformation",
                           f"stack/{stack_name(config.project, t.environment)}/*")
              for t in home_targets]
    statements = [
        # AWS: "Manage the CodePipeline service role" (CodePipeline User Guide, its service
        # role policy): reading and writing artifacts in the artifact store.
        Statement(Effect=Allow, Action=[awacs.s3.GetBucketVersioning, awacs.s3.GetBucketAcl,
                                        awacs.s3.GetBucketLocation],
                  Resource=[GetAtt(artifacts, "Arn")]),
        # AWS: same page: the artifacts' objects.
        Statement(Effect=Allow, Action=[awacs.s3.GetObject, awacs.s3.GetObjectVersion,
                                        awacs.s3.PutObject, awacs.s3.PutObjectAcl],
                  Resource=[Sub("${%s.Arn}/*" % artifacts.title)]),
        # AWS: "Configure server-side encryption for artifacts stored in Amazon S3 for
        # CodePipeline"; Amazon S3 User Guide, "Using server-side encryption with AWS KMS keys
        # (SSE-KMS)": an upload needs kms:GenerateDataKey, a download kms:Decrypt.
        policies.use_key(key, via_services=["s3"]),
        # AWS: "Manage the CodePipeline service role"; CodePipeline User Guide, "AWS CodeBuild
        # build and test action reference": starting the projects and following their builds.
        Statement(
            Effect=Allow,
            Action=[awacs.codebuild.StartBuild, awacs.codebuild.BatchGetBuilds],
            Resource=[GetAtt(project, "Arn") for project in projects],
        ),
        # AWS: "Manage the CodePipeline service role"; CodePipeline User Guide, "AWS
        # CloudFormation deploy action reference" (CHANGE_SET_REPLACE, CHANGE_SET_EXECUTE): the
        # change set
        # actions, on the environments' root stacks and their own change sets.
        Statement(
            Effect=Allow,
            Action=[awacs.cloudformation.CreateChangeSet, awacs.cloudformation.DescribeChangeSet,
                    awacs.cloudformation.ExecuteChangeSet, awacs.cloudformation.DeleteChangeSet],
            Resource=stacks,
            Condition=Condition(StringEquals("cloudformation:ChangeSetName", [
                change_set_name(config.project, t.environment) for t in home_targets])),
        ),
        # AWS: same pages: DescribeStacks; "AWS CloudFormation deploy action reference": with
        # DescribeStackEvents a failed deployment names its first failed resource.
        Statement(Effect=Allow, Action=[awacs.cloudformation.DescribeStacks,
                                        awacs.cloudformation.DescribeStackEvents],
                  Resource=stacks),
        # AWS: "Manage the CodePipeline service role" (iam:PassRole, PassedToService
        # cloudformation.amazonaws.com): the deploy action's RoleArn.
        Statement(
            Effect=Allow,
            Action=[awacs.iam.PassRole],
            Resource=[GetAtt(deploy_role, "Arn")],
            Condition=Condition(StringEquals("iam:PassedToService",
                                             "cloudformation.amazonaws.com")),
        ),
    ]
    remote = [t for t in targets if t.remote]
    if remote:
        # AWS: "Create a pipeline in CodePipeline that uses resources from another AWS account"
        # (CodePipeline User Guide): the pipeline's role assumes the other account's role that
        # the deploy action names (its RoleArn); exactly the targets' delivery roles.
        statements.append(Statement(
            Effect=Allow, Action=[awacs.sts.AssumeRole],
            Resource=[delivery_role_arn(config.project, t) for t in remote]))
    statements += region_store_statements(config.project, home_environment(config), targets,
                                          package=False)
    if source_bucket is not None:
        statements += [
            # AWS: "Amazon S3 source action reference" (CodePipeline User Guide): the source
            # object's versions, and the bucket's versioning and location.
            Statement(Effect=Allow,
                      Action=[awacs.s3.GetObject, awacs.s3.GetObjectVersion],
                      Resource=[Sub("${%s.Arn}/%s" % (source_bucket.title,
                                                     config.stages.cicd.source.object_key))]),
            # AWS: same page.
            Statement(Effect=Allow,
                      Action=[awacs.s3.GetBucketVersioning, awacs.s3.GetBucketLocation],
                      Resource=[GetAtt(source_bucket, "Arn")]),
        ]
    if approvals is not None:
        statements += [
            # AWS: "Grant Amazon SNS permissions to a CodePipeline service role" (CodePipeline
            # User Guide): the approval action announces itself on the topic.
            Statement(Effect=Allow, Action=[awacs.sns.Publish], Resource=[approvals]),
            # AWS: "Managing Amazon SNS encryption keys and costs" (Amazon SNS Developer Guide):
            # a publisher to a topic encrypted with the data key needs GenerateDataKey and
            # Decrypt on it.
            policies.use_key(data_key, [awacs.kms.GenerateDataKey, awacs.kms.Decrypt],
                             via_services=("sns",)),
        ]
    if connection is not None:
        # AWS: "CodeStarSourceConnection for Bitbucket Cloud, GitHub, GitHub Enterprise Server,
        # GitLab.com, and GitLab self-managed actions" (CodePipeline User Guide).
        statements.append(Statement(
            Effect=Allow,
            # That page: UseConnection on the connection; its ARN is in either service's
            # namespace depending on its age (Developer Tools console, "Connections
            # permissions reference").
            Action=[awacs.codestar_connections.UseConnection,
                    awacs.codeconnections.UseConnection],
            Resource=[connection],
        ))
    return _home(iam.Role(
        "PipelineRole",
        Description="Delivery pipeline: source, build, change sets",
        AssumeRolePolicyDocument=policies.trusted_by(
            "codepipeline.amazonaws.com",
            StringEquals("aws:SourceAccount", Ref("AWS::AccountId"))),
        Policies=[iam.Policy(PolicyName="pipeline",
                             PolicyDocument=policies.document(statements))],
    ))


# --- the pipeline's stages -------------------------------------------------------------------

def pipeline_stages(config: PipelineConfig, targets: Sequence[DeploymentTarget], home: str,
                    source: codepipeline.Actions, build_project: codebuild.Project,
                    retrain_project: codebuild.Project | None, deploy_role: iam.Role,
                    approvals: Ref | None = None,
                    protect_project: codebuild.Project | None = None,
                    smoke_project: codebuild.Project | None = None,
                    image_project: codebuild.Project | None = None
                    ) -> list[codepipeline.Stages]:
    build_actions = [codepipeline.Actions(
        Name="CheckTestPackage",
        ActionTypeId=_action_type("Build", "CodeBuild"),
        Configuration={"ProjectName": Ref(build_project)},
        InputArtifacts=[codepipeline.InputArtifacts(Name=SOURCE_ARTIFACT)],
        OutputArtifacts=[codepipeline.OutputArtifacts(Name=BUILD_ARTIFACT)],
        Namespace=BUILD_NAMESPACE,
        RunOrder=1,
    )]
    if image_project is not None:
        # After the checks, before any environment is deployed with its tag.
        build_actions.append(codepipeline.Actions(
            Name="ModelApiImage",
            ActionTypeId=_action_type("Build", "CodeBuild"),
            Configuration={"ProjectName": Ref(image_project)},
            InputArtifacts=[codepipeline.InputArtifacts(Name=SOURCE_ARTIFACT)],
            RunOrder=2,
        ))
    stages = [
        codepipeline.Stages(Name="Source", Actions=[source]),
        codepipeline.Stages(Name="Build", Actions=build_actions),
    ]
    for target in targets:
        stages.append(codepipeline.Stages(
            Name=target.stage_name,
            Actions=deploy_actions(config.project, target, deploy_role, approvals,
                                   protect_project, smoke_project)))
        if target.environment == home and retrain_project is not None:
            stages.append(codepipeline.Stages(Name="Retrain", Actions=[codepipeline.Actions(
                Name="StartTrainingIfCodeChanged",
                ActionTypeId=_action_type("Build", "CodeBuild"),
                Configuration={
                    "ProjectName": Ref(retrain_project),
                    "EnvironmentVariables": json.dumps([{
                        "name": spec.HASH_VARIABLE,
                        "value": f"#{{{BUILD_NAMESPACE}.{spec.HASH_VARIABLE}}}",
                        "type": "PLAINTEXT"}]),
                },
                InputArtifacts=[codepipeline.InputArtifacts(Name=BUILD_ARTIFACT)],
                RunOrder=1,
            )]))
    return stages


def source_action(config: PipelineConfig, source_bucket: s3.Bucket | None,
                  connection: Ref | None) -> codepipeline.Actions:
    source = config.stages.cicd.source
    if source_bucket is not None:
        type_id = _action_type("Source", "S3")
        configuration = {
            "S3Bucket": Ref(source_bucket),
            "S3ObjectKey": source.object_key,
            # Started by SourceTriggerRule on each new version, not by polling.
            "PollForSourceChanges": "false",
        }
    else:
        type_id = _action_type("Source", "CodeStarSourceConnection")
        configuration = {
            "ConnectionArn": connection,
            "FullRepositoryId": source.repository,
            "BranchName": source.branch,
            "OutputArtifactFormat": "CODE_ZIP",
            # Every push to the branch starts the pipeline.
            "DetectChanges": "true",
        }
    return codepipeline.Actions(
        Name="Source",
        ActionTypeId=type_id,
        Configuration=configuration,
        OutputArtifacts=[codepipeline.OutputArtifacts(Name=SOURCE_ARTIFACT)],
        RunOrder=1,
    )


def deploy_actions(project: str, target: DeploymentTarget, deploy_role: iam.Role,
                   approvals: Ref | None = None,
                   protect_project: codebuild.Project | None = None,
                   smoke_project: codebuild.Project | None = None
                   ) -> list[codepipeline.Actions]:
    env = target.environment
    stack = stack_name(project, env)
    change_set = change_set_name(project, env)
    # A remote target (another account or region): its actions assume its bootstrap's delivery
    # role there and CloudFormation deploys with its execution role (AWS: "Create a pipeline in
    # CodePipeline that uses resources from another AWS account"; "Add a cross-Region action in
    # CodePipeline": Region on the action), not the home deploy role.
    where: dict[str, Any] = {}
    if target.remote:
        where["RoleArn"] = delivery_role_arn(project, target)
        if target.region is not None:
            where["Region"] = target.region
    create = codepipeline.Actions(
        Name="CreateChangeSet",
        ActionTypeId=_action_type("Deploy", "CloudFormation"),
        Configuration={
            "ActionMode": "CHANGE_SET_REPLACE",
            "StackName": stack,
            "ChangeSetName": change_set,
            "TemplatePath": f"{BUILD_ARTIFACT}::{env}/{spec.PACKAGED_ROOT_FILE}",
            "TemplateConfiguration": f"{BUILD_ARTIFACT}::{env}/{spec.CONFIGURATION_FILE}",
            "Capabilities": CAPABILITIES,
            "RoleArn": (execution_role_arn(project, target) if target.remote
                        else GetAtt(deploy_role, "Arn")),
        },
        InputArtifacts=[codepipeline.InputArtifacts(Name=BUILD_ARTIFACT)],
        RunOrder=1,
        **where,
    )
    actions = [create]
    if target.protected:
        actions.append(codepipeline.Actions(
            Name="Approve",
            ActionTypeId=_action_type("Approval", "Manual"),
            Configuration={
                "CustomData": (
                    f"{env} is protected: review change set {change_set} of stack {stack} "
                    "(CloudFormation console) before approving its execution."),
                **({"NotificationArn": approvals} if approvals is not None else {}),
            },
            RunOrder=2,
        ))
    actions.append(codepipeline.Actions(
        Name="ExecuteChangeSet",
        ActionTypeId=_action_type("Deploy", "CloudFormation"),
        Configuration={
            "ActionMode": "CHANGE_SET_EXECUTE",
            "StackName": stack,
            "ChangeSetName": change_set,
        },
        RunOrder=len(actions) + 1,
        **where,
    ))
    # The protect and smoke builds run in the home account and region with home roles, which
    # reach no remote target's stack or endpoint: a remote target is protected by its first
    # deployment by hand (`mlops-cfn deploy` turns termination protection on), and smoke-tested
    # with its own credentials (`mlops-cfn smoke --env <env>`).
    if target.protected and protect_project is not None and not target.remote:
        actions.append(_project_action("ProtectStack", protect_project, spec.STACK_VARIABLE,
                                       stack, BUILD_ARTIFACT, len(actions) + 1))
    if smoke_project is not None and not target.remote:
        # Last: a bad answer fails this environment's stage, so the next one is not deployed.
        actions.append(_project_action("SmokeTest", smoke_project, spec.ENVIRONMENT_VARIABLE,
                                       env, SOURCE_ARTIFACT, len(actions) + 1))
    return actions


def _project_action(name: str, project: codebuild.Project, variable: str, value: str,
                    artifact: str, run_order: int) -> codepipeline.Actions:
    """A CodeBuild action of a deploy stage: `project` told one value through `variable`."""
    return codepipeline.Actions(
        Name=name,
        ActionTypeId=_action_type("Build", "CodeBuild"),
        Configuration={
            "ProjectName": Ref(project),
            "EnvironmentVariables": json.dumps([{
                "name": variable, "value": value, "type": "PLAINTEXT"}]),
        },
        InputArtifacts=[codepipeline.InputArtifacts(Name=artifact)],
        RunOrder=run_order,
    )


def _action_type(category: str, provider: str) -> codepipeline.ActionTypeId:
    return codepipeline.ActionTypeId(Category=category, Owner="AWS", Provider=provider,
                                     Version="1")


# --- the S3 source trigger -------------------------------------------------------------------

def pipeline_starter_role(b: StageBuilder, title: str, description: str,
                          pipeline_arn: Sub) -> iam.Role:
    """The role an EventBridge rule starts the pipeline with, and nothing else."""
    return _home(b.add(iam.Role(
        title,
        Description=description,
        AssumeRolePolicyDocument=policies.trusted_by(
            "events.amazonaws.com", StringEquals("aws:SourceAccount", Ref("AWS::AccountId"))),
        Policies=[iam.Policy(PolicyName="start-pipeline", PolicyDocument=policies.document(
            # AWS: "Amazon S3 source actions and EventBridge" (CodePipeline User Guide) and
            # AWS: "CodePipeline" targets in "Amazon EventBridge targets": the rule's role
            # starts the one pipeline.
            Statement(Effect=Allow, Action=[awacs.codepipeline.StartPipelineExecution],
                      Resource=[pipeline_arn])))],
    )))


def add_approval_trigger(b: StageBuilder, project: str, targets: Sequence[DeploymentTarget],
                         pipeline: codepipeline.Pipeline,
                         sharing: Sharing | None = None) -> None:
    """Approving a model package in any environment's registry group starts the pipeline, whose
    build then serves each environment's latest approved package
    (`package --latest-approved-model`). SageMaker sends "SageMaker Model Package State
    Change" events to the account's default bus (AWS: "Automating Amazon SageMaker AI with
    Amazon EventBridge"); the groups are named as the training stage names them in each
    environment (deploy.model_package_group).

    A target forwards its approvals to this account's default bus (bootstrap.py), where they
    keep their source, detail-type and detail and carry the target's account in `account`: the
    pattern names no account, so it matches them; the bus admits exactly the target accounts
    (`add_approval_bus_policy`)."""
    from ..deploy import model_package_group

    pipeline_arn = policies.arn("codepipeline", "${%s}" % pipeline.title)
    role = pipeline_starter_role(
        b, "ApprovalTriggerRole",
        "EventBridge starts the delivery pipeline when a model package is approved",
        pipeline_arn)
    _home(b.add(events.Rule(
        "ApprovalTriggerRule",
        Description="An approved model package starts the delivery pipeline, which serves it",
        EventPattern={
            "source": [APPROVAL_SOURCE],
            "detail-type": [APPROVAL_DETAIL_TYPE],
            "detail": {
                "ModelPackageGroupName": [model_package_group(project, t.environment)
                                          for t in targets],
                "ModelApprovalStatus": ["Approved"],
            },
        },
        State="ENABLED",
        Targets=[events.Target(Id="DeliveryPipeline", Arn=pipeline_arn,
                               RoleArn=GetAtt(role, "Arn"))],
    )))
    if sharing is not None and sharing.other_accounts:
        add_approval_bus_policy(b, project, sharing.other_accounts)


APPROVAL_SOURCE = "aws.sagemaker"
APPROVAL_DETAIL_TYPE = "SageMaker Model Package State Change"


def approval_statement_id(project: str) -> str:
    """The bus policy's statement id (one per project on the account's default bus)."""
    return f"{project}-approvals-from-targets"


def add_approval_bus_policy(b: StageBuilder, project: str, accounts: Sequence[str]) -> None:
    """The home default bus admits the target accounts' forwarded model package state changes,
    and nothing else of theirs.

    AWS: "Sending and receiving events between AWS accounts in Amazon EventBridge" (the
    receiving bus's resource policy admits the sending account) and "Example policy: Send
    events to a custom bus in a different account" (events:source and events:detail-type
    conditions). AWS::Events::EventBusPolicy adds one statement, by its StatementId, to the
    bus's policy and leaves the others (PutPermission)."""
    _home(b.add(events.EventBusPolicy(
        "ApprovalBusPolicy",
        EventBusName="default",
        StatementId=approval_statement_id(project),
        Statement={
            "Effect": "Allow",
            "Principal": {"AWS": [Sub(f"arn:${{AWS::Partition}}:iam::{account}:root")
                                  for account in accounts]},
            "Action": "events:PutEvents",
            "Resource": policies.arn("events", "event-bus/default"),
            "Condition": {"ForAllValues:StringEquals": {
                "events:source": [APPROVAL_SOURCE],
                "events:detail-type": [APPROVAL_DETAIL_TYPE]}},
        },
    )))


def add_source_trigger(b: StageBuilder, cicd: CicdConfig, source_bucket: s3.Bucket,
                       pipeline: codepipeline.Pipeline) -> None:
    pipeline_arn = policies.arn("codepipeline", "${%s}" % pipeline.title)
    role = pipeline_starter_role(
        b, "SourceTriggerRole",
        "EventBridge starts the delivery pipeline on a new source version", pipeline_arn)
    _home(b.add(events.Rule(
        "SourceTriggerRule",
        Description="A new version of the source zip starts the delivery pipeline",
        EventPattern={
            "source": ["aws.s3"],
            "detail-type": ["Object Created"],
            "detail": {"bucket": {"name": [Ref(source_bucket)]},
                       "object": {"key": [cicd.source.object_key]}},
        },
        State="ENABLED",
        Targets=[events.Target(Id="DeliveryPipeline", Arn=pipeline_arn,
                               RoleArn=GetAtt(role, "Arn"))],
    )))
