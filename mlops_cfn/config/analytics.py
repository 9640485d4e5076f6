"""The `stages.analytics` section: Redshift (Serverless or provisioned) over the processed data."""

import ipaddress
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator

from .base import Model, Setting, StageToggle

# Redshift Serverless places its endpoint in at least three subnets in three zones.
SERVERLESS_MIN_ZONES = 3

# Base capacity in Redshift Processing Units: 8 to 512 in steps of 8.
BaseCapacity = Literal[tuple(range(8, 513, 8))]  # type: ignore[valid-type]

# RA3 node types (DC2 is closed to new clusters). The 4xlarge and 16xlarge sizes need two nodes.
NODE_TYPES = ("ra3.large", "ra3.xlplus", "ra3.4xlarge", "ra3.16xlarge")
MULTI_NODE_ONLY = ("ra3.4xlarge", "ra3.16xlarge")

# Unquoted Redshift identifiers we write into SQL: lowercase, so that they need no quoting and
# cannot carry SQL of their own.
IDENTIFIER = r"^[a-z_][a-z0-9_]{0,126}$"
# Redshift reserves these as user names.
RESERVED_USER_NAMES = ("public", "rdsdb", "rdsadmin", "awsuser", "postgres", "root")
CIDR = r"^[0-9./]+$"
QUICKSIGHT_PRINCIPAL = r"^arn:aws[a-z-]*:quicksight:[a-z0-9-]+:[0-9]{12}:(user|group)/[^/]+/.+$"


class TableConfig(Model):
    schema_name: Annotated[
        str, Field(pattern=IDENTIFIER, description="Schema of the loaded table.")
    ] = "analytics"
    name: Annotated[
        str,
        Field(pattern=IDENTIFIER,
              description="Table the processed data is loaded into. Its columns are "
                          "record_schema's, in the same order (a COPY matches them by "
                          "position)."),
    ] = "events"


class LoadConfig(Model):
    enabled: Annotated[
        bool,
        Field(description="Reload the table through the Redshift Data API each time an ETL "
                          "job run wrote new records (an EventBridge rule; needs the etl "
                          "stage)."),
    ] = True
    retry_attempts: Annotated[
        int,
        Field(ge=0, le=185, description="Times EventBridge retries starting the load before "
                                        "the event goes to the dead-letter queue."),
        Setting("RedshiftLoadRetryAttempts"),
    ] = 8
    max_event_age_seconds: Annotated[
        int,
        Field(ge=60, le=86400, description="How long EventBridge keeps retrying one event."),
        Setting("RedshiftLoadMaxEventAgeSeconds"),
    ] = 3600


class SpectrumConfig(Model):
    enabled: Annotated[
        bool,
        Field(description="Create an external schema over the Glue catalog database, so the "
                          "processed data is queryable in place (needs the etl stage)."),
    ] = True
    schema_name: Annotated[
        str, Field(pattern=IDENTIFIER, description="Name of the external schema.")
    ] = "lake"


class ServerlessConfig(Model):
    base_capacity: Annotated[
        BaseCapacity,
        Field(description="Base capacity of the workgroup in RPUs (8 to 512, steps of 8)."),
        Setting("RedshiftBaseCapacity"),
    ] = 8


class ProvisionedConfig(Model):
    node_type: Annotated[
        Literal[NODE_TYPES],  # type: ignore[valid-type]
        Field(description="Node type of the cluster."),
        Setting("RedshiftNodeType"),
    ] = "ra3.xlplus"
    node_count: Annotated[
        int,
        Field(ge=1, le=100, description="Nodes in the cluster (1 makes a single-node cluster)."),
        Setting("RedshiftNodeCount"),
    ] = 2
    snapshot_retention_days: Annotated[
        int,
        Field(ge=1, le=35, description="Days automated snapshots are kept."),
        Setting("RedshiftSnapshotRetentionDays"),
    ] = 7

    @model_validator(mode="after")
    def _node_count_fits_type(self):
        if self.node_type in MULTI_NODE_ONLY and self.node_count < 2:
            raise ValueError(f"node_type {self.node_type} needs node_count of 2 or more")
        return self


class QuickSightConfig(Model):
    enabled: Annotated[
        bool,
        Field(description="Create a QuickSight VPC connection and data source for the "
                          "warehouse. The account must be subscribed to QuickSight Enterprise "
                          "first (see docs/quicksight.md)."),
    ] = False
    owner_arn: Annotated[
        str | None,
        Field(pattern=QUICKSIGHT_PRINCIPAL,
              description="QuickSight user or group (arn:...:quicksight:<region>:<account>:"
                          "group/<namespace>/<name>) that owns the data source."),
        Setting("QuickSightOwnerArn"),
    ] = None

    @model_validator(mode="after")
    def _owner_when_enabled(self):
        if self.enabled and self.owner_arn is None:
            raise ValueError("enabled QuickSight needs owner_arn (the user or group that owns "
                             "the data source)")
        return self


