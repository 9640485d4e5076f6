"""storage stage: the data key and the data lake buckets.

Resources
- DataKey (AWS::KMS::Key): customer-managed, yearly rotation, kept on stack deletion. Its policy
  (policies.data_key_policy) lets this account's IAM policies administer and use it, denies
  grants that are not for AWS resources, lets CloudWatch Logs encrypt this project's log groups
  (`_encrypted_log_groups`), and grants AWS services what the other enabled stages ask for
  through their builders (stage.KeyUse: CloudWatch alarms and EventBridge publishing to the
  monitoring stage's topic, Fargate encrypting the serving API's task storage, ...), each
  scoped by a condition; no `kms:*` anywhere.
- DataKeyAlias (AWS::KMS::Alias): `alias/<project>-<env>-data`.
- RawBucket, ProcessedBucket, ArtifactsBucket (AWS::S3::Bucket) with a BucketPolicy each:
  SSE-KMS with the data key and a bucket key, versioning, all public access blocked, ACLs off,
  server access logs to the access-logs bucket, EventBridge notifications, TLS-only policy,
  lifecycle: raw objects move to the archive storage class after ArchiveAfterDays (the
  pipeline's long-term backup, read again only by what reads new data); processed objects stay
  readable (STANDARD, or `processed_storage_class` after ProcessedTransitionDays: never a class
  that needs a restore, since the warehouse load, training and Spectrum read the whole processed
  prefix); artifacts stay in STANDARD; replaced versions expire; unfinished uploads are aborted.
- AccessLogsBucket (AWS::S3::Bucket) + AccessLogsBucketPolicy: the one bucket encrypted with
  SSE-S3 instead of the data key (see `_access_logs_bucket`); receives the S3 server access logs
  of the buckets above (and the cicd stage's), and the serving stage's load balancer access logs.
  (Redshift exports its audit logs to CloudWatch Logs, not here: stages/analytics.py.)
- Every bucket records its AWS Control Tower exceptions in Metadata (Object Lock is the data
  owner's decision; the access-logs bucket's SSE-S3 and its not logging itself).

Built after the other stages of its environment (pipeline.py): `build(config, key_uses)`.

Inputs: none.
Outputs: DataKeyArn, DataKeyAlias, RawBucketName/Arn, ProcessedBucketName/Arn,
ArtifactsBucketName/Arn, AccessLogsBucketName.
Settings: EnvironmentName, ArchiveAfterDays, NoncurrentVersionExpirationDays,
AccessLogExpirationDays; ProcessedTransitionDays (with `processed_storage_class`).
"""

import json
import re
from dataclasses import dataclass
from typing import Iterable

import awacs.s3
from awacs.aws import Allow, ArnLike, Condition, Principal, Statement, StringEquals
from troposphere import GetAtt, If, Ref, Sub, encode_to_dict, kms, s3

from .. import naming, policies
from ..config import PipelineConfig
from ..config.storage import StorageConfig
from ..lint_rules import exceptions as lint_exceptions
from ..outputs import (ACCESS_LOGS_BUCKET_NAME, ARTIFACTS_BUCKET_ARN, ARTIFACTS_BUCKET_NAME,
                       DATA_KEY_ALIAS, DATA_KEY_ARN, PROCESSED_BUCKET_ARN, PROCESSED_BUCKET_NAME,
                       RAW_BUCKET_ARN, RAW_BUCKET_NAME, Wire)
from ..settings import ENVIRONMENT_NAME
from ..stage import KeyUse, Stage, StageBuilder
from . import load_balancer_logs
from .access_logs import LOAD_BALANCER_LOG_PREFIX, S3_ACCESS_LOG_PREFIX
from .common import OBJECT_LOCK_EXCEPTION, RETAIN, control_tower_exceptions


# Multipart uploads nobody completes are billed but invisible; a week covers any real upload.
INCOMPLETE_UPLOAD_DAYS = 7

