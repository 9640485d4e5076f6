"""monitoring stage: alarms and a dashboard over every enabled stage, Model Monitor, retraining.

What is watched comes from one list (monitoring_metrics.py): each watch that applies to the
config gets a dashboard widget, and one with a threshold an alarm, so the two never disagree.

Resources
- AlarmTopic (SNS, encrypted with the data key) + AlarmTopicPolicy (publishing only by this
  stack's alarms and rules, TLS only); AlarmEmailSubscription when `alarm_email` is set.
- `<Watch>Alarm` (CloudWatch) per watch with a threshold; thresholds are settings. Alarms that
  make up serving health notify through ServingDegradedAlarm (composite) instead of each alone.
- Dashboard: an alarm-status widget, then one row of graphs per watched stage, each graph with
  its alarm's threshold.
- With etl: EtlFailureRule (EventBridge: the ETL Glue job FAILED or TIMEOUT -> the topic).
- With SageMaker serving and `model_monitor.enabled`: DataQualityJobDefinition and
  DataQualitySchedule over the endpoint's captured data (baseline and reports in the artifacts
  bucket, encrypted, in the private subnets) with MonitorRole and MonitorSecurityGroup;
  MonitorViolationRule and MonitorFailureRule notify the topic; the violations alarm is the
  drift alarm that starts retraining.
- With training, `retrain.enabled` and a drift alarm: RetrainFunction (code:
  mlops_cfn/data/retrain.py, in the private subnets) and RetrainSubscription (the drift alarms
  only), with RetrainRole, RetrainSecurityGroup, RetrainLogGroup, RetrainDeadLetterQueue and
  RetrainTopicPermission.

Inputs: DataKeyArn; the names of whatever is watched, only from enabled producers
(IngestStreamName, DeliveryStreamName, ConsumerFunctionName, ConsumerFailureQueueName,
EtlJobName, EndpointName, EcsClusterName, EcsServiceName, LoadBalancerFullName,
TargetGroupFullName); with Model Monitor DataCaptureS3Uri, ArtifactsBucketName/Arn, VpcId,
PrivateSubnetIds; with retraining TrainingPipelineName/Arn, VpcId, VpcCidrBlock,
PrivateSubnetIds.
Outputs: AlarmTopicArn, DashboardName; with retraining RetrainFunctionName.
Settings: EnvironmentName, AlarmEmail, LogRetentionDays, a threshold per alarm
(`thresholds.*`), the evaluation periods, Model Monitor's schedule, size, runtime and image
account, and the retrain Lambda's cool-down, memory and timeout.
"""

import json
import re
from pathlib import Path
from typing import Any, Sequence

import awacs.cloudwatch
import awacs.ec2
import awacs.kms
import awacs.logs
import awacs.s3
import awacs.sagemaker
import awacs.sns
import awacs.sqs
import awacs.xray
from awacs.aws import Allow, Bool, Condition, Deny, Principal, Statement, StringEquals
from troposphere import (Equals, FindInMap, GetAtt, Not, Ref, Select, Split, Sub, awslambda,
                         cloudwatch, ec2, events, iam, sagemaker, sns)

from .. import assets, naming, policies
from ..config import PipelineConfig
from ..config.monitoring import MONITOR_SCHEDULES, MonitoringConfig
from ..outputs import (ALARM_TOPIC_ARN, ARTIFACTS_BUCKET_ARN, ARTIFACTS_BUCKET_NAME, DASHBOARD_NAME,
                       DATA_CAPTURE_URI, DATA_KEY_ARN, ENDPOINT_NAME, ETL_JOB_NAME,
                       PRIVATE_SUBNET_IDS, RETRAIN_FUNCTION_NAME, TRAINING_PIPELINE_ARN,
                       TRAINING_PIPELINE_NAME, VPC_ID)
from ..stage import Stage, StageBuilder
from .common import (INLINE_CODE_LIMIT, encrypted_log_group, encrypted_queue,
                     https_out_security_group, https_to_endpoints_and_s3)
