"""ingestion stage (STUB: being written)."""

from troposphere import GetAtt, Ref, kinesis

from .. import naming
from ..config import PipelineConfig
from ..outputs import DATA_KEY_ARN, RAW_BUCKET_ARN, STREAM_ARN, STREAM_NAME
from ..stage import Stage, StageBuilder


def build(config: PipelineConfig) -> Stage:
    b = StageBuilder("ingestion", config.project, "Kinesis stream and Firehose delivery")
    b.input(DATA_KEY_ARN)
    b.input(RAW_BUCKET_ARN)
    stream = b.add(kinesis.Stream(
        "IngestStream", Name=b.physical_name(naming.KINESIS_STREAM, "events"),
        RetentionPeriodHours=b.setting(config.stages.ingestion, "retention_hours")))
    b.output(STREAM_NAME, Ref(stream))
    b.output(STREAM_ARN, GetAtt(stream, "Arn"))
    return b.finish()
