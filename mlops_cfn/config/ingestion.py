"""The `stages.ingestion` section: Kinesis stream, Firehose delivery and an optional consumer."""

from typing import Annotated, Any, Literal

from pydantic import Field, field_validator

from .base import Model, Setting, StageToggle
from .ingestion_emr import EmrConsumerConfig
from .ingestion_ec2 import Ec2ConsumerConfig

# Firehose writes records it could not deliver under this top-level prefix, apart from the data
# prefix so that a crawler over the data never reads error records.
FIREHOSE_ERROR_ROOT = "firehose-errors/"


class FirehoseConfig(Model):
    buffer_interval_seconds: Annotated[
        int,
        Field(ge=0, le=900, description="Longest Firehose waits before writing a batch to S3."),
        Setting("FirehoseBufferIntervalSeconds"),
    ] = 300
    buffer_size_mb: Annotated[
        int,
        Field(ge=1, le=128, description="Batch size that makes Firehose write to S3 early."),
        Setting("FirehoseBufferSizeMiB"),
    ] = 64
    compression: Annotated[
        Literal["GZIP", "Snappy", "ZIP", "HADOOP_SNAPPY"],
        Field(description="Compression of the objects Firehose writes."),
    ] = "GZIP"
    prefix: Annotated[
        str,
        Field(pattern=r"^[a-z0-9][a-z0-9_\-/]{0,62}/$",
              description="Key prefix in the raw bucket; Firehose appends a date partition "
                          "(year=/month=/day=/hour=)."),
    ] = "events/"

    @field_validator("prefix")
    @classmethod
    def _apart_from_errors(cls, value):
        if value.startswith(FIREHOSE_ERROR_ROOT):
            raise ValueError(f"must not start with {FIREHOSE_ERROR_ROOT!r}, where Firehose "
                             "writes the records it could not deliver")
        return value


class ConsumerConfig(Model):
    enabled: Annotated[
        bool,
        Field(description="Run a Lambda on every batch of stream records (real-time path)."),
    ] = False
    memory_mb: Annotated[
        int, Field(ge=128, le=10240, description="Lambda memory."), Setting("ConsumerMemoryMiB")
    ] = 256
    timeout_seconds: Annotated[
        int, Field(ge=1, le=900, description="Lambda timeout."), Setting("ConsumerTimeoutSeconds")
    ] = 60
    batch_size: Annotated[
        int,
        Field(ge=1, le=10000, description="Most records handed to one invocation."),
        Setting("ConsumerBatchSize"),
    ] = 100
    batching_window_seconds: Annotated[
        int,
        Field(ge=0, le=300, description="Longest wait to fill a batch."),
        Setting("ConsumerBatchingWindowSeconds"),
    ] = 5
    parallelization_factor: Annotated[
        int,
        Field(ge=1, le=10, description="Concurrent batches per shard."),
        Setting("ConsumerParallelizationFactor"),
    ] = 1
    maximum_retry_attempts: Annotated[
        int,
        Field(ge=0, le=10000, description="Retries of a failing batch before it goes to the "
                                          "failure queue."),
        Setting("ConsumerMaximumRetryAttempts"),
    ] = 3
    reserved_concurrency: Annotated[
        int,
        Field(ge=1, le=1000,
              description="Concurrency reserved for (and capping) the consumer. Lambda keeps "
                          "100 of the account's concurrency unreserved, so the account quota "
                          "must exceed this by at least 100."),
        Setting("ConsumerReservedConcurrency"),
    ] = 10


class IngestionConfig(StageToggle):
    stream_mode: Annotated[
        Literal["on_demand", "provisioned"],
        Field(description="Kinesis capacity mode: `on_demand` scales by itself; `provisioned` "
                          "uses a fixed shard count."),
    ] = "on_demand"
    shards: Annotated[
        int,
        Field(ge=1, le=500, description="Shard count with stream_mode `provisioned`."),
        Setting("StreamShardCount"),
    ] = 2
    retention_hours: Annotated[
        int,
        Field(ge=24, le=8760, description="How long the stream keeps records."),
        Setting("StreamRetentionHours"),
    ] = 24
    firehose: FirehoseConfig = FirehoseConfig()
    consumer: ConsumerConfig = ConsumerConfig()
    emr_consumer: EmrConsumerConfig = EmrConsumerConfig()
    ec2_consumer: Ec2ConsumerConfig = Ec2ConsumerConfig()

    def vpc_endpoints(self) -> tuple[str, ...]:
        # The consumer needs none. Lambda itself polls the stream (event source mapping),
        # delivers the function's logs, hands it credentials and sends failed batches to the
        # failure destination, all outside the function's VPC; the bundled handler calls no AWS
        # API (its metrics are Embedded Metric Format log lines). The EMR consumer says its own.
        return self.emr_consumer.vpc_endpoints()

    def problems_with(self, config: Any) -> list[str]:
        return self.emr_consumer.problems_with(config)
