"""etl stage: Glue catalogs the raw data, a Spark job cleans and types it into the processed
bucket, and a second crawler catalogs the result.

Resources
- GlueDatabase: the Data Catalog database of the raw and processed tables.
- SecurityConfiguration: S3 (SSE-KMS), CloudWatch Logs (SSE-KMS) and job bookmark (CSE-KMS)
  encryption with the data key; attached to the job and both crawlers.
- GlueSecurityGroup (+ GlueSecurityGroupSelfIngress/SelfEgress): the self-referencing rule Glue
  needs between its workers, HTTPS out for S3 (gateway endpoint) and the interface endpoints.
- NetworkConnection1/2: Glue NETWORK connections in the first two private subnets (the job
  falls back to the second when the first zone cannot serve it); the job and the crawlers run
  through them, so no data leaves the VPC's endpoints.
- EtlJob: Glue 4.0/5.0 Spark job (worker type, count, timeout, retries from the settings), job
  bookmarks on, metrics on, script shipped as an asset (mlops_cfn/data/glue/etl_job.py or
  `stages.etl.script`); JobRole (+ JobLoggingPolicy).
- JobOutputLogGroup, JobErrorLogGroup (+ JobContinuousLogGroup with Glue 4.0): the log groups
  Glue writes under a security configuration, created here so they are encrypted with the data
  key and expire after LogRetentionDays.
- RawCrawler (S3 target: the raw prefix Firehose writes, tables named raw_<folder>) and
  ProcessedCrawler (the processed prefix, table named after it); CrawlerRole
  (+ CrawlerLoggingPolicy), CrawlerLogGroup. Schema change and recrawl policies from `recrawl`.
- Workflow with StartTrigger (scheduled from EtlSchedule, or on demand), JobTrigger (raw crawler
  SUCCEEDED -> job) and ProcessedCrawlerTrigger (job SUCCEEDED -> processed crawler).

Events: once a run has written and committed, the job puts one event on the default bus with
the number of records it wrote (etl_events.py): a stage that reacts to new processed data
(training, analytics) matches etl_events.new_records_pattern(<EtlJobName>), which needs at
least one record, so an hourly run that found nothing new starts nothing. (Glue's own "Glue Job
State Change" SUCCEEDED fires for every run.) The processed table's new partitions appear once
the processed crawler finishes ("Glue Crawler State Change", crawlerName
<project>-<env>-processed-crawler, state Succeeded), for consumers that query the catalog.

Inputs: DataKeyArn, RawBucketName, RawBucketArn, ProcessedBucketName, ProcessedBucketArn, VpcId,
PrivateSubnetIds, PrivateSubnetZones; RawDataPrefix while the ingestion stage is enabled
(otherwise `raw_prefix`); VpcCidrBlock with `network.s3_prefix_list_id` (the jobs' HTTPS egress
to the interface endpoints).
Outputs: GlueDatabaseName, EtlJobName, ProcessedDataPrefix, ProcessedTableName.
Settings: EnvironmentName, AssetsBucket, LogRetentionDays, EtlWorkerType, EtlWorkerCount,
EtlTimeoutMinutes, EtlMaxRetries; EtlSchedule (when scheduled).
"""

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import awacs.cloudwatch
import awacs.ec2
import awacs.events
import awacs.glue
import awacs.kms
import awacs.logs
import awacs.s3
from awacs.aws import (Allow, Condition, ForAllValuesStringEquals, Statement, StringEquals,
                       StringLike)
from troposphere import GetAtt, Ref, Select, Sub, ec2, glue, iam, logs

from .. import assets, naming, policies
from ..assets import Asset
from ..config import PipelineConfig
from ..config.etl import RAW_TABLE_PREFIX, EtlConfig
from ..errors import UserError
from ..outputs import (DATA_KEY_ARN, ETL_JOB_NAME, GLUE_DATABASE_NAME, PRIVATE_SUBNET_IDS,
                       PRIVATE_SUBNET_ZONES, PROCESSED_BUCKET_ARN, PROCESSED_BUCKET_NAME,
                       PROCESSED_DATA_PREFIX, PROCESSED_TABLE_NAME, RAW_BUCKET_ARN,
                       RAW_BUCKET_NAME, RAW_DATA_PREFIX, VPC_ID)
from ..stage import Stage, StageBuilder
from .common import RETAIN, https_to_endpoints_and_s3
from . import etl_events

