"""training stage: a SageMaker pipeline that trains, judges and registers a model, run on new data.

With `engine: codebuild` one CodeBuild build does the pipeline's work instead
(training_codebuild.py: TrainingProject, TrainingBuildRole, TrainingLogGroup,
BuildSecurityGroup, the scripts' zip with train.py and register.py), started by the same
triggers, registering into the same ModelPackageGroup; the SageMaker-only resources below
(TrainingPipeline, PipelineRole, JobSecurityGroup, the scripts as separate assets) are then
absent.

Resources
- ModelPackageGroup (AWS::SageMaker::ModelPackageGroup): the model registry, kept on stack
  deletion (it is the record of every model trained and of its approval). With environments in
  other accounts and approved models deployed by the pipeline, its resource policy in a target
  account lets the delivery build read the approved packages (sharing.registry_policy).
- TrainingPipeline (AWS::SageMaker::Pipeline): definition built as data by training_pipeline.py
  (PrepareData -> TrainModel -> EvaluateModel -> CheckMetric -> RegisterModel or
  MetricBelowThreshold), its body an Fn::Sub naming the stack's buckets, key, role and settings.
- PipelineRole (+ PipelineRolePolicy): the role the pipeline and its jobs run as: its own jobs
  and model packages, the input prefix (read), the artifacts prefix (read/write), the shipped
  scripts, the data key, the jobs' network interfaces, logs and metrics; nothing else.
- JobSecurityGroup (+ JobSecurityGroupSelfIngress/SelfEgress): the jobs' network interfaces in
  the private subnets: HTTPS out (S3 gateway and interface endpoints), and any traffic between
  the instances of one distributed job.
- Assets: prepare.py (with the prepare step) and evaluate.py (mlops_cfn/data/training/).
- With triggers (config `triggers`): TriggerRole (EventBridge may start this pipeline, or the
  training project, only),
  TriggerDeadLetterQueue (+ policy) for events EventBridge could not deliver after its retries,
  and one rule each: EtlSucceededRule (the ETL job's new-data event with at least one record,
  etl_events.py: a run that found nothing new trains nothing),
  NewDataRule (Object Created under the input prefix, ending in the marker), ScheduleRule.
- Mappings XgboostRegistry: the account holding the built-in XGBoost image in each region, and
  Rules XgboostImageRegion refusing a region it lacks (image_registries.py).

Inputs: DataKeyArn, ProcessedBucketName/Arn, ArtifactsBucketName/Arn, VpcId, PrivateSubnetIds;
with the etl stage also ProcessedDataPrefix and EtlJobName; VpcCidrBlock with
`network.s3_prefix_list_id` (the jobs' HTTPS egress to the interface endpoints).
Outputs: TrainingStartArn (what starts a run: the pipeline, or the project with engine codebuild),
ModelPackageGroupName, TrainingRoleArn (the pipeline's role, or the build's); with engine
sagemaker also TrainingPipelineName, TrainingPipelineArn.
Settings: EnvironmentName, AssetsBucket, the Training* settings of the section, ModelApprovalStatus.
"""

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import awacs.cloudwatch
import awacs.codebuild
import awacs.ec2
import awacs.ecr
import awacs.iam
import awacs.kms
import awacs.logs
import awacs.s3
import awacs.sagemaker
import awacs.sqs
from awacs.aws import (Allow, ArnEquals, ArnLike, Bool, Condition, Principal, Statement,
                       StringEquals)
from troposphere import GetAtt, If, Join, NoValue, Ref, Sub, ec2, events, iam, sagemaker, sqs

from .. import assets, naming, policies
from ..assets import ASSETS_BUCKET, Asset
from ..config import PipelineConfig
from ..config.training import TrainingConfig
from ..outputs import (ARTIFACTS_BUCKET_ARN, ARTIFACTS_BUCKET_NAME, DATA_KEY_ARN, ETL_JOB_NAME,
                       MODEL_PACKAGE_GROUP_NAME, PRIVATE_SUBNET_IDS, PROCESSED_BUCKET_ARN,
                       PROCESSED_BUCKET_NAME, PROCESSED_DATA_PREFIX, TRAINING_PIPELINE_ARN,
                       TRAINING_PIPELINE_NAME, TRAINING_ROLE_ARN, TRAINING_START_ARN, VPC_ID)
from ..sharing import Sharing, registry_policy, shared
from ..stage import Stage, StageBuilder
from .common import (RETAIN, encrypted_queue, eventbridge_dead_letters,
                     https_to_endpoints_and_s3)
