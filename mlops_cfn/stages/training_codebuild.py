"""The training stage's CodeBuild engine (stages.training.engine: codebuild), for small models.

The SageMaker pipeline's steps in one CodeBuild build (training_buildspec.py), with the same
prepare and evaluation scripts, the shipped train.py in place of the built-in algorithm's
training job, and the built-in XGBoost image (or evaluation_image_uri) as the build's image,
so the model it registers is the one that image serves.

Resources
- TrainingProject (AWS::CodeBuild::Project): source = the scripts' zip in the assets bucket,
  build spec inline, in the private subnets, encrypted with the data key, logs to
  TrainingLogGroup; the image pulled with the service role's credentials (AWS's images live
  in AWS's accounts).
- TrainingBuildRole: what the build spec calls, nothing else (build_role_statements).
- TrainingLogGroup: encrypted with the data key, with the project's retention.
- BuildSecurityGroup: HTTPS out to the interface endpoints and S3; nothing in.
"""

import json
from typing import Any

import awacs.ecr
import awacs.kms
import awacs.s3
import awacs.sagemaker
from awacs.aws import Allow, Statement
from troposphere import GetAtt, Ref, Sub, codebuild, iam

from .. import assets, policies
from ..assets import ASSETS_BUCKET, ASSETS_PREFIX, Asset
from ..config import PipelineConfig
from ..config.training import TrainingConfig
from ..outputs import (ARTIFACTS_BUCKET_ARN, ARTIFACTS_BUCKET_NAME, PRIVATE_SUBNET_IDS,
                       PROCESSED_BUCKET_ARN, PROCESSED_BUCKET_NAME, PROCESSED_DATA_PREFIX, VPC_ID)
from ..stage import StageBuilder
from . import training_buildspec as spec
from .cicd import BuildNetwork, codebuild_trust, log_statement, project_logs, vpc_statements
from .common import encrypted_log_group, https_out_security_group
from .image_registries import XGBOOST, account_in_region

SCRIPTS_ZIP = "training-build.zip"
# The built-in XGBoost image's repository (image_registries.XGBOOST's accounts).
XGBOOST_REPOSITORY = "sagemaker-xgboost"


def add_training_project(b: StageBuilder, config: PipelineConfig, key: Ref, input_prefix: Any,
                         group_name: Sub, scripts_dir: Any) -> codebuild.Project:
    settings = config.stages.training
    schema = config.record_schema
    assert schema.label is not None  # TrainingConfig.problems_with refuses a schema without one
    zip_asset = b.asset(SCRIPTS_ZIP, assets.zip_files(
        {name: (scripts_dir / name).read_bytes() for name in spec.SCRIPTS}))
    log_group = encrypted_log_group(b, config, "TrainingLogGroup", "training-build")
    security_group = https_out_security_group(
        b, config, "BuildSecurityGroup",
        "Training build: HTTPS to the VPC endpoints and S3 only", reaches_s3=True)
    network = BuildNetwork(security_group, b.input(PRIVATE_SUBNET_IDS), b.input(VPC_ID))
    own_image = settings.evaluation_image_uri is not None
    xgboost_account = account_in_region(b, XGBOOST)
    role = b.add(iam.Role(
        "TrainingBuildRole",
        Description="CodeBuild training build: prepare, train, evaluate and register a model",
        AssumeRolePolicyDocument=codebuild_trust(),
        Policies=[iam.Policy(PolicyName="training-build", PolicyDocument=policies.document(
            build_role_statements(b, settings, key, input_prefix, group_name, zip_asset,
                                  log_group, network, own_image, xgboost_account))),
            # The build downloads its source (the scripts' zip) from the assets bucket.
            *b.asset_key_policies()],
    ))
    built_in = Sub(f"${{Account}}.dkr.ecr.${{AWS::Region}}.${{AWS::URLSuffix}}"
                   f"/{XGBOOST_REPOSITORY}:{settings.xgboost_version}", Account=xgboost_account)
    image = b.setting(settings, "evaluation_image_uri") if own_image else built_in
    variables = environment(b, config, key, input_prefix, group_name, built_in)
    return b.add(codebuild.Project(
        "TrainingProject",
        Description="Prepares, trains, evaluates and registers a model (engine codebuild)",
        ServiceRole=GetAtt(role, "Arn"),
        Source=codebuild.Source(
            Type="S3",
            # S3 source: <bucket>/<key> of a zip CodeBuild unpacks as the working directory.
            Location=Sub(f"${{{ASSETS_BUCKET}}}/${{{ASSETS_PREFIX}}}{zip_asset.key}"),
            BuildSpec=spec.as_text(spec.build_spec(
                settings, schema.label, tuple(schema.feature_columns()),
                settings.input_format(config)))),
        Artifacts=codebuild.Artifacts(Type="NO_ARTIFACTS"),
        Environment=codebuild.Environment(
            Type="LINUX_CONTAINER",
            ComputeType=b.setting(settings.codebuild, "compute_type"),
            Image=image,
            # AWS: "ProjectEnvironment" (CodeBuild API Reference): "When you use a
            # cross-account or private registry image, you must use SERVICE_ROLE credentials."
            ImagePullCredentialsType="SERVICE_ROLE",
            PrivilegedMode=False,
            EnvironmentVariables=[
                codebuild.EnvironmentVariable(Name=name, Type="PLAINTEXT", Value=value)
                for name, value in sorted(variables.items())],
        ),
        EncryptionKey=key,
        TimeoutInMinutes=b.setting(settings.codebuild, "timeout_minutes"),
        LogsConfig=project_logs(log_group),
        VpcConfig=codebuild.VpcConfig(
            VpcId=network.vpc, Subnets=network.subnets,
            SecurityGroupIds=[GetAtt(security_group, "GroupId")]),
    ))


