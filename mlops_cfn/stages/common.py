"""Resources every stage builds the same way."""

from troposphere import ec2, logs, sqs

from ..config import PipelineConfig
from ..outputs import DATA_KEY_ARN, VPC_CIDR, VPC_ID
from .. import naming
from ..stage import StageBuilder

HTTPS = 443
ANYWHERE = "0.0.0.0/0"
# CloudFormation's limit for inline Lambda code (Code.ZipFile).
INLINE_CODE_LIMIT = 4096
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





def https_out_security_group(b: StageBuilder, title: str, description: str, *,
                             reaches_s3: bool = False) -> ec2.SecurityGroup:
    """A security group for compute in the private subnets: nothing in, HTTPS out.

    Out goes to the VPC's range, where the interface endpoints answer; with `reaches_s3`, to any
    address, because S3's gateway endpoint is reached at S3's public addresses, which no stage
    output names (an S3 prefix list needs a lookup CloudFormation cannot do). The private
    subnets route nowhere else but to NAT, and only when the network was built with an
    internet gateway.
    """
    destination = ANYWHERE if reaches_s3 else b.input(VPC_CIDR)
    return b.add(ec2.SecurityGroup(
        title,
        GroupDescription=description,
        VpcId=b.input(VPC_ID),
        SecurityGroupEgress=[ec2.SecurityGroupRule(
            Description="HTTPS to S3 and VPC endpoints" if reaches_s3 else
            "HTTPS to VPC endpoints",
            IpProtocol="tcp", FromPort=HTTPS, ToPort=HTTPS, CidrIp=destination)],
    ))


def encrypted_queue(b: StageBuilder, title: str, purpose: str) -> sqs.Queue:
    """A queue for failures (dead letters, failed batches), encrypted with the data key.

    No Retain: it holds notices of work to look into within SQS's 14 days, never data of
    record, and a retained queue keeps its name taken. EventBridge and Lambda write to such
    queues as themselves; the storage stage's key policy lets EventBridge use the key
    (RuleNotificationsByEventBridge).
    """
    return b.add(sqs.Queue(
        title,
        QueueName=b.physical_name(naming.SQS_QUEUE, purpose),
        KmsMasterKeyId=b.input(DATA_KEY_ARN),
        MessageRetentionPeriod=QUEUE_RETENTION_SECONDS,
    ))
