"""The `stages.ingestion.emr_consumer` section: Spark Structured Streaming on EMR Serverless.

EMR Serverless, not EMR on EC2: an EMR cluster in a VPC gets EMR-managed security groups to
which EMR adds rules referring to each other, which CloudFormation did not create and so cannot
remove, and which keep the groups (and the stack) from being deleted. EMR Serverless places
only network interfaces in the private subnets, with the one security group the stage creates
and owns outright, so nothing outside the stack holds on to it.
"""

from typing import Annotated, Any

from pydantic import Field

from .base import Model, Setting, described_pattern

# EMR releases 7.1.0 and higher ship the Kinesis Data Streams connector for Spark Structured
# Streaming and support job resiliency for streaming jobs (AWS: "Supported streaming
# connectors", "EMR Serverless job resiliency"), so the label must name one of those.
RELEASE_LABEL_PATTERN = described_pattern(
    r"^emr-[7-9]\.[1-9][0-9]?\.[0-9]{1,2}$",
    "an EMR release label of 7.1.0 or later (a minor version of 1 or more), such as emr-7.5.0")
FOLDER_PATTERN = described_pattern(
    r"^[a-z][a-z0-9_]{0,62}/$",
    "one folder level of lowercase letters, digits and `_`, ending in a slash")


class EmrConsumerConfig(Model):
    """A Spark Structured Streaming job on EMR Serverless (not EMR on EC2) that cleans the
    stream's records as the ETL job does and writes them to the processed bucket, kept running
    by a supervisor Lambda that also cancels the run and stops the application when the stack
    is deleted. EMR Serverless sidesteps EMR's managed security groups: an EMR cluster adds
    rules between its managed groups that CloudFormation never created and that block their
    deletion, whereas an EMR Serverless application only places network interfaces in the
    private subnets with one security group the stack owns outright. With network mode
    `existing`, the VPC's S3 gateway endpoint policy must let the supervisor upload its answer
    to CloudFormation (`cloudformation-custom-resource-response-<region without dashes>`).
    Customer-managed keys: the logs and the output are encrypted with the data key; the
    workers' disks keep EMR Serverless's own key (CloudFormation has no property for a
    customer key there yet)."""

    enabled: Annotated[
        bool,
        Field(description="Run a Spark Structured Streaming job on EMR Serverless that reads "
                          "the stream and writes cleaned, typed records to the processed "
                          "bucket, kept running by a supervisor Lambda."),
    ] = False
    release_label: Annotated[
        str,
        Field(pattern=RELEASE_LABEL_PATTERN,
              description="EMR release of the Spark application (7.1.0 or later: the Kinesis "
                          "connector and streaming job resiliency)."),
        Setting("EmrConsumerReleaseLabel"),
    ] = "emr-7.5.0"
    prefix: Annotated[
        str,
        Field(pattern=FOLDER_PATTERN,
              description="Folder in the processed bucket the stream job writes, beside the "
                          "ETL job's `stages.etl.processed_prefix` (never inside it: the ETL "
                          "job writes every record there from the raw data, so sharing it would "
                          "double each record). Same columns, format and partitions as the "
                          "ETL job's output."),
    ] = "events_stream/"
    trigger_seconds: Annotated[
        int,
        Field(ge=10, le=3600,
              description="How often the stream job writes a micro-batch to S3 (fewer, larger "
                          "files with a longer interval)."),
        Setting("EmrConsumerTriggerSeconds"),
    ] = 60
    max_failed_attempts_per_hour: Annotated[
        int,
        Field(ge=1, le=10,
              description="EMR Serverless retries of a failing streaming job run within an "
                          "hour before it gives up (its retry policy); the supervisor then "
                          "starts a new run on its next check."),
        Setting("EmrConsumerMaxFailedAttemptsPerHour"),
    ] = 5
    maximum_vcpu: Annotated[
        int,
        Field(ge=4, le=4000, description="Most vCPUs the application may use at once."),
        Setting("EmrConsumerMaximumVcpu"),
    ] = 16
    maximum_memory_gb: Annotated[
        int,
        Field(ge=16, le=16000, description="Most memory (GB) the application may use at once."),
        Setting("EmrConsumerMaximumMemoryGb"),
    ] = 64
    check_minutes: Annotated[
        int,
        Field(ge=2, le=1440,
              description="Minutes between the supervisor's checks that a job run is active, "
                          "which start one if not (it also reacts at once to a run that "
                          "ended)."),
        Setting("EmrConsumerCheckMinutes"),
    ] = 10

    def vpc_endpoints(self) -> tuple[str, ...]:
        # The job's workers run in the private subnets and read the stream - `kinesis-streams`
        # (AWS: "Supported streaming connectors": VPC endpoints or a NAT gateway), S3 through
        # the gateway endpoint. The supervisor Lambda, also in the VPC, calls EMR Serverless -
        # `emr-serverless`. CloudWatch Logs receive the job's logs from the workers - `logs`.
        return ("emr-serverless", "kinesis-streams", "logs") if self.enabled else ()

    def problems_with(self, config: Any) -> list[str]:
        if not self.enabled:
            return []
        processed = config.stages.etl.processed_prefix
        if self.prefix == processed:
            return [f"stages.ingestion.emr_consumer.prefix: {self.prefix!r} is also "
                    f"stages.etl.processed_prefix; the ETL job writes every record there, so "
                    f"the stream job needs a folder of its own"]
        return []