from . import etl_events, training_codebuild, training_pipeline
from . import model_monitor_baselines as baselines
from .image_registries import CLARIFY, XGBOOST, account_in_region
from .model_monitor_image import ANALYZER_IMAGE, analyzer_account
from .monitoring_models import shadow_endpoint_statements
from .training_pipeline import Cfn, Refs

SCRIPTS = Path(__file__).resolve().parent.parent / "data" / "training"
# Clarify's analysis configuration of the bias baseline, shipped beside the scripts.
BIAS_CONFIG = "bias_baseline_config.json"
# Clarify's analysis configuration of the SHAP baseline, likewise.
EXPLAINABILITY_CONFIG = "explainability_baseline_config.json"
HTTPS = 443

# Logs and metrics SageMaker writes for the jobs, under names it chooses.
JOB_LOG_GROUPS = ("/aws/sagemaker/TrainingJobs", "/aws/sagemaker/ProcessingJobs")
# SageMaker names the jobs a pipeline starts `pipelines-<execution id>-<step>-<hash>`.
PIPELINE_JOB_PREFIX = "pipelines-"


def build(config: PipelineConfig, sharing: Sharing | None = None) -> Stage:
    """`sharing`: the file's environments in other accounts (sharing.of), whose registry group
    the delivery build reads (sharing.registry_policy)."""
    settings = config.stages.training
    etl_enabled = config.stages.etl.enabled
    triggers = settings.trigger_list(etl_enabled)
    codebuild_engine = settings.engine == "codebuild"
    b = StageBuilder("training", config.project,
                     ("CodeBuild training build" if codebuild_engine
                      else "SageMaker training pipeline")
                     + ", model registry"
                     + (f", started by {', '.join(triggers)}" if triggers else ""))
    key = b.input(DATA_KEY_ARN)
    group_name = b.physical_name(naming.SAGEMAKER, "models")
    group = b.add(sagemaker.ModelPackageGroup(
        "ModelPackageGroup",
        ModelPackageGroupName=group_name,
        ModelPackageGroupDescription=f"{config.project}: models the training pipeline "
                                     "registered",
        **registry_sharing(b, config, sharing),
        **RETAIN,
    ))
    input_prefix: Any = (b.input(PROCESSED_DATA_PREFIX) if etl_enabled
                         else settings.input_prefix)
    if codebuild_engine:
        project = training_codebuild.add_training_project(b, config, key, input_prefix,
                                                          group_name, SCRIPTS)
        start: Starter = Starter(GetAtt(project, "Arn"), awacs.codebuild.StartBuild,
                                 "CodeBuild project")
        role_arn: Any = GetAtt(project.ServiceRole.data["Fn::GetAtt"][0], "Arn")
    else:
        pipeline_name = b.physical_name(naming.SAGEMAKER, "training")
        pipeline_arn = policies.arn("sagemaker", "pipeline/" + pipeline_name.data["Fn::Sub"])
        pipeline, role = add_pipeline(b, config, key, input_prefix, group, group_name,
                                      pipeline_name)
        start = Starter(pipeline_arn, awacs.sagemaker.StartPipelineExecution,
                        "SageMaker AI pipeline")
        role_arn = GetAtt(role, "Arn")
        b.output(TRAINING_PIPELINE_NAME, Ref(pipeline))
        b.output(TRAINING_PIPELINE_ARN, pipeline_arn)
    if triggers:
        add_triggers(b, settings, triggers, start, input_prefix, key)

    b.output(TRAINING_START_ARN, start.arn)
    b.output(MODEL_PACKAGE_GROUP_NAME, group_name)
    b.output(TRAINING_ROLE_ARN, role_arn)
    return b.finish()


def registry_sharing(b: StageBuilder, config: PipelineConfig,
                     sharing: Sharing | None) -> dict[str, Any]:
    """In a target account, when the delivery pipeline serves each environment's latest approved
    package: the group's resource policy admitting the delivery build (sharing.py)."""
    from .cicd import deploying_approved_models

    if sharing is None or not deploying_approved_models(config):
        return {}
    return {"ModelPackageGroupPolicy": If(shared(b), registry_policy(config, sharing.home),
                                          NoValue)}


@dataclass(frozen=True)
class Starter:
    """What the triggers start: its ARN, the one action that starts it, and what EventBridge
    calls that kind of target."""

    arn: Any
    action: Any
    target_kind: str


