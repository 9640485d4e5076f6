"""The monitoring stage: alarms and dashboard exactly for the enabled stages, an encrypted alarm
topic, Model Monitor over the endpoint's captured data, and the retrain Lambda."""

import json
import re

import cfnlint.api
import pytest

from mlops_cfn.config import PipelineConfig
from mlops_cfn.errors import UserError
from mlops_cfn.outputs import (ALARM_TOPIC_ARN, CONSUMER_FUNCTION_NAME, DASHBOARD_NAME,
                               DATA_CAPTURE_URI, ECS_CLUSTER_NAME, ENDPOINT_NAME, ETL_JOB_NAME,
                               PRIVATE_SUBNET_IDS, RETRAIN_FUNCTION_NAME, STREAM_NAME,
                               TRAINING_PIPELINE_ARN, TRAINING_PIPELINE_NAME)
from mlops_cfn.stages import monitoring
from tests.helpers import (config_with, only_resource, resources_of_type, template_dict,
                           statements, with_action)

KEY = {"Ref": "DataKeyArn"}
TOPIC = {"Ref": "AlarmTopic"}

STREAM_ALARMS = {"StreamIteratorAgeAlarm", "StreamWriteThrottlesAlarm", "DeliveryFreshnessAlarm",
                 "DeliverySuccessAlarm"}
CONSUMER_ALARMS = {"ConsumerErrorsAlarm", "ConsumerFailuresAlarm"}
ENDPOINT_ALARMS = {"EndpointModelLatencyAlarm", "Endpoint4xxErrorsAlarm",
                   "Endpoint5xxErrorsAlarm"}
MONITOR_ALARMS = {"MonitorViolationsAlarm"}
API_ALARMS = {"ServiceCpuAlarm", "ServiceMemoryAlarm", "Target5xxErrorsAlarm",
              "LoadBalancer5xxErrorsAlarm", "TargetResponseTimeAlarm"}
RETRAIN_ALARMS = {"RetrainErrorsAlarm"}
# Graphs without an alarm of their own: the EventBridge rules notify for each match.
ETL_GRAPHS = 1  # ETL job failures
MONITOR_GRAPHS = 1  # Model Monitor failures (violations have an alarm)


def config(*, ingestion: bool = True, consumer: bool = True, etl: bool = False,
           serving: str | None = None, training: bool = False, model_monitor: bool | dict = True,
           retrain: bool = True, env: str = "dev", **monitoring_changes) -> PipelineConfig:
    """The bundled config with monitoring on and the producers toggled as given.

    etl, serving and training are switched on by copying the config rather than loading it, so
    these tests do not depend on those stages' own settings or rules; only their switch (and
    serving's target) matters here. `model_monitor` is a switch or that section's changes.
    """
    if isinstance(model_monitor, bool):
        model_monitor = {"enabled": model_monitor}
    # Retraining is left at its default unless switched off: switched on explicitly without
    # Model Monitor it is an error (config/switches.py), at its default it only does not apply.
    retraining = {} if retrain else {"retrain": {"enabled": False}}
    loaded = config_with({"stages": {
        "ingestion": {"enabled": ingestion, "consumer": {"enabled": consumer}},
        "monitoring": {"enabled": True, "model_monitor": model_monitor, **retraining,
                       **monitoring_changes},
    }}, env=env).config
    stages = loaded.stages
    updates = {
        "etl": stages.etl.model_copy(update={"enabled": etl}),
        "training": stages.training.model_copy(update={"enabled": training}),
        "serving": stages.serving.model_copy(
            update={"enabled": serving is not None, "target": serving or "sagemaker"}),
    }
    return loaded.model_copy(update={"stages": stages.model_copy(update=updates)})


def build(**kwargs):
    return monitoring.build(config(**kwargs))


def template(**kwargs) -> dict:
    return template_dict(build(**kwargs))


def alarms(t: dict) -> dict[str, dict]:
    return resources_of_type(t, "AWS::CloudWatch::Alarm")


def dashboard(t: dict, absent: tuple[str, ...] = ()) -> dict:
    """The dashboard body as data: `${Name}` numbers become 0, other references stay text."""
    return json.loads(re.sub(r":\$\{[A-Za-z0-9]+\}", ":0", dashboard_text(t, absent)))


def dashboard_text(t: dict, absent: tuple[str, ...] = ()) -> str:
    """The body CloudWatch gets when the conditions in `absent` are false and all others true
    (by default: once the endpoint and the API service exist)."""
    body = only_resource(t, "AWS::CloudWatch::Dashboard")["Properties"]["DashboardBody"]
    while isinstance(body, dict) and "Fn::If" in body:
        condition, when_true, when_false = body["Fn::If"]
        body = when_false if condition in absent else when_true
    return body["Fn::Sub"] if isinstance(body, dict) else body


def graphs(t: dict) -> list[dict]:
    return [w for w in dashboard(t)["widgets"] if w["type"] == "metric"]




