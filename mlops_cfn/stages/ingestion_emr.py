"""The ingestion stage's EMR consumer: Spark Structured Streaming on EMR Serverless.

Why EMR Serverless: EMR on EC2 in a VPC gets EMR-managed security groups between which EMR adds
rules CloudFormation never created, and those rules keep the groups, and so the stack, from
being deleted. EMR Serverless places only network interfaces in the private subnets, with the
one security group this module creates, so deleting the stack removes everything it made.

Why a supervisor Lambda rather than a Step Functions state machine: keeping the job going is one
decision (is a run active? else start one) made on three occasions: when the stack is created
or updated (a custom resource: CloudFormation waits for the first run to be started, and an
update with new job code replaces the run), when a run ends (EventBridge "EMR Serverless Job
Run State Change"), and every `check_minutes` (a scheduled rule, for a run that ended while no
event got through). A state machine would add a definition, a role and logs for the same two
API calls, and could not answer the custom resource, which also does the one thing deletion
needs: EMR Serverless deletes an application only once it is stopped, and a streaming run never
ends by itself, so on deletion the supervisor cancels the runs and stops the application before
CloudFormation deletes it. Within an hour EMR Serverless itself retries a failed streaming run
(its retry policy, `max_failed_attempts_per_hour`, AWS: "EMR Serverless job resiliency"); the
supervisor takes over when it gives up.

Resources (with `emr_consumer.enabled`)
- EmrConsumerApplication: EMR Serverless Spark application (release, maximum capacity from the
  settings) in the private subnets with EmrConsumerSecurityGroup (no ingress; HTTPS out to the
  interface endpoints and S3), logs to EmrConsumerLogGroup (the data key, retention); it starts
  on a job run and stops when idle.
- EmrConsumerJobRole: the job runtime role (trusted by EMR Serverless for this account's
  applications): reads the stream and the job's assets, writes the output and checkpoint
  folders of the processed bucket and its log group.
- Job code as assets: mlops_cfn/data/emr/stream_job.py and the ETL job's cleaning
  (mlops_cfn/data/glue/etl_job.py, --py-files).
- EmrConsumerSupervisor (Lambda in the private subnets; code: mlops_cfn/data/emr_supervisor.py)
  with EmrConsumerSupervisorRole, ...SecurityGroup, ...LogGroup, ...DeadLetterQueue;
  EmrConsumerJob (custom resource: first run, replacement on update, stop on delete);
  EmrConsumerRunEndedRule and EmrConsumerCheckRule (EventBridge -> supervisor, undeliverable
  events to EmrConsumerEventDeadLetterQueue), their permissions.

Disk encryption: EMR Serverless encrypts its workers' disks with a key of its own; a customer
managed key for them is set per application or job run (AWS: "Disk Encryption with KMS CMK"),
but CloudFormation's application resource has no property for it yet (cfn-lint's registry
schema lists none), so the disks keep EMR Serverless's key.
"""

import json
from pathlib import Path
from typing import Any

import awacs.ec2
import awacs.emr_serverless as emrs
import awacs.iam
import awacs.kinesis
import awacs.kms
import awacs.logs
import awacs.s3
import awacs.sqs
import awacs.xray
from awacs.aws import (Allow, ArnEquals, ArnLike, Condition, Principal, Statement,
                       StringEquals)
from troposphere import (GetAtt, Ref, Sub, awslambda, cloudformation, emrserverless, events,
                         iam, kinesis, logs, sqs)

from .. import assets, naming, policies
from ..config import PipelineConfig
from ..config.ingestion_emr import EmrConsumerConfig
from ..outputs import (EMR_CONSUMER_APPLICATION_ID, PRIVATE_SUBNET_IDS, PROCESSED_BUCKET_ARN,
                       PROCESSED_BUCKET_NAME)
from ..stage import StageBuilder
from .common import (INLINE_CODE_LIMIT, encrypted_log_group, encrypted_queue,
                     eventbridge_dead_letters, https_out_security_group)