def add_pipeline(b: StageBuilder, config: PipelineConfig, key: Ref, input_prefix: Any,
                 group: sagemaker.ModelPackageGroup, group_name: Sub,
                 pipeline_name: Sub) -> tuple[sagemaker.Pipeline, iam.Role]:
    """The SageMaker engine: the pipeline and the role it and its jobs run as."""
    settings = config.stages.training
    scripts = {name: b.asset(name, (SCRIPTS / name).read_bytes())
               for name in script_names(settings)}
    if baseline_prefix(config) and config.stages.monitoring.runs_bias_drift(config):
        scripts[BIAS_CONFIG] = b.asset(BIAS_CONFIG, baselines.as_file(
            baselines.bias_baseline_analysis(config)))
    if baseline_prefix(config) and config.stages.monitoring.runs_feature_attribution(config):
        scripts[EXPLAINABILITY_CONFIG] = b.asset(EXPLAINABILITY_CONFIG, baselines.as_file(
            baselines.explainability_baseline_analysis(config)))
    security_group = add_job_security_group(b, config)
    role = b.add(iam.Role(
        "PipelineRole",
        Description="SageMaker training pipeline and its processing and training jobs",
        AssumeRolePolicyDocument=policies.trusted_by(
            "sagemaker.amazonaws.com",
            # Only SageMaker acting for this account's resources (confused deputy guard).
            StringEquals("aws:SourceAccount", Ref("AWS::AccountId")),
            ArnLike("aws:SourceArn", policies.arn("sagemaker", "*")),
        ),
        # The processing steps read the scripts (assets) with this role.
        Policies=b.asset_key_policies(),
    ))
    role_policy = b.add(iam.PolicyType(
        "PipelineRolePolicy",
        PolicyName="training-pipeline",
        Roles=[Ref(role)],
        PolicyDocument=policies.document(pipeline_role_statements(
            b, settings, role, key, input_prefix, group_name, list(scripts.values()),
            security_group, baseline_prefix(config),
            shadow_model=EXPLAINABILITY_CONFIG in scripts)),
    ))
    refs = model_baseline_refs(b, config, pipeline_refs(
        b, settings, role, key, input_prefix, group_name, scripts, security_group,
        baseline_prefix(config)), scripts)
    pipeline = b.add(sagemaker.Pipeline(
        "TrainingPipeline",
        PipelineName=pipeline_name,
        PipelineDisplayName=pipeline_name,
        PipelineDescription=f"{config.project}: prepare, train, evaluate and register a model",
        RoleArn=GetAtt(role, "Arn"),
        PipelineDefinition=sagemaker.PipelineDefinition(
            PipelineDefinitionBody=definition_body(b, config, refs)),
        # The role must hold its permissions before the first execution; the registry must
        # exist before a model is registered into it.
        DependsOn=[role_policy.title, group.title],
    ))
    return pipeline, role


def baseline_prefix(config: PipelineConfig) -> str | None:
    """Where the pipeline writes Model Monitor's baseline, when the monitoring stage runs Model
    Monitor (the prefix its schedule reads); else None, and no baselining step."""
    monitoring = config.stages.monitoring
    if not (monitoring.enabled and monitoring.runs_model_monitor(config)):
        return None
    return monitoring.model_monitor.baseline_prefix


def model_baseline_refs(b: StageBuilder, config: PipelineConfig, refs: Refs,
                        scripts: dict[str, Asset]) -> Refs:
    """`refs` with what the model quality and bias baselines need, when the monitoring stage
    runs those monitors (model_monitor_baselines.py)."""
    monitoring = config.stages.monitoring
    if refs.baseline_uri is None:
        return refs
    changes: dict[str, Any] = {}
    if monitoring.runs_model_quality(config):
        changes["quality_problem_type"] = monitoring.problem_type(config)
    if BIAS_CONFIG in scripts or EXPLAINABILITY_CONFIG in scripts:
        changes["clarify_image"] = Cfn(baselines.CLARIFY_IMAGE.replace("${Account}",
                                                                       "${ClarifyAccount}"))
    if BIAS_CONFIG in scripts:
        changes["bias_config_uri"] = Cfn(scripts[BIAS_CONFIG].s3_uri.data["Fn::Sub"])
    if EXPLAINABILITY_CONFIG in scripts:
        changes["explainability_config_uri"] = Cfn(
            scripts[EXPLAINABILITY_CONFIG].s3_uri.data["Fn::Sub"])
    return dataclasses.replace(refs, **changes)