# Why the access-logs bucket is encrypted with SSE-S3, not a KMS key (AWS Control Tower
# CT.S3.PR.10): each of its writers requires SSE-S3 of the destination bucket.
ACCESS_LOGS_SSE_S3_REASON = (
    "S3 server access logging delivers only to a destination bucket whose default encryption "
    "is SSE-S3 (AES256) (Amazon S3 User Guide, \"Enabling Amazon S3 server access logging\"), "
    "and Application Load Balancer access logs likewise (Elastic Load Balancing, \"Enable "
    "access logs for your Application Load Balancer\"); this bucket holds those access logs, "
    "never pipeline data.")


# What a data bucket's objects become with age, by what reads them.
ARCHIVE = "archive"    # raw: read again only when new (the ETL job's bookmarks, new-folder
                       # crawls), so it may move to a class that needs a restore
READABLE = "readable"  # processed: read whole by every load, training run and Spectrum query
KEEP = "keep"          # artifacts: models and scripts, read by deployments at any time


@dataclass(frozen=True)
class DataBucket:
    purpose: str
    logical_id: str
    name_wire: Wire
    arn_wire: Wire
    ageing: str


DATA_BUCKETS = (
    DataBucket("raw", "RawBucket", RAW_BUCKET_NAME, RAW_BUCKET_ARN, ARCHIVE),
    DataBucket("processed", "ProcessedBucket", PROCESSED_BUCKET_NAME, PROCESSED_BUCKET_ARN,
               READABLE),
    DataBucket("artifacts", "ArtifactsBucket", ARTIFACTS_BUCKET_NAME, ARTIFACTS_BUCKET_ARN, KEEP),
)


def build(config: PipelineConfig, key_uses: Iterable[KeyUse] = ()) -> Stage:
    """The stage, its key's policy granting what `key_uses` (the other enabled stages') ask."""
    storage = config.stages.storage
    b = StageBuilder("storage", config.project, "data lake buckets and the data key")

    key = b.add(_data_key(b, config.project, storage, list(key_uses)))
    alias = b.add(kms.Alias(
        "DataKeyAlias",
        AliasName=_alias_name(b),
        TargetKeyId=Ref(key),
    ))
    b.output(DATA_KEY_ARN, GetAtt(key, "Arn"))
    b.output(DATA_KEY_ALIAS, Ref(alias))

    names = {spec: b.physical_name(naming.S3_BUCKET, spec.purpose) for spec in DATA_BUCKETS}
    logs_bucket = b.add(_access_logs_bucket(b, storage))
    # Every bucket of this pipeline and environment may log here (the cicd stage's too): their
    # names share one prefix.
    source_arns = [Sub(f"arn:${{AWS::Partition}}:s3:::{naming.bucket_prefix(config.project)}*")]
    logs_policy = b.add(s3.BucketPolicy(
        "AccessLogsBucketPolicy",
        Bucket=Ref(logs_bucket),
        # A plain document: awacs takes no Fn::If among statements.
        PolicyDocument={"Version": policies.POLICY_VERSION, "Statement": [
            policies.deny_insecure_transport(GetAtt(logs_bucket, "Arn")),
            _s3_log_delivery(logs_bucket, source_arns),
            _load_balancer_log_delivery(b, logs_bucket),
        ]},
    ))
    b.output(ACCESS_LOGS_BUCKET_NAME, Ref(logs_bucket))

    for spec in DATA_BUCKETS:
        bucket = b.add(_data_bucket(b, spec, names[spec], storage, key, logs_bucket))
        # Logs are delivered only once the log bucket lets the logging service write.
        bucket.DependsOn = [logs_policy.title]
        b.add(s3.BucketPolicy(
            f"{spec.logical_id}Policy",
            Bucket=Ref(bucket),
            PolicyDocument=policies.document(
                policies.deny_insecure_transport(GetAtt(bucket, "Arn"))),
        ))
        b.output(spec.name_wire, Ref(bucket))
        b.output(spec.arn_wire, GetAtt(bucket, "Arn"))
    return b.finish()


def _data_key(b: StageBuilder, project: str, storage: StorageConfig,
              key_uses: list[KeyUse]) -> kms.Key:
    return kms.Key(
        "DataKey",
        Description=f"{project}: encrypts the pipeline's data, logs and artifacts",
        EnableKeyRotation=True,
        PendingWindowInDays=storage.key_deletion_window_days,
        KeyPolicy=policies.data_key_policy(
            _encrypted_log_groups(b, project, key_uses), *_service_key_statements(key_uses)),
        **RETAIN,
    )