def lint(stage) -> list:
    return cfnlint.api.lint(stage.template.to_yaml(),
                            config=cfnlint.api.ManualArgs(regions=["us-east-1"]))


# --- alarms and graphs exactly for the enabled stages -------------------------------------------

SCENARIOS = {
    "nothing-to-watch": (dict(ingestion=False), set(), 0),
    "ingestion": (dict(consumer=False), STREAM_ALARMS, 4),
    "ingestion-and-consumer": (dict(), STREAM_ALARMS | CONSUMER_ALARMS, 6),
    "with-etl": (dict(etl=True), STREAM_ALARMS | CONSUMER_ALARMS, 6 + ETL_GRAPHS),
    "sagemaker": (dict(ingestion=False, serving="sagemaker"), ENDPOINT_ALARMS | MONITOR_ALARMS,
                  3 + 1 + MONITOR_GRAPHS),
    "sagemaker-training": (dict(ingestion=False, serving="sagemaker", training=True),
                           ENDPOINT_ALARMS | MONITOR_ALARMS | RETRAIN_ALARMS,
                           3 + 1 + MONITOR_GRAPHS + 1),
    "sagemaker-without-model-monitor": (
        dict(ingestion=False, serving="sagemaker", training=True, model_monitor=False),
        ENDPOINT_ALARMS, 3),
    "sagemaker-training-without-retrain": (
        dict(ingestion=False, serving="sagemaker", training=True, retrain=False),
        ENDPOINT_ALARMS | MONITOR_ALARMS, 3 + 1 + MONITOR_GRAPHS),
    "fargate-training": (dict(ingestion=False, serving="fargate", training=True), API_ALARMS, 5),
    "everything": (dict(etl=True, serving="both", training=True),
                   STREAM_ALARMS | CONSUMER_ALARMS | ENDPOINT_ALARMS | MONITOR_ALARMS
                   | API_ALARMS | RETRAIN_ALARMS,
                   6 + ETL_GRAPHS + 3 + 1 + MONITOR_GRAPHS + 5 + 1),
}


@pytest.mark.parametrize("name", SCENARIOS)
def test_alarms_exist_exactly_for_the_enabled_stages(name):
    toggles, expected, _ = SCENARIOS[name]
    assert set(alarms(template(**toggles))) == expected


@pytest.mark.parametrize("name", SCENARIOS)
def test_dashboard_graphs_exist_exactly_for_the_enabled_stages(name):
    toggles, _, expected_graphs = SCENARIOS[name]
    assert len(graphs(template(**toggles))) == expected_graphs


@pytest.mark.parametrize("name", [name for name, (_, expected, _) in SCENARIOS.items()
                                  if expected])
def test_every_alarm_has_its_graph_with_its_threshold(name):
    t = template(**SCENARIOS[name][0])
    body = dashboard_text(t)
    assert set(alarms(t)) == SCENARIOS[name][1]
    for logical_id, alarm in alarms(t).items():
        threshold = alarm["Properties"]["Threshold"]["Ref"]
        assert f'"value":${{{threshold}}}' in body, logical_id
        assert f"${{{logical_id}.Arn}}" in body, logical_id


def test_dashboard_rows_follow_the_watched_stages():
    t = template(etl=True, serving="both", training=True)
    headings = [w["properties"]["markdown"] for w in dashboard(t)["widgets"]
                if w["type"] == "text"]
    assert headings == ["## ingestion", "## etl", "## serving", "## monitoring"]


def test_inputs_are_declared_only_for_the_enabled_producers():
    quiet = {w.name for w in build(ingestion=False).inputs}
    assert quiet == {"DataKeyArn"}
    busy = {w.name for w in build(etl=True, serving="both", training=True).inputs}
    assert {STREAM_NAME.name, CONSUMER_FUNCTION_NAME.name, ETL_JOB_NAME.name, ENDPOINT_NAME.name,
            DATA_CAPTURE_URI.name, ECS_CLUSTER_NAME.name, TRAINING_PIPELINE_ARN.name} <= busy
    fargate = {w.name for w in build(ingestion=False, serving="fargate").inputs}
    assert ENDPOINT_NAME.name not in fargate and ECS_CLUSTER_NAME.name in fargate


# --- alarm details ------------------------------------------------------------------------------

def test_thresholds_are_settings_so_environments_render_the_same_template():
    changed = {"thresholds": {"stream_iterator_age_ms": 123457, "service_cpu_percent": 61}}
    one = monitoring.build(config(serving="both", training=True, **changed)).template.to_yaml()
    other = monitoring.build(config(serving="both", training=True)).template.to_yaml()
    assert one == other
    assert "123457" not in one
    props = alarms(template())["StreamIteratorAgeAlarm"]["Properties"]
    assert props["Threshold"] == {"Ref": "StreamIteratorAgeThresholdMs"}