def script_names(settings: TrainingConfig) -> list[str]:
    return (["prepare.py"] if settings.prepare.enabled else []) + ["evaluate.py"]


# --- the pipeline definition ------------------------------------------------------------------

def pipeline_refs(b: StageBuilder, settings: TrainingConfig, role: iam.Role, key: Ref,
                  input_prefix: Any, group_name: Sub, scripts: dict[str, Asset],
                  security_group: ec2.SecurityGroup, baseline: str | None) -> Refs:
    """How the definition names the stack's resources and settings (Fn::Sub patterns)."""
    b.input(PROCESSED_BUCKET_NAME)
    b.input(ARTIFACTS_BUCKET_NAME)
    prefix = (f"${{{PROCESSED_DATA_PREFIX.name}}}" if isinstance(input_prefix, Ref)
              else input_prefix)

    def setting(field: str, raw: bool = False) -> Cfn:
        return Cfn(f"${{{b.setting(settings, field).data['Ref']}}}", raw=raw)

    training_image = image(b, settings)
    processing_image = (setting("evaluation_image_uri") if settings.evaluation_image_uri
                        else training_image)
    return Refs(
        role_arn=Cfn(f"${{{role.title}.Arn}}"),
        key_arn=Cfn(f"${{{key.data['Ref']}}}"),
        input_uri=Cfn(f"s3://${{{PROCESSED_BUCKET_NAME.name}}}/{prefix}"),
        artifacts_uri=Cfn(f"s3://${{{ARTIFACTS_BUCKET_NAME.name}}}/{settings.artifacts_prefix}"),
        model_package_group=Cfn(group_name.data["Fn::Sub"]),
        training_image=training_image,
        processing_image=processing_image,
        security_group_id=Cfn(f"${{{security_group.title}.GroupId}}"),
        subnet_ids=Cfn('["${Subnets}"]', raw=True),
        prepare_script_uri=(Cfn(scripts["prepare.py"].s3_uri.data["Fn::Sub"])
                            if "prepare.py" in scripts else None),
        evaluate_script_uri=Cfn(scripts["evaluate.py"].s3_uri.data["Fn::Sub"]),
        training_instance_type=setting("instance_type"),
        training_instance_count=setting("instance_count", raw=True),
        training_volume_size=setting("volume_size_gb", raw=True),
        training_max_runtime=setting("max_runtime_seconds", raw=True),
        training_max_wait=(Cfn(f"${{{b.setting(settings.spot, 'max_wait_seconds').data['Ref']}}}",
                               raw=True) if settings.spot.enabled else None),
        processing_instance_type=setting("processing_instance_type"),
        processing_volume_size=setting("processing_volume_size_gb", raw=True),
        processing_max_runtime=setting("processing_max_runtime_seconds", raw=True),
        metric_threshold=setting("metric_threshold", raw=True),
        approval_status=setting("approval_status"),
        baseline_uri=(Cfn(f"s3://${{{ARTIFACTS_BUCKET_NAME.name}}}/{baseline}")
                      if baseline else None),
        analyzer_image=Cfn(ANALYZER_IMAGE.replace("${Account}", "${AnalyzerAccount}"))
        if baseline else None,
    )


def image(b: StageBuilder, settings: TrainingConfig) -> Cfn:
    """The training image: the configured one, or the region's built-in XGBoost."""
    if settings.image_uri is not None:
        return Cfn(f"${{{b.setting(settings, 'image_uri').data['Ref']}}}")
    return Cfn(f"${{XgboostAccount}}.dkr.ecr.${{AWS::Region}}.${{AWS::URLSuffix}}"
               f"/sagemaker-xgboost:{settings.xgboost_version}")


def definition_body(b: StageBuilder, config: PipelineConfig, refs: Refs) -> Sub:
    settings = config.stages.training
    variables: dict[str, Any] = {
        # A list parameter cannot appear in Sub text; as `a","b` it fills the ["${Subnets}"].
        "Subnets": Join('","', b.input(PRIVATE_SUBNET_IDS)),
    }
    if settings.image_uri is None:
        variables["XgboostAccount"] = account_in_region(b, XGBOOST)
    if refs.analyzer_image is not None:
        variables["AnalyzerAccount"] = analyzer_account(b, config.stages.monitoring.model_monitor)
    if refs.clarify_image is not None:
        variables["ClarifyAccount"] = account_in_region(b, CLARIFY)
    schema = config.record_schema
    assert schema.label is not None  # TrainingConfig.problems_with refuses a schema without one
    columns = training_pipeline.Columns(schema.label, tuple(schema.feature_columns()))
    text = training_pipeline.sub_body(training_pipeline.definition(
        settings, refs, columns, settings.input_format(config)))
    return Sub(text, **variables)