JOB_SCRIPT = Path(__file__).resolve().parent.parent / "data" / "glue" / "etl_job.py"

# The job runs in the first subnet, or in the second when the first zone cannot serve it.
CONNECTIONS = 2
# Glue tags the network interfaces it creates for a connection with this key.
GLUE_RESOURCE_TAG = "aws-glue-service-resource"
# Namespace of the job metrics Glue publishes with the job role (--enable-metrics).
GLUE_METRICS_NAMESPACE = "Glue"

# What a role passed to a crawler or job under the security configuration does with the key
# to encrypt its logs (see crawler_statements).
LOG_ENCRYPTION_KEY_ACTIONS = (awacs.kms.Decrypt, awacs.kms.Encrypt, awacs.kms.GenerateDataKey)

RECRAWL_BEHAVIOR = {"new_folders_only": "CRAWL_NEW_FOLDERS_ONLY", "everything": "CRAWL_EVERYTHING"}


def build(config: PipelineConfig) -> Stage:
    etl = config.stages.etl
    b = StageBuilder("etl", config.project,
                     "Glue catalog, crawlers and the Spark job from raw to processed data")
    key = b.input(DATA_KEY_ARN)
    lake = data_lake(b, config)

    database = b.add(glue.Database(
        "GlueDatabase",
        CatalogId=Ref("AWS::AccountId"),
        DatabaseInput=glue.DatabaseInput(
            Name=b.physical_name(naming.GLUE, "data"),
            Description=f"{config.project}: raw and processed tables of the data lake"),
        # The catalog's tables and partitions outlive the stack with the data they describe.
        **RETAIN,
    ))
    security = b.add(security_configuration(b, key))
    group = add_security_group(b, config)
    network = Network(group, tuple(b.add(network_connection(b, config, index, group))
                                   for index in range(CONNECTIONS)))

    job = add_job(b, config, lake, key, database, security, network)
    raw_crawler, processed_crawler = add_crawlers(b, config, lake, key, database, security,
                                                  network)
    add_workflow(b, etl, raw_crawler, job, processed_crawler)

    b.output(GLUE_DATABASE_NAME, Ref(database))
    b.output(ETL_JOB_NAME, Ref(job))
    b.output(PROCESSED_DATA_PREFIX, etl.processed_prefix)
    b.output(PROCESSED_TABLE_NAME, processed_table_name(etl))
    return b.finish()


@dataclass(frozen=True)
class DataLake:
    """Where the stage reads and writes: bucket ARNs (wires), prefixes (a wire or text) and the
    s3:// locations the crawlers and the job take."""

    raw_bucket: Ref
    raw_prefix: Ref | str
    raw_location: Sub
    processed_bucket: Ref
    processed_prefix: str
    processed_location: Sub


@dataclass(frozen=True)
class Network:
    security_group: ec2.SecurityGroup
    connections: tuple[glue.Connection, ...]


def data_lake(b: StageBuilder, config: PipelineConfig) -> DataLake:
    """The raw prefix is where Firehose writes while ingestion is enabled (a wire), else the
    configured `raw_prefix`."""
    etl = config.stages.etl
    b.input(RAW_BUCKET_NAME)
    b.input(PROCESSED_BUCKET_NAME)
    raw_bucket = f"${{{RAW_BUCKET_NAME.name}}}"
    if config.stages.ingestion.enabled:
        raw_prefix: Ref | str = b.input(RAW_DATA_PREFIX)
        raw_location = Sub(f"s3://{raw_bucket}/${{{RAW_DATA_PREFIX.name}}}")
    else:
        raw_prefix = etl.raw_prefix
        raw_location = Sub(f"s3://{raw_bucket}/{etl.raw_prefix}")
    return DataLake(
        raw_bucket=b.input(RAW_BUCKET_ARN),
        raw_prefix=raw_prefix,
        raw_location=raw_location,
        processed_bucket=b.input(PROCESSED_BUCKET_ARN),
        processed_prefix=etl.processed_prefix,
        processed_location=Sub(f"s3://${{{PROCESSED_BUCKET_NAME.name}}}/{etl.processed_prefix}"),
    )


def processed_table_name(etl: EtlConfig) -> str:
    """The processed crawler's table: it is created at the processed folder (table level 1)
    and named after it."""
    return etl.processed_prefix.rstrip("/")


# --- encryption -----------------------------------------------------------------------------

