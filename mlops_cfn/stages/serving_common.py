"""Pieces the serving stage's parts share: names, conditions, content hashes."""

import hashlib
import json
from typing import Any

import awacs.s3
from awacs.aws import Allow, Condition, Statement, StringLike
from troposphere import Equals, If, Not, NoValue, Ref, Select, Split, Sub, encode_to_dict

from .. import naming
from ..outputs import ARTIFACTS_BUCKET_ARN
from ..stage import StageBuilder

# The endpoint's one production variant. Blue/green deployments need the same variant name in
# the old and the new endpoint config, so it never changes.
VARIANT = "AllTraffic"

# CloudFormation conditions: the parts that exist only once there is something to run.
MODEL_SUPPLIED = "ModelSupplied"
# The Fargate API runs once both its image (ApiImageTag) and the model it loads are named.
API_RUNNABLE = "ApiRunnable"
# The folder under stages.training.artifacts_prefix where the training step writes model
# archives (training_pipeline.definition, S3OutputPath; a test keeps the two in step).
MODELS_FOLDER = "models"
# Image URIs of the China partition end in amazonaws.com.cn.
IN_CHINA = "InChinaPartition"

HTTPS = 443
HTTP = 80
ANYWHERE = "0.0.0.0/0"

# Names of services naming.py has no rule for.
SCHEDULE = naming.NameRule("EventBridge Scheduler schedule", 64)
API_NAME = naming.NameRule("API Gateway API", 128)
# A transform job is named <prefix>-<uuid> (36 characters) within SageMaker's 63.
TRANSFORM_JOB_PREFIX = naming.NameRule("SageMaker transform job prefix", 63 - 37)

# Scaling reacts fast to load and slowly to its absence, so a short dip does not drop capacity
# a moment before it is needed again.
SCALE_OUT_COOLDOWN_SECONDS = 60
SCALE_IN_COOLDOWN_SECONDS = 300


def content_hash(value: Any, length: int = 8) -> str:
    """A short, stable hash of a template fragment (troposphere objects or plain data).

    Parameters stay `Ref`s in the fragment, so the hash follows the template's structure and
    not the values an environment gives them.
    """
    text = json.dumps(encode_to_dict(value), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:length].upper()


def name_pattern(b: StageBuilder, rule: naming.NameRule, *purpose: str) -> str:
    """The `Fn::Sub` text of a physical name, for use inside a longer Sub (an ARN, a resource
    id) where `b.physical_name` would give a whole Sub."""
    b.environment  # declares EnvironmentName, which the pattern refers to
    return naming.physical_name(rule, b.project, *purpose)


def not_empty(parameter: Ref) -> Not:
    return Not(Equals(parameter, ""))


def models_prefix(config: Any) -> str:
    """Where the training pipeline writes model archives in the artifacts bucket."""
    return f"{config.stages.training.artifacts_prefix}{MODELS_FOLDER}/"


def objects_under(bucket_arn: Ref, prefix: str) -> Sub:
    """The objects under `prefix` of the bucket whose ARN parameter is `bucket_arn`."""
    return Sub("${%s}/%s*" % (bucket_arn.data["Ref"], prefix))


def list_under(bucket_arn: Ref, prefix: str) -> Statement:
    """s3:ListBucket of the bucket, for keys under `prefix` only (AWS: "ListObjectsV2",
    Amazon S3 API Reference: listing takes s3:ListBucket, which s3:prefix limits); each
    caller says why its role lists."""
    return Statement(Effect=Allow, Action=[awacs.s3.ListBucket], Resource=[bucket_arn],
                     Condition=Condition(StringLike("s3:prefix", f"{prefix}*")))


def ecr_repository_arn(b: StageBuilder, image: Ref) -> If:
    """The ECR repository ARN of an image URI parameter,
    `<account>.dkr.ecr.<region>.amazonaws.com[.cn]/<repository>[:tag|@digest]` (the config
    accepts nothing else), cut apart in the template since the URI is a per-environment value.
    Fn::Split takes a literal delimiter only, hence one variant per domain."""
    if IN_CHINA not in b.template.conditions:
        b.template.add_condition(IN_CHINA, Equals(Ref("AWS::Partition"), "aws-cn"))
    host = Split(".", Select(0, Split("/", image)))

    def arn(domain: str) -> Sub:
        path = Select(1, Split(f".{domain}/", image))
        return Sub("arn:${AWS::Partition}:ecr:${Region}:${Account}:repository/${Repository}",
                   Region=Select(3, host), Account=Select(0, host),
                   Repository=Select(0, Split(":", Select(0, Split("@", path)))))

    return If(IN_CHINA, arn("amazonaws.com.cn"), arn("amazonaws.com"))


def add_model_supplied(b: StageBuilder, config: Any) -> None:
    """Condition ModelSupplied: a model to serve is named (ModelPackageArn, or ModelDataUrl with
    model_source `model_data`; the config refuses an archive without its SageMaker image, so the
    archive alone decides). Both targets serve that model."""
    if MODEL_SUPPLIED in b.template.conditions:
        return
    serving = config.stages.serving
    field = "model_package_arn" if serving.model_source == "model_package" else "model_data_url"
    b.template.add_condition(MODEL_SUPPLIED, not_empty(b.setting(serving, field)))


def model_archive_read_statement(b: StageBuilder, config: Any) -> Any:
    """s3:GetObject on the model archive, for whatever loads it (the SageMaker model role, the
    API's task role): exactly ModelDataUrl's object (a setting, so its ARN is derived in the
    template, wherever it lives), or with model packages the folder the training pipeline
    writes models to (training_pipeline.definition: the training step's S3OutputPath
    `<artifacts>/<training.artifacts_prefix>models`). AWS: "How to use SageMaker AI execution
    roles" (CreateModel API: scope S3 permissions to the ModelDataUrl objects); AWS: "Amazon ECS
    task IAM role" for the API's task, which downloads the same archive."""
    serving = config.stages.serving
    if serving.model_source == "model_package":
        return Statement(Effect=Allow, Action=[awacs.s3.GetObject], Resource=[objects_under(
            b.input(ARTIFACTS_BUCKET_ARN), models_prefix(config))])
    url = b.setting(serving, "model_data_url")
    # s3://bucket/key -> arn:...:s3:::bucket/key; only once a URL is set.
    return If(MODEL_SUPPLIED, Statement(
        Effect=Allow, Action=[awacs.s3.GetObject],
        Resource=[Sub("arn:${AWS::Partition}:s3:::${Object}",
                      Object=Select(1, Split("s3://", url)))],
    ), NoValue)
