"""monitoring stage: alarms and a dashboard over every enabled stage, Model Monitor, retraining.

What is watched comes from one list (monitoring_metrics.py): each watch that applies to the
config gets a dashboard widget, and one with a threshold an alarm, so the two never disagree.

The endpoint and the API service may not exist yet (a first deployment has no model and no
image): their wires arrive with conditions HasEndpoint and HasApiService, and everything that
needs one exists only under it (monitoring_gates.py): its alarms, Model Monitor, the retrain
Lambda; the dashboard, the composite alarm and the topic policy list only what exists.

Resources
- AlarmTopic (SNS, encrypted with the data key) + AlarmTopicPolicy (publishing only by this
  stack's alarms and rules, TLS only); AlarmEmailSubscription when `alarm_email` is set.
- `<Watch>Alarm` (CloudWatch) per watch with a threshold; thresholds are settings. Alarms that
  make up serving health notify through ServingDegradedAlarm (composite) instead of each alone.
- Dashboard: an alarm-status widget, then one row of graphs per watched stage, each graph with
  its alarm's threshold.
- With etl: EtlFailureRule (EventBridge: the ETL Glue job FAILED or TIMEOUT -> the topic).
- With the EMR consumer: EmrConsumerFailureRule (EventBridge: a job run of its EMR Serverless
  application FAILED -> the topic; its supervisor starts the next run).
- With SageMaker serving and `model_monitor.enabled`: DataQualityJobDefinition and
  DataQualitySchedule over the endpoint's captured data (baseline and reports in the artifacts
  bucket, encrypted, in the private subnets) with MonitorRole and MonitorSecurityGroup;
  MonitorViolationRule and MonitorFailureRule notify the topic; the violations alarm is the
  drift alarm that starts retraining. All but the role and security group under HasEndpoint.
  With `model_quality`, `bias_drift` or `feature_attribution_drift` on, also their job
  definitions, schedules and alarms (monitoring_models.py), all under HasEndpoint.
- With training, `retrain.enabled` and a drift alarm: RetrainFunction (code:
  mlops_cfn/data/retrain.py, in the private subnets) and RetrainSubscription (the drift alarms
  only), with RetrainRole, RetrainSecurityGroup, RetrainLogGroup, RetrainDeadLetterQueue and
  RetrainTopicPermission. The function, its permission and subscription exist while a drift
  alarm does (with Model Monitor: under HasEndpoint).

Inputs: DataKeyArn; the names of whatever is watched, only from enabled producers
(IngestStreamName, DeliveryStreamName, ConsumerFunctionName, ConsumerFailureQueueName,
EmrConsumerApplicationId, Ec2ConsumerGroupName,
Ec2ConsumerGroupName,
EtlJobName, EndpointName + EndpointExists, EcsClusterName, EcsServiceName + ApiServiceExists,
LoadBalancerFullName, TargetGroupFullName); with Model Monitor DataCaptureS3Uri,
ArtifactsBucketName/Arn, VpcId, PrivateSubnetIds; with retraining TrainingPipelineName/Arn,
VpcId, VpcCidrBlock, PrivateSubnetIds.
Outputs: AlarmTopicArn, DashboardName; with retraining RetrainFunctionName (its fixed name) and
RetrainFunctionExists.
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
from awacs.aws import (Allow, ArnLike, Bool, Condition, Deny, Principal, Statement, StringEquals,
                       StringLike)
from troposphere import (Equals, FindInMap, GetAtt, Join, Not, Ref, Select, Split, Sub,
                         awslambda, cloudwatch, ec2, events, iam, sagemaker, sns)

from .. import assets, naming, policies
from ..config import PipelineConfig
from ..config.monitoring import MONITOR_SCHEDULES, MonitoringConfig
from ..outputs import (ALARM_TOPIC_ARN, ARTIFACTS_BUCKET_ARN, ARTIFACTS_BUCKET_NAME, DASHBOARD_NAME,
                       DATA_CAPTURE_URI, DATA_KEY_ARN, EMR_CONSUMER_APPLICATION_ID,
                       ENDPOINT_NAME, ETL_JOB_NAME,
                       PRIVATE_SUBNET_IDS, RETRAIN_FUNCTION_NAME, TRAINING_PIPELINE_ARN,
                       TRAINING_PIPELINE_NAME, VPC_ID)
from ..stage import Stage, StageBuilder
from .common import (INLINE_CODE_LIMIT, control_tower_exceptions, encrypted_log_group,
                     encrypted_queue, https_out_security_group, https_to_endpoints_and_s3)
from . import monitoring_models
from .model_monitor_image import ANALYZER_IMAGE, analyzer_account
from .monitoring_gates import (ALWAYS, Gate, by_gates, common_gate, condition_of, conditionally,
                               element, gate_of)
from .monitoring_metrics import (EMR_CONSUMER_FAILURE_RULE, ETL_FAILURE_RULE,
                                 MONITOR_FAILURE_RULE, MONITOR_VIOLATION_RULE, PERIOD_SECONDS,
                                 RETRAIN_FUNCTION, Local, Named, Source, Watch, alarmed,
                                 emr_consumer_enabled, model_monitor_enabled, retrain_enabled,
                                 watches)

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
# What a processing job in a VPC needs, unscoped (CreateProcessingJob API: Execution Role
# Permissions; see monitor_statements).
PROCESSING_VPC_ACTIONS = (
    awacs.ec2.CreateNetworkInterface, awacs.ec2.CreateNetworkInterfacePermission,
    awacs.ec2.DeleteNetworkInterface, awacs.ec2.DeleteNetworkInterfacePermission,
    awacs.ec2.DescribeNetworkInterfaces, awacs.ec2.DescribeVpcs, awacs.ec2.DescribeDhcpOptions,
    awacs.ec2.DescribeSubnets, awacs.ec2.DescribeSecurityGroups,
)

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
    publishers_use_the_key(b)
    add_email_subscription(b, settings, topic)

    # What exists only with the endpoint or the API service gets their condition (see
    # monitoring_gates.py); local_gates records it for the watches that count these resources.
    rules: list[tuple[events.Rule, Gate]] = []
    if config.stages.etl.enabled:
        rules.append((b.add(etl_failure_rule(b, topic)), ALWAYS))
    if emr_consumer_enabled(config):
        rules.append((b.add(emr_consumer_failure_rule(b, topic)), ALWAYS))
    if model_monitor_enabled(config):
        # CreateMonitoringSchedule needs the endpoint to exist.
        gate = frozenset({b.presence(ENDPOINT_NAME)})
        schedules = add_model_monitor(b, config, key, gate)
        rules += [(b.add(conditionally(b, rule, gate)), gate)
                  for rule in monitor_rules(schedules, topic)]
    local_gates = {rule.title: gate for rule, gate in rules}
    if retrain_enabled(config):
        local_gates[RETRAIN_FUNCTION] = add_retrain(b, config, key, topic, local_gates)

    watched = [(watch, gate_of(b, watch, local_gates)) for watch in watches(config)]
    with_alarms = [(watch, gate) for watch, gate in watched if watch.has_alarm]
    alarms = [(b.add(alarm(b, settings, watch, topic, gate)), gate)
              for watch, gate in with_alarms]
    serving = [made for made, (watch, _) in zip(alarms, with_alarms) if watch.serving]
    if serving:
        alarms.append(serving_degraded_alarm(b, serving, topic))
    b.add(topic_policy(b, topic, alarms, rules))

    dashboard = b.add(cloudwatch.Dashboard(
        "Dashboard",
        DashboardName=b.physical_name(DASHBOARD, "pipeline"),
        DashboardBody=by_gates(
            b, [gate for _, gate in watched + alarms],
            lambda present: dashboard_body(
                b, settings, [w for w, gate in watched if gate <= present],
                [a for a, gate in alarms if gate <= present])),
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


def publishers_use_the_key(b: StageBuilder) -> None:
    """Ask the data key's policy to let the topic's publishers use the key it is encrypted with.

    CloudWatch alarms and EventBridge rules publish to the alarm topic as themselves, and SNS
    then asks KMS for a data key in the publisher's name. Alarms: of this account and region
    only. EventBridge: for topics of this account and region only, by the encryption context
    (it passes no source to limit by).
    """
    # AWS: "Managing Amazon SNS encryption keys and costs" (compatibility between event sources
    # from AWS services and encrypted topics: CloudWatch alarms). Only alarms of this account
    # and region (the confused-deputy guard).
    b.data_key_use(policies.key_use_by_service(
        "AlarmNotificationsByCloudWatch", "cloudwatch.amazonaws.com", policies.KEY_READ_WRITE,
        StringEquals("aws:SourceAccount", Ref("AWS::AccountId")),
        ArnLike("aws:SourceArn", policies.arn("cloudwatch", "alarm:*"))))
    # AWS: "Managing Amazon SNS encryption keys" (SNS Developer Guide): "Adding the
    # aws:SourceAccount and aws:SourceArn to a AWS KMS policy is not supported for
    # EventBridge-to-encrypted topics", so those conditions would refuse every delivery. What
    # every such request does carry is the encryption context SNS binds to the data (the
    # topic's ARN): only topics of this account and region.
    b.data_key_use(policies.key_use_by_service(
        "RuleNotificationsByEventBridge", "events.amazonaws.com", policies.KEY_READ_WRITE,
        StringLike("kms:EncryptionContext:aws:sns:topicArn", policies.arn("sns", "*"))))


def topic_policy(b: StageBuilder, topic: sns.Topic, alarms: Sequence[tuple[Any, Gate]],
                 rules: Sequence[tuple[events.Rule, Gate]]) -> sns.TopicPolicy:
    """Only this stack's alarms and rules publish, only over TLS.

    Statements name each publisher's ARN (aws:SourceArn) and this account (aws:SourceAccount):
    the confused-deputy guard, and the only limit on EventBridge's use of the data key (see
    publishers_use_the_key). A publisher that exists only under a condition is listed
    only under it; a statement whose every publisher is conditional exists only under their
    shared condition.
    """
    topic_arn = Ref(topic)
    statements: list[Any] = [Statement(
        Sid="DenyInsecureTransport",
        Effect=Deny,
        Principal=Principal("*"),
        Action=[awacs.sns.Publish],
        Resource=[topic_arn],
        Condition=Condition(Bool("aws:SecureTransport", "false")),
    )]
    for sid, service, publishers in (("AlarmsPublish", "cloudwatch.amazonaws.com", alarms),
                                     ("RulesPublish", "events.amazonaws.com", rules)):
        if not publishers:
            continue
        gate = common_gate([g for _, g in publishers], f"the topic policy's {sid}")
        # AWS: "Amazon SNS access control case examples" (CloudWatch alarms publishing; the
        # aws:SourceAccount condition) and "Using resource-based policies for Amazon
        # EventBridge" (Amazon SNS permissions): each service publishes as itself.
        statement = Statement(
            Sid=sid,
            Effect=Allow,
            Principal=Principal("Service", service),
            Action=[awacs.sns.Publish],
            Resource=[topic_arn],
            Condition=Condition(StringEquals({
                "aws:SourceAccount": Ref("AWS::AccountId"),
                "aws:SourceArn": [element(b, GetAtt(p, "Arn"), g, within=gate)
                                  for p, g in publishers],
            })),
        )
        statements.append(element(b, statement, gate))
    # A plain document: awacs admits no Fn::If among statements.
    return sns.TopicPolicy("AlarmTopicPolicy", Topics=[topic_arn],
                           PolicyDocument={"Version": policies.POLICY_VERSION,
                                           "Statement": statements})


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


def emr_consumer_failure_rule(b: StageBuilder, topic: sns.Topic) -> events.Rule:
    """AWS: "Monitoring EMR Serverless with EventBridge" (EMR Serverless Job Run State Change,
    detail applicationId, jobRunId, state)."""
    return events.Rule(
        EMR_CONSUMER_FAILURE_RULE,
        Description="A job run of the EMR stream consumer failed",
        State="ENABLED",
        EventPattern={
            "source": ["aws.emr-serverless"],
            "detail-type": ["EMR Serverless Job Run State Change"],
            "detail": {"applicationId": [b.input(EMR_CONSUMER_APPLICATION_ID)],
                       "state": ["FAILED"]},
        },
        Targets=[notify(topic, {"application": "$.detail.applicationId",
                                "run": "$.detail.jobRunId"},
                        "EMR consumer job run <run> of application <application> failed")],
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


def source_text(b: StageBuilder, source: Source) -> str:
    """A dimension value as Fn::Sub text."""
    if isinstance(source, Named):
        return source.text
    return "${" + source_name(b, source) + "}"


def source_value(b: StageBuilder, source: Source) -> Any:
    """A dimension value as a template value."""
    if isinstance(source, Named):
        return Sub(source.text)
    return Ref(source_name(b, source))


def insights_query(b: StageBuilder, watch: Watch) -> Sub:
    """A Metrics Insights query aggregating `watch` over its `across` dimensions."""
    schema = ", ".join([f'"{watch.namespace}"', *(n for n, _ in watch.dimensions), *watch.across])
    where = " AND ".join(f"{n} = '{source_text(b, s)}'" for n, s in watch.dimensions)
    function = _INSIGHTS_FUNCTIONS[watch.statistic]
    return Sub(f"SELECT {function}({watch.metric}) FROM SCHEMA({schema}) WHERE {where}")


# AWS Control Tower's CT.CLOUDWATCH.PR.1 asks every alarm for an action in the ALARM state.
COMPOSITE_MEMBER_EXCEPTION = (
    "CT.CLOUDWATCH.PR.1",
    "A member of the ServingDegradedAlarm composite alarm, which notifies the alarm topic once "
    "per incident; actions here too would notify once per member (\"Combining alarms\", "
    "CloudWatch User Guide: composite alarms reduce alarm noise).")


def alarm(b: StageBuilder, settings: MonitoringConfig, watch: Watch, topic: sns.Topic,
          gate: Gate) -> cloudwatch.Alarm:
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
            Dimensions=[cloudwatch.MetricDimension(Name=n, Value=source_value(b, s))
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
    else:
        props["Metadata"] = control_tower_exceptions(COMPOSITE_MEMBER_EXCEPTION)
    return conditionally(b, cloudwatch.Alarm(
        watch.alarm_id,
        AlarmName=b.physical_name(ALARM, kebab(watch.key)),
        AlarmDescription=f"{watch.stage}: {watch.title}",
        ComparisonOperator=watch.comparison,
        Threshold=b.setting(thresholds, watch.threshold),
        # No data means nothing happened (no traffic, no failed run), not a failure.
        TreatMissingData="notBreaching",
        **props,
    ), gate)


def serving_degraded_alarm(b: StageBuilder, parts: Sequence[tuple[cloudwatch.Alarm, Gate]],
                           topic: sns.Topic) -> tuple[cloudwatch.CompositeAlarm, Gate]:
    """One notification per serving incident, over the alarms that exist: the endpoint's only
    with the endpoint, the API service's only with the service."""
    gate = common_gate([g for _, g in parts], "ServingDegradedAlarm")
    rule = by_gates(b, [g for _, g in parts], lambda present: Sub(" OR ".join(
        f'ALARM("${{{a.title}}}")' for a, g in parts if g <= present)), within=gate)
    return b.add(conditionally(b, cloudwatch.CompositeAlarm(
        "ServingDegradedAlarm",
        AlarmName=b.physical_name(ALARM, "serving-degraded"),
        AlarmDescription="serving: the model API is slow or failing (see the alarms in ALARM)",
        AlarmRule=rule,
        AlarmActions=[Ref(topic)],
        OKActions=[Ref(topic)],
    ), gate)), gate


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
            metric += [name, source_text(b, source)]
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