from .model_monitor_image import ANALYZER_IMAGE, analyzer_account
from .monitoring_metrics import (ETL_FAILURE_RULE, MONITOR_FAILURE_RULE, MONITOR_VIOLATION_RULE,
                                 PERIOD_SECONDS, RETRAIN_FUNCTION, Local, Source, Watch, alarmed,
                                 model_monitor_enabled, retrain_enabled, watches)

RETRAIN_SOURCE = Path(__file__).resolve().parent.parent / "data" / "retrain.py"

ALARM = naming.NameRule("CloudWatch alarm", 255)
DASHBOARD = naming.NameRule("CloudWatch dashboard", 255)

HAS_ALARM_EMAIL = "HasAlarmEmail"
SCHEDULES_MAPPING = "ModelMonitorSchedules"
# Model Monitor's own namespace for the per-feature metrics it publishes.
MONITOR_METRICS_NAMESPACE = "aws/sagemaker/Endpoints/data-metrics"
MONITOR_INPUT_PATH = "/opt/ml/processing/input/endpoint"
MONITOR_OUTPUT_PATH = "/opt/ml/processing/output"
# SageMaker writes processing-job logs (Model Monitor runs included) to this service-named group.
PROCESSING_LOG_GROUP = "/aws/sagemaker/ProcessingJobs"

# The check "is a run already going or recent?" and the start must not interleave; one
# concurrent execution makes them one step (see data/retrain.py). A correctness setting, not
# a size, so not a per-environment value.
RETRAIN_CONCURRENCY = 1

# Metrics Insights aggregation per CloudWatch statistic.
_INSIGHTS_FUNCTIONS = {"Average": "AVG", "Maximum": "MAX", "Minimum": "MIN", "Sum": "SUM"}
_WIDGET_WIDTH, _WIDGET_HEIGHT, _WIDGETS_PER_ROW = 8, 6, 3


def build(config: PipelineConfig) -> Stage:
    settings = config.stages.monitoring
    parts = ["alarms", "dashboard"]
    parts += ["Model Monitor"] if model_monitor_enabled(config) else []
    parts += ["automatic retraining"] if retrain_enabled(config) else []
    b = StageBuilder("monitoring", config.project, ", ".join(parts))
    key = b.input(DATA_KEY_ARN)
    topic = b.add(sns.Topic(
        "AlarmTopic",
        TopicName=b.physical_name(naming.SNS_TOPIC, "alarms"),
        DisplayName=f"{config.project} alarms",
        KmsMasterKeyId=key,
    ))
    add_email_subscription(b, settings, topic)

    rules: list[events.Rule] = []
    if config.stages.etl.enabled:
        rules.append(b.add(etl_failure_rule(b, topic)))
    if model_monitor_enabled(config):
        schedule = add_model_monitor(b, config, key)
        rules += [b.add(rule) for rule in monitor_rules(schedule, topic)]

    alarms = [b.add(alarm(b, settings, watch, topic)) for watch in alarmed(config)]
    serving = [a for a, w in zip(alarms, alarmed(config)) if w.serving]
    if serving:
        alarms.append(b.add(serving_degraded_alarm(b, serving, topic)))
    b.add(topic_policy(topic, alarms, rules))

    if retrain_enabled(config):
        function = add_retrain(b, config, key, topic)
        b.output(RETRAIN_FUNCTION_NAME, Ref(function))

    dashboard = b.add(cloudwatch.Dashboard(
        "Dashboard",
        DashboardName=b.physical_name(DASHBOARD, "pipeline"),
        DashboardBody=dashboard_body(b, settings, watches(config), alarms),
    ))
    b.output(ALARM_TOPIC_ARN, Ref(topic))
    b.output(DASHBOARD_NAME, Ref(dashboard))
    return b.finish()


# --- notifications -----------------------------------------------------------------------------

def add_email_subscription(b: StageBuilder, settings: MonitoringConfig, topic: sns.Topic) -> None:
    # The address is a value (it may differ per environment), so whether to subscribe is
    # decided at deploy time by a condition, not when rendering.
    email = b.setting(settings, "alarm_email")
    b.template.add_condition(HAS_ALARM_EMAIL, Not(Equals(email, "")))
    b.add(sns.SubscriptionResource(
        "AlarmEmailSubscription",
        Condition=HAS_ALARM_EMAIL,
        TopicArn=Ref(topic),
        Protocol="email",
        Endpoint=email,
    ))