class AnalyticsConfig(StageToggle):
    deployment: Annotated[
        Literal["serverless", "provisioned"],
        Field(description="`serverless`: a Redshift Serverless namespace and workgroup (needs "
                          "three availability zones); `provisioned`: a Redshift cluster."),
    ] = "serverless"
    database: Annotated[
        str, Field(pattern=r"^[a-z][a-z0-9_]{0,62}$", description="Database name.")
    ] = "analytics"
    admin_username: Annotated[
        str,
        Field(pattern=r"^[a-z][a-z0-9_]{0,62}$",
              description="Admin user. Redshift generates its password, keeps it in Secrets "
                          "Manager (encrypted with the data key) and rotates it. With "
                          "deployment `serverless` not 6 characters long: the managed "
                          "secret's name ends in it, and Secrets Manager would read those 6 "
                          "characters as the random suffix of the secret's ARN."),
    ] = "mlops_admin"
    allowed_cidrs: Annotated[
        list[Annotated[str, Field(pattern=CIDR)]] | None,
        Field(min_length=1, max_length=50,
              description="IPv4 ranges admitted to the Redshift port. Unset: the VPC's range. "
                          "The number of ranges shapes the template; their values are "
                          "per-environment settings."),
        Setting("RedshiftAllowedCidrs", type="CommaDelimitedList"),
    ] = None
    serverless: ServerlessConfig = ServerlessConfig()
    provisioned: ProvisionedConfig = ProvisionedConfig()
    table: TableConfig = TableConfig()
    load: LoadConfig = LoadConfig()
    spectrum: SpectrumConfig = SpectrumConfig()
    quicksight: QuickSightConfig = QuickSightConfig()

    @field_validator("admin_username")
    @classmethod
    def _not_reserved(cls, value):
        if value in RESERVED_USER_NAMES:
            raise ValueError(f"{value!r} is reserved by Redshift")
        return value

    @model_validator(mode="after")
    def _managed_secret_name_resolvable(self):
        # The Data API and QuickSight name a namespace's managed admin secret by its ARN without
        # the random suffix (stages/analytics.py, managed_serverless_secret); Secrets Manager
        # mistakes a name ending in a hyphen and 6 characters for a complete ARN (AWS: "Finding
        # a secret from a partial ARN"), and the secret's name ends in -<admin user>.
        if self.deployment == "serverless" and len(self.admin_username) == 6:
            raise ValueError(
                f"admin_username {self.admin_username!r}: 6 characters would end the name of "
                "the admin secret Redshift Serverless manages like the random suffix of a "
                "secret's ARN, which Secrets Manager then cannot find from its name; choose a "
                "name of another length")
        return self

    @field_validator("allowed_cidrs")
    @classmethod
    def _private_ranges(cls, value):
        for text in value or ():
            try:
                network = ipaddress.ip_network(text, strict=True)
            except ValueError:
                raise ValueError(f"{text!r} is not an IPv4 range such as 10.0.0.0/16") from None
            if network.version != 4 or network.prefixlen < 8:
                raise ValueError(f"{text!r} is wider than a /8: the warehouse is not for "
                                 "the internet")
        if value is not None and len(set(value)) != len(value):
            raise ValueError("lists a range twice")
        return value

    def vpc_endpoints(self) -> tuple[str, ...]:
        # With enhanced VPC routing, Redshift Spectrum reaches the Glue Data Catalog through the
        # VPC. S3 (COPY, Spectrum's reads) goes through the gateway endpoint every created VPC
        # has; KMS, Secrets Manager and the Data API are called by AWS services from outside.
        return ("glue",) if self.spectrum.enabled else ()

    def problems_with(self, config: Any) -> list[str]:
        if self.deployment != "serverless":
            return []
        network = config.network
        if network.mode == "create" and network.availability_zones < SERVERLESS_MIN_ZONES:
            return [f"stages.analytics.deployment 'serverless' needs network.availability_zones "
                    f"{SERVERLESS_MIN_ZONES} (got {network.availability_zones}): Redshift "
                    f"Serverless places its endpoint in three zones; or choose deployment "
                    f"'provisioned'"]
        if network.mode == "existing" and len(network.subnet_ids or ()) < SERVERLESS_MIN_ZONES:
            return [f"stages.analytics.deployment 'serverless' needs network.subnet_ids in "
                    f"{SERVERLESS_MIN_ZONES} availability zones (got "
                    f"{len(network.subnet_ids or ())}): Redshift Serverless places its endpoint "
                    f"in three zones; or choose deployment 'provisioned'"]
        return []