def add_model_monitor(b: StageBuilder, config: PipelineConfig, key: Ref,
                      gate: Gate) -> list[sagemaker.MonitoringSchedule]:
    """Data quality, and model quality, bias drift and feature attribution drift when on
    (monitoring_models.py): their schedules."""
    monitor = config.stages.monitoring.model_monitor
    b.input(ARTIFACTS_BUCKET_NAME)  # named in the baseline and report URIs below
    bias_analysis = (monitoring_models.bias_config_asset(b, config)
                     if config.stages.monitoring.runs_bias_drift(config) else None)
    explainability_analysis = (monitoring_models.explainability_config_asset(b, config)
                               if config.stages.monitoring.runs_feature_attribution(config)
                               else None)
    security_group = b.add(ec2.SecurityGroup(
        "MonitorSecurityGroup",
        GroupDescription="Model Monitor runs: HTTPS out only",
        VpcId=b.input(VPC_ID),
        SecurityGroupEgress=https_to_endpoints_and_s3(b, config),
    ))
    role = b.add(iam.Role(
        "MonitorRole",
        Description="Model Monitor runs: read captured data and the baseline, write reports",
        # The confused-deputy guard SageMaker documents for execution roles: this account, and
        # a SageMaker resource of this account and region (the schedule's processing jobs)
        # asking (SageMaker Developer Guide, Cross-service confused deputy prevention).
        AssumeRolePolicyDocument=policies.trusted_by(
            "sagemaker.amazonaws.com",
            StringEquals("aws:SourceAccount", Ref("AWS::AccountId")),
            ArnLike("aws:SourceArn", policies.arn("sagemaker", "*"))),
        Policies=[iam.Policy(PolicyName="model-monitor", PolicyDocument=policies.document(
            monitor_statements(b, config, key, security_group, bias_analysis,
                               explainability_analysis)))]
        + (b.asset_key_policies() if bias_analysis or explainability_analysis else []),
        Metadata={"checkov": {"skip": [
            {"id": check, "comment": "The network interface actions of a processing job in a "
                                     "VPC must be unscoped: 'Don't scope in the policy with "
                                     "any conditions or resource filters. Otherwise, the "
                                     "validation checks that occur during the creation of the "
                                     "processing job fail' (SageMaker, CreateProcessingJob API: "
                                     "Execution Role Permissions)."}
            for check in ("CKV_AWS_109", "CKV_AWS_111")]}},
    ))
    b.template.add_mapping(SCHEDULES_MAPPING, {
        name: {"Expression": expression} for name, expression in MONITOR_SCHEDULES.items()})
    resources = sagemaker.MonitoringResources(ClusterConfig=sagemaker.ClusterConfig(
        InstanceCount=b.setting(monitor, "instance_count"),
        InstanceType=b.setting(monitor, "instance_type"),
        VolumeSizeInGB=b.setting(monitor, "volume_size_gb"),
        VolumeKmsKeyId=key,
    ))
    network = sagemaker.NetworkConfig(
        EnableInterContainerTrafficEncryption=True,
        VpcConfig=sagemaker.VpcConfig(
            SecurityGroupIds=[GetAtt(security_group, "GroupId")],
            Subnets=b.input(PRIVATE_SUBNET_IDS),
        ),
    )
    definition = b.add(conditionally(b, sagemaker.DataQualityJobDefinition(
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
        JobResources=resources,
        NetworkConfig=network,
        RoleArn=GetAtt(role, "Arn"),
        StoppingCondition=sagemaker.StoppingCondition(
            MaxRuntimeInSeconds=b.setting(monitor, "max_runtime_seconds")),
    ), gate))
    schedules = [b.add(conditionally(b, sagemaker.MonitoringSchedule(
        "DataQualitySchedule",
        MonitoringScheduleName=b.physical_name(naming.SAGEMAKER, "data-quality"),
        EndpointName=Ref(ENDPOINT_NAME.name),
        MonitoringScheduleConfig=sagemaker.MonitoringScheduleConfig(
            MonitoringJobDefinitionName=GetAtt(definition, "JobDefinitionName"),
            MonitoringType="DataQuality",
            ScheduleConfig=sagemaker.ScheduleConfig(ScheduleExpression=FindInMap(
                SCHEDULES_MAPPING, b.setting(monitor, "schedule"), "Expression")),
        ),
    ), gate))]
    shared = monitoring_models.Shared(role, resources, network, key, SCHEDULES_MAPPING)
    if config.stages.monitoring.runs_model_quality(config):
        schedules.append(monitoring_models.add_model_quality(b, config, shared, gate))
    if bias_analysis is not None:
        schedules.append(monitoring_models.add_bias_drift(b, config, shared, gate,
                                                          bias_analysis))
    if explainability_analysis is not None:
        schedules.append(monitoring_models.add_feature_attribution(
            b, config, shared, gate, explainability_analysis))
    return schedules