def test_level_alarms_use_the_evaluation_settings_and_count_alarms_the_last_period():
    found = alarms(template())
    level = found["StreamIteratorAgeAlarm"]["Properties"]
    assert level["EvaluationPeriods"] == {"Ref": "AlarmEvaluationPeriods"}
    assert level["DatapointsToAlarm"] == {"Ref": "AlarmDatapointsToAlarm"}
    count = found["ConsumerErrorsAlarm"]["Properties"]
    assert (count["EvaluationPeriods"], count["DatapointsToAlarm"]) == (1, 1)


def test_alarms_watch_the_producers_resources_by_their_wires():
    found = alarms(template())
    age = found["StreamIteratorAgeAlarm"]["Properties"]
    assert (age["Namespace"], age["MetricName"], age["Statistic"]) == (
        "AWS/Kinesis", "GetRecords.IteratorAgeMilliseconds", "Maximum")
    assert age["Dimensions"] == [{"Name": "StreamName", "Value": {"Ref": "IngestStreamName"}}]
    success = found["DeliverySuccessAlarm"]["Properties"]
    assert success["ComparisonOperator"] == "LessThanThreshold"
    assert success["Dimensions"] == [
        {"Name": "DeliveryStreamName", "Value": {"Ref": "DeliveryStreamName"}}]


def test_endpoint_alarms_aggregate_over_variants_with_a_metrics_insights_query():
    props = alarms(template(ingestion=False, serving="sagemaker"))["Endpoint5xxErrorsAlarm"][
        "Properties"]
    [query] = props["Metrics"]
    assert query["ReturnData"] is True and query["Period"] == 300
    assert query["Expression"]["Fn::Sub"] == (
        'SELECT SUM(Invocation5XXErrors) FROM SCHEMA("AWS/SageMaker", EndpointName, VariantName) '
        "WHERE EndpointName = '${EndpointName}'")
    assert "MetricName" not in props


def test_alarms_notify_the_topic_on_alarm_and_recovery():
    found = alarms(template())
    assert found
    for logical_id, alarm in found.items():
        props = alarm["Properties"]
        assert props["AlarmActions"] == [TOPIC] and props["OKActions"] == [TOPIC], logical_id
        assert props["TreatMissingData"] == "notBreaching"
        assert "${EnvironmentName}" in props["AlarmName"]["Fn::Sub"]


def composite_parts(rule: dict) -> set[str]:
    return set(re.findall(r'ALARM\("\$\{(\w+)\}"\)', rule["Fn::Sub"]))


def test_serving_degraded_composite_notifies_in_place_of_its_parts():
    t = template(ingestion=False, serving="both")
    composite = only_resource(t, "AWS::CloudWatch::CompositeAlarm")["Properties"]
    # The endpoint's alarms take part once the endpoint exists; the load balancer's always.
    condition, with_endpoint, without = composite["AlarmRule"]["Fn::If"]
    assert condition == "HasEndpoint"
    parts = composite_parts(with_endpoint)
    assert parts == {"EndpointModelLatencyAlarm", "Endpoint5xxErrorsAlarm", "Target5xxErrorsAlarm",
                     "LoadBalancer5xxErrorsAlarm", "TargetResponseTimeAlarm"}
    assert composite_parts(without) == parts - {"EndpointModelLatencyAlarm",
                                                "Endpoint5xxErrorsAlarm"}
    assert composite["AlarmActions"] == [TOPIC]
    found = alarms(t)
    for part in parts:
        assert "AlarmActions" not in found[part]["Properties"], part
    assert found["Endpoint4xxErrorsAlarm"]["Properties"]["AlarmActions"] == [TOPIC]


def test_no_composite_without_serving():
    assert not resources_of_type(template(), "AWS::CloudWatch::CompositeAlarm")


# --- what watches the endpoint or the API service exists only with them --------------------------
# Serving names both before they exist (a first deployment has no model and no image); the
# wires carry their presence (outputs.py) and monitoring gates on it.

def test_serving_presence_arrives_as_parameters_and_conditions():
    t = template(ingestion=False, serving="both")
    for wire, condition in (("EndpointExists", "HasEndpoint"),
                            ("ApiServiceExists", "HasApiService")):
        assert t["Parameters"][wire]["AllowedValues"] == ["true", "false"]
        assert t["Conditions"][condition] == {"Fn::Equals": [{"Ref": wire}, "true"]}


def test_alarms_on_the_endpoint_or_the_api_service_exist_only_with_them():
    t = template(ingestion=False, serving="both", training=True)
    conditions = {name: alarm.get("Condition") for name, alarm in alarms(t).items()}
    assert conditions == {
        **{name: "HasEndpoint" for name in ENDPOINT_ALARMS | MONITOR_ALARMS | RETRAIN_ALARMS},
        "ServiceCpuAlarm": "HasApiService", "ServiceMemoryAlarm": "HasApiService",
        # The load balancer and its target group exist from the first deployment on.
        "Target5xxErrorsAlarm": None, "LoadBalancer5xxErrorsAlarm": None,
        "TargetResponseTimeAlarm": None}