from .monitoring import network_interface_statements

DATA = Path(__file__).resolve().parent.parent / "data"
JOB_SOURCE = DATA / "emr" / "stream_job.py"
CLEANING_SOURCE = DATA / "glue" / "etl_job.py"
SUPERVISOR_SOURCE = DATA / "emr_supervisor.py"
CHECKPOINTS = "_checkpoints/"
# The connector ships in the release image (AWS: "Supported streaming connectors").
CONNECTOR_JAR = ("/usr/share/aws/kinesis/spark-sql-kinesis/lib/"
                 "spark-streaming-sql-kinesis-connector.jar")
# The custom resource's deletion cancels the runs and waits for the application to stop.
SUPERVISOR_TIMEOUT_SECONDS = 900
RUN_ENDED_STATES = ["SUCCESS", "FAILED", "CANCELLED"]
# Whose monitoring configuration this troposphere release does not model yet.
_MONITORING_PROPS = {**emrserverless.MonitoringConfiguration.props,
                     "CloudWatchLoggingConfiguration":
                         (emrserverless.CloudWatchLoggingConfiguration, False)}


class MonitoringConfiguration(emrserverless.MonitoringConfiguration):
    props = _MONITORING_PROPS


class Application(emrserverless.Application):
    props = {**emrserverless.Application.props,
             "MonitoringConfiguration": (MonitoringConfiguration, False)}


def add(b: StageBuilder, config: PipelineConfig, stream: kinesis.Stream, key: Ref) -> None:
    settings = config.stages.ingestion.emr_consumer
    log_group = encrypted_log_group(b, config, "EmrConsumerLogGroup", "emr-consumer")
    group = https_out_security_group(
        b, config, "EmrConsumerSecurityGroup",
        "EMR consumer job: HTTPS to VPC endpoints and S3 only", reaches_s3=True)
    application = b.add(Application(
        "EmrConsumerApplication",
        Name=b.physical_name(naming.EMR_SERVERLESS, "emr-consumer"),
        Type="Spark",
        ReleaseLabel=b.setting(settings, "release_label"),
        Architecture="ARM64",
        MaximumCapacity=emrserverless.MaximumAllowedResources(
            Cpu=Sub(f"${{{_parameter(b, settings, 'maximum_vcpu')}}} vCPU"),
            Memory=Sub(f"${{{_parameter(b, settings, 'maximum_memory_gb')}}} GB")),
        AutoStartConfiguration=emrserverless.AutoStartConfiguration(Enabled=True),
        AutoStopConfiguration=emrserverless.AutoStopConfiguration(
            Enabled=True, IdleTimeoutMinutes=15),
        NetworkConfiguration=emrserverless.NetworkConfiguration(
            SubnetIds=b.input(PRIVATE_SUBNET_IDS), SecurityGroupIds=[Ref(group)]),
        MonitoringConfiguration=MonitoringConfiguration(
            # Logs go to the stack's own group, created encrypted with the data key and with
            # the pipeline's retention, so EMR Serverless associates no key itself.
            CloudWatchLoggingConfiguration=emrserverless.CloudWatchLoggingConfiguration(
                Enabled=True, LogGroupName=Ref(log_group), LogStreamNamePrefix="stream-job"),
            # Off: managed persistence would keep a second copy of the logs for 30 days
            # outside the stack's encrypted, expiring group.
            ManagedPersistenceMonitoringConfiguration=(
                emrserverless.ManagedPersistenceMonitoringConfiguration(Enabled=False)),
        ),
    ))
    job = job_assets(b)
    role = b.add(iam.Role(
        "EmrConsumerJobRole",
        Description="EMR consumer job runs: read the stream, write the processed bucket",
        # AWS: "Job runtime roles for Amazon EMR Serverless" (trust policy, with the
        # confused-deputy guard on this account's applications).
        AssumeRolePolicyDocument=policies.trusted_by(
            "emr-serverless.amazonaws.com",
            StringEquals("aws:SourceAccount", Ref("AWS::AccountId")),
            ArnLike("aws:SourceArn", policies.arn("emr-serverless", "/applications/*"))),
        Policies=[iam.Policy(PolicyName="stream-job", PolicyDocument=policies.document(
            job_statements(settings, stream, key, b.input(PROCESSED_BUCKET_ARN), log_group,
                           job))),
            *b.asset_key_policies()],
    ))
    driver = job_driver(b, config, stream, job)
    add_supervisor(b, config, application, role, driver, key)
    b.output(EMR_CONSUMER_APPLICATION_ID, Ref(application))


