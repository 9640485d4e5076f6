"""The `stages.storage` section: the KMS key and the data lake buckets."""

from typing import Annotated, Literal

from pydantic import Field

from .base import Setting, StageToggle


class StorageConfig(StageToggle):
    archive_storage_class: Annotated[
        Literal["GLACIER", "DEEP_ARCHIVE", "GLACIER_IR"],
        Field(description="Where raw and processed objects move for long-term backup."),
    ] = "GLACIER"
    archive_after_days: Annotated[
        int,
        Field(ge=1, le=3650, description="Days after creation when raw and processed objects "
                                         "move to the archive storage class."),
        Setting("ArchiveAfterDays"),
    ] = 90
    noncurrent_version_expiration_days: Annotated[
        int,
        Field(ge=1, le=3650, description="Days a replaced or deleted object version is kept."),
        Setting("NoncurrentVersionExpirationDays"),
    ] = 90
    access_log_expiration_days: Annotated[
        int,
        Field(ge=1, le=3650, description="Days S3 access logs are kept."),
        Setting("AccessLogExpirationDays"),
    ] = 365
    key_deletion_window_days: Annotated[
        int,
        Field(ge=7, le=30, description="Waiting period before a deleted KMS key is destroyed."),
    ] = 30