# --- network ----------------------------------------------------------------------------------

def add_job_security_group(b: StageBuilder, config: PipelineConfig) -> ec2.SecurityGroup:
    group = b.add(ec2.SecurityGroup(
        "JobSecurityGroup",
        GroupDescription="SageMaker training and processing jobs: HTTPS out, and traffic "
                         "between the instances of one job",
        VpcId=b.input(VPC_ID),
        SecurityGroupEgress=https_to_endpoints_and_s3(b, config),
    ))
    # Distributed training talks between the job's instances (and, with inter-container
    # encryption, over IPsec: UDP 500 and ESP), so members of the group reach each other.
    b.add(ec2.SecurityGroupIngress(
        "JobSecurityGroupSelfIngress",
        Description="Instances of one job",
        GroupId=GetAtt(group, "GroupId"),
        IpProtocol="-1",
        SourceSecurityGroupId=GetAtt(group, "GroupId"),
    ))
    b.add(ec2.SecurityGroupEgress(
        "JobSecurityGroupSelfEgress",
        Description="Instances of one job",
        GroupId=GetAtt(group, "GroupId"),
        IpProtocol="-1",
        DestinationSecurityGroupId=GetAtt(group, "GroupId"),
    ))
    return group


# --- the pipeline's role ----------------------------------------------------------------------