def test_the_composite_over_endpoint_alarms_only_exists_with_the_endpoint():
    t = template(ingestion=False, serving="sagemaker")
    composite = t["Resources"]["ServingDegradedAlarm"]
    assert composite["Condition"] == "HasEndpoint"
    assert composite_parts(composite["Properties"]["AlarmRule"]) == {
        "EndpointModelLatencyAlarm", "Endpoint5xxErrorsAlarm"}


def test_model_monitor_and_its_rules_exist_only_with_the_endpoint():
    t = monitored()
    for name in ("DataQualityJobDefinition", "DataQualitySchedule", "MonitorViolationRule",
                 "MonitorFailureRule"):
        assert t["Resources"][name]["Condition"] == "HasEndpoint", name


def test_the_retrain_lambda_exists_once_its_drift_alarm_does():
    t = monitored()
    for name in ("RetrainFunction", "RetrainTopicPermission", "RetrainSubscription"):
        assert t["Resources"][name]["Condition"] == "HasEndpoint", name


def test_the_dashboard_shows_what_exists_and_nothing_else():
    t = template(ingestion=False, serving="both")
    first = dashboard_text(t, absent=("HasEndpoint", "HasApiService"))
    assert "EndpointName" not in first and "EcsServiceName" not in first
    assert "${Target5xxErrorsAlarm.Arn}" in first
    assert "${EndpointModelLatencyAlarm.Arn}" not in first
    endpoint_only = dashboard_text(t, absent=("HasApiService",))
    assert "${EndpointName}" in endpoint_only and "EcsServiceName" not in endpoint_only
    assert "${ServiceCpuAlarm.Arn}" not in endpoint_only
    both = dashboard_text(t)
    assert "${EndpointName}" in both and "${EcsServiceName}" in both
    # Everything: endpoint 3, API 5, Model Monitor 2. Before either exists: the 3 graphs of the
    # load balancer and its targets.
    assert len(graphs(t)) == 3 + 5 + 1 + MONITOR_GRAPHS
    assert len([w for w in dashboard(t, absent=("HasEndpoint", "HasApiService"))["widgets"]
                if w["type"] == "metric"]) == 3


# --- topic --------------------------------------------------------------------------------------

def test_topic_is_encrypted_with_the_data_key_and_offered():
    t = template()
    topic = only_resource(t, "AWS::SNS::Topic")["Properties"]
    assert topic["KmsMasterKeyId"] == KEY
    assert t["Outputs"][ALARM_TOPIC_ARN.name]["Value"] == TOPIC
    assert t["Outputs"][DASHBOARD_NAME.name]["Value"] == {"Ref": "Dashboard"}


def test_email_subscription_only_when_an_address_is_set():
    t = template()
    subscription = t["Resources"]["AlarmEmailSubscription"]
    assert subscription["Condition"] == "HasAlarmEmail"
    assert subscription["Properties"]["Endpoint"] == {"Ref": "AlarmEmail"}
    assert t["Conditions"]["HasAlarmEmail"] == {"Fn::Not": [{"Fn::Equals": [
        {"Ref": "AlarmEmail"}, ""]}]}


def test_email_is_a_setting_and_a_bad_address_is_refused():
    one = monitoring.build(config(alarm_email="ops@example.com")).template.to_yaml()
    assert "ops@example.com" not in one
    with pytest.raises(UserError) as error:
        config_with({"stages": {"monitoring": {"alarm_email": "not an address"}}})
    assert "stages.monitoring.alarm_email" in str(error.value)


def test_only_this_stacks_alarms_and_rules_publish_and_only_over_tls():
    t = template(etl=True, serving="sagemaker")
    policy = only_resource(t, "AWS::SNS::TopicPolicy")["Properties"]
    assert policy["Topics"] == [TOPIC]
    by_sid = {s["Sid"]: s for s in policy["PolicyDocument"]["Statement"]}
    deny = by_sid["DenyInsecureTransport"]
    assert deny["Effect"] == "Deny"
    assert deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    alarms_publish = by_sid["AlarmsPublish"]
    assert alarms_publish["Principal"] == {"Service": "cloudwatch.amazonaws.com"}
    sources = publishers(alarms_publish)
    assert set(sources) == set(alarms(t)) | {"ServingDegradedAlarm"}
    # A publisher that exists only with the endpoint is listed only with it.
    for name, condition in sources.items():
        assert condition == t["Resources"][name].get("Condition"), name
    assert sources["EndpointModelLatencyAlarm"] == "HasEndpoint"
    assert sources["StreamIteratorAgeAlarm"] is None
    rules_publish = by_sid["RulesPublish"]["Condition"]["StringEquals"]
    assert rules_publish["aws:SourceAccount"] == {"Ref": "AWS::AccountId"}
    assert publishers(by_sid["RulesPublish"]) == {
        "EtlFailureRule": None, "MonitorViolationRule": "HasEndpoint",
        "MonitorFailureRule": "HasEndpoint"}


