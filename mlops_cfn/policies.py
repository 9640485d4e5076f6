"""awacs building blocks shared by the stages: the data key's policy and least-privilege statements.

Every function returns awacs objects (a `PolicyDocument` or `Statement`s) whose ARNs are built with
`Sub` from `${AWS::Partition}`, `${AWS::Region}` and `${AWS::AccountId}`, so a template works in
every partition and never names an account. Arguments that are ARNs may be plain strings or
CloudFormation functions (`Ref`, `GetAtt`, `Sub`).

No statement here allows `*` or `<service>:*`. Where a resource must be `*` the function says why.
"""

import json
from typing import Any, Iterable, Sequence

import awacs.kms as kms
import awacs.s3 as s3
import awacs.sts as sts
from awacs.aws import (Action, Allow, ArnLike, Bool, BoolIfExists, Condition, Deny,
                       PolicyDocument, Principal, Statement, StringEquals, StringLike)
from troposphere import GetAtt, Ref, Sub, encode_to_dict

POLICY_VERSION = "2012-10-17"

# In a key policy the resource "*" means "the key this policy is attached to", nothing more.
THIS_KEY = "*"

# Key management, spelled out instead of `kms:*` so that using the key is never implied. The
# account root needs kms:PutKeyPolicy: CloudFormation refuses a key whose policy would lock out
# the principal creating it.
KEY_ADMINISTRATION_ACTIONS = (
    kms.CancelKeyDeletion,
    kms.CreateAlias,
    kms.CreateGrant,
    kms.DeleteAlias,
    kms.DescribeKey,
    kms.DisableKey,
    kms.DisableKeyRotation,
    kms.EnableKey,
    kms.EnableKeyRotation,
    kms.GetKeyPolicy,
    kms.GetKeyRotationStatus,
    kms.ListGrants,
    kms.ListKeyPolicies,
    kms.ListKeyRotations,
    kms.ListResourceTags,
    kms.PutKeyPolicy,
    kms.RevokeGrant,
    kms.RotateKeyOnDemand,
    kms.ScheduleKeyDeletion,
    kms.TagResource,
    kms.UntagResource,
    kms.UpdateAlias,
    kms.UpdateKeyDescription,
)

# Cryptographic use of a symmetric key.
KEY_USE_ACTIONS = (
    kms.Encrypt,
    kms.Decrypt,
    kms.Action("ReEncrypt*"),
    kms.Action("GenerateDataKey*"),
    kms.DescribeKey,
)

# What CloudWatch Logs needs to encrypt a log group (AWS's documented key policy for Logs).
LOGS_KEY_ACTIONS = (
    kms.Action("Encrypt*"),
    kms.Action("Decrypt*"),
    kms.Action("ReEncrypt*"),
    kms.Action("GenerateDataKey*"),
    kms.Action("Describe*"),
)

# Presets for `use_key`: reading encrypted data, and reading plus writing it (S3, Kinesis, SQS and
# SNS ask KMS for a data key when they write and for a decryption when they read).
KEY_READ = (kms.Decrypt,)
KEY_READ_WRITE = (kms.Decrypt, kms.GenerateDataKey)


def arn(service: str, resource: str, *, regional: bool = True, in_account: bool = True) -> Sub:
    """`arn:${AWS::Partition}:<service>:${AWS::Region}:${AWS::AccountId}:<resource>` as a Sub.

    `resource` may itself hold `${...}` references (`"log-group:${LogGroup}"`); global services
    (IAM, S3) pass `regional=False`, S3 also `in_account=False`.
    """
    region = "${AWS::Region}" if regional else ""
    account = "${AWS::AccountId}" if in_account else ""
    return Sub(f"arn:${{AWS::Partition}}:{service}:{region}:{account}:{resource}")


def account_root() -> Principal:
    """This account as a principal: access it grants is delegated to the account's IAM policies."""
    return Principal("AWS", arn("iam", "root", regional=False))


def document(*statements: Statement | Iterable[Statement]) -> PolicyDocument:
    """A policy document of the given statements (single statements or lists of them)."""
    flat: list[Statement] = []
    for item in statements:
        if isinstance(item, Statement):
            flat.append(item)
        else:
            flat.extend(item)
    return PolicyDocument(Version=POLICY_VERSION, Statement=flat)


def trusted_by(service: str, *conditions: Any) -> PolicyDocument:
    """A role's trust policy letting one AWS service (`lambda.amazonaws.com`) assume it.

    Pass conditions such as aws:SourceAccount / aws:SourceArn where the service supports them,
    to keep the service from acting for another account (the confused-deputy guard).
    """
    statement = Statement(Effect=Allow, Principal=Principal("Service", service),
                          Action=[sts.AssumeRole])
    if conditions:
        statement.Condition = Condition(list(conditions))
    return document(statement)


# --- KMS key policy -------------------------------------------------------------------------

