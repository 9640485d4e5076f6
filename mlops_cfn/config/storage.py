"""The `stages.storage` section: the KMS key and the data lake buckets."""

from typing import Annotated, Literal

from pydantic import Field

from .base import Setting, StageToggle

# Storage classes whose objects GetObject reads at once. Objects in GLACIER and DEEP_ARCHIVE
# answer InvalidObjectState until restored (AWS: "Restoring an archived object"): a class a
# reader of the whole processed prefix (the warehouse load, training, Spectrum) may meet.
READABLE_STORAGE_CLASSES = ("STANDARD", "INTELLIGENT_TIERING", "STANDARD_IA", "GLACIER_IR")
ARCHIVE_STORAGE_CLASSES = ("GLACIER", "DEEP_ARCHIVE", "GLACIER_IR")


class StorageConfig(StageToggle):
    archive_storage_class: Annotated[
        Literal[ARCHIVE_STORAGE_CLASSES],  # type: ignore[valid-type]
        Field(description="Where raw objects move for long-term backup. The raw data is the "
                          "pipeline's backup of everything ingested; its readers (the ETL job, "
                          "the raw crawler) read only what is new. GLACIER and DEEP_ARCHIVE "
                          "objects must be restored before anyone reads them again."),
    ] = "GLACIER"
    archive_after_days: Annotated[
        int,
        Field(ge=1, le=3650, description="Days after creation when raw objects move to the "
                                         "archive storage class."),
        Setting("ArchiveAfterDays"),
    ] = 90
    processed_storage_class: Annotated[
        Literal[READABLE_STORAGE_CLASSES[1:]] | None,  # type: ignore[valid-type]
        Field(description="Where processed objects move after processed_transition_days, a "
                          "class that stays readable without a restore: the warehouse load, "
                          "training and Spectrum read the whole processed prefix every time. "
                          "Unset: they stay in STANDARD."),
    ] = None
    processed_transition_days: Annotated[
        int,
        Field(ge=30, le=3650,
              description="Days after creation when processed objects move to "
                          "processed_storage_class (S3 moves objects to STANDARD_IA after 30 "
                          "days at the earliest)."),
        Setting("ProcessedTransitionDays"),
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