def security_configuration(b: StageBuilder, key: Ref) -> glue.SecurityConfiguration:
    """Glue encrypts what it writes with the data key, its logs included: under a security
    configuration they go to log groups Glue names after it (/aws-glue/jobs/<configuration>-role/
    ..., /aws-glue/crawlers-role/<role>-<configuration>), which the key's policy is asked to let
    CloudWatch Logs encrypt."""
    configuration = naming.physical_name(naming.GLUE_JOB, b.project, "etl")
    b.data_key_log_group(f"/aws-glue/jobs/{configuration}-role/*")
    b.data_key_log_group(f"/aws-glue/crawlers-role/*-{configuration}")
    return glue.SecurityConfiguration(
        "SecurityConfiguration",
        Name=b.physical_name(naming.GLUE_JOB, "etl"),
        EncryptionConfiguration=glue.EncryptionConfiguration(
            S3Encryptions=[glue.S3Encryption(S3EncryptionMode="SSE-KMS", KmsKeyArn=key)],
            CloudWatchEncryption=glue.CloudWatchEncryption(
                CloudWatchEncryptionMode="SSE-KMS", KmsKeyArn=key),
            JobBookmarksEncryption=glue.JobBookmarksEncryption(
                JobBookmarksEncryptionMode="CSE-KMS", KmsKeyArn=key),
        ),
    )


def log_group(b: StageBuilder, config: PipelineConfig, title: str, name: Any) -> logs.LogGroup:
    """A log group Glue writes to under its own naming rule (common.encrypted_log_group names
    groups itself), encrypted with the data key and expiring like every other group.

    No Retain: job logs are application logs whose retention bounds their life anyway.
    """
    return b.add(logs.LogGroup(
        title,
        LogGroupName=name,
        KmsKeyId=b.input(DATA_KEY_ARN),
        RetentionInDays=b.setting(config, "log_retention_days"),
    ))


def log_group_arns(groups: Sequence[logs.LogGroup]) -> list[Sub]:
    """Each group's ARN with and without the `:*` suffix: group-level actions
    (logs:AssociateKmsKey, logs:CreateLogGroup) match the first, stream actions the second."""
    arns = []
    for group in groups:
        arns.append(policies.arn("logs", f"log-group:${{{group.title}}}"))
        arns.append(policies.arn("logs", f"log-group:${{{group.title}}}:*"))
    return arns


def logging_policy(title: str, role: iam.Role, groups: Sequence[logs.LogGroup]) -> iam.PolicyType:
    """What Glue does with the role in its log groups. A policy of its own, not the role's
    inline one: the groups are named after the role, so the role cannot name them.

    AWS: "AWS managed policies for AWS Glue" (AWSGlueServiceRole: CreateLogGroup,
    CreateLogStream, PutLogEvents on /aws-glue/ groups) and "Encrypting data written by AWS
    Glue" (logs:AssociateKmsKey: under a security configuration Glue attaches the key to the
    group as the role; without it, AWS says, continuous logging is turned off).
    """
    return iam.PolicyType(
        title,
        PolicyName="glue-logs",
        Roles=[Ref(role)],
        PolicyDocument=policies.document(Statement(
            Effect=Allow,
            Action=[awacs.logs.CreateLogGroup, awacs.logs.CreateLogStream,
                    awacs.logs.PutLogEvents, awacs.logs.AssociateKmsKey],
            Resource=log_group_arns(groups),
        )),
    )


def key_use_through_s3(key: Ref, actions: Sequence[Any], arns: Sequence[Any]) -> Statement:
    """Use of the key only in S3's requests for the given buckets and keys. With S3 Bucket Keys
    the encryption context is the bucket's ARN; without, the object's.

    AWS: "Step 3: Configure security settings" (crawlers): a crawler reading S3 data encrypted
    with a KMS key needs Decrypt on it; the job reads and writes such objects the same way.
    """
    return Statement(
        Effect=Allow,
        Action=list(actions),
        Resource=[key],
        Condition=Condition([
            StringEquals("kms:ViaService", Sub("s3.${AWS::Region}.amazonaws.com")),
            StringLike("kms:EncryptionContext:aws:s3:arn", list(arns)),
        ]),
    )


# --- network --------------------------------------------------------------------------------