def monitor_statements(b: StageBuilder, config: PipelineConfig, key: Ref,
                       security_group: ec2.SecurityGroup,
                       bias_analysis: Any = None,
                       explainability_analysis: Any = None) -> list[Statement]:
    """A monitoring run is a processing job: "CreateProcessingJob API: Execution Role
    Permissions" (AWS: "How to use SageMaker AI execution roles", SageMaker Developer Guide)
    lists what its role needs, scoped here to the inputs and outputs the job definition
    names."""
    monitor = config.stages.monitoring.model_monitor
    artifacts = b.input(ARTIFACTS_BUCKET_ARN)
    b.input(DATA_CAPTURE_URI)
    capture_objects = Sub("arn:${AWS::Partition}:s3:::${Path}*", Path=_capture_path())
    capture_bucket = Sub("arn:${AWS::Partition}:s3:::${Bucket}",
                         Bucket=Select(0, Split("/", _capture_path())))
    baseline = Sub("${%s}/%s*" % (ARTIFACTS_BUCKET_ARN.name, monitor.baseline_prefix))
    reports = Sub("${%s}/%s*" % (ARTIFACTS_BUCKET_ARN.name, monitor.reports_prefix))
    monitoring = config.stages.monitoring
    # Model quality and bias drift also read the ground-truth labels (their GroundTruthS3Input).
    ground_truth = (monitoring.runs_model_quality(config)
                    or monitoring.runs_bias_drift(config))
    listed = [f"{monitor.baseline_prefix}*"] + ([f"{monitor.ground_truth_prefix}*"]
                                                if ground_truth else [])
    read = [capture_objects, baseline] + ([Sub("${%s}/%s*" % (
        ARTIFACTS_BUCKET_ARN.name, monitor.ground_truth_prefix))] if ground_truth else [])
    namespaces = [MONITOR_METRICS_NAMESPACE] + (
        [monitoring_models.QUALITY_NAMESPACE] if monitoring.runs_model_quality(config) else []
    ) + ([monitoring_models.BIAS_NAMESPACE] if bias_analysis is not None else []) + (
        [monitoring_models.EXPLAINABILITY_NAMESPACE] if explainability_analysis is not None
        else [])
    configs = [a.object_arn for a in (bias_analysis, explainability_analysis) if a is not None]
    return [
        # AWS: that page: s3:ListBucket ("scope ... to a specific bucket that you specify as the
        # ProcessingInputs") and s3:GetObject on the inputs: the captured requests (under the
        # capture URI) and the baseline. The capture listing cannot carry an s3:prefix
        # condition: the wire is a URI, and CloudFormation cannot cut the bucket off it
        # (Fn::Split takes no computed delimiter); object reads stay scoped.
        Statement(Effect=Allow, Action=[awacs.s3.ListBucket], Resource=[capture_bucket]),
        Statement(Effect=Allow, Action=[awacs.s3.ListBucket], Resource=[artifacts],
                  Condition=Condition(StringLike(
                      "s3:prefix", listed if len(listed) > 1 else listed[0]))),
        Statement(Effect=Allow, Action=[awacs.s3.GetObject], Resource=read),
        # AWS: same page (inputs): the Clarify monitors read their analysis configurations
        # (their ConfigUri, assets of this stack).
        *([assets.read_statement(configs)] if configs else []),
        *(shadow_endpoint_statements(b) if explainability_analysis is not None else []),
        # AWS: same page: and s3:PutObject on the outputs: the reports.
        Statement(Effect=Allow, Action=[awacs.s3.PutObject], Resource=[reports]),
        # AWS: same page: kms:Decrypt for SSE-KMS inputs, kms:Encrypt for the output KmsKeyId;
        # S3 asks KMS for a data key when it writes under the key (Amazon S3, Using
        # server-side encryption with AWS KMS keys: kms:GenerateDataKey).
        policies.use_key(key, [awacs.kms.Decrypt, awacs.kms.Encrypt, awacs.kms.GenerateDataKey],
                         via_services=("s3",)),
        # AWS: same page: kms:CreateGrant for the volume KMS key, which SageMaker uses through a
        # grant for the instance's volume; kms:GrantIsForAWSResource exists on grant requests
        # only (AWS KMS, Controlling access to grants).
        Statement(
            Effect=Allow,
            Action=[awacs.kms.CreateGrant],
            Resource=[key],
            Condition=Condition(Bool("kms:GrantIsForAWSResource", "true")),
        ),
        # AWS: "Requirements for Amazon EBS encryption" ("Permissions for users":
        # kms:DescribeKey beside kms:CreateGrant): the volume is an EBS volume under the data
        # key; a
        # describe request carries no grant condition key, so it stands alone, through
        # SageMaker only.
        Statement(
            Effect=Allow,
            Action=[awacs.kms.DescribeKey],
            Resource=[key],
            Condition=Condition(StringEquals(
                "kms:ViaService", Sub("sagemaker.${AWS::Region}.amazonaws.com"))),
        ),
        # AWS: same page (CreateProcessingJob): cloudwatch:PutMetricData has no resource-level
        # permission; the
        # namespace condition keeps the role to Model Monitor's metrics.
        Statement(
            Effect=Allow,
            Action=[awacs.cloudwatch.PutMetricData],
            Resource=["*"],
            Condition=Condition(StringEquals(
                "cloudwatch:namespace",
                namespaces if len(namespaces) > 1 else MONITOR_METRICS_NAMESPACE)),
        ),
        # AWS: same page (CreateProcessingJob): the logs actions, on the processing jobs' log
        # group.
        Statement(
            Effect=Allow,
            Action=[awacs.logs.CreateLogGroup, awacs.logs.CreateLogStream,
                    awacs.logs.PutLogEvents, awacs.logs.DescribeLogStreams],
            Resource=[policies.arn("logs", f"log-group:{PROCESSING_LOG_GROUP}:*")],
        ),
        # "If you specify a private VPC for your processing job, add the following permissions.
        # Don't scope in the policy with any conditions or resource filters. Otherwise, the
        # validation checks that occur during the creation of the processing job fail." (the
        # same page; AWS: "How to use SageMaker AI execution roles"): the only place these
        # have "*".
        Statement(Effect=Allow, Action=list(PROCESSING_VPC_ACTIONS), Resource=["*"]),
    ]


