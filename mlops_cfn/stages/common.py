"""Resources every stage builds the same way."""

from awacs.aws import StringLike
from troposphere import ec2, logs, sqs

from .. import policies
from ..config import PipelineConfig
from ..outputs import DATA_KEY_ARN, VPC_CIDR, VPC_ID
from .. import naming
from ..stage import StageBuilder

HTTPS = 443
ANYWHERE = "0.0.0.0/0"
# CloudFormation's limit for inline Lambda code (Code.ZipFile).
INLINE_CODE_LIMIT = 4096
# What holds data of record outlives its stack, and a replacement keeps the old copy.
RETAIN = {"DeletionPolicy": "Retain", "UpdateReplacePolicy": "Retain"}
# SQS's longest retention: failed work waits as long as possible for someone to look.
QUEUE_RETENTION_SECONDS = 14 * 24 * 3600


def encrypted_log_group(b: StageBuilder, config: PipelineConfig, title: str, purpose: str,
                        *, audit: bool = False) -> logs.LogGroup:
    """A log group encrypted with the data key that expires after `log_retention_days`.

    An `audit` log (flow logs, access trails) outlives the stack. Application logs do not: the
    retention bounds their life anyway, and a retained group keeps its name taken, so the stack
    could not be created again.
    """
    retain = {"DeletionPolicy": "Retain", "UpdateReplacePolicy": "Retain"} if audit else {}
    return b.add(logs.LogGroup(
        title,
        LogGroupName=b.log_group_name(purpose),
        KmsKeyId=b.input(DATA_KEY_ARN),
        RetentionInDays=b.setting(config, "log_retention_days"),
        **retain,
    ))





def https_out_security_group(b: StageBuilder, config: PipelineConfig, title: str,
                             description: str, *, reaches_s3: bool = False) -> ec2.SecurityGroup:
    """A security group for compute in the private subnets: nothing in, HTTPS out to the VPC's
    range (where the interface endpoints answer) and, with `reaches_s3`, to S3 (see
    `https_to_endpoints_and_s3`)."""
    egress = (https_to_endpoints_and_s3(b, config) if reaches_s3 else
              [ec2.SecurityGroupRule(Description="HTTPS to VPC endpoints", IpProtocol="tcp",
                                     FromPort=HTTPS, ToPort=HTTPS, CidrIp=b.input(VPC_CIDR))])
    return b.add(ec2.SecurityGroup(
        title,
        GroupDescription=description,
        VpcId=b.input(VPC_ID),
        SecurityGroupEgress=egress,
    ))


def https_to_endpoints_and_s3(b: StageBuilder,
                              config: PipelineConfig) -> list[ec2.SecurityGroupRule]:
    """Egress for compute that reads S3 and calls AWS services from the private subnets.

    The interface endpoints answer inside the VPC's range. S3's gateway endpoint is reached at
    S3's public addresses: with `network.s3_prefix_list_id`, exactly those; without it (a
    managed prefix list's id differs per region and CloudFormation cannot look it up), any
    address on port 443. The private subnets route nowhere else unless the network was built
    with an internet gateway, which is when giving the prefix list matters.
    """
    if config.network.s3_prefix_list_id is None:
        return [ec2.SecurityGroupRule(
            Description="HTTPS to S3 (gateway endpoint) and the interface endpoints",
            IpProtocol="tcp", FromPort=HTTPS, ToPort=HTTPS, CidrIp=ANYWHERE)]
    return [
        ec2.SecurityGroupRule(Description="HTTPS to the interface endpoints", IpProtocol="tcp",
                              FromPort=HTTPS, ToPort=HTTPS, CidrIp=b.input(VPC_CIDR)),
        ec2.SecurityGroupRule(Description="HTTPS to S3 through the gateway endpoint",
                              IpProtocol="tcp", FromPort=HTTPS, ToPort=HTTPS,
                              DestinationPrefixListId=b.setting(config.network,
                                                                "s3_prefix_list_id")),
    ]


def encrypted_queue(b: StageBuilder, title: str, purpose: str) -> sqs.Queue:
    """A queue for failures (dead letters, failed batches), encrypted with the data key.

    No Retain: it holds notices of work to look into within SQS's 14 days, never data of
    record, and a retained queue keeps its name taken. Lambda writes to such a queue with its
    function's role; EventBridge as itself, which the key's policy must allow
    (`eventbridge_dead_letters`).

    Every such queue is a dead-letter queue, and says so with a redrive allow policy: AWS
    Control Tower's CT.SQS.PR.1 ("Require any Amazon SQS queue to have a dead-letter queue
    configured", controlreference/sqs-rules.html) asks a queue for a dead-letter queue of its
    own unless it is marked as one, which is how its remediation says to treat dead-letter
    queues. `allowAll` is SQS's default written out ("Configuring a dead-letter queue redrive
    allow policy", Amazon SQS Developer Guide): it changes nothing about who may send here.
    """
    return b.add(sqs.Queue(
        title,
        QueueName=b.physical_name(naming.SQS_QUEUE, purpose),
        KmsMasterKeyId=b.input(DATA_KEY_ARN),
        MessageRetentionPeriod=QUEUE_RETENTION_SECONDS,
        RedriveAllowPolicy={"redrivePermission": "allowAll"},
    ))


# AWS Control Tower's CT.S3.PR.9 asks every bucket for S3 Object Lock. Locking makes objects
# undeletable for a retention period, and turning it on for a bucket cannot be undone: a
# decision for whoever owns the data and its retention rules, not a default of this tool.
OBJECT_LOCK_EXCEPTION = (
    "CT.S3.PR.9",
    "Object Lock (write-once retention that cannot be turned off again) is a retention "
    "decision for the data owner; versioning, the Retain deletion policy and lifecycle rules "
    "keep data from being lost meanwhile.")


def control_tower_exceptions(*exceptions: tuple[str, str]) -> dict:
    """Resource Metadata recording the AWS Control Tower proactive controls (`CT.*.PR.*`) this
    resource does not meet on purpose, each as `(control id, reason)`. mlops_cfn.controltower
    honours an exception only with its reason; the README's "AWS Control Tower" section lists
    them all."""
    return {"controltower": {"exceptions": [{"id": control, "reason": reason}
                                            for control, reason in exceptions]}}


def eventbridge_dead_letters(b: StageBuilder) -> None:
    """Ask the data key's policy to let EventBridge encrypt what it sends to this stage's
    dead-letter queues (encrypted_queue) as itself.

    AWS: "Amazon SQS key management" (SQS Developer Guide, encryption context: aws:sqs:arn, the
    queue's ARN). EventBridge's requests carry no aws:SourceAccount or aws:SourceArn to limit by
    (see monitoring.py's topic grant); what they do carry is the encryption context SQS binds to
    the data: only queues of this account and region.
    """
    b.data_key_use(policies.key_use_by_service(
        "RuleDeadLettersByEventBridge", "events.amazonaws.com", policies.KEY_READ_WRITE,
        StringLike("kms:EncryptionContext:aws:sqs:arn", policies.arn("sqs", "*"))))