def add_security_group(b: StageBuilder, config: PipelineConfig) -> ec2.SecurityGroup:
    group = b.add(ec2.SecurityGroup(
        "GlueSecurityGroup",
        GroupDescription="Glue job and crawlers: each other, and HTTPS to AWS services",
        VpcId=b.input(VPC_ID),
        SecurityGroupEgress=https_to_endpoints_and_s3(b, config),
    ))
    # Glue requires its workers' group to admit itself on every TCP port (Spark's driver and
    # executors talk on ports chosen at run time). Separate resources: a group's inline rules
    # cannot name the group itself.
    b.add(ec2.SecurityGroupIngress(
        "GlueSecurityGroupSelfIngress",
        GroupId=GetAtt(group, "GroupId"),
        SourceSecurityGroupId=GetAtt(group, "GroupId"),
        IpProtocol="tcp", FromPort=0, ToPort=65535,
        Description="Glue workers of this group talk to each other",
    ))
    b.add(ec2.SecurityGroupEgress(
        "GlueSecurityGroupSelfEgress",
        GroupId=GetAtt(group, "GroupId"),
        DestinationSecurityGroupId=GetAtt(group, "GroupId"),
        IpProtocol="tcp", FromPort=0, ToPort=65535,
        Description="Glue workers of this group talk to each other",
    ))
    return group


def subnet_zone(b: StageBuilder, config: PipelineConfig, index: int) -> Any:
    """The availability zone of private subnet `index`, which a Glue connection must state.

    The network stage offers the zones of its private subnets, in their order.
    """
    return Select(index, b.input(PRIVATE_SUBNET_ZONES))


def network_connection(b: StageBuilder, config: PipelineConfig, index: int,
                       group: ec2.SecurityGroup) -> glue.Connection:
    return glue.Connection(
        f"NetworkConnection{index + 1}",
        CatalogId=Ref("AWS::AccountId"),
        ConnectionInput=glue.ConnectionInput(
            Name=b.physical_name(naming.GLUE_JOB, "network", str(index + 1)),
            Description=f"Private subnet {index + 1} for the ETL job and crawlers",
            ConnectionType="NETWORK",
            PhysicalConnectionRequirements=glue.PhysicalConnectionRequirements(
                SubnetId=Select(index, b.input(PRIVATE_SUBNET_IDS)),
                AvailabilityZone=subnet_zone(b, config, index),
                SecurityGroupIdList=[GetAtt(group, "GroupId")],
            ),
        ),
    )


def network_interface_statements(network: Network) -> list[Statement]:
    """What Glue does with a job's or crawler's role to place it in a connection's subnet."""
    interfaces = policies.arn("ec2", "network-interface/*")
    group = policies.arn("ec2", f"security-group/${{{network.security_group.title}.GroupId}}")
    subnets = [Sub("arn:${AWS::Partition}:ec2:${AWS::Region}:${AWS::AccountId}:subnet/${Subnet}",
                   Subnet=Select(index, Ref(PRIVATE_SUBNET_IDS.name)))
               for index in range(CONNECTIONS)]
    # Every statement: AWS, "AWS managed policies for AWS Glue" (AWSGlueServiceRole's EC2
    # actions, which Glue calls with the role of a job or crawler that has a connection),
    # narrowed to this stage's subnets, security group and VPC where EC2 allows it.
    return [
        # AWS: AWSGlueServiceRole: CreateNetworkInterface.
        Statement(
            Effect=Allow,
            Action=[awacs.ec2.CreateNetworkInterface],
            Resource=[interfaces, group, *subnets],
        ),
        # AWS: AWSGlueServiceRole: DeleteNetworkInterface.
        Statement(
            Effect=Allow,
            Action=[awacs.ec2.DeleteNetworkInterface],
            Resource=[interfaces],
        ),
        # AWS: AWSGlueServiceRole: CreateTags and DeleteTags with the aws-glue-service-resource
        # tag key only: Glue marks the interfaces it creates, and only with its own tag key.
        Statement(
            Effect=Allow,
            Action=[awacs.ec2.CreateTags, awacs.ec2.DeleteTags],
            Resource=[interfaces, group],
            Condition=Condition(ForAllValuesStringEquals("aws:TagKeys", [GLUE_RESOURCE_TAG])),
        ),
        # AWS: AWSGlueServiceRole: DescribeVpcAttribute. Before it starts, Glue checks the
        # subnet, its routes (for an S3 endpoint), the security group and the VPC's DNS
        # attributes.
        Statement(
            Effect=Allow,
            Action=[awacs.ec2.DescribeVpcAttribute],
            Resource=[policies.arn("ec2", f"vpc/${{{VPC_ID.name}}}")],
        ),
        # AWS: AWSGlueServiceRole: these EC2 Describe actions, which have no resource-level
        # permissions: "*" is the only resource AWS accepts.
        Statement(
            Effect=Allow,
            Action=[awacs.ec2.DescribeNetworkInterfaces, awacs.ec2.DescribeRouteTables,
                    awacs.ec2.DescribeSecurityGroups, awacs.ec2.DescribeSubnets,
                    awacs.ec2.DescribeVpcEndpoints],
            Resource=["*"],
        ),
    ]