def key_administration_by_account() -> Statement:
    """Lets this account's IAM policies manage the key (never use it: see `key_use_by_account`)."""
    return Statement(
        Sid="KeyAdministrationThroughIam",
        Effect=Allow,
        Principal=account_root(),
        Action=list(KEY_ADMINISTRATION_ACTIONS),
        Resource=[THIS_KEY],
    )


def key_use_by_account() -> Statement:
    """Lets this account's IAM policies grant cryptographic use of the key (see `use_key`)."""
    return Statement(
        Sid="KeyUseThroughIam",
        Effect=Allow,
        Principal=account_root(),
        Action=list(KEY_USE_ACTIONS),
        Resource=[THIS_KEY],
    )


def key_use_by_service(sid: str, service: Any, actions: Sequence[Action],
                       *conditions: Any) -> Statement:
    """A key-policy grant to an AWS service that calls KMS as itself (no IAM policy can grant
    that), limited by `conditions` where the service passes something to limit by."""
    statement = Statement(Sid=sid, Effect=Allow, Principal=Principal("Service", service),
                          Action=list(actions), Resource=[THIS_KEY])
    if conditions:
        statement.Condition = Condition(list(conditions) if len(conditions) > 1
                                        else conditions[0])
    return statement


def key_use_by_cloudwatch_logs(log_groups: Sequence[Any]) -> Statement:
    """Lets CloudWatch Logs of this region encrypt the named log groups of this account with the
    key: `log_groups` are log group names or `*` patterns (a `Sub` each). CloudWatch Logs passes
    the log group's ARN as encryption context, so the condition names exactly which groups may
    use the key ("Encrypt log data in CloudWatch Logs using AWS KMS", step 2, CloudWatch Logs
    User Guide)."""
    return key_use_by_service(
        "KeyUseByCloudWatchLogs", Sub("logs.${AWS::Region}.amazonaws.com"), LOGS_KEY_ACTIONS,
        ArnLike("kms:EncryptionContext:aws:logs:arn",
                [_sub("arn:${{AWS::Partition}}:logs:${{AWS::Region}}:${{AWS::AccountId}}:"
                      "log-group:{name}", name=name) for name in log_groups]))


def grants_only_for_aws_resources() -> Statement:
    """Denies creating grants on the key unless an AWS service makes the grant for a resource it
    integrates (kms:GrantIsForAWSResource: S3, Redshift, SageMaker, ECR on a caller's behalf) or
    is itself the caller (aws:PrincipalIsAWSService: Fargate's task-storage grant). A grant
    outlives the IAM policy that allowed it, so no principal may hand out lasting use of the
    key by itself. AWS Control Tower's CT.KMS.PR.3 requires exactly this statement ("Require an
    AWS KMS key policy to have a statement that limits creation of AWS KMS grants to AWS
    services", controlreference/kms-rules.html); "kms:GrantIsForAWSResource" in the AWS KMS
    Developer Guide's condition keys page explains both keys."""
    return Statement(
        Sid="GrantsOnlyForAwsResources",
        Effect=Deny,
        Principal=Principal("AWS", "*"),
        Action=[kms.CreateGrant],
        Resource=[THIS_KEY],
        # BoolIfExists: a request without the key (a caller that is no AWS service) counts
        # as false, so the deny applies to it.
        Condition=Condition(BoolIfExists({"kms:GrantIsForAWSResource": "false",
                                          "aws:PrincipalIsAWSService": "false"})),
    )


def data_key_policy(log_groups: Sequence[Any], *service_statements: Statement) -> PolicyDocument:
    """The data key's policy: the account administers and uses it through IAM, grants on it are
    only for AWS resources, CloudWatch Logs may encrypt `log_groups` (see
    `key_use_by_cloudwatch_logs`), plus grants to AWS service principals that call KMS on their
    own behalf (pass further statements for services a stage adds, each scoped by a
    condition)."""
    return document(
        key_administration_by_account(),
        key_use_by_account(),
        grants_only_for_aws_resources(),
        key_use_by_cloudwatch_logs(log_groups),
        *service_statements,
    )


# --- statements for IAM roles and policies ----------------------------------------------------

def use_key(key_arn: Any, actions: Sequence[Action] = KEY_READ_WRITE,
            via_services: Sequence[str] = ()) -> Statement:
    """Allow `actions` (default: KEY_READ_WRITE) on one key, for an IAM role or policy.

    `via_services` (e.g. `("s3", "kinesis")`) limits the use to requests those services make in
    this region on the caller's behalf (condition kms:ViaService).
    """
    statement = Statement(Effect=Allow, Action=list(actions), Resource=[key_arn])
    if via_services:
        statement.Condition = Condition(StringEquals(
            "kms:ViaService",
            [Sub(f"{service}.${{AWS::Region}}.amazonaws.com") for service in via_services]))
    return statement