def pipeline_role_statements(b: StageBuilder, settings: TrainingConfig, role: iam.Role,
                             key: Ref, input_prefix: Any, group_name: Sub, scripts: list[Asset],
                             security_group: ec2.SecurityGroup,
                             baseline: str | None = None,
                             shadow_model: bool = False) -> list[Statement]:
    processed = b.input(PROCESSED_BUCKET_ARN)
    artifacts = b.input(ARTIFACTS_BUCKET_ARN)
    in_vpc = Condition(ArnEquals("ec2:Vpc", policies.arn(
        "ec2", f"vpc/${{{b.input(VPC_ID).data['Ref']}}}")))
    group = group_name.data["Fn::Sub"]
    jobs = [policies.arn("sagemaker", f"training-job/{PIPELINE_JOB_PREFIX}*"),
            policies.arn("sagemaker", f"processing-job/{PIPELINE_JOB_PREFIX}*")]
    packages = [policies.arn("sagemaker", f"model-package-group/{group}"),
                policies.arn("sagemaker", f"model-package/{group}/*")]
    network_interfaces = policies.arn("ec2", "network-interface/*")
    statements = [
        # AWS: "IAM Access Management" (SageMaker Pipelines, pipeline role permissions): Create
        # and Describe for each job type the pipeline runs; "StopPipelineExecution" (API
        # reference): stopping an execution stops its running jobs, with this role;
        # "Provide permissions for tagging SageMaker AI resources": Pipelines tags the jobs it
        # creates, which takes AddTags.
        Statement(
            Effect=Allow,
            Action=[awacs.sagemaker.CreateTrainingJob, awacs.sagemaker.DescribeTrainingJob,
                    awacs.sagemaker.StopTrainingJob, awacs.sagemaker.CreateProcessingJob,
                    awacs.sagemaker.DescribeProcessingJob, awacs.sagemaker.StopProcessingJob,
                    awacs.sagemaker.AddTags],
            Resource=jobs,
        ),
        # AWS: same pages: the RegisterModel step creates (and describes) a model package in
        # the registry's group, tagged.
        Statement(
            Effect=Allow,
            Action=[awacs.sagemaker.CreateModelPackage, awacs.sagemaker.DescribeModelPackage,
                    awacs.sagemaker.AddTags],
            Resource=packages,
        ),
        *tuning_statements(settings),
        *(shadow_model_statements() if shadow_model else []),
        # AWS: "IAM Access Management" (SageMaker Pipelines): iam:PassRole for the role passed
        # to each job; the jobs run as this same role.
        Statement(
            Effect=Allow,
            Action=[awacs.iam.PassRole],
            Resource=[GetAtt(role, "Arn")],
            Condition=Condition(StringEquals("iam:PassedToService", "sagemaker.amazonaws.com")),
        ),
        # AWS: "CreateProcessingJob API: Execution Role Permissions" (s3:GetObject, s3:ListBucket,
        # s3:GetBucketLocation on the inputs): the prepare step reads the input prefix.
        *policies.bucket_access(processed, input_prefix),
        # AWS: same page and "CreateTrainingJob API: Execution Role Permissions" (reading
        # inputs, s3:PutObject for outputs, with multipart uploads: "Multipart upload API and
        # permissions"); "IAM Access Management" (Pipelines: s3:GetObject for JsonGet on the
        # evaluation report): the splits, models and reports under the artifacts prefix.
        *policies.bucket_access(artifacts, settings.artifacts_prefix, write=True),
        # AWS: "CreateProcessingJob API: Execution Role Permissions": the baselining step
        # writes Model Monitor's baseline where its schedule reads it.
        *(policies.bucket_access(artifacts, baseline, read=False, write=True)
          if baseline else []),
        *script_statements(scripts),
        # AWS: "CreateTrainingJob API: Execution Role Permissions" and "CreateProcessingJob API:
        # Execution Role Permissions" (with KmsKeyId and VolumeKmsKeyId): S3 encrypts and
        # decrypts objects with the data key for the role's requests; SageMaker encrypts the
        # job volumes and the model it uploads.
        policies.use_key(key, [awacs.kms.Encrypt, awacs.kms.Decrypt, awacs.kms.GenerateDataKey],
                         via_services=("s3", "sagemaker")),
        # AWS: same pages: the volumes' encryption goes through grants SageMaker creates for
        # the instances (kms:CreateGrant); only grants for AWS resources.
        Statement(
            Effect=Allow,
            Action=[awacs.kms.CreateGrant],
            Resource=[key],
            Condition=Condition(Bool("kms:GrantIsForAWSResource", "true")),
        ),
        # AWS: same pages: SageMaker describes the key it is given (its own statement: no grant
        # condition can apply to DescribeKey).
        Statement(Effect=Allow, Action=[awacs.kms.DescribeKey], Resource=[key]),
        # AWS: "Give SageMaker AI Training Jobs Access to Resources in Your Amazon VPC" and
        # "Give SageMaker Processing Jobs Access to Resources in Your Amazon VPC" (the
        # execution role's EC2 permissions): the jobs' network interfaces, in this VPC and with
        # the job security group only.
        Statement(
            Effect=Allow,
            Action=[awacs.ec2.CreateNetworkInterface],
            Resource=[network_interfaces, policies.arn("ec2", "subnet/*"),
                      policies.arn("ec2", "security-group/${%s.GroupId}"
                                   % security_group.title)],
            Condition=in_vpc,
        ),
        # AWS: same pages: their permissions and deletion.
        Statement(
            Effect=Allow,
            Action=[awacs.ec2.CreateNetworkInterfacePermission,
                    awacs.ec2.DeleteNetworkInterface,
                    awacs.ec2.DeleteNetworkInterfacePermission],
            Resource=[network_interfaces],
            Condition=in_vpc,
        ),
        # AWS: same pages: SageMaker checks the subnets and security group before a VPC job.
        # EC2's Describe actions have no resource-level permissions: AWS accepts only "*".
        Statement(
            Effect=Allow,
            Action=[awacs.ec2.DescribeNetworkInterfaces, awacs.ec2.DescribeVpcs,
                    awacs.ec2.DescribeDhcpOptions, awacs.ec2.DescribeSubnets,
                    awacs.ec2.DescribeSecurityGroups],
            Resource=["*"],
        ),
        # AWS: "CreateTrainingJob API: Execution Role Permissions" and "CreateProcessingJob API:
        # Execution Role Permissions": the jobs' logs, in the log groups SageMaker names.
        Statement(
            Effect=Allow,
            Action=[awacs.logs.CreateLogGroup, awacs.logs.CreateLogStream,
                    awacs.logs.PutLogEvents, awacs.logs.DescribeLogStreams],
            Resource=[policies.arn("logs", f"log-group:{log_group}:*")
                      for log_group in JOB_LOG_GROUPS],
        ),
        # AWS: same pages (cloudwatch:PutMetricData). PutMetricData has no resource-level
        # permissions; the namespace condition keeps it to the jobs' own metrics.
        Statement(
            Effect=Allow,
            Action=[awacs.cloudwatch.PutMetricData],
            Resource=["*"],
            Condition=Condition(StringEquals("cloudwatch:namespace", list(JOB_LOG_GROUPS))),
        ),
    ]
    if settings.image_uri is not None or settings.evaluation_image_uri is not None:
        statements += image_pull_statements()
    return statements