def _parameter(b: StageBuilder, settings: EmrConsumerConfig, field: str) -> str:
    return b.setting(settings, field).data["Ref"]


def job_assets(b: StageBuilder) -> tuple[assets.Asset, assets.Asset]:
    """The job script and the ETL job's cleaning it imports (etl_job.py, as a module)."""
    with open(JOB_SOURCE, "rb") as script, open(CLEANING_SOURCE, "rb") as cleaning:
        return (b.asset("stream_job.py", script.read()), b.asset("etl_job.py", cleaning.read()))


def output_folders(settings: EmrConsumerConfig) -> tuple[str, str]:
    """The prefixes the job writes in the processed bucket: its output, its checkpoint."""
    return settings.prefix, CHECKPOINTS + settings.prefix


def job_driver(b: StageBuilder, config: PipelineConfig, stream: kinesis.Stream,
               job: tuple[assets.Asset, assets.Asset]) -> Sub:
    """StartJobRun's jobDriver as JSON text (Sub): the script, its arguments, Spark's settings."""
    settings, etl = config.stages.ingestion.emr_consumer, config.stages.etl
    output, checkpoint = output_folders(settings)
    bucket = f"s3://${{{PROCESSED_BUCKET_NAME.name}}}/"
    b.input(PROCESSED_BUCKET_NAME)
    script, cleaning = job
    trigger = _parameter(b, settings, "trigger_seconds")
    arguments = {
        "stream_name": f"${{{stream.title}}}",
        "region": "${AWS::Region}",
        "output_location": bucket + output,
        "checkpoint_location": bucket + checkpoint,
        "output_format": etl.output_format,
        "partition_keys": json.dumps(etl.partition_keys),
        "schema": json.dumps(config.record_schema.as_job_argument(), separators=(",", ":")),
        "trigger_seconds": f"${{{trigger}}}",
    }
    # The connector needs speculative execution off (its README: "Avoid race conditions").
    submit = (f"--jars {CONNECTOR_JAR} --py-files {_uri(cleaning)} "
              "--conf spark.speculation=false")
    driver = {"sparkSubmit": {
        "entryPoint": _uri(script),
        "entryPointArguments": [item for name, value in arguments.items()
                                for item in (f"--{name}", value)],
        "sparkSubmitParameters": submit,
    }}
    return Sub(json.dumps(driver, separators=(",", ":")))


def _uri(asset: assets.Asset) -> str:
    return f"s3://${{{assets.ASSETS_BUCKET}}}/${{{assets.ASSETS_PREFIX}}}{asset.key}"