def _encrypted_log_groups(b: StageBuilder, project: str, key_uses: list[KeyUse]) -> list[Sub]:
    """The names (patterns) of the log groups this project and environment encrypts with the
    key, the only ones CloudWatch Logs may use it for: those under the project's own prefix
    (naming.log_group_name, which every stage's builder uses), and those services name after a
    resource of a stage, which that stage asks for (StageBuilder.data_key_log_group: Redshift's
    audit logs, a SageMaker endpoint's, Glue's under a security configuration). A test resolves
    every log group of every example against these patterns."""
    b.environment  # declares the EnvironmentName parameter the patterns refer to
    own_prefix = naming.log_group_name(project, "x").removesuffix("x")
    patterns = [f"{own_prefix}*"]
    for use in key_uses:
        patterns += [pattern for pattern in use.log_groups if pattern not in patterns]
    for pattern in patterns:
        _only_shared_parameters(pattern, f"log group {pattern!r}")
    return [Sub(pattern) for pattern in patterns]


def _service_key_statements(key_uses: list[KeyUse]) -> list[Statement]:
    """The key-policy grants the stages ask for (StageBuilder.data_key_use), once each by Sid,
    in the order of the stages (the composer's registry order): services that call KMS as
    themselves for a stage's resources. A grant two stages ask for must be the same
    statement."""
    by_sid: dict[str, Statement] = {}
    for use in key_uses:
        for statement in use.statements:
            known = by_sid.setdefault(statement.Sid, statement)
            if encode_to_dict(known) != encode_to_dict(statement):
                raise ValueError(f"two stages ask the data key's policy for different "
                                 f"statements {statement.Sid!r}")
            _only_shared_parameters(json.dumps(encode_to_dict(statement)),
                                    f"statement {statement.Sid!r}")
    return list(by_sid.values())


_REFERENCE = re.compile(r'"Ref": "([^"]+)"|\$\{([^}!.]+)[}.]')


def _only_shared_parameters(text: str, what: str) -> None:
    """What a stage asks of the key may mention pseudo parameters and EnvironmentName only:
    this template has no other stage's parameters or resources (stage.KeyUse)."""
    names = {name for match in _REFERENCE.finditer(text) for name in match.groups() if name}
    foreign = sorted(n for n in names if not n.startswith("AWS::") and n != ENVIRONMENT_NAME)
    if foreign:
        raise ValueError(f"the data key's policy cannot take {what}: it names {foreign}, which "
                         f"the storage template does not have")


def _alias_name(b: StageBuilder) -> Sub:
    b.environment  # declares the EnvironmentName parameter the alias pattern refers to
    return Sub("alias/" + naming.physical_name(naming.KMS_ALIAS, b.project, "data"))


def _data_bucket(b: StageBuilder, spec: DataBucket, name: Sub, storage: StorageConfig,
                 key: kms.Key, logs_bucket: s3.Bucket) -> s3.Bucket:
    return s3.Bucket(
        spec.logical_id,
        BucketName=name,
        BucketEncryption=s3.BucketEncryption(ServerSideEncryptionConfiguration=[
            s3.ServerSideEncryptionRule(
                ServerSideEncryptionByDefault=s3.ServerSideEncryptionByDefault(
                    SSEAlgorithm="aws:kms", KMSMasterKeyID=GetAtt(key, "Arn")),
                # One data key per bucket instead of a KMS call per object: cost and throttling.
                BucketKeyEnabled=True,
            )]),
        VersioningConfiguration=s3.VersioningConfiguration(Status="Enabled"),
        PublicAccessBlockConfiguration=_no_public_access(),
        OwnershipControls=_acls_disabled(),
        LoggingConfiguration=s3.LoggingConfiguration(
            DestinationBucketName=Ref(logs_bucket),
            LogFilePrefix=f"{S3_ACCESS_LOG_PREFIX}{spec.purpose}/",
            # Date-partitioned keys, so Athena can query the logs by day.
            TargetObjectKeyFormat=s3.TargetObjectKeyFormat(
                PartitionedPrefix=s3.PartitionedPrefix(PartitionDateSource="EventTime")),
        ),
        LifecycleConfiguration=s3.LifecycleConfiguration(
            Rules=_data_lifecycle_rules(b, storage, spec.ageing)),
        # Later stages (ETL, training) react to new objects through EventBridge rules.
        NotificationConfiguration=s3.NotificationConfiguration(
            EventBridgeConfiguration=s3.EventBridgeConfiguration(EventBridgeEnabled=True)),
        Metadata=control_tower_exceptions(OBJECT_LOCK_EXCEPTION),
        **RETAIN,
    )