def tuning_statements(settings: TrainingConfig) -> list[Statement]:
    """With tuning, the TuneModel step's job. AWS: "IAM Access Management" (SageMaker
    Pipelines: "Create and Describe permissions for each of the job types in the pipeline"),
    Stop as for the other jobs (stopping an execution stops its running jobs), AddTags
    (Pipelines tags what it creates), and ListTrainingJobsForHyperParameterTuningJob, the call
    behind the step's TrainingJobSummaries property, from which the best model is read. The
    tuning job's name is Pipelines' choice (a tuning job name has at most 32 characters, too
    few for the `pipelines-<execution>` prefix of the other jobs), so any tuning job of this
    account and region. The training jobs it starts are started by SageMaker, as this role."""
    if not settings.tuning.enabled:
        return []
    return [Statement(
        Effect=Allow,
        Action=[awacs.sagemaker.CreateHyperParameterTuningJob,
                awacs.sagemaker.DescribeHyperParameterTuningJob,
                awacs.sagemaker.StopHyperParameterTuningJob,
                awacs.sagemaker.ListTrainingJobsForHyperParameterTuningJob,
                awacs.sagemaker.AddTags],
        Resource=[policies.arn("sagemaker", "hyper-parameter-tuning-job/*")],
    )]


def shadow_model_statements() -> list[Statement]:
    """With the SHAP baseline (training_pipeline.explainability_baseline_steps): the
    CreateShadowModel step's model, and the shadow endpoint the ClarifyCheck step's job makes of
    it, calls and removes (monitoring_models.shadow_endpoint_statements)."""
    return [
        # AWS: "IAM Access Management" (SageMaker Pipelines: Create and Describe for each step
        # type; Pipelines tags what it creates): the CreateModel step's model, named by
        # Pipelines with the prefix of its jobs; "Give Amazon SageMaker Clarify Jobs Access to
        # Resources in Your Amazon VPC": Clarify describes the model for its VPC validation.
        Statement(
            Effect=Allow,
            Action=[awacs.sagemaker.CreateModel, awacs.sagemaker.DescribeModel,
                    awacs.sagemaker.AddTags],
            Resource=[policies.arn("sagemaker", f"model/{PIPELINE_JOB_PREFIX}*")],
        ),
        *shadow_endpoint_statements(),
    ]


def script_statements(scripts: list[Asset]) -> list[Statement]:
    """Reading the shipped scripts: processing inputs of type S3Prefix list their key first.

    AWS: "CreateProcessingJob API: Execution Role Permissions" (s3:GetObject, s3:ListBucket,
    s3:GetBucketLocation on a processing input's location).
    """
    assets_bucket = policies.bucket_arn(Ref(ASSETS_BUCKET))
    return [
        Statement(Effect=Allow, Action=[awacs.s3.GetBucketLocation], Resource=[assets_bucket]),
        Statement(
            Effect=Allow,
            Action=[awacs.s3.ListBucket],
            Resource=[assets_bucket],
            Condition=Condition(StringEquals("s3:prefix", [asset.s3_key for asset in scripts])),
        ),
        assets.read_statement([asset.object_arn for asset in scripts]),
    ]


def image_pull_statements() -> list[Statement]:
    """Pulling a configured image from this account's ECR (the built-in images need none).

    AWS: "CreateTrainingJob API: Execution Role Permissions" (the ECR actions for an image in
    the account's own registry).
    """
    return [
        # The image is a setting, so its repository is unknown here: repositories of this
        # account and region.
        Statement(
            Effect=Allow,
            Action=[awacs.ecr.BatchCheckLayerAvailability, awacs.ecr.BatchGetImage,
                    awacs.ecr.GetDownloadUrlForLayer],
            Resource=[policies.arn("ecr", "repository/*")],
        ),
        # GetAuthorizationToken has no resource-level permissions: AWS accepts only "*".
        Statement(Effect=Allow, Action=[awacs.ecr.GetAuthorizationToken], Resource=["*"]),
    ]


# --- continuous training ----------------------------------------------------------------------