def topic_policy(topic: sns.Topic, alarms: Sequence[Any],
                 rules: Sequence[events.Rule]) -> sns.TopicPolicy:
    """Only this stack's alarms and rules publish, only over TLS.

    Statements name each publisher's ARN (aws:SourceArn) and this account (aws:SourceAccount):
    the confused-deputy guard, and the only limit on EventBridge's use of the data key (see
    storage._service_key_statements).
    """
    topic_arn = Ref(topic)
    statements = [Statement(
        Sid="DenyInsecureTransport",
        Effect=Deny,
        Principal=Principal("*"),
        Action=[awacs.sns.Publish],
        Resource=[topic_arn],
        Condition=Condition(Bool("aws:SecureTransport", "false")),
    )]
    for sid, service, publishers in (("AlarmsPublish", "cloudwatch.amazonaws.com", alarms),
                                     ("RulesPublish", "events.amazonaws.com", rules)):
        if publishers:
            statements.append(Statement(
                Sid=sid,
                Effect=Allow,
                Principal=Principal("Service", service),
                Action=[awacs.sns.Publish],
                Resource=[topic_arn],
                Condition=Condition(StringEquals({
                    "aws:SourceAccount": Ref("AWS::AccountId"),
                    "aws:SourceArn": [GetAtt(p, "Arn") for p in publishers],
                })),
            ))
    return sns.TopicPolicy("AlarmTopicPolicy", Topics=[topic_arn],
                           PolicyDocument=policies.document(statements))


def notify(topic: sns.Topic, paths: dict[str, str], text: str) -> events.Target:
    """An EventBridge target sending `text` (with <path> placeholders) to the topic."""
    return events.Target(
        Id="AlarmTopic",
        Arn=Ref(topic),
        InputTransformer=events.InputTransformer(InputPathsMap=paths,
                                                 InputTemplate=json.dumps(text)),
    )


def etl_failure_rule(b: StageBuilder, topic: sns.Topic) -> events.Rule:
    return events.Rule(
        ETL_FAILURE_RULE,
        Description="ETL job run failed or timed out",
        State="ENABLED",
        EventPattern={
            "source": ["aws.glue"],
            "detail-type": ["Glue Job State Change"],
            "detail": {"jobName": [b.input(ETL_JOB_NAME)], "state": ["FAILED", "TIMEOUT"]},
        },
        Targets=[notify(topic, {"job": "$.detail.jobName", "run": "$.detail.jobRunId",
                                "state": "$.detail.state", "reason": "$.detail.message"},
                        "ETL job <job> run <run> ended <state>: <reason>")],
    )


# --- alarms ------------------------------------------------------------------------------------

def kebab(key: str) -> str:
    """`Endpoint4xxErrors` -> `endpoint-4xx-errors`."""
    return re.sub(r"(?<=[a-z])(?=[A-Z0-9])|(?<=[0-9])(?=[A-Z])", "-", key).lower()


def source_name(b: StageBuilder, source: Source) -> str:
    """The name `${...}` refers to for a dimension value (declaring the wire as an input)."""
    if isinstance(source, Local):
        return source.logical_id
    b.input(source)
    return source.name


def insights_query(b: StageBuilder, watch: Watch) -> Sub:
    """A Metrics Insights query aggregating `watch` over its `across` dimensions."""
    schema = ", ".join([f'"{watch.namespace}"', *(n for n, _ in watch.dimensions), *watch.across])
    where = " AND ".join(f"{n} = '${{{source_name(b, s)}}}'" for n, s in watch.dimensions)
    function = _INSIGHTS_FUNCTIONS[watch.statistic]
    return Sub(f"SELECT {function}({watch.metric}) FROM SCHEMA({schema}) WHERE {where}")