# --- catalog --------------------------------------------------------------------------------

def catalog_arns(database: glue.Database) -> list[Sub]:
    """Glue authorizes a table action on the catalog, the database and the table together; the
    tables are those of this stage's database only."""
    return [policies.arn("glue", "catalog"),
            policies.arn("glue", f"database/${{{database.title}}}"),
            policies.arn("glue", f"table/${{{database.title}}}/*")]


def connection_statement(network: Network) -> Statement:
    """Reading the network connections a job or crawler runs through.

    AWS: "AWS managed policies for AWS Glue" (AWSGlueServiceRole: glue actions, of which Glue
    calls GetConnection for a connection's subnet and security group), in the resource form of
    "Specifying AWS Glue resource ARNs" (connection/<name>, with the catalog).
    """
    return Statement(
        Effect=Allow,
        Action=[awacs.glue.GetConnection],
        Resource=[policies.arn("glue", "catalog"),
                  *(policies.arn("glue", f"connection/${{{c.title}}}")
                    for c in network.connections)],
    )


# --- the job --------------------------------------------------------------------------------

def job_script(etl: EtlConfig) -> tuple[str, bytes]:
    """(file name, content) of the job script: the bundled one or the user's."""
    if etl.script is None:
        return JOB_SCRIPT.name, JOB_SCRIPT.read_bytes()
    path = Path(etl.script)
    try:
        return path.name, path.read_bytes()
    except OSError as error:
        raise UserError(f"stages.etl.script: cannot read {etl.script!r}: "
                        f"{error.strerror or error}") from None


def job_arguments(b: StageBuilder, config: PipelineConfig, lake: DataLake,
                  database: glue.Database, continuous_log_group: Sub | None) -> dict[str, Any]:
    etl = config.stages.etl
    arguments: dict[str, Any] = {
        "--job-language": "python",
        "--job-bookmark-option": "job-bookmark-enable",
        "--enable-metrics": "true",
        "--enable-observability-metrics": "true",
        # The script's own arguments (see mlops_cfn/data/glue/etl_job.py); lists as JSON, since
        # Glue drops arguments whose value is empty.
        "--database": Ref(database),
        "--raw_location": lake.raw_location,
        "--processed_location": lake.processed_location,
        "--output_format": etl.output_format,
        "--partition_keys": json.dumps(etl.partition_keys),
        "--schema": json.dumps(config.record_schema.as_job_argument(),
                               separators=(",", ":")),
        "--event_source": etl_events.SOURCE,
        "--event_detail_type": etl_events.DETAIL_TYPE,
    }
    if continuous_log_group is not None:
        arguments.update({
            "--enable-continuous-cloudwatch-log": "true",
            "--enable-continuous-log-filter": "true",
            "--continuous-log-logGroup": continuous_log_group,
        })
    return arguments


