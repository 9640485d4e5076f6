"""The `stages.etl` section: Glue catalog, crawlers and the ETL job from raw to processed data."""

from typing import Annotated, Any, Literal

from pydantic import Field, field_validator

from .base import CRON_PATTERN, Setting, StageToggle
from .storage import READABLE_STORAGE_CLASSES

# Table names the crawlers give: the raw crawler prefixes its tables with this, so a raw table
# never takes the name of the processed one (which is the processed prefix without the slash).
RAW_TABLE_PREFIX = "raw_"

# A column or partition name the job writes: what Athena, Redshift Spectrum and Hive accept.
IDENTIFIER_PATTERN = r"^[a-z_][a-z0-9_]{0,126}$"

Identifier = Annotated[str, Field(pattern=IDENTIFIER_PATTERN)]


class EtlConfig(StageToggle):
    raw_prefix: Annotated[
        str,
        Field(pattern=r"^[a-z0-9][a-z0-9_\-/]{0,62}/$",
              description="Key prefix in the raw bucket that the raw crawler catalogs, used only "
                          "while the ingestion stage is disabled (with ingestion on, the crawler "
                          "reads where Firehose writes: stages.ingestion.firehose.prefix)."),
    ] = "events/"
    processed_prefix: Annotated[
        str,
        Field(pattern=r"^[a-z][a-z0-9_]{0,62}/$",
              description="Folder in the processed bucket the job writes to. Its name without "
                          "the slash is the name of the processed table in the Glue database, "
                          "so it is one level of lowercase letters, digits and `_`."),
    ] = "events/"
    output_format: Annotated[
        Literal["parquet", "csv"],
        Field(description="Format of the processed data: `parquet` (Snappy-compressed) or `csv` "
                          "(comma-separated with a header row, quoted with `\"`). Either way the "
                          "files hold the `record_schema` columns in order and are partitioned "
                          "by `partition_keys` (Hive-style key=value folders)."),
    ] = "parquet"
    partition_keys: Annotated[
        list[Identifier],
        Field(max_length=8,
              description="Columns the processed data is partitioned by, in folder order. The "
                          "raw data Firehose writes has year, month, day and hour; a key missing "
                          "from the data is skipped. [] writes unpartitioned files."),
    ] = ["year", "month", "day"]
    schedule: Annotated[
        str | None,
        Field(pattern=CRON_PATTERN,
              description="When the workflow runs (raw crawler, then the job, then the processed "
                          "crawler), as a Glue cron expression in UTC, e.g. `cron(15 * * * ? *)` "
                          "for a quarter past every hour. null: on demand only "
                          "(`aws glue start-workflow-run`)."),
        Setting("EtlSchedule"),
    ] = "cron(15 * * * ? *)"
    recrawl: Annotated[
        Literal["new_folders_only", "everything"],
        Field(description="What the crawlers read after their first run: only folders added "
                          "since the last run (fast and cheap for date-partitioned data; schema "
                          "changes are logged, not applied), or `everything` again (schema "
                          "changes update the tables)."),
    ] = "new_folders_only"
    glue_version: Annotated[
        Literal["4.0", "5.0"],
        Field(description="Glue version of the job. 4.0 logs through continuous logging to the "
                          "stage's log group; 5.0 logs in real time to the job's output and "
                          "error log groups, which the stage creates encrypted."),
    ] = "4.0"
    worker_type: Annotated[
        Literal["G.1X", "G.2X", "G.4X", "G.8X"],
        Field(description="Glue worker type of the job (G.1X: 4 vCPU, 16 GB)."),
        Setting("EtlWorkerType"),
    ] = "G.1X"
    workers: Annotated[
        int,
        Field(ge=2, le=299, description="Number of workers the job runs on."),
        Setting("EtlWorkerCount"),
    ] = 2
    timeout_minutes: Annotated[
        int,
        Field(ge=1, le=2880, description="Longest a job run may take before Glue stops it."),
        Setting("EtlTimeoutMinutes"),
    ] = 120
    max_retries: Annotated[
        int,
        Field(ge=0, le=10, description="Times Glue retries a failed job run."),
        Setting("EtlMaxRetries"),
    ] = 1
    script: Annotated[
        str | None,
        Field(min_length=1,
              description="Your own Glue job script instead of the bundled one "
                          "(mlops_cfn/data/glue/etl_job.py): an absolute path, or one relative "
                          "to the directory mlops-cfn runs in (not to this file). It is shipped "
                          "as an asset and gets the same job arguments as the bundled script."),
    ] = None
    @field_validator("partition_keys")
    @classmethod
    def _no_repeats(cls, value):
        if len(set(value)) != len(value):
            raise ValueError("lists a column twice")
        return value

    @field_validator("processed_prefix")
    @classmethod
    def _apart_from_raw_tables(cls, value):
        if value.startswith(RAW_TABLE_PREFIX):
            raise ValueError(f"must not start with {RAW_TABLE_PREFIX!r}, the prefix of the raw "
                             "crawler's tables in the same database")
        return value

    def vpc_endpoints(self) -> tuple[str, ...]:
        # The job (and the crawlers, through the same network connection) run in the private
        # subnets. From there they call: the Glue API for the Data Catalog (the raw table, its
        # partitions) - `glue`; CloudWatch Logs for the job's logs - `logs`; CloudWatch for
        # job metrics (--enable-metrics) - `monitoring`; KMS directly for the security
        # configuration's client-side bookmark encryption and log encryption (AWS: without a
        # KMS route jobs fail with a KMS timeout, crawlers with an internal service exception)
        # - `kms`; STS, which AWS lists among the endpoints a Glue VPC connection needs, for the
        # job role's session - `sts`; EventBridge for the job's new-data event (PutEvents) -
        # `events`. S3 goes through the VPC's gateway endpoint.
        return ("events", "glue", "kms", "logs", "monitoring", "sts")

    def problems_with(self, config: Any) -> list[str]:
        problems = []
        network = config.network
        if network.mode == "existing" and network.subnet_zones is None:
            problems.append("stages.etl: needs network.subnet_zones with network mode "
                            "'existing' (the Glue job's network connections must name their "
                            "subnets' zones)")
        columns = [c.name for c in config.record_schema.columns]
        folders = [key for key in self.partition_keys if key in columns]
        if folders:
            problems.append(
                f"record_schema.columns: {', '.join(map(repr, folders))} is also in "
                f"stages.etl.partition_keys; a partition key is a folder, not a column of the "
                f"files (the warehouse's COPY matches columns by position): remove it from one")
        storage = config.stages.storage
        if (self.recrawl == "everything" and storage.enabled
                and storage.archive_storage_class not in READABLE_STORAGE_CLASSES):
            problems.append(
                f"stages.etl.recrawl: 'everything' reads every raw object again, and "
                f"stages.storage.archive_storage_class {storage.archive_storage_class} makes "
                f"raw objects unreadable (until restored) after archive_after_days; use "
                f"'new_folders_only' or archive to GLACIER_IR")
        return problems
