"""storage stage (STUB: being written)."""

from troposphere import GetAtt, Ref, s3, kms

from .. import naming
from ..config import PipelineConfig
from ..outputs import (ACCESS_LOGS_BUCKET_NAME, ARTIFACTS_BUCKET_ARN, ARTIFACTS_BUCKET_NAME,
                       DATA_KEY_ARN, PROCESSED_BUCKET_ARN, PROCESSED_BUCKET_NAME, RAW_BUCKET_ARN,
                       RAW_BUCKET_NAME)
from ..stage import Stage, StageBuilder


def build(config: PipelineConfig) -> Stage:
    b = StageBuilder("storage", config.project, "data lake buckets and the data key")
    key = b.add(kms.Key("DataKey", EnableKeyRotation=True))
    b.output(DATA_KEY_ARN, GetAtt(key, "Arn"))
    for logical, name_w, arn_w, purpose in [
        ("RawBucket", RAW_BUCKET_NAME, RAW_BUCKET_ARN, "raw"),
        ("ProcessedBucket", PROCESSED_BUCKET_NAME, PROCESSED_BUCKET_ARN, "processed"),
        ("ArtifactsBucket", ARTIFACTS_BUCKET_NAME, ARTIFACTS_BUCKET_ARN, "artifacts"),
    ]:
        bucket = b.add(s3.Bucket(logical, BucketName=b.physical_name(naming.S3_BUCKET, purpose)))
        b.output(name_w, Ref(bucket))
        b.output(arn_w, GetAtt(bucket, "Arn"))
    logs = b.add(s3.Bucket("AccessLogsBucket", BucketName=b.physical_name(naming.S3_BUCKET, "logs")))
    b.output(ACCESS_LOGS_BUCKET_NAME, Ref(logs))
    b.setting(config.stages.storage, "archive_after_days")
    return b.finish()