def add_job(b: StageBuilder, config: PipelineConfig, lake: DataLake, key: Ref,
            database: glue.Database, security: glue.SecurityConfiguration,
            network: Network) -> glue.Job:
    etl = config.stages.etl
    file_name, content = job_script(etl)
    script = b.asset(file_name, content)
    role = b.add(iam.Role(
        "JobRole",
        Description="Glue ETL job: read raw data, write processed data",
        AssumeRolePolicyDocument=policies.trusted_by("glue.amazonaws.com"),
        Policies=[iam.Policy(
            PolicyName="etl-job",
            PolicyDocument=policies.document(
                job_statements(lake, key, database, network, script)),
        ), *b.asset_key_policies()],
    ))
    # Under a security configuration Glue names a job's log groups after the configuration and
    # the role: /aws-glue/jobs/<configuration>-role/<role name>/output and .../error, and the
    # continuous log group (Glue 4.0) <--continuous-log-logGroup>-<configuration>.
    prefix = f"/aws-glue/jobs/${{{security.title}}}-role/${{{role.title}}}"
    groups = [log_group(b, config, "JobOutputLogGroup", Sub(prefix + "/output")),
              log_group(b, config, "JobErrorLogGroup", Sub(prefix + "/error"))]
    continuous = None
    if etl.glue_version == "4.0":
        b.environment  # declares the EnvironmentName parameter the name refers to
        base = naming.log_group_name(config.project, "etl")
        continuous = Sub(base)
        groups.append(log_group(b, config, "JobContinuousLogGroup",
                                Sub(f"{base}-${{{security.title}}}")))
    policy = b.add(logging_policy("JobLoggingPolicy", role, groups))
    return b.add(glue.Job(
        "EtlJob",
        Name=b.physical_name(naming.GLUE_JOB, "etl"),
        Description="Cleans and types raw records into the processed bucket",
        Role=GetAtt(role, "Arn"),
        Command=glue.JobCommand(Name="glueetl", PythonVersion="3",
                                ScriptLocation=script.s3_uri),
        GlueVersion=etl.glue_version,
        WorkerType=b.setting(etl, "worker_type"),
        NumberOfWorkers=b.setting(etl, "workers"),
        Timeout=b.setting(etl, "timeout_minutes"),
        MaxRetries=b.setting(etl, "max_retries"),
        # Bookmarks assume one run at a time: two would read the same new data.
        ExecutionProperty=glue.ExecutionProperty(MaxConcurrentRuns=1),
        ExecutionClass="STANDARD",
        Connections=glue.ConnectionsList(Connections=[Ref(c) for c in network.connections]),
        SecurityConfiguration=Ref(security),
        DefaultArguments=job_arguments(b, config, lake, database, continuous),
        # A run must find its log groups and the right to write them.
        DependsOn=[g.title for g in groups] + [policy.title],
    ))


def job_statements(lake: DataLake, key: Ref, database: glue.Database, network: Network,
                   script: Asset) -> list[Statement]:
    processed_folder = lake.processed_prefix.rstrip("/")
    return [
        # AWS: "Step 2: Create an IAM role for AWS Glue" (the role reads its data stores: the
        # raw prefix) and AWSGlueServiceRole's s3:GetBucketLocation and s3:ListBucket.
        *policies.bucket_access(lake.raw_bucket, lake.raw_prefix, read=True),
        # AWS: same page (the job writes its target: the processed prefix, with multipart
        # uploads: "Multipart upload API and permissions" in the S3 user guide) and
        # AWSGlueServiceRole's s3:DeleteObject (Spark replaces its temporary output).
        *policies.bucket_access(lake.processed_bucket, lake.processed_prefix, read=True,
                                write=True, delete=True),
        # AWS: AWSGlueServiceRole (s3:PutObject, s3:DeleteObject): Spark's S3 committer
        # leaves a `<folder>_$folder$` marker beside the folder it writes.
        Statement(
            Effect=Allow,
            Action=[awacs.s3.PutObject, awacs.s3.DeleteObject],
            Resource=[Sub(f"${{{PROCESSED_BUCKET_ARN.name}}}/{processed_folder}_$folder$")],
        ),
        # AWS: "Step 2: Create an IAM role for AWS Glue": the role reads the job's script.
        assets.read_statement([script.object_arn]),
        # AWS: "Encrypting data written by AWS Glue": S3 SSE-KMS reads and writes, the
        # security configuration's client-side bookmark encryption and log encryption, which
        # the job asks KMS for directly: no kms:ViaService condition can narrow this one, so it
        # is limited to the data key and these three actions.
        policies.use_key(key, LOG_ENCRYPTION_KEY_ACTIONS),
        # AWS: AWSGlueServiceRole (glue actions), in the resource form of "Specifying AWS Glue
        # resource ARNs": the raw table the job reads, its partitions.
        Statement(
            Effect=Allow,
            Action=[awacs.glue.GetDatabase, awacs.glue.GetTable, awacs.glue.GetTables,
                    awacs.glue.GetPartition, awacs.glue.GetPartitions,
                    awacs.glue.BatchGetPartition],
            Resource=catalog_arns(database),
        ),
        connection_statement(network),
        # AWS: "Using IAM policy conditions in Amazon EventBridge": PutEvents on the default
        # bus, for the job's one event (source and detail type as conditions): the run's
        # count of new records (etl_events.py).
        Statement(
            Effect=Allow,
            Action=[awacs.events.PutEvents],
            Resource=[policies.arn("events", "event-bus/default")],
            Condition=Condition(StringEquals({"events:source": etl_events.SOURCE,
                                              "events:detail-type": etl_events.DETAIL_TYPE})),
        ),
        # AWS: AWSGlueServiceRole (cloudwatch:PutMetricData): job metrics (--enable-metrics).
        # PutMetricData has no resource-level permissions; the condition keeps the job to
        # Glue's own metric namespace.
        Statement(
            Effect=Allow,
            Action=[awacs.cloudwatch.PutMetricData],
            Resource=["*"],
            Condition=Condition(StringEquals("cloudwatch:namespace", GLUE_METRICS_NAMESPACE)),
        ),
        *network_interface_statements(network),
    ]