def environment(b: StageBuilder, config: PipelineConfig, key: Ref, input_prefix: Any,
                group_name: Sub, inference_image: Sub) -> dict[str, Any]:
    """The build spec's variables (training_buildspec.ENVIRONMENT), each a value of the stack."""
    settings = config.stages.training
    prefix = (f"${{{PROCESSED_DATA_PREFIX.name}}}" if isinstance(input_prefix, Ref)
              else input_prefix)
    # The Subs name these parameters: declared as inputs.
    b.input(PROCESSED_BUCKET_NAME)
    b.input(ARTIFACTS_BUCKET_NAME)
    return {
        spec.INPUT_URI: Sub(f"s3://${{{PROCESSED_BUCKET_NAME.name}}}/{prefix}"),
        spec.ARTIFACTS_URI: Sub(f"s3://${{{ARTIFACTS_BUCKET_NAME.name}}}/"
                                f"{settings.artifacts_prefix}"),
        spec.DATA_KEY_ARN: key,
        spec.MODEL_PACKAGE_GROUP: group_name,
        spec.INFERENCE_IMAGE: inference_image,
        spec.METRIC_THRESHOLD: b.setting(settings, "metric_threshold"),
        spec.MODEL_APPROVAL_STATUS: b.setting(settings, "approval_status"),
        # Structural, as in the pipeline's training job: every environment trains alike.
        spec.HYPERPARAMETERS: json.dumps(settings.hyperparameters, sort_keys=True),
    }


def build_role_statements(b: StageBuilder, settings: TrainingConfig, key: Ref,
                          input_prefix: Any, group_name: Sub, zip_asset: Asset, log_group: Any,
                          network: BuildNetwork, own_image: bool,
                          xgboost_account: Any) -> list[Statement]:
    group = group_name.data["Fn::Sub"]
    assets_bucket = policies.bucket_arn(Ref(ASSETS_BUCKET))
    return [
        # AWS: "Allow CodeBuild to interact with other AWS services" (CodeBuild User Guide: the
        # service role of a project with an S3 source: s3:GetObject and s3:GetObjectVersion on
        # the source, s3:GetBucketAcl and s3:GetBucketLocation on its bucket).
        Statement(Effect=Allow, Action=[awacs.s3.GetObject, awacs.s3.GetObjectVersion],
                  Resource=[zip_asset.object_arn]),
        # AWS: same page: the source bucket's ACL and location.
        Statement(Effect=Allow, Action=[awacs.s3.GetBucketAcl, awacs.s3.GetBucketLocation],
                  Resource=[assets_bucket]),
        # AWS: "ListObjectsV2" and "GetObject" (Amazon S3 API Reference: s3:ListBucket, on
        # the prefix, and s3:GetObject): register.py download reads the input location.
        *policies.bucket_access(b.input(PROCESSED_BUCKET_ARN), input_prefix),
        # AWS: "PutObject" (Amazon S3 API Reference), with multipart uploads for large models
        # ("Multipart upload API and permissions"): register.py upload writes the model and
        # the report under the artifacts prefix.
        *policies.bucket_access(b.input(ARTIFACTS_BUCKET_ARN), settings.artifacts_prefix,
                                read=False, write=True),
        # AWS: "Using server-side encryption with AWS KMS keys (SSE-KMS)" (Amazon S3 User
        # Guide): downloads decrypt, uploads generate data keys, through S3 only; CodeBuild
        # encrypts the build's own output with the project's key ("Data encryption", CodeBuild
        # User Guide).
        policies.use_key(key, [awacs.kms.Decrypt, awacs.kms.GenerateDataKey],
                         via_services=("s3",)),
        # AWS: "CreateModelPackage" (Amazon SageMaker API Reference; IAM's service reference
        # authorizes it on the model package and its group): register.py registers a version
        # into the project's group only.
        Statement(Effect=Allow, Action=[awacs.sagemaker.CreateModelPackage],
                  Resource=[policies.arn("sagemaker", f"model-package-group/{group}"),
                            policies.arn("sagemaker", f"model-package/{group}/*")]),
        # AWS: "Amazon ECR sample for CodeBuild" (CodeBuild User Guide): with SERVICE_ROLE
        # credentials the role pulls the image: the built-in XGBoost repository in AWS's
        # account of the region, or this account's repositories for evaluation_image_uri.
        Statement(Effect=Allow,
                  Action=[awacs.ecr.BatchCheckLayerAvailability, awacs.ecr.BatchGetImage,
                          awacs.ecr.GetDownloadUrlForLayer],
                  Resource=[policies.arn("ecr", "repository/*") if own_image else
                            Sub("arn:${AWS::Partition}:ecr:${AWS::Region}:${Account}:"
                                f"repository/{XGBOOST_REPOSITORY}", Account=xgboost_account)]),
        # AWS: same page: GetAuthorizationToken has no resource-level permissions: "*" only.
        Statement(Effect=Allow, Action=[awacs.ecr.GetAuthorizationToken], Resource=["*"]),
        # AWS: "Allow CodeBuild to interact with other AWS services": the build's logs.
        log_statement(log_group),
        # AWS: "Allow CodeBuild access to AWS services required to create a VPC network
        # interface" (CodeBuild User Guide).
        *vpc_statements(network),
    ]