def alarm(b: StageBuilder, settings: MonitoringConfig, watch: Watch,
          topic: sns.Topic) -> cloudwatch.Alarm:
    thresholds = settings.thresholds
    props: dict[str, Any] = {}
    if watch.across:
        props["Metrics"] = [cloudwatch.MetricDataQuery(
            Id="q", Label=watch.title, Expression=insights_query(b, watch),
            Period=PERIOD_SECONDS, ReturnData=True)]
    else:
        props.update(
            Namespace=watch.namespace,
            MetricName=watch.metric,
            Dimensions=[cloudwatch.MetricDimension(Name=n, Value=Ref(source_name(b, s)))
                        for n, s in watch.dimensions],
            Statistic=watch.statistic,
            Period=PERIOD_SECONDS,
        )
    if watch.level:
        props.update(EvaluationPeriods=b.setting(thresholds, "evaluation_periods"),
                     DatapointsToAlarm=b.setting(thresholds, "datapoints_to_alarm"))
    else:
        props.update(EvaluationPeriods=1, DatapointsToAlarm=1)
    if not watch.serving:
        # Serving-health alarms notify through the composite alarm, once per incident.
        props.update(AlarmActions=[Ref(topic)], OKActions=[Ref(topic)])
    return cloudwatch.Alarm(
        watch.alarm_id,
        AlarmName=b.physical_name(ALARM, kebab(watch.key)),
        AlarmDescription=f"{watch.stage}: {watch.title}",
        ComparisonOperator=watch.comparison,
        Threshold=b.setting(thresholds, watch.threshold),
        # No data means nothing happened (no traffic, no failed run), not a failure.
        TreatMissingData="notBreaching",
        **props,
    )


def serving_degraded_alarm(b: StageBuilder, parts: Sequence[cloudwatch.Alarm],
                           topic: sns.Topic) -> cloudwatch.CompositeAlarm:
    rule = " OR ".join(f'ALARM("${{{a.title}}}")' for a in parts)
    return cloudwatch.CompositeAlarm(
        "ServingDegradedAlarm",
        AlarmName=b.physical_name(ALARM, "serving-degraded"),
        AlarmDescription="serving: the model API is slow or failing (see the alarms in ALARM)",
        AlarmRule=Sub(rule),
        AlarmActions=[Ref(topic)],
        OKActions=[Ref(topic)],
    )


# --- dashboard ---------------------------------------------------------------------------------

def _number(parameter: Ref) -> str:
    """A placeholder for a numeric parameter inside the dashboard JSON (see _unquote_numbers)."""
    return "#number${" + parameter.data["Ref"] + "}#"


def _unquote_numbers(text: str) -> str:
    return re.sub(r'"#number(\$\{[A-Za-z0-9]+\})#"', r"\1", text)


def metric_widget(b: StageBuilder, settings: MonitoringConfig, watch: Watch) -> dict:
    if watch.across:
        metrics: list = [[{"expression": insights_query(b, watch).data["Fn::Sub"],
                           "label": watch.title, "id": "q"}]]
    else:
        metric: list = [watch.namespace, watch.metric]
        for name, source in watch.dimensions:
            metric += [name, "${" + source_name(b, source) + "}"]
        metrics = [metric]
    properties: dict[str, Any] = {
        "title": watch.title,
        "region": "${AWS::Region}",
        "view": "timeSeries",
        "stat": watch.statistic,
        "period": PERIOD_SECONDS,
        "metrics": metrics,
    }
    if watch.has_alarm:
        threshold = b.setting(settings.thresholds, watch.threshold)
        properties["annotations"] = {"horizontal": [
            {"label": "alarm threshold", "value": _number(threshold)}]}
    return {"type": "metric", "properties": properties}