def bucket_access(bucket_arn: Any, prefix: Any = "", *, read: bool = True, write: bool = False,
                  delete: bool = False) -> list[Statement]:
    """Object access to one bucket, or to the keys under `prefix` (e.g. `"events/"`).

    Listing is limited to the same prefix. Writing includes multipart uploads (what Firehose,
    Glue and SageMaker use for large objects). `prefix` may be a parameter (`Ref`).
    """
    if not (read or write or delete):
        raise ValueError("bucket_access needs at least one of read, write, delete")
    objects = _sub("{bucket}/{prefix}*", bucket=bucket_arn, prefix=prefix)
    object_actions = []
    bucket_actions = [s3.GetBucketLocation]
    if read:
        object_actions += [s3.GetObject]
    if write:
        object_actions += [s3.PutObject, s3.AbortMultipartUpload, s3.ListMultipartUploadParts]
        bucket_actions += [s3.ListBucketMultipartUploads]
    if delete:
        object_actions += [s3.DeleteObject]
    listing = Statement(Effect=Allow, Action=[s3.ListBucket], Resource=[bucket_arn])
    if prefix != "":
        listing.Condition = Condition(StringLike("s3:prefix", _sub("{prefix}*", prefix=prefix)))
    return [
        Statement(Effect=Allow, Action=bucket_actions, Resource=[bucket_arn]),
        listing,
        Statement(Effect=Allow, Action=object_actions, Resource=[objects]),
    ]


def key_use_in_context(key: Ref, actions: Sequence[Any], service: str, context_key: str,
                       arns: Sequence[Any], *, wildcards: bool = False) -> Statement:
    """Use of the key only in `service`'s requests for the given resources (policies.use_key
    with an encryption-context condition added).

    `context_key` names the encryption context the service sends KMS, which holds the ARN of the
    resource it works on; `wildcards` lets `arns` hold `*` patterns (S3 object keys).
    """
    via = Sub(f"{service}.${{AWS::Region}}.amazonaws.com")
    context = f"kms:EncryptionContext:{context_key}"
    if wildcards:
        condition = Condition([StringEquals("kms:ViaService", via),
                               StringLike(context, list(arns))])
    else:
        condition = Condition(StringEquals({"kms:ViaService": via, context: list(arns)}))
    return Statement(Effect=Allow, Action=list(actions), Resource=[key], Condition=condition)


def unique_statements(statements: Iterable[Statement]) -> list[Statement]:
    """Statements without repeats (two prefixes of one bucket share the bucket-level ones)."""
    seen: set[str] = set()
    kept = []
    for statement in statements:
        text = json.dumps(encode_to_dict(statement), sort_keys=True)
        if text not in seen:
            seen.add(text)
            kept.append(statement)
    return kept


# --- bucket policies --------------------------------------------------------------------------

def deny_insecure_transport(bucket_arn: Any) -> Statement:
    """Refuse every request to the bucket and its objects that does not use TLS.

    This is the one place a wildcard action belongs: a Deny has to cover every S3 action,
    including those added after this was written.
    """
    return Statement(
        Sid="DenyInsecureTransport",
        Effect=Deny,
        Principal=Principal("*"),
        Action=[s3.Action("*")],
        Resource=[bucket_arn, _sub("{bucket}/*", bucket=bucket_arn)],
        Condition=Condition(Bool("aws:SecureTransport", "false")),
    )


def bucket_arn(bucket_name: Any) -> Sub:
    """The ARN of the bucket named `bucket_name` (text, a `Ref`, or a `Sub` from naming.py).

    Lets a policy name a bucket of the same template without `GetAtt`, where that would create a
    dependency cycle (e.g. the log bucket's policy naming the buckets that log into it).
    """
    return _sub("arn:${{AWS::Partition}}:s3:::{name}", name=bucket_name)


def _sub(template: str, **values: Any) -> Sub | str:
    """`template` (with `{name}` slots) as a Sub, each value inlined the shortest way (plain
    text when nothing is left to substitute).

    Literal text goes in as is, a plain `Sub` as its pattern, `GetAtt`/`Ref` as `${X.Attr}`/`${X}`,
    anything else (a `Sub` with variables, an `ImportValue`) as a Sub variable.
    """
    slots: dict[str, str] = {}
    variables: dict[str, Any] = {}
    for name, value in values.items():
        if isinstance(value, str):
            if "${" in value:
                raise ValueError(f"{value!r}: pass a CloudFormation function, not '${{...}}' text")
            slots[name] = value
        elif isinstance(value, Sub) and isinstance(value.data["Fn::Sub"], str):
            slots[name] = value.data["Fn::Sub"]
        elif isinstance(value, GetAtt):
            slots[name] = "${" + ".".join(value.data["Fn::GetAtt"]) + "}"
        elif isinstance(value, Ref):
            slots[name] = "${" + value.data["Ref"] + "}"
        else:
            variable = name.capitalize()
            slots[name] = "${" + variable + "}"
            variables[variable] = value
    text = template.format(**slots)
    return Sub(text, **variables) if "${" in text else text
