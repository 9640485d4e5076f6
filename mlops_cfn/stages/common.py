"""Resources every stage builds the same way."""

from troposphere import logs

from ..config import PipelineConfig
from ..outputs import DATA_KEY_ARN
from ..stage import StageBuilder


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