def job_statements(settings: EmrConsumerConfig, stream: kinesis.Stream, key: Ref,
                   bucket: Ref, log_group: logs.LogGroup,
                   job: tuple[assets.Asset, assets.Asset]) -> list[Statement]:
    stream_arn = GetAtt(stream, "Arn")
    output, checkpoint = output_folders(settings)
    objects = [Sub(f"${{{PROCESSED_BUCKET_ARN.name}}}/{folder}*")
               for folder in (output, checkpoint)]
    return [
        # AWS: "Supported streaming connectors" (EMR Serverless User Guide: the job runtime
        # role reads the stream; the permissions are the connector's, for its GetRecords
        # consumer type).
        Statement(
            Effect=Allow,
            Action=[awacs.kinesis.DescribeStreamSummary, awacs.kinesis.ListShards,
                    awacs.kinesis.GetShardIterator, awacs.kinesis.GetRecords],
            Resource=[stream_arn],
        ),
        # AWS: "Permissions to use user-generated KMS keys" (Kinesis Data Streams): consumers
        # of a stream encrypted with a customer managed key need Decrypt.
        policies.key_use_in_context(key, [awacs.kms.Decrypt], "kinesis", "aws:kinesis:arn",
                                    [stream_arn]),
        # AWS: "Job runtime roles for Amazon EMR Serverless" (S3 access for the job's data):
        # the output and checkpoint folders; Spark lists, replaces and deletes its temporary
        # and checkpoint files there.
        *policies.bucket_access(bucket, output, read=True, write=True, delete=True),
        # AWS: same page: the checkpoint folder (Spark's "Recovering from failures with
        # checkpointing", which "EMR Serverless job resiliency" resumes streaming runs from).
        *policies.bucket_access(bucket, checkpoint, read=True, write=True, delete=True),
        # AWS: "Using server-side encryption with AWS KMS keys (SSE-KMS)" (S3 User Guide): the
        # bucket's objects are encrypted with the data key.
        policies.key_use_in_context(key, [awacs.kms.Decrypt, awacs.kms.GenerateDataKey], "s3",
                                    "aws:s3:arn", [bucket, *objects], wildcards=True),
        # AWS: "Job runtime roles for Amazon EMR Serverless": the job reads its script and
        # --py-files from S3.
        assets.read_statement([asset.object_arn for asset in job]),
        # AWS: "Logging for EMR Serverless with CloudWatch" (the job runtime role writes the
        # job's log streams into the configured group and describes it).
        Statement(
            Effect=Allow,
            Action=[awacs.logs.CreateLogStream, awacs.logs.PutLogEvents,
                    awacs.logs.DescribeLogStreams],
            Resource=[policies.arn("logs", "log-group:${%s}:*" % log_group.title)],
        ),
        # AWS: same page: DescribeLogGroups, which names no log group (IAM's service
        # reference: it acts on the account's groups, `log-group:*`).
        Statement(Effect=Allow, Action=[awacs.logs.DescribeLogGroups],
                  Resource=[policies.arn("logs", "log-group:*")]),
    ]


# --- supervisor -----------------------------------------------------------------------------

def supervisor_code() -> str:
    with open(SUPERVISOR_SOURCE, encoding="utf-8") as source:
        code = source.read()
    if len(code.encode("utf-8")) > INLINE_CODE_LIMIT:
        raise ValueError(f"{SUPERVISOR_SOURCE} is over the {INLINE_CODE_LIMIT}-byte limit of "
                         "inline Lambda code")
    return code