def shadow_endpoint_statements(b: StageBuilder) -> list[Statement]:
    """Feature attribution runs call a shadow endpoint Clarify makes of the monitored endpoint's
    model (the analysis configuration names no model: the SageMaker Python SDK's ClarifyCheckStep
    drops model_name from the monitor's configuration)."""
    return [
        # AWS: "Give Amazon SageMaker Clarify Jobs Access to Resources in Your Amazon VPC" (the
        # job calls the SageMaker API "to describe a SageMaker AI model for Amazon VPC
        # validation"): the monitored endpoint, its configuration and model. Describe only, of
        # this account and region: the role exists before the endpoint (its name is a wire
        # under HasEndpoint), and no wire carries the configuration's or model's names.
        Statement(
            Effect=Allow,
            Action=[awacs.sagemaker.DescribeEndpoint, awacs.sagemaker.DescribeEndpointConfig,
                    awacs.sagemaker.DescribeModel],
            Resource=[policies.arn("sagemaker", "endpoint/*"),
                      policies.arn("sagemaker", "endpoint-config/*"),
                      policies.arn("sagemaker", "model/*")],
        ),
        *monitoring_models.shadow_endpoint_statements(),
    ]


def monitor_rules(schedules: Sequence[sagemaker.MonitoringSchedule],
                  topic: sns.Topic) -> list[events.Rule]:
    """A monitoring run is a processing job whose event names the schedule; with violations it
    completes with an exit message starting `CompletedWithViolations`. One pair of rules for
    every schedule (data quality, model quality, bias drift): a violation of any is drift."""
    def pattern(detail: dict) -> dict:
        return {
            "source": ["aws.sagemaker"],
            "detail-type": ["SageMaker Processing Job State Change"],
            "detail": {"MonitoringScheduleArn": [GetAtt(schedule, "MonitoringScheduleArn")
                                                 for schedule in schedules],
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


def add_retrain(b: StageBuilder, config: PipelineConfig, key: Ref, topic: sns.Topic,
                local_gates: dict[str, Gate]) -> Gate:
    """The retrain Lambda and its subscription to the drift alarms. It exists while one of its
    triggers does (with Model Monitor: once the endpoint exists); returns that gate."""
    retrain = config.stages.monitoring.retrain
    triggers = [(w, gate_of(b, w, local_gates)) for w in alarmed(config) if w.retrain]
    gate = common_gate([g for _, g in triggers], "the retrain Lambda")
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
    name = b.physical_name(naming.LAMBDA_FUNCTION, "retrain")
    function = b.add(conditionally(b, awslambda.Function(
        RETRAIN_FUNCTION,
        FunctionName=name,
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
            # Names of the triggers that exist (an absent one is an empty item, skipped).
            "TRIGGER_ALARMS": Join(",", [element(b, Ref(w.alarm_id), g, within=gate,
                                                 otherwise="") for w, g in triggers]),
            "COOLDOWN_HOURS": b.setting(retrain, "cooldown_hours"),
        }),
        VpcConfig=awslambda.VPCConfig(
            SubnetIds=b.input(PRIVATE_SUBNET_IDS), SecurityGroupIds=[Ref(security_group)]),
        TracingConfig=awslambda.TracingConfig(Mode="Active"),
        LoggingConfig=awslambda.LoggingConfig(LogGroup=Ref(log_group)),
        # SNS invokes asynchronously: a message still failing after Lambda's retries lands here.
        DeadLetterConfig=awslambda.DeadLetterConfig(TargetArn=GetAtt(dead_letters, "Arn")),
    ), gate))
    permission = b.add(conditionally(b, awslambda.Permission(
        "RetrainTopicPermission",
        Action="lambda:InvokeFunction",
        FunctionName=GetAtt(function, "Arn"),
        Principal="sns.amazonaws.com",
        SourceArn=Ref(topic),
        SourceAccount=Ref("AWS::AccountId"),
    ), gate))
    b.add(conditionally(b, sns.SubscriptionResource(
        "RetrainSubscription",
        DependsOn=[permission.title],
        TopicArn=Ref(topic),
        Protocol="lambda",
        Endpoint=GetAtt(function, "Arn"),
        # Only drift alarms entering ALARM reach the function (the handler checks again).
        FilterPolicyScope="MessageBody",
        FilterPolicy={"AlarmName": [element(b, Ref(w.alarm_id), g, within=gate)
                                    for w, g in triggers],
                      "NewStateValue": ["ALARM"]},
    ), gate))
    # The fixed name, known before the function exists (a conditional wire, outputs.py).
    b.output(RETRAIN_FUNCTION_NAME, name, condition=condition_of(b, gate) or True)
    return gate