def _data_lifecycle_rules(b: StageBuilder, storage: StorageConfig,
                          ageing: str) -> list[s3.LifecycleRule]:
    rules = []
    transition = _transition(b, storage, ageing)
    if transition is not None:
        rules.append(s3.LifecycleRule(Id=ageing, Status="Enabled", Transitions=[transition]))
    rules.append(s3.LifecycleRule(
        Id="expire-noncurrent-versions",
        Status="Enabled",
        NoncurrentVersionExpiration=s3.NoncurrentVersionExpiration(
            NoncurrentDays=b.setting(storage, "noncurrent_version_expiration_days")),
        # A delete marker with no versions left behind it only slows listings.
        ExpiredObjectDeleteMarker=True,
        AbortIncompleteMultipartUpload=_abort_incomplete_uploads(),
    ))
    return rules


def _transition(b: StageBuilder, storage: StorageConfig,
                ageing: str) -> s3.LifecycleRuleTransition | None:
    if ageing == ARCHIVE:
        return s3.LifecycleRuleTransition(
            StorageClass=storage.archive_storage_class,
            TransitionInDays=b.setting(storage, "archive_after_days"))
    if ageing == READABLE and storage.processed_storage_class is not None:
        return s3.LifecycleRuleTransition(
            StorageClass=storage.processed_storage_class,
            TransitionInDays=b.setting(storage, "processed_transition_days"))
    return None


def _access_logs_bucket(b: StageBuilder, storage: StorageConfig) -> s3.Bucket:
    return s3.Bucket(
        "AccessLogsBucket",
        BucketName=b.physical_name(naming.S3_BUCKET, "logs"),
        # SSE-S3, not the data key: the two deliveries this bucket receives take only SSE-S3
        # (AES256) as its default encryption. AWS: "Enabling Amazon S3 server access logging"
        # (S3 User Guide: default encryption of the destination bucket only with SSE-S3) and
        # "Enable access logs for your Application Load Balancer" (Elastic Load Balancing,
        # bucket requirements: "The only server-side encryption option that's supported is
        # Amazon S3-managed keys (SSE-S3)").
        BucketEncryption=s3.BucketEncryption(ServerSideEncryptionConfiguration=[
            s3.ServerSideEncryptionRule(
                ServerSideEncryptionByDefault=s3.ServerSideEncryptionByDefault(
                    SSEAlgorithm="AES256"))]),
        VersioningConfiguration=s3.VersioningConfiguration(Status="Enabled"),
        PublicAccessBlockConfiguration=_no_public_access(),
        OwnershipControls=_acls_disabled(),
        LifecycleConfiguration=s3.LifecycleConfiguration(Rules=[s3.LifecycleRule(
            Id="expire-logs",
            Status="Enabled",
            ExpirationInDays=b.setting(storage, "access_log_expiration_days"),
            NoncurrentVersionExpiration=s3.NoncurrentVersionExpiration(
                NoncurrentDays=b.setting(storage, "noncurrent_version_expiration_days")),
            AbortIncompleteMultipartUpload=_abort_incomplete_uploads(),
        )]),
        # Object-created events for whoever audits the logs (AWS Control Tower CT.S3.PR.4
        # asks every bucket for event notifications); EventBridge takes AWS service events
        # without a charge.
        NotificationConfiguration=s3.NotificationConfiguration(
            EventBridgeConfiguration=s3.EventBridgeConfiguration(EventBridgeEnabled=True)),
        Metadata={
            "checkov": {"skip": [
                {"id": "CKV_AWS_18",
                 "comment": "This is the access-log bucket itself; logging its own access would "
                            "write a log object for every log object, without end."},
            ]},
            **control_tower_exceptions(
                ("CT.S3.PR.2", "This is the access-log bucket itself: logging its own access "
                               "would write a log object for every log object, without end."),
                ("CT.S3.PR.10", ACCESS_LOGS_SSE_S3_REASON),
                OBJECT_LOCK_EXCEPTION,
            ),
            **lint_exceptions(("E9001", ACCESS_LOGS_SSE_S3_REASON)),
        },
        **RETAIN,
    )