def add_supervisor(b: StageBuilder, config: PipelineConfig,
                   application: emrserverless.Application, job_role: iam.Role, driver: Sub,
                   key: Ref) -> None:
    settings = config.stages.ingestion.emr_consumer
    log_group = encrypted_log_group(b, config, "EmrConsumerSupervisorLogGroup",
                                    "emr-consumer-supervisor")
    dead_letters = encrypted_queue(b, "EmrConsumerSupervisorDeadLetterQueue",
                                   "emr-supervisor-dead-letters")
    event_dead_letters = encrypted_queue(b, "EmrConsumerEventDeadLetterQueue",
                                         "emr-supervisor-event-dead-letters")
    eventbridge_dead_letters(b)
    # The EMR Serverless API through its interface endpoint; CloudFormation's response bucket
    # (the custom resource's answer) through the S3 gateway endpoint.
    group = https_out_security_group(
        b, config, "EmrConsumerSupervisorSecurityGroup",
        "EMR consumer supervisor: HTTPS to VPC endpoints and S3 only", reaches_s3=True)
    role = b.add(iam.Role(
        "EmrConsumerSupervisorRole",
        Description="EMR consumer supervisor: keep one streaming job run going",
        AssumeRolePolicyDocument=policies.trusted_by("lambda.amazonaws.com"),
        Policies=[iam.Policy(PolicyName="supervise", PolicyDocument=policies.document(
            supervisor_statements(application, job_role, key, dead_letters, log_group,
                                  group)))],
    ))
    function = b.add(awslambda.Function(
        "EmrConsumerSupervisor",
        FunctionName=b.physical_name(naming.LAMBDA_FUNCTION, "emr-supervisor"),
        Description="Keeps the EMR consumer's streaming job running; stops it on deletion",
        Runtime="python3.12",
        Architectures=["arm64"],
        Handler="index.handler",
        # Inline code, so no CodeSigningConfig: Lambda verifies signatures only on packages
        # uploaded to S3.
        Code=awslambda.Code(ZipFile=supervisor_code()),
        Role=GetAtt(role, "Arn"),
        MemorySize=256,
        Timeout=SUPERVISOR_TIMEOUT_SECONDS,
        # One at a time: two checks at once could each find no run and start two.
        ReservedConcurrentExecutions=1,
        KmsKeyArn=key,
        Environment=awslambda.Environment(Variables={
            "APPLICATION_ID": Ref(application),
            "EXECUTION_ROLE_ARN": GetAtt(job_role, "Arn"),
            "JOB_NAME": "stream-consumer",
            "JOB_DRIVER": driver,
            "MAX_FAILED_PER_HOUR": b.setting(settings, "max_failed_attempts_per_hour"),
        }),
        VpcConfig=awslambda.VPCConfig(
            SubnetIds=b.input(PRIVATE_SUBNET_IDS), SecurityGroupIds=[Ref(group)]),
        TracingConfig=awslambda.TracingConfig(Mode="Active"),
        LoggingConfig=awslambda.LoggingConfig(LogGroup=Ref(log_group)),
        DeadLetterConfig=awslambda.DeadLetterConfig(TargetArn=GetAtt(dead_letters, "Arn")),
    ))
    starter = b.add(cloudformation.CustomResource(
        "EmrConsumerJob",
        ServiceToken=GetAtt(function, "Arn"),
        # Its deletion waits for the runs to end and the application to stop.
        ServiceTimeout=SUPERVISOR_TIMEOUT_SECONDS + 60,
        ApplicationId=Ref(application),
        # A change of job code or arguments replaces the running job run.
        JobDriver=driver,
        ExecutionRoleArn=GetAtt(job_role, "Arn"),
    ))
    rules = [
        events.Rule(
            "EmrConsumerRunEndedRule",
            Description="A job run of the EMR consumer ended: the supervisor starts another",
            State="ENABLED",
            EventPattern={"source": ["aws.emr-serverless"],
                          "detail-type": ["EMR Serverless Job Run State Change"],
                          "detail": {"applicationId": [Ref(application)],
                                     "state": RUN_ENDED_STATES}},
        ),
        events.Rule(
            "EmrConsumerCheckRule",
            Description="Periodic check that the EMR consumer's job run is active",
            State="ENABLED",
            ScheduleExpression=Sub(
                f"rate(${{{_parameter(b, settings, 'check_minutes')}}} minutes)"),
        ),
    ]
    for rule in rules:
        rule.Targets = [events.Target(
            Id="Supervisor", Arn=GetAtt(function, "Arn"),
            RetryPolicy=events.RetryPolicy(MaximumRetryAttempts=10,
                                           MaximumEventAgeInSeconds=3600),
            DeadLetterConfig=events.DeadLetterConfig(Arn=GetAtt(event_dead_letters, "Arn")))]
        # Deleted before the custom resource stops the application, so no event starts a run
        # while it does.
        rule.DependsOn = [starter.title]
        b.add(rule)
        b.add(awslambda.Permission(
            f"{rule.title}Permission",
            Action="lambda:InvokeFunction",
            FunctionName=GetAtt(function, "Arn"),
            Principal="events.amazonaws.com",
            SourceArn=GetAtt(rule, "Arn"),
            SourceAccount=Ref("AWS::AccountId"),
        ))
    b.add(sqs.QueuePolicy(
        "EmrConsumerEventDeadLetterQueuePolicy",
        Queues=[Ref(event_dead_letters)],
        # AWS: "Using dead-letter queues to process undelivered events" (EventBridge User
        # Guide): the queue's policy lets EventBridge send, for the rules that use it.
        PolicyDocument=policies.document(Statement(
            Sid="EventBridgeDeadLetters",
            Effect=Allow,
            Principal=Principal("Service", "events.amazonaws.com"),
            Action=[awacs.sqs.SendMessage],
            Resource=[GetAtt(event_dead_letters, "Arn")],
            Condition=Condition(ArnEquals("aws:SourceArn",
                                          [GetAtt(rule, "Arn") for rule in rules])),
        )),
    ))


