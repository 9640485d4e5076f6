"""Physical names from project and environment that every service accepts.

A name is a `Fn::Sub` pattern: `<project>-${EnvironmentName}-<purpose>` plus, for globally unique
names (S3), the account and region. The environment is a parameter, so its length is unknown at
render time; we budget its maximum (the parameter's MaxLength) and the longest account and region,
so the name is valid for every value CloudFormation will accept. When the project does not fit,
it is cut and a short hash of the full project name is appended, so two long projects that share
a prefix still get different names.

Names no human needs (IAM roles, security groups, policies) are left to CloudFormation.
"""

import hashlib
import re
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Iterator

from .config import ENVIRONMENT_MAX_LENGTH

ENVIRONMENT = "${EnvironmentName}"
ACCOUNT = "${AWS::AccountId}"
REGION = "${AWS::Region}"

# Longest value each token can take when substituted (the environment's: `environment_length`).
_FIXED_TOKEN_LENGTHS = {
    ACCOUNT: 12,
    REGION: 15,  # us-isof-south-1
}
_environment_length: ContextVar[int] = ContextVar("environment_length",
                                                  default=ENVIRONMENT_MAX_LENGTH)


def environment_length() -> int:
    """The longest value `${EnvironmentName}` may take in the names being built."""
    return _environment_length.get()


@contextmanager
def environment_token(max_length: int) -> Iterator[None]:
    """Build names (and the EnvironmentName parameter, settings.py) for an environment token of
    up to `max_length` characters: the Service Catalog product for SageMaker Projects puts the
    project's id there (servicecatalog.py), which is longer than an environment name."""
    reset = _environment_length.set(max_length)
    try:
        yield
    finally:
        _environment_length.reset(reset)


def _token_lengths() -> dict[str, int]:
    return {ENVIRONMENT: environment_length(), **_FIXED_TOKEN_LENGTHS}
_HASH_LENGTH = 4


@dataclass(frozen=True)
class NameRule:
    """One service's naming rule: the longest name and the characters it allows."""

    service: str
    max_length: int
    separator: str = "-"
    lowercase: bool = True
    # Characters allowed in the parts we write; any other becomes the separator.
    allowed: str = "a-z0-9-"
    # Appended tokens that make a name unique beyond one account and region.
    unique_suffix: tuple[str, ...] = ()
    # Room kept for the purpose whatever its length, so every name of a project shares one
    # prefix (`bucket_prefix`) that a policy can match.
    purpose_length: int | None = None


S3_BUCKET = NameRule("S3 bucket", 63, unique_suffix=(ACCOUNT, REGION), purpose_length=9)
KINESIS_STREAM = NameRule("Kinesis stream", 128)
FIREHOSE_STREAM = NameRule("Firehose delivery stream", 64)
GLUE = NameRule("Glue database/table", 255, separator="_", allowed="a-z0-9_")
GLUE_JOB = NameRule("Glue job/crawler", 255)
LAMBDA_FUNCTION = NameRule("Lambda function", 64)
EMR_SERVERLESS = NameRule("EMR Serverless application", 64)
SAGEMAKER = NameRule("SageMaker", 63)
REDSHIFT = NameRule("Redshift", 63)
ECS = NameRule("ECS", 255)
ECR_REPOSITORY = NameRule("ECR repository", 256)
SNS_TOPIC = NameRule("SNS topic", 256)
SQS_QUEUE = NameRule("SQS queue", 80)
STATE_MACHINE = NameRule("Step Functions state machine", 80)
CODEPIPELINE = NameRule("CodePipeline", 100)
KMS_ALIAS = NameRule("KMS alias", 256 - len("alias/"), separator="-")
LOG_GROUP = NameRule("CloudWatch log group", 512, separator="/", allowed="a-z0-9._/-")
# A KCL application's lease table: KCL names its other two tables after it with these suffixes
# (KCL 3.x, "DynamoDB metadata tables and load balancing in KCL"), all within DynamoDB's 255.
KCL_TABLE_SUFFIXES = ("-WorkerMetricStats", "-CoordinatorState")
KCL_LEASE_TABLE = NameRule("DynamoDB table (KCL lease table)",
                           255 - max(len(s) for s in KCL_TABLE_SUFFIXES))

# The serving API's ECS cluster: the part of its name after the project and environment.
API_CLUSTER_PURPOSE = "model-api"


def physical_name(rule: NameRule, project: str, *purpose: str) -> str:
    """The `Fn::Sub` pattern naming one resource of `project` in the current environment."""
    parts = [_clean(p, rule) for p in purpose]
    tokens = [ENVIRONMENT, *parts, *rule.unique_suffix]
    lengths = _token_lengths()
    fixed = sum(lengths.get(t, len(t)) for t in tokens) + len(rule.separator) * len(tokens)
    if rule.purpose_length is not None:
        purpose_text = rule.separator.join(parts)
        if len(purpose_text) > rule.purpose_length:
            raise ValueError(f"{rule.service} purpose {purpose_text!r} is longer than "
                             f"{rule.purpose_length} characters")
        fixed += rule.purpose_length - len(purpose_text)
    budget = rule.max_length - fixed
    project_part = _fit(_clean(project, rule), budget, rule.separator)
    return rule.separator.join([project_part, *tokens])


def bucket_prefix(project: str) -> str:
    """The start every S3 bucket name of `project` shares in one environment (a Sub pattern)."""
    return physical_name(S3_BUCKET, project, "x").removesuffix(
        f"x-{ACCOUNT}-{REGION}")


def log_group_name(project: str, *purpose: str) -> str:
    """Log groups read like paths: /mlops/<project>/<env>/<purpose>."""
    return "/mlops/" + physical_name(LOG_GROUP, project, *purpose)


def max_length(pattern: str) -> int:
    """Longest text `pattern` can become once CloudFormation substitutes its tokens."""
    length = len(pattern)
    for token, longest in _token_lengths().items():
        length += pattern.count(token) * (longest - len(token))
    return length


def _clean(text: str, rule: NameRule) -> str:
    text = text.lower() if rule.lowercase else text
    return re.sub(f"[^{rule.allowed}]+", rule.separator, text).strip(rule.separator)


def _fit(project: str, budget: int, separator: str) -> str:
    if len(project) <= budget:
        return project
    digest = hashlib.sha256(project.encode()).hexdigest()[:_HASH_LENGTH]
    keep = budget - _HASH_LENGTH - len(separator)
    if keep < 1:
        raise ValueError(f"no room for the project name in a name of {budget} characters")
    return f"{project[:keep].rstrip(separator)}{separator}{digest}"