# --- crawlers -------------------------------------------------------------------------------

def schema_change_policy(etl: EtlConfig) -> glue.SchemaChangePolicy:
    # Incremental crawls only log schema changes (AWS requires LOG for both then). Deleted
    # objects are never dropped from the catalog: raw data is archived, not deleted.
    update = "LOG" if etl.recrawl == "new_folders_only" else "UPDATE_IN_DATABASE"
    return glue.SchemaChangePolicy(UpdateBehavior=update, DeleteBehavior="LOG")


def crawler_configuration(table_level: int | None) -> str:
    grouping: dict[str, Any] = {"TableGroupingPolicy": "CombineCompatibleSchemas"}
    if table_level is not None:
        grouping["TableLevelConfiguration"] = table_level
    return json.dumps({
        "Version": 1.0,
        "Grouping": grouping,
        "CrawlerOutput": {"Partitions": {"AddOrUpdateBehavior": "InheritFromTable"}},
    }, sort_keys=True)


def add_crawlers(b: StageBuilder, config: PipelineConfig, lake: DataLake, key: Ref,
                 database: glue.Database, security: glue.SecurityConfiguration,
                 network: Network) -> tuple[glue.Crawler, glue.Crawler]:
    etl = config.stages.etl
    role = b.add(iam.Role(
        "CrawlerRole",
        Description="Glue crawlers: read raw and processed data, keep their tables",
        AssumeRolePolicyDocument=policies.trusted_by("glue.amazonaws.com"),
        Policies=[iam.Policy(
            PolicyName="crawl",
            PolicyDocument=policies.document(crawler_statements(lake, key, database, network)),
        )],
    ))
    # Glue's name for a crawler's log group under a security configuration.
    group = log_group(b, config, "CrawlerLogGroup",
                      Sub(f"/aws-glue/crawlers-role/${{{role.title}}}-${{{security.title}}}"))
    policy = b.add(logging_policy("CrawlerLoggingPolicy", role, [group]))
    common = dict(
        Role=GetAtt(role, "Arn"),
        DatabaseName=Ref(database),
        SchemaChangePolicy=schema_change_policy(etl),
        RecrawlPolicy=glue.RecrawlPolicy(RecrawlBehavior=RECRAWL_BEHAVIOR[etl.recrawl]),
        CrawlerSecurityConfiguration=Ref(security),
        DependsOn=[group.title, policy.title],
    )
    # Read through the first network connection, like the job: S3 via the gateway endpoint.
    connection = Ref(network.connections[0])
    raw = b.add(glue.Crawler(
        "RawCrawler",
        Name=b.physical_name(naming.GLUE_JOB, "raw-crawler"),
        Description="Catalogs the raw records Firehose writes",
        Targets=glue.Targets(S3Targets=[glue.S3Target(Path=lake.raw_location,
                                                      ConnectionName=connection)]),
        # The raw prefix may be several folders deep and is not known here, so the table level
        # is left to the crawler; the job finds the table by its location.
        TablePrefix=RAW_TABLE_PREFIX,
        Configuration=crawler_configuration(table_level=None),
        **common,
    ))
    processed = b.add(glue.Crawler(
        "ProcessedCrawler",
        Name=b.physical_name(naming.GLUE_JOB, "processed-crawler"),
        Description="Catalogs the processed data the ETL job writes",
        Targets=glue.Targets(S3Targets=[glue.S3Target(Path=lake.processed_location,
                                                      ConnectionName=connection)]),
        # One table at the processed folder (level 1), named after it: ProcessedTableName.
        Configuration=crawler_configuration(table_level=1),
        **common,
    ))
    return raw, processed