def supervisor_statements(application: emrserverless.Application, job_role: iam.Role,
                          key: Ref, dead_letters: sqs.Queue, log_group: logs.LogGroup,
                          group: Any) -> list[Statement]:
    app_arn = GetAtt(application, "Arn")
    return [
        # AWS: "Actions, resources, and condition keys for Amazon EMR Serverless" (service
        # authorization reference): the application-level calls of data/emr_supervisor.py.
        Statement(
            Effect=Allow,
            Action=[emrs.StartJobRun, emrs.ListJobRuns, emrs.GetApplication,
                    emrs.StopApplication],
            Resource=[app_arn],
        ),
        # AWS: same page: CancelJobRun acts on a job run of the application.
        Statement(
            Effect=Allow,
            Action=[emrs.CancelJobRun],
            Resource=[Sub("${%s.Arn}/jobruns/*" % application.title)],
        ),
        # AWS: "Job runtime roles for Amazon EMR Serverless": whoever starts a job run passes
        # its runtime role (iam:PassRole), to EMR Serverless only.
        Statement(
            Effect=Allow,
            Action=[awacs.iam.PassRole],
            Resource=[GetAtt(job_role, "Arn")],
            Condition=Condition(StringEquals("iam:PassedToService",
                                             "emr-serverless.amazonaws.com")),
        ),
        # AWS: "Adding a dead-letter queue" (Lambda Developer Guide): sqs:SendMessage.
        Statement(Effect=Allow, Action=[awacs.sqs.SendMessage],
                  Resource=[GetAtt(dead_letters, "Arn")]),
        # AWS: "Encryption at rest in Amazon SQS" (key management): a producer to a queue
        # encrypted with a customer managed key needs GenerateDataKey and Decrypt.
        policies.key_use_in_context(key, [awacs.kms.GenerateDataKey, awacs.kms.Decrypt], "sqs",
                                    "aws:sqs:arn", [GetAtt(dead_letters, "Arn")]),
        # AWS: "Defining Lambda function permissions with an execution role"
        # (AWSLambdaBasicExecutionRole): function logs, its own group only.
        Statement(
            Effect=Allow,
            Action=[awacs.logs.CreateLogStream, awacs.logs.PutLogEvents],
            Resource=[policies.arn("logs", "log-group:${%s}:*" % log_group.title)],
        ),
        # AWS: "Giving Lambda functions access to resources in an Amazon VPC".
        *network_interface_statements(group),
        # AWS: "Visualize Lambda function invocations using AWS X-Ray" (active tracing); no
        # resource-level permissions.
        Statement(Effect=Allow,
                  Action=[awacs.xray.PutTraceSegments, awacs.xray.PutTelemetryRecords],
                  Resource=["*"]),
    ]