def _s3_log_delivery(logs_bucket: s3.Bucket, source_arns: list[Sub]) -> Statement:
    """S3 server access logging writes as the logging service (AWS: "Enabling Amazon S3 server
    access logging", permissions for log delivery). With ACLs disabled
    (BucketOwnerEnforced) only a bucket policy can let it in; the conditions keep it to this
    account's buckets of this pipeline and environment, and the resource to their log prefix."""
    return Statement(
        Sid="S3ServerAccessLogDelivery",
        Effect=Allow,
        Principal=Principal("Service", "logging.s3.amazonaws.com"),
        Action=[awacs.s3.PutObject],
        Resource=[Sub(f"${{{logs_bucket.title}.Arn}}/{S3_ACCESS_LOG_PREFIX}*")],
        Condition=Condition([
            StringEquals("aws:SourceAccount", Ref("AWS::AccountId")),
            ArnLike("aws:SourceArn", source_arns),
        ]),
    )


def _load_balancer_log_delivery(b: StageBuilder, logs_bucket: s3.Bucket) -> If:
    """Elastic Load Balancing writes access logs under `<prefix>/AWSLogs/<account>/`; the
    resource keeps it to this account's load balancers. (The serving stage's load balancer
    logs here; without one, nothing is written.)

    Who writes depends on the region (load_balancer_logs.py): in the regions available before
    August 2022 the region's ELB account, granted as AWS's page shows it (no condition: the
    page names none that account's writes carry); in newer regions the log delivery service
    principal, with the confused-deputy guard on the source account. A load balancer
    test-writes when access logging is switched on, so a wrong principal fails the deployment.
    AWS: "Enable access logs for your Application Load Balancer"."""
    resource = [Sub(f"${{{logs_bucket.title}.Arn}}/{LOAD_BALANCER_LOG_PREFIX}/AWSLogs/"
                    "${AWS::AccountId}/*")]
    by_elb_account = Statement(
        Sid="LoadBalancerAccessLogDelivery",
        Effect=Allow,
        Principal=Principal("AWS", Sub("arn:${AWS::Partition}:iam::${ElbAccount}:root",
                                       ElbAccount=load_balancer_logs.elb_account())),
        Action=[awacs.s3.PutObject],
        Resource=resource,
    )
    by_service = Statement(
        Sid="LoadBalancerAccessLogDelivery",
        Effect=Allow,
        Principal=Principal("Service", load_balancer_logs.SERVICE_PRINCIPAL),
        Action=[awacs.s3.PutObject],
        Resource=resource,
        Condition=Condition(StringEquals("aws:SourceAccount", Ref("AWS::AccountId"))),
    )
    return If(load_balancer_logs.by_account_condition(b), by_elb_account, by_service)


def _no_public_access() -> s3.PublicAccessBlockConfiguration:
    return s3.PublicAccessBlockConfiguration(
        BlockPublicAcls=True,
        BlockPublicPolicy=True,
        IgnorePublicAcls=True,
        RestrictPublicBuckets=True,
    )


def _acls_disabled() -> s3.OwnershipControls:
    return s3.OwnershipControls(
        Rules=[s3.OwnershipControlsRule(ObjectOwnership="BucketOwnerEnforced")])


def _abort_incomplete_uploads() -> s3.AbortIncompleteMultipartUpload:
    return s3.AbortIncompleteMultipartUpload(DaysAfterInitiation=INCOMPLETE_UPLOAD_DAYS)