def publishers(statement: dict) -> dict[str, str | None]:
    """Publisher logical id -> the condition it is listed under (None: always)."""
    found = {}
    for source in statement["Condition"]["StringEquals"]["aws:SourceArn"]:
        if "Fn::If" in source:
            condition, listed, otherwise = source["Fn::If"]
            assert otherwise == {"Ref": "AWS::NoValue"}
            found[listed["Fn::GetAtt"][0]] = condition
        else:
            found[source["Fn::GetAtt"][0]] = None
    return found


def test_a_statement_whose_every_publisher_needs_the_endpoint_exists_only_with_it():
    t = template(ingestion=False, serving="sagemaker")
    policy = only_resource(t, "AWS::SNS::TopicPolicy")["Properties"]["PolicyDocument"]
    deny, *gated = policy["Statement"]
    assert deny["Sid"] == "DenyInsecureTransport"
    assert {s["Fn::If"][0] for s in gated} == {"HasEndpoint"}
    assert {s["Fn::If"][1]["Sid"] for s in gated} == {"AlarmsPublish", "RulesPublish"}
    assert all(s["Fn::If"][2] == {"Ref": "AWS::NoValue"} for s in gated)


# --- ETL failures -------------------------------------------------------------------------------

def test_etl_job_failures_and_timeouts_go_to_the_topic():
    rule = template(etl=True)["Resources"]["EtlFailureRule"]["Properties"]
    assert rule["EventPattern"] == {
        "source": ["aws.glue"], "detail-type": ["Glue Job State Change"],
        "detail": {"jobName": [{"Ref": "EtlJobName"}], "state": ["FAILED", "TIMEOUT"]}}
    [target] = rule["Targets"]
    assert target["Arn"] == TOPIC
    assert "<job>" in target["InputTransformer"]["InputTemplate"]
    assert "EtlFailureRule" not in template()["Resources"]


# --- Model Monitor ------------------------------------------------------------------------------

def monitored(**kwargs) -> dict:
    return template(ingestion=False, serving="sagemaker", training=True, **kwargs)


def job_definition(t: dict) -> dict:
    return only_resource(t, "AWS::SageMaker::DataQualityJobDefinition")["Properties"]


def test_model_monitor_only_with_the_sagemaker_endpoint():
    for t in (template(), template(serving="fargate"), monitored(model_monitor=False)):
        assert not resources_of_type(t, "AWS::SageMaker::MonitoringSchedule")
    assert resources_of_type(monitored(), "AWS::SageMaker::MonitoringSchedule")


def test_data_quality_runs_over_the_endpoint_against_the_configured_baseline():
    props = job_definition(monitored(model_monitor={"baseline_prefix": "drift/base/",
                                                    "reports_prefix": "drift/reports/"}))
    assert props["DataQualityJobInput"]["EndpointInput"]["EndpointName"] == {"Ref": "EndpointName"}
    baseline = props["DataQualityBaselineConfig"]
    assert baseline["ConstraintsResource"]["S3Uri"] == {
        "Fn::Sub": "s3://${ArtifactsBucketName}/drift/base/constraints.json"}
    assert baseline["StatisticsResource"]["S3Uri"] == {
        "Fn::Sub": "s3://${ArtifactsBucketName}/drift/base/statistics.json"}
    [output] = props["DataQualityJobOutputConfig"]["MonitoringOutputs"]
    assert output["S3Output"]["S3Uri"] == {"Fn::Sub": "s3://${ArtifactsBucketName}/drift/reports/"}


def test_reports_may_not_overwrite_the_baseline():
    with pytest.raises(UserError) as error:
        config_with({"stages": {"monitoring": {"model_monitor": {
            "baseline_prefix": "monitoring/", "reports_prefix": "monitoring/reports/"}}}})
    assert "stages.monitoring.model_monitor.reports_prefix" in str(error.value)


def test_model_monitor_encrypts_results_and_volumes_and_runs_in_the_private_subnets():
    props = job_definition(monitored())
    assert props["DataQualityJobOutputConfig"]["KmsKeyId"] == KEY
    cluster = props["JobResources"]["ClusterConfig"]
    assert cluster["VolumeKmsKeyId"] == KEY
    assert cluster["InstanceType"] == {"Ref": "ModelMonitorInstanceType"}
    assert cluster["InstanceCount"] == {"Ref": "ModelMonitorInstanceCount"}
    network = props["NetworkConfig"]
    assert network["EnableInterContainerTrafficEncryption"] is True
    assert network["VpcConfig"]["Subnets"] == {"Ref": PRIVATE_SUBNET_IDS.name}
    assert network["VpcConfig"]["SecurityGroupIds"] == [
        {"Fn::GetAtt": ["MonitorSecurityGroup", "GroupId"]}]
    assert props["StoppingCondition"] == {"MaxRuntimeInSeconds": {
        "Ref": "ModelMonitorMaxRuntimeSeconds"}}