def retrain_statements(b: StageBuilder, key: Ref, dead_letters: Any, log_group: Any,
                       security_group: ec2.SecurityGroup) -> list[Statement]:
    return [
        # AWS: "Amazon SageMaker AI API Permissions: Actions, Permissions, and Resources
        # Reference": what data/retrain.py calls, StartPipelineExecution, and
        # ListPipelineExecutions for the cool-down (IAM's service reference scopes both to the
        # pipeline).
        Statement(
            Effect=Allow,
            Action=[awacs.sagemaker.StartPipelineExecution,
                    awacs.sagemaker.ListPipelineExecutions],
            Resource=[b.input(TRAINING_PIPELINE_ARN)],
        ),
        # AWS: "Adding a dead-letter queue" (Lambda Developer Guide): "To send events to a
        # queue, your function's execution role needs sqs:SendMessage".
        Statement(Effect=Allow, Action=[awacs.sqs.SendMessage],
                  Resource=[GetAtt(dead_letters, "Arn")]),
        # AWS: "Encryption at rest in Amazon SQS" (key management: "Allow a producer to send
        # messages to a queue with SSE"): the queue is encrypted with the data key, a producer
        # needs kms:GenerateDataKey and kms:Decrypt.
        policies.key_use_in_context(key, [awacs.kms.GenerateDataKey, awacs.kms.Decrypt], "sqs",
                                    "aws:sqs:arn", [GetAtt(dead_letters, "Arn")]),
        # AWS: "Defining Lambda function permissions with an execution role"
        # (AWSLambdaBasicExecutionRole): function logs, its own group only; the group exists,
        # so no logs:CreateLogGroup.
        Statement(
            Effect=Allow,
            Action=[awacs.logs.CreateLogStream, awacs.logs.PutLogEvents],
            Resource=[policies.arn("logs", "log-group:${%s}:*" % log_group.title)],
        ),
        *network_interface_statements(security_group),
        # AWS: "Visualize Lambda function invocations using AWS X-Ray" (active tracing:
        # xray:PutTraceSegments, xray:PutTelemetryRecords); no resource-level permissions.
        Statement(Effect=Allow,
                  Action=[awacs.xray.PutTraceSegments, awacs.xray.PutTelemetryRecords],
                  Resource=["*"]),
    ]


def network_interface_statements(security_group: ec2.SecurityGroup) -> list[Statement]:
    """What Lambda needs to place a function's network interfaces in the VPC (AWS: "Giving
    Lambda functions access to resources in an Amazon VPC", Lambda Developer Guide: the actions
    of AWSLambdaVPCAccessExecutionRole)."""
    network_interfaces = policies.arn("ec2", "network-interface/*")
    return [
        Statement(
            Effect=Allow,
            Action=[awacs.ec2.CreateNetworkInterface],
            Resource=[network_interfaces, policies.arn("ec2", "subnet/*"),
                      policies.arn("ec2", "security-group/${%s.GroupId}" % security_group.title)],
        ),
        Statement(Effect=Allow,
                  Action=[awacs.ec2.DeleteNetworkInterface, awacs.ec2.AssignPrivateIpAddresses,
                          awacs.ec2.UnassignPrivateIpAddresses],
                  Resource=[network_interfaces]),
        # EC2 Describe actions have no resource-level permissions.
        Statement(Effect=Allow,
                  Action=[awacs.ec2.DescribeNetworkInterfaces, awacs.ec2.DescribeSubnets],
                  Resource=["*"]),
    ]