def dashboard_body(b: StageBuilder, settings: MonitoringConfig, watched: Sequence[Watch],
                   alarms: Sequence[Any]) -> Sub | str:
    """The dashboard as data, serialised once; names and the region come in through Sub."""
    widgets: list[dict] = []
    y = 0
    if alarms:
        # The status widget shows six alarms to a row of height 1, under its title.
        height = 2 + -(-len(alarms) // 6)
        widgets.append({"type": "alarm", "x": 0, "y": y, "width": 24, "height": height,
                        "properties": {"title": "Alarms", "sortBy": "stateUpdatedTimestamp",
                                       "alarms": ["${%s.Arn}" % a.title for a in alarms]}})
        y += height
    for stage in dict.fromkeys(w.stage for w in watched):
        widgets.append({"type": "text", "x": 0, "y": y, "width": 24, "height": 1,
                        "properties": {"markdown": f"## {stage}"}})
        y += 1
        row = [w for w in watched if w.stage == stage]
        for index, watch in enumerate(row):
            widget = metric_widget(b, settings, watch)
            widget.update(x=(index % _WIDGETS_PER_ROW) * _WIDGET_WIDTH,
                          y=y + (index // _WIDGETS_PER_ROW) * _WIDGET_HEIGHT,
                          width=_WIDGET_WIDTH, height=_WIDGET_HEIGHT)
            widgets.append(widget)
        y += -(-len(row) // _WIDGETS_PER_ROW) * _WIDGET_HEIGHT
    body = {"start": "-PT12H", "periodOverride": "inherit", "widgets": widgets}
    text = _unquote_numbers(json.dumps(body, separators=(",", ":")))
    # With nothing to watch there is nothing to substitute (and cfn-lint flags a bare Sub).
    return Sub(text) if "${" in text else text


# --- Model Monitor -----------------------------------------------------------------------------

def _capture_path() -> Select:
    """`bucket/prefix` of the endpoint's capture URI (`s3://bucket/prefix`)."""
    return Select(1, Split("s3://", Ref(DATA_CAPTURE_URI.name)))


def add_model_monitor(b: StageBuilder, config: PipelineConfig,
                      key: Ref) -> sagemaker.MonitoringSchedule:
    monitor = config.stages.monitoring.model_monitor
    b.input(ARTIFACTS_BUCKET_NAME)  # named in the baseline and report URIs below
    security_group = b.add(ec2.SecurityGroup(
        "MonitorSecurityGroup",
        GroupDescription="Model Monitor runs: HTTPS out only",
        VpcId=b.input(VPC_ID),
        SecurityGroupEgress=https_to_endpoints_and_s3(b, config),
    ))
    role = b.add(iam.Role(
        "MonitorRole",
        Description="Model Monitor runs: read captured data and the baseline, write reports",
        AssumeRolePolicyDocument=policies.trusted_by("sagemaker.amazonaws.com"),
        Policies=[iam.Policy(PolicyName="model-monitor", PolicyDocument=policies.document(
            monitor_statements(b, config, key, security_group)))],
    ))
    b.template.add_mapping(SCHEDULES_MAPPING, {
        name: {"Expression": expression} for name, expression in MONITOR_SCHEDULES.items()})
    definition = b.add(sagemaker.DataQualityJobDefinition(
        "DataQualityJobDefinition",
        DataQualityAppSpecification=sagemaker.DataQualityAppSpecification(
            # AWS publishes the image from one account per region.
            ImageUri=Sub(ANALYZER_IMAGE, Account=analyzer_account(b, monitor)),
            Environment={"publish_cloudwatch_metrics": "Enabled"},
        ),
        DataQualityBaselineConfig=sagemaker.DataQualityBaselineConfig(
            ConstraintsResource=sagemaker.ConstraintsResource(S3Uri=Sub(
                f"s3://${{{ARTIFACTS_BUCKET_NAME.name}}}/{monitor.baseline_prefix}"
                "constraints.json")),
            StatisticsResource=sagemaker.StatisticsResource(S3Uri=Sub(
                f"s3://${{{ARTIFACTS_BUCKET_NAME.name}}}/{monitor.baseline_prefix}"
                "statistics.json")),
        ),
        DataQualityJobInput=sagemaker.DataQualityJobInput(EndpointInput=sagemaker.EndpointInput(
            EndpointName=b.input(ENDPOINT_NAME),
            LocalPath=MONITOR_INPUT_PATH,
            S3DataDistributionType="FullyReplicated",
            S3InputMode="File",
        )),
        DataQualityJobOutputConfig=sagemaker.MonitoringOutputConfig(
            KmsKeyId=key,
            MonitoringOutputs=[sagemaker.MonitoringOutput(S3Output=sagemaker.S3Output(
                LocalPath=MONITOR_OUTPUT_PATH,
                S3Uri=Sub(f"s3://${{{ARTIFACTS_BUCKET_NAME.name}}}/{monitor.reports_prefix}"),
                S3UploadMode="EndOfJob",
            ))],
        ),
        JobResources=sagemaker.MonitoringResources(ClusterConfig=sagemaker.ClusterConfig(
            InstanceCount=b.setting(monitor, "instance_count"),
            InstanceType=b.setting(monitor, "instance_type"),
            VolumeSizeInGB=b.setting(monitor, "volume_size_gb"),
            VolumeKmsKeyId=key,
        )),
        NetworkConfig=sagemaker.NetworkConfig(
            EnableInterContainerTrafficEncryption=True,
            VpcConfig=sagemaker.VpcConfig(
                SecurityGroupIds=[GetAtt(security_group, "GroupId")],
                Subnets=b.input(PRIVATE_SUBNET_IDS),
            ),
        ),
        RoleArn=GetAtt(role, "Arn"),
        StoppingCondition=sagemaker.StoppingCondition(
            MaxRuntimeInSeconds=b.setting(monitor, "max_runtime_seconds")),
    ))
    return b.add(sagemaker.MonitoringSchedule(
        "DataQualitySchedule",
        MonitoringScheduleName=b.physical_name(naming.SAGEMAKER, "data-quality"),
        EndpointName=Ref(ENDPOINT_NAME.name),
        MonitoringScheduleConfig=sagemaker.MonitoringScheduleConfig(
            MonitoringJobDefinitionName=GetAtt(definition, "JobDefinitionName"),
            MonitoringType="DataQuality",
            ScheduleConfig=sagemaker.ScheduleConfig(ScheduleExpression=FindInMap(
                SCHEDULES_MAPPING, b.setting(monitor, "schedule"), "Expression")),
        ),
    ))


def monitor_statements(b: StageBuilder, config: PipelineConfig, key: Ref,
                       security_group: ec2.SecurityGroup) -> list[Statement]:
    monitor = config.stages.monitoring.model_monitor
    artifacts = b.input(ARTIFACTS_BUCKET_ARN)
    b.input(DATA_CAPTURE_URI)
    capture_objects = Sub("arn:${AWS::Partition}:s3:::${Path}*", Path=_capture_path())
    capture_bucket = Sub("arn:${AWS::Partition}:s3:::${Bucket}",
                         Bucket=Select(0, Split("/", _capture_path())))
    return [
        # Captured requests: read under the capture URI only. The listing cannot carry an
        # s3:prefix condition: the wire is a URI, and CloudFormation cannot cut the bucket
        # off it (Fn::Split takes no computed delimiter); object reads stay scoped.
        Statement(Effect=Allow, Action=[awacs.s3.GetObject], Resource=[capture_objects]),
        Statement(Effect=Allow, Action=[awacs.s3.ListBucket,
                                        awacs.s3.GetBucketLocation],
                  Resource=[capture_bucket]),
        *policies.bucket_access(artifacts, monitor.baseline_prefix, read=True),
        *policies.bucket_access(artifacts, monitor.reports_prefix, read=True, write=True),
        policies.use_key(key, policies.KEY_READ_WRITE, via_services=("s3",)),
        # Encrypting the run's volumes: SageMaker creates a grant on the key for the instance.
        Statement(
            Effect=Allow,
            Action=[awacs.kms.CreateGrant, awacs.kms.DescribeKey],
            Resource=[key],
            Condition=Condition(Bool("kms:GrantIsForAWSResource", "true")),
        ),
        # PutMetricData supports no resource-level permission; the namespace condition keeps
        # the role to Model Monitor's metrics.
        Statement(
            Effect=Allow,
            Action=[awacs.cloudwatch.PutMetricData],
            Resource=["*"],
            Condition=Condition(StringEquals("cloudwatch:namespace", MONITOR_METRICS_NAMESPACE)),
        ),
        Statement(
            Effect=Allow,
            Action=[awacs.logs.CreateLogGroup, awacs.logs.CreateLogStream,
                    awacs.logs.PutLogEvents, awacs.logs.DescribeLogStreams],
            Resource=[policies.arn("logs", f"log-group:{PROCESSING_LOG_GROUP}:*")],
        ),
        *network_interface_statements(security_group, sagemaker=True),
    ]


def monitor_rules(schedule: sagemaker.MonitoringSchedule,
                  topic: sns.Topic) -> list[events.Rule]:
    """A monitoring run is a processing job whose event names the schedule; with violations it
    completes with an exit message starting `CompletedWithViolations`."""
    def pattern(detail: dict) -> dict:
        return {
            "source": ["aws.sagemaker"],
            "detail-type": ["SageMaker Processing Job State Change"],
            "detail": {"MonitoringScheduleArn": [GetAtt(schedule, "MonitoringScheduleArn")],
                       **detail},
        }
    job = {"job": "$.detail.ProcessingJobName"}
    return [
        events.Rule(
            MONITOR_VIOLATION_RULE,
            Description="Model Monitor found violations of the baseline",
            State="ENABLED",
            EventPattern=pattern({"ProcessingJobStatus": ["Completed"],
                                  "ExitMessage": [{"prefix": "CompletedWithViolations"}]}),
            Targets=[notify(topic, {**job, "message": "$.detail.ExitMessage"},
                            "Model Monitor run <job>: <message>")],
        ),
        events.Rule(
            MONITOR_FAILURE_RULE,
            Description="A Model Monitor run failed",
            State="ENABLED",
            EventPattern=pattern({"ProcessingJobStatus": ["Failed"]}),
            Targets=[notify(topic, {**job, "reason": "$.detail.FailureReason"},
                            "Model Monitor run <job> failed: <reason>")],
        ),
    ]


# --- retraining --------------------------------------------------------------------------------

def retrain_code(b: StageBuilder) -> awslambda.Code:
    """Inline when it fits CloudFormation's 4096 bytes, else a zipped asset."""
    code = RETRAIN_SOURCE.read_bytes()
    if len(code) <= INLINE_CODE_LIMIT:
        # Inline code, so no CodeSigningConfig: Lambda verifies signatures only on packages
        # uploaded to S3.
        return awslambda.Code(ZipFile=code.decode("utf-8"))
    asset = b.asset("retrain.zip", assets.zip_files({"index.py": code}))
    return awslambda.Code(S3Bucket=Ref(assets.ASSETS_BUCKET), S3Key=asset.s3_key)


def add_retrain(b: StageBuilder, config: PipelineConfig, key: Ref,
                topic: sns.Topic) -> awslambda.Function:
    retrain = config.stages.monitoring.retrain
    triggers = [w for w in alarmed(config) if w.retrain]
    log_group = encrypted_log_group(b, config, "RetrainLogGroup", "retrain")
    dead_letters = encrypted_queue(b, "RetrainDeadLetterQueue", "retrain-dead-letters")
    # The SageMaker API is reached through its interface endpoint inside the VPC.
    security_group = https_out_security_group(
        b, config, "RetrainSecurityGroup", "Retrain Lambda: HTTPS to VPC endpoints only")
    role = b.add(iam.Role(
        "RetrainRole",
        Description="Retrain Lambda: start the training pipeline",
        AssumeRolePolicyDocument=policies.trusted_by("lambda.amazonaws.com"),
        Policies=[iam.Policy(PolicyName="retrain", PolicyDocument=policies.document(
            retrain_statements(b, key, dead_letters, log_group, security_group)))],
    ))
    code = retrain_code(b)
    function = b.add(awslambda.Function(
        RETRAIN_FUNCTION,
        FunctionName=b.physical_name(naming.LAMBDA_FUNCTION, "retrain"),
        Description="Starts the training pipeline on drift alarms, once per cool-down",
        Runtime="python3.12",
        Architectures=["arm64"],
        Handler="index.handler",
        Code=code,
        Role=GetAtt(role, "Arn"),
        MemorySize=b.setting(retrain, "memory_mb"),
        Timeout=b.setting(retrain, "timeout_seconds"),
        ReservedConcurrentExecutions=RETRAIN_CONCURRENCY,
        # Lambda decrypts the variables through a grant it creates on the key at deployment.
        KmsKeyArn=key,
        Environment=awslambda.Environment(Variables={
            "PIPELINE_NAME": b.input(TRAINING_PIPELINE_NAME),
            "TRIGGER_ALARMS": Sub(",".join("${%s}" % w.alarm_id for w in triggers)),
            "COOLDOWN_HOURS": b.setting(retrain, "cooldown_hours"),
        }),
        VpcConfig=awslambda.VPCConfig(
            SubnetIds=b.input(PRIVATE_SUBNET_IDS), SecurityGroupIds=[Ref(security_group)]),
        TracingConfig=awslambda.TracingConfig(Mode="Active"),
        LoggingConfig=awslambda.LoggingConfig(LogGroup=Ref(log_group)),
        # SNS invokes asynchronously: a message still failing after Lambda's retries lands here.
        DeadLetterConfig=awslambda.DeadLetterConfig(TargetArn=GetAtt(dead_letters, "Arn")),
    ))
    permission = b.add(awslambda.Permission(
        "RetrainTopicPermission",
        Action="lambda:InvokeFunction",
        FunctionName=GetAtt(function, "Arn"),
        Principal="sns.amazonaws.com",
        SourceArn=Ref(topic),
        SourceAccount=Ref("AWS::AccountId"),
    ))
    b.add(sns.SubscriptionResource(
        "RetrainSubscription",
        DependsOn=[permission.title],
        TopicArn=Ref(topic),
        Protocol="lambda",
        Endpoint=GetAtt(function, "Arn"),
        # Only drift alarms entering ALARM reach the function (the handler checks again).
        FilterPolicyScope="MessageBody",
        FilterPolicy={"AlarmName": [Ref(w.alarm_id) for w in triggers],
                      "NewStateValue": ["ALARM"]},
    ))
    return function


def retrain_statements(b: StageBuilder, key: Ref, dead_letters: Any, log_group: Any,
                       security_group: ec2.SecurityGroup) -> list[Statement]:
    return [
        Statement(
            Effect=Allow,
            Action=[awacs.sagemaker.StartPipelineExecution,
                    awacs.sagemaker.ListPipelineExecutions],
            Resource=[b.input(TRAINING_PIPELINE_ARN)],
        ),
        Statement(Effect=Allow, Action=[awacs.sqs.SendMessage],
                  Resource=[GetAtt(dead_letters, "Arn")]),
        policies.key_use_in_context(key, [awacs.kms.GenerateDataKey, awacs.kms.Decrypt], "sqs",
                           "aws:sqs:arn", [GetAtt(dead_letters, "Arn")]),
        Statement(
            Effect=Allow,
            Action=[awacs.logs.CreateLogStream, awacs.logs.PutLogEvents],
            Resource=[policies.arn("logs", "log-group:${%s}:*" % log_group.title)],
        ),
        *network_interface_statements(security_group),
        # X-Ray's write actions have no resource-level permissions.
        Statement(Effect=Allow,
                  Action=[awacs.xray.PutTraceSegments, awacs.xray.PutTelemetryRecords],
                  Resource=["*"]),
    ]


def network_interface_statements(security_group: ec2.SecurityGroup,
                                 sagemaker: bool = False) -> list[Statement]:
    """What Lambda (or SageMaker) needs to place the compute's network interfaces."""
    network_interfaces = policies.arn("ec2", "network-interface/*")
    create = [awacs.ec2.CreateNetworkInterface]
    manage = [awacs.ec2.DeleteNetworkInterface]
    describe = [awacs.ec2.DescribeNetworkInterfaces, awacs.ec2.DescribeSubnets]
    if sagemaker:
        create.append(awacs.ec2.CreateNetworkInterfacePermission)
        manage.append(awacs.ec2.DeleteNetworkInterfacePermission)
        describe += [awacs.ec2.DescribeVpcs, awacs.ec2.DescribeDhcpOptions,
                     awacs.ec2.DescribeSecurityGroups]
    else:
        manage += [awacs.ec2.AssignPrivateIpAddresses, awacs.ec2.UnassignPrivateIpAddresses]
    return [
        Statement(
            Effect=Allow,
            Action=create,
            Resource=[network_interfaces, policies.arn("ec2", "subnet/*"),
                      policies.arn("ec2", "security-group/${%s.GroupId}" % security_group.title)],
        ),
        Statement(Effect=Allow, Action=manage, Resource=[network_interfaces]),
        # EC2 Describe actions have no resource-level permissions.
        Statement(Effect=Allow, Action=describe, Resource=["*"]),
    ]