def test_the_analyzer_image_comes_from_the_regions_publishing_account():
    t = monitored()
    image = job_definition(t)["DataQualityAppSpecification"]["ImageUri"]["Fn::Sub"]
    assert image == [
        "${Account}.dkr.ecr.${AWS::Region}.${AWS::URLSuffix}/sagemaker-model-monitor-analyzer",
        {"Account": {"Fn::FindInMap": ["ModelMonitorImageAccounts", {"Ref": "AWS::Region"},
                                       "Account"]}}]
    assert t["Mappings"]["ModelMonitorImageAccounts"]["us-east-1"] == {"Account": "156813124566"}
    assert "ModelMonitorImageAccount" not in t["Parameters"]


def test_a_configured_analyzer_account_replaces_the_table():
    t = monitored(model_monitor={"image_account": "123456789012"})
    image = job_definition(t)["DataQualityAppSpecification"]["ImageUri"]["Fn::Sub"]
    assert image[1] == {"Account": {"Ref": "ModelMonitorImageAccount"}}
    assert "ModelMonitorImageAccounts" not in t.get("Mappings", {})


def test_the_schedule_is_a_setting_mapped_to_a_cron_expression():
    t = monitored()
    schedule = only_resource(t, "AWS::SageMaker::MonitoringSchedule")["Properties"]
    config_ = schedule["MonitoringScheduleConfig"]
    assert config_["MonitoringType"] == "DataQuality"
    assert config_["MonitoringJobDefinitionName"] == {
        "Fn::GetAtt": ["DataQualityJobDefinition", "JobDefinitionName"]}
    assert config_["ScheduleConfig"]["ScheduleExpression"] == {"Fn::FindInMap": [
        "ModelMonitorSchedules", {"Ref": "ModelMonitorSchedule"}, "Expression"]}
    assert t["Mappings"]["ModelMonitorSchedules"]["hourly"]["Expression"] == "cron(0 * ? * * *)"
    assert t["Parameters"]["ModelMonitorSchedule"]["AllowedValues"] == ["hourly", "daily"]


def test_violations_of_this_schedule_alarm_and_notify():
    t = monitored()
    rule = t["Resources"]["MonitorViolationRule"]["Properties"]
    detail = rule["EventPattern"]["detail"]
    assert detail["MonitoringScheduleArn"] == [
        {"Fn::GetAtt": ["DataQualitySchedule", "MonitoringScheduleArn"]}]
    assert detail["ExitMessage"] == [{"prefix": "CompletedWithViolations"}]
    assert rule["Targets"][0]["Arn"] == TOPIC
    violations = alarms(t)["MonitorViolationsAlarm"]["Properties"]
    assert (violations["Namespace"], violations["MetricName"]) == ("AWS/Events", "TriggeredRules")
    assert violations["Dimensions"] == [
        {"Name": "RuleName", "Value": {"Ref": "MonitorViolationRule"}}]
    failed = t["Resources"]["MonitorFailureRule"]["Properties"]["EventPattern"]["detail"]
    assert failed["ProcessingJobStatus"] == ["Failed"]


def monitor_statements(t: dict | None = None) -> list[dict]:
    return statements((t or monitored())["Resources"]["MonitorRole"])


def test_monitor_role_reads_baseline_and_capture_and_writes_only_reports():
    found = monitor_statements()
    writes = [r["Fn::Sub"] for s in with_action(found, "s3:PutObject") for r in s["Resource"]]
    assert writes == ["${ArtifactsBucketArn}/monitoring/reports/*"]
    reads = [r for s in with_action(found, "s3:GetObject") for r in s["Resource"]]
    subs = [r["Fn::Sub"] if isinstance(r["Fn::Sub"], str) else r["Fn::Sub"][0] for r in reads]
    assert sorted(subs) == ["${ArtifactsBucketArn}/monitoring/baseline/*",
                            "arn:${AWS::Partition}:s3:::${Path}*"]
    # What CreateProcessingJob's execution role page lists for data, nothing more.
    assert {a for s in found for a in s["Action"] if a.startswith("s3:")} == {
        "s3:ListBucket", "s3:GetObject", "s3:PutObject"}