def crawler_statements(lake: DataLake, key: Ref, database: glue.Database,
                       network: Network) -> list[Statement]:
    return [
        # AWS: "Step 3: Configure security settings" (crawlers: GetObject on the data store)
        # and AWSGlueServiceRole's s3:GetBucketLocation and s3:ListBucket.
        *policies.bucket_access(lake.raw_bucket, lake.raw_prefix, read=True),
        # AWS: same pages: the processed prefix, which the processed crawler catalogs.
        *policies.bucket_access(lake.processed_bucket, lake.processed_prefix, read=True),
        key_use_through_s3(key, [awacs.kms.Decrypt], [
            lake.raw_bucket, Sub(f"${{{RAW_BUCKET_ARN.name}}}/*"),
            lake.processed_bucket, Sub(f"${{{PROCESSED_BUCKET_ARN.name}}}/*"),
        ]),
        # AWS: "Encrypting data written by AWS Glue", section "Setting Up AWS Glue to use
        # security configurations": the roles passed to crawlers (as to jobs) use the key to
        # encrypt their CloudWatch Logs under the configuration's SSE-KMS log encryption.
        # Glue asks KMS as the role, not through a service that a kms:ViaService condition
        # could name.
        policies.use_key(key, LOG_ENCRYPTION_KEY_ACTIONS),
        # AWS: AWSGlueServiceRole (glue actions), in the resource form of "Specifying AWS Glue
        # resource ARNs": what a crawler does to keep its tables and partitions.
        Statement(
            Effect=Allow,
            Action=[awacs.glue.GetDatabase, awacs.glue.GetTable, awacs.glue.GetTables,
                    awacs.glue.CreateTable, awacs.glue.UpdateTable,
                    awacs.glue.GetPartition, awacs.glue.GetPartitions,
                    awacs.glue.BatchGetPartition, awacs.glue.CreatePartition,
                    awacs.glue.BatchCreatePartition, awacs.glue.UpdatePartition,
                    awacs.glue.BatchUpdatePartition],
            Resource=catalog_arns(database),
        ),
        connection_statement(network),
        *network_interface_statements(network),
    ]


# --- orchestration --------------------------------------------------------------------------

def add_workflow(b: StageBuilder, etl: EtlConfig, raw_crawler: glue.Crawler, job: glue.Job,
                 processed_crawler: glue.Crawler) -> glue.Workflow:
    workflow = b.add(glue.Workflow(
        "Workflow",
        Name=b.physical_name(naming.GLUE_JOB, "etl"),
        Description="Raw crawler, then the ETL job, then the processed crawler",
        # A run starting while the last one still works would crawl half-written data.
        MaxConcurrentRuns=1,
    ))
    start: dict[str, Any]
    if etl.schedule is None:
        start = {"Type": "ON_DEMAND"}
    else:
        start = {"Type": "SCHEDULED", "Schedule": b.setting(etl, "schedule"),
                 "StartOnCreation": True}
    b.add(glue.Trigger(
        "StartTrigger",
        Name=b.physical_name(naming.GLUE_JOB, "etl-start"),
        Description="Starts the workflow with the raw crawler",
        WorkflowName=Ref(workflow),
        Actions=[glue.Action(CrawlerName=Ref(raw_crawler))],
        **start,
    ))
    b.add(glue.Trigger(
        "JobTrigger",
        Name=b.physical_name(naming.GLUE_JOB, "etl-job"),
        Description="Runs the ETL job once the raw crawler succeeded",
        Type="CONDITIONAL",
        StartOnCreation=True,
        WorkflowName=Ref(workflow),
        Predicate=glue.Predicate(Conditions=[glue.Condition(
            CrawlerName=Ref(raw_crawler), CrawlState="SUCCEEDED", LogicalOperator="EQUALS")]),
        Actions=[glue.Action(JobName=Ref(job))],
    ))
    b.add(glue.Trigger(
        "ProcessedCrawlerTrigger",
        Name=b.physical_name(naming.GLUE_JOB, "etl-processed"),
        Description="Catalogs the processed data once the ETL job succeeded",
        Type="CONDITIONAL",
        StartOnCreation=True,
        WorkflowName=Ref(workflow),
        Predicate=glue.Predicate(Conditions=[glue.Condition(
            JobName=Ref(job), State="SUCCEEDED", LogicalOperator="EQUALS")]),
        Actions=[glue.Action(CrawlerName=Ref(processed_crawler))],
    ))
    return workflow