def add_triggers(b: StageBuilder, settings: TrainingConfig, triggers: list[str],
                 start: Starter, input_prefix: Any, key: Ref) -> None:
    # EventBridge writes to the queue as itself; the data key's policy lets events.amazonaws.com
    # encrypt with the key (eventbridge_dead_letters).
    dead_letters = encrypted_queue(b, "TriggerDeadLetterQueue", "training-trigger-dead-letters")
    eventbridge_dead_letters(b)
    role = b.add(iam.Role(
        "TriggerRole",
        Description=("EventBridge starts the training pipeline"
                     if start.target_kind.startswith("SageMaker")
                     else "EventBridge starts the training build"),
        AssumeRolePolicyDocument=policies.trusted_by(
            "events.amazonaws.com", StringEquals("aws:SourceAccount", Ref("AWS::AccountId"))),
        Policies=[iam.Policy(
            PolicyName=("start-training-pipeline"
                        if start.target_kind.startswith("SageMaker") else "start-training-build"),
            # AWS: "Amazon EventBridge targets" (a SageMaker AI pipeline or a CodeBuild project
            # as a target: the role starts it, sagemaker:StartPipelineExecution or
            # codebuild:StartBuild on it).
            PolicyDocument=policies.document(Statement(
                Effect=Allow,
                Action=[start.action],
                Resource=[start.arn],
            )),
        )],
    ))
    rules = []
    for trigger in triggers:
        rule = trigger_rule(b, settings, trigger, input_prefix)
        rule.Targets = [events.Target(
            Id="TrainingPipeline" if start.target_kind.startswith("SageMaker")
            else "TrainingProject",
            Arn=start.arn,
            RoleArn=GetAtt(role, "Arn"),
            RetryPolicy=events.RetryPolicy(
                MaximumRetryAttempts=b.setting(settings, "trigger_retry_attempts"),
                MaximumEventAgeInSeconds=b.setting(settings, "trigger_max_event_age_seconds"),
            ),
            DeadLetterConfig=events.DeadLetterConfig(Arn=GetAtt(dead_letters, "Arn")),
        )]
        rules.append(b.add(rule))
    b.add(sqs.QueuePolicy(
        "TriggerDeadLetterQueuePolicy",
        Queues=[Ref(dead_letters)],
        # AWS: "Using dead-letter queues to process undelivered events" (EventBridge User
        # Guide): the queue's policy lets EventBridge send, for the rules that use it.
        PolicyDocument=policies.document(Statement(

            Sid="EventBridgeDeadLetters",
            Effect=Allow,
            Principal=Principal("Service", "events.amazonaws.com"),
            Action=[awacs.sqs.SendMessage],
            Resource=[GetAtt(dead_letters, "Arn")],
            Condition=Condition(ArnEquals("aws:SourceArn",
                                          [GetAtt(rule, "Arn") for rule in rules])),
        )),
    ))


def trigger_rule(b: StageBuilder, settings: TrainingConfig, trigger: str,
                 input_prefix: Any) -> events.Rule:
    if trigger == "etl_success":
        return events.Rule(
            "EtlSucceededRule",
            Description="Train when the ETL job has written new processed records",
            State="ENABLED",
            EventPattern=etl_events.new_records_pattern(b.input(ETL_JOB_NAME)),
        )
    if trigger == "new_data":
        return events.Rule(
            "NewDataRule",
            Description="Train when a complete batch of data lands under the input prefix",
            State="ENABLED",
            EventPattern={
                "source": ["aws.s3"],
                "detail-type": ["Object Created"],
                "detail": {
                    "bucket": {"name": [b.input(PROCESSED_BUCKET_NAME)]},
                    "object": {"key": [new_data_key_filter(settings, input_prefix)]},
                },
            },
        )
    return events.Rule(
        "ScheduleRule",
        Description="Train on a schedule",
        State="ENABLED",
        ScheduleExpression=b.setting(settings, "schedule"),
    )


def new_data_key_filter(settings: TrainingConfig, input_prefix: Any) -> dict:
    """Keys under the input prefix, ending in the marker when there is one (one run per batch
    instead of one per file)."""
    prefix = (f"${{{input_prefix.data['Ref']}}}" if isinstance(input_prefix, Ref)
              else input_prefix)
    if not settings.new_data_marker:
        return {"prefix": Sub(prefix) if isinstance(input_prefix, Ref) else prefix}
    # In a wildcard pattern `*` matches any run of characters; the prefix and marker patterns
    # admit no `*` or `\` of their own.
    pattern = f"{prefix}*{settings.new_data_marker}"
    return {"wildcard": Sub(pattern) if isinstance(input_prefix, Ref) else pattern}