def test_monitor_role_uses_star_only_where_aws_allows_nothing_narrower():
    stars = [s for s in monitor_statements() if "*" in s["Resource"]]
    actions = sorted(a for s in stars for a in s["Action"])
    # A processing job in a VPC checks these unscoped ("Don't scope in the policy with any
    # conditions or resource filters", CreateProcessingJob API: Execution Role Permissions).
    assert actions == sorted([
        "cloudwatch:PutMetricData", "ec2:CreateNetworkInterface",
        "ec2:CreateNetworkInterfacePermission", "ec2:DeleteNetworkInterface",
        "ec2:DeleteNetworkInterfacePermission", "ec2:DescribeDhcpOptions",
        "ec2:DescribeNetworkInterfaces", "ec2:DescribeSecurityGroups", "ec2:DescribeSubnets",
        "ec2:DescribeVpcs"])
    network = [s for s in stars if any(a.startswith("ec2:") for a in s["Action"])]
    assert all("Condition" not in s for s in network)
    [metrics] = with_action(stars, "cloudwatch:PutMetricData")
    assert metrics["Condition"] == {"StringEquals": {
        "cloudwatch:namespace": "aws/sagemaker/Endpoints/data-metrics"}}


def test_monitor_role_describes_the_key_in_a_statement_a_describe_request_can_match():
    # kms:GrantIsForAWSResource is present on grant requests only (AWS KMS, Controlling
    # access to grants): kms:DescribeKey under it could never be allowed.
    found = monitor_statements()
    [grant] = with_action(found, "kms:CreateGrant")
    assert grant["Action"] == ["kms:CreateGrant"]
    assert grant["Condition"]["Bool"] == {"kms:GrantIsForAWSResource": "true"}
    [describe] = with_action(found, "kms:DescribeKey")
    assert describe["Action"] == ["kms:DescribeKey"] and describe["Resource"] == [KEY]
    assert describe["Condition"] == {"StringEquals": {
        "kms:ViaService": {"Fn::Sub": "sagemaker.${AWS::Region}.amazonaws.com"}}}


def test_monitor_role_is_trusted_by_sagemaker_of_this_account_only():
    [trust] = monitored()["Resources"]["MonitorRole"]["Properties"][
        "AssumeRolePolicyDocument"]["Statement"]
    assert trust["Principal"] == {"Service": "sagemaker.amazonaws.com"}
    # The confused-deputy guard (SageMaker: Cross-service confused deputy prevention).
    assert trust["Condition"] == {
        "StringEquals": {"aws:SourceAccount": {"Ref": "AWS::AccountId"}},
        "ArnLike": {"aws:SourceArn": {"Fn::Sub": (
            "arn:${AWS::Partition}:sagemaker:${AWS::Region}:${AWS::AccountId}:*")}}}


# --- retraining ---------------------------------------------------------------------------------

def retrain_function(t: dict) -> dict:
    return t["Resources"]["RetrainFunction"]["Properties"]


def test_retraining_needs_training_and_a_drift_alarm():
    for t in (template(), monitored(retrain=False), monitored(model_monitor=False),
              template(ingestion=False, serving="sagemaker"),
              template(ingestion=False, serving="fargate", training=True)):
        assert "RetrainFunction" not in t["Resources"]
        assert RETRAIN_FUNCTION_NAME.name not in t["Outputs"]
    t = monitored()
    # Named before it exists (it exists once the drift alarm's endpoint does).
    assert t["Outputs"][RETRAIN_FUNCTION_NAME.name]["Value"] == t["Resources"][
        "RetrainFunction"]["Properties"]["FunctionName"]
    assert t["Outputs"]["RetrainFunctionExists"]["Value"] == {
        "Fn::If": ["HasEndpoint", "true", "false"]}


def test_retrain_function_runs_the_bundled_code_inline():
    props = retrain_function(monitored())
    assert props["Code"] == {"ZipFile": monitoring.RETRAIN_SOURCE.read_text(encoding="utf-8")}
    assert props["Handler"] == "index.handler" and props["Runtime"] == "python3.12"


def test_retrain_code_over_the_inline_limit_ships_as_an_asset(tmp_path, monkeypatch):
    big = tmp_path / "retrain.py"
    big.write_text("# padding\n" * 500 + monitoring.RETRAIN_SOURCE.read_text())
    monkeypatch.setattr(monitoring, "RETRAIN_SOURCE", big)
    stage = monitoring.build(config(ingestion=False, serving="sagemaker", training=True))
    [asset] = stage.assets
    assert asset.file_name == "retrain.zip"
    assert retrain_function(template_dict(stage))["Code"] == {
        "S3Bucket": {"Ref": "AssetsBucket"}, "S3Key": {"Fn::Sub": f"${{AssetsPrefix}}{asset.key}"}}


def test_retrain_function_is_private_encrypted_capped_and_has_a_dead_letter_queue():
    t = monitored()
    props = retrain_function(t)
    assert props["VpcConfig"] == {"SubnetIds": {"Ref": "PrivateSubnetIds"},
                                  "SecurityGroupIds": [{"Ref": "RetrainSecurityGroup"}]}
    assert props["KmsKeyArn"] == KEY
    assert props["ReservedConcurrentExecutions"] == 1
    assert props["DeadLetterConfig"] == {
        "TargetArn": {"Fn::GetAtt": ["RetrainDeadLetterQueue", "Arn"]}}
    assert t["Resources"]["RetrainDeadLetterQueue"]["Properties"]["KmsMasterKeyId"] == KEY
    assert props["LoggingConfig"] == {"LogGroup": {"Ref": "RetrainLogGroup"}}
    group = t["Resources"]["RetrainLogGroup"]["Properties"]
    assert group["KmsKeyId"] == KEY and group["RetentionInDays"] == {"Ref": "LogRetentionDays"}
    [egress] = t["Resources"]["RetrainSecurityGroup"]["Properties"]["SecurityGroupEgress"]
    assert (egress["FromPort"], egress["CidrIp"]) == (443, {"Ref": "VpcCidrBlock"})


def test_retrain_function_knows_its_pipeline_triggers_and_cooldown():
    variables = retrain_function(monitored())["Environment"]["Variables"]
    assert variables == {
        "PIPELINE_NAME": {"Ref": TRAINING_PIPELINE_NAME.name},
        "TRIGGER_ALARMS": {"Fn::Join": [",", [{"Ref": "MonitorViolationsAlarm"}]]},
        "COOLDOWN_HOURS": {"Ref": "RetrainCooldownHours"},
    }


def test_only_drift_alarms_entering_alarm_reach_the_function():
    t = monitored()
    [subscription] = [s["Properties"] for s in
                      resources_of_type(t, "AWS::SNS::Subscription").values()
                      if s["Properties"]["Protocol"] == "lambda"]
    assert subscription["TopicArn"] == TOPIC
    assert subscription["FilterPolicyScope"] == "MessageBody"
    assert subscription["FilterPolicy"] == {"AlarmName": [{"Ref": "MonitorViolationsAlarm"}],
                                            "NewStateValue": ["ALARM"]}
    permission = only_resource(t, "AWS::Lambda::Permission")["Properties"]
    assert permission["Principal"] == "sns.amazonaws.com"
    assert permission["SourceArn"] == TOPIC


def test_retrain_role_may_only_start_and_list_runs_of_the_training_pipeline():
    found = statements(monitored()["Resources"]["RetrainRole"])
    sagemaker = [s for s in found if any(a.startswith("sagemaker:") for a in s["Action"])]
    assert len(sagemaker) == 1
    assert sorted(sagemaker[0]["Action"]) == ["sagemaker:ListPipelineExecutions",
                                              "sagemaker:StartPipelineExecution"]
    assert sagemaker[0]["Resource"] == [{"Ref": TRAINING_PIPELINE_ARN.name}]
    stars = {a for s in found if "*" in s["Resource"] for a in s["Action"]}
    assert stars == {"ec2:DescribeNetworkInterfaces", "ec2:DescribeSubnets",
                     "xray:PutTraceSegments", "xray:PutTelemetryRecords"}


# --- config, endpoints and lint -----------------------------------------------------------------

def test_monitoring_asks_for_the_endpoints_its_vpc_compute_calls():
    section = config(serving="sagemaker", training=True).stages.monitoring
    assert section.vpc_endpoints() == ("monitoring", "sagemaker.api")
    quiet = config(model_monitor=False, retrain=False).stages.monitoring
    assert quiet.vpc_endpoints() == ()


def test_a_hand_written_endpoint_list_must_hold_the_endpoints_in_use():
    serving = {"enabled": True, "target": "sagemaker", "api_gateway": {"enabled": False}}
    with pytest.raises(UserError) as error:
        config_with({"network": {"interface_endpoints": ["kms"]},
                     "stages": {"serving": serving, "training": {"enabled": True}}})
    assert "network.interface_endpoints" in str(error.value)
    assert "monitoring, sagemaker.api" in str(error.value)
    # Without SageMaker serving neither is in use, so neither is asked for.
    config_with({"network": {"interface_endpoints": ["kms"]},
                 "stages": {"serving": {"enabled": False}}})


def test_delivery_freshness_must_exceed_the_firehose_buffer():
    with pytest.raises(UserError) as error:
        config_with({"stages": {
            "ingestion": {"firehose": {"buffer_interval_seconds": 600}},
            "monitoring": {"enabled": True, "thresholds": {"delivery_freshness_seconds": 600}}}})
    assert "stages.monitoring.thresholds.delivery_freshness_seconds" in str(error.value)


def test_datapoints_may_not_exceed_the_periods():
    with pytest.raises(UserError) as error:
        config_with({"stages": {"monitoring": {"thresholds": {
            "evaluation_periods": 2, "datapoints_to_alarm": 3}}}})
    assert "datapoints_to_alarm" in str(error.value)


@pytest.mark.parametrize("name", SCENARIOS)
def test_template_has_no_cfn_lint_findings(name):
    assert lint(build(**SCENARIOS[name][0])) == []


def test_environments_differing_only_in_values_render_the_same_template():
    kwargs = dict(etl=True, serving="both", training=True)
    assert (monitoring.build(config(env="dev", **kwargs)).template.to_yaml()
            == monitoring.build(config(env="prod", **kwargs)).template.to_yaml())
