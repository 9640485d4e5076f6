"""The EMR consumer (stages.ingestion.emr_consumer): a Spark Structured Streaming job on EMR
Serverless that cleans the stream's records as the ETL job does into the processed bucket, kept
running by a supervisor Lambda that also stops the application when the stack is deleted."""

import json
from datetime import datetime, timedelta, timezone
from unittest import mock

import boto3
import pytest
from botocore.stub import Stubber

from mlops_cfn.data import emr_supervisor
from mlops_cfn.data.emr import stream_job
from mlops_cfn.data.glue import etl_job
from mlops_cfn.errors import UserError
from mlops_cfn.outputs import EMR_CONSUMER_APPLICATION_ID
from mlops_cfn.stages import ingestion, monitoring, monitoring_metrics, network
from tests.helpers import (config_with, only_resource, resources_of_type, statements,
                           template_dict, with_action)
from tests.template_eval import Resolver

ON = {"stages": {"ingestion": {"emr_consumer": {"enabled": True}}}}
SCHEMA = [{"name": "user_id", "type": "string", "max_bytes": 8},
          {"name": "clicks", "type": "integer"}, {"name": "price", "type": "double"},
          {"name": "seen_at", "type": "timestamp"}, {"name": "active", "type": "boolean"}]
ARRIVAL = datetime(2024, 5, 1, 23, 30, tzinfo=timezone(timedelta(hours=-2)))  # 01:30 UTC, 2 May
APP = "00fabc123def"
ROLE = "arn:aws:iam::111122223333:role/job"
APP_ARN = f"arn:aws:emr-serverless:eu-west-1:111122223333:/applications/{APP}"


def emr_template(changes: dict | None = None) -> dict:
    merged = json.loads(json.dumps(ON))
    for key, value in (changes or {}).items():
        merged["stages"]["ingestion"]["emr_consumer"][key] = value
    return template_dict(ingestion.build(config_with(merged).config))


def record(payload) -> bytes:
    return json.dumps(payload).encode()


# --- off by default --------------------------------------------------------------------------

def test_the_emr_consumer_is_off_by_default_and_renders_nothing():
    default = template_dict(ingestion.build(config_with().config))
    assert not resources_of_type(default, "AWS::EMRServerless::Application")
    assert EMR_CONSUMER_APPLICATION_ID.name not in default.get("Outputs", {})
    assert not network.answers_custom_resources(config_with().config)


def test_enabled_it_renders_the_application_and_its_supervisor():
    template = emr_template()
    assert resources_of_type(template, "AWS::EMRServerless::Application")
    assert resources_of_type(template, "AWS::CloudFormation::CustomResource")
    assert template["Outputs"][EMR_CONSUMER_APPLICATION_ID.name]["Value"] == {
        "Ref": "EmrConsumerApplication"}


# --- the Spark transformation, on generated records ------------------------------------------

def test_a_batch_is_cleaned_to_the_record_schema_as_the_etl_job_cleans_it():
    payload = {"userId": "  abcdefghijk ", "Clicks": "12", "price": "9.5",
               "seenAt": 1714600000, "active": "yes", "ignored": "x"}
    rows, invalid = stream_job.transform([(record(payload), ARRIVAL)], SCHEMA, [])
    plan = etl_job.plan_columns([(name, "string") for name in payload], SCHEMA)
    assert invalid == 0
    assert rows == [etl_job.clean_record(payload, plan)]
    assert rows[0]["user_id"] == "abcdefgh" and rows[0]["clicks"] == 12
    assert rows[0]["seen_at"] == datetime(2024, 5, 1, 21, 46, 40)
    assert "ignored" not in rows[0]


def test_time_partitions_come_from_the_arrival_time_in_utc_like_firehoses():
    rows, _ = stream_job.transform([(record({"clicks": 1}), ARRIVAL)], SCHEMA,
                                   ["year", "month", "day", "hour", "region"])
    assert {k: rows[0][k] for k in ("year", "month", "day", "hour")} == {
        "year": "2024", "month": "05", "day": "02", "hour": "01"}
    assert "region" not in rows[0]  # a key the stream cannot fill is skipped, as in the ETL job
    assert stream_job.output_columns(SCHEMA, ["year", "region"]) == [
        "user_id", "clicks", "price", "seen_at", "active", "year"]


def test_invalid_records_are_counted_and_empty_or_repeated_ones_dropped():
    batch = [(b"not json", ARRIVAL), (record([1, 2]), ARRIVAL), (b"\xff\xfe", ARRIVAL),
             (record({"other": 1}), ARRIVAL),  # nothing of the schema: empty, dropped
             (record({"clicks": 3}), ARRIVAL), (record({"Clicks": "3"}), ARRIVAL)]
    rows, invalid = stream_job.transform(batch, SCHEMA, ["day"])
    assert invalid == 3
    assert len(rows) == 1 and rows[0]["clicks"] == 3


def test_the_output_is_written_in_the_etl_jobs_formats():
    assert stream_job.write_options("parquet") == ("parquet", {"compression": "snappy"})
    assert stream_job.write_options("csv")[0] == "csv"
    with pytest.raises(ValueError):
        stream_job.write_options("json")


# --- the job run as EMR Serverless starts it ---------------------------------------------------

def job_driver(template: dict, **parameters) -> dict:
    """The supervisor's JOB_DRIVER as StartJobRun receives it, the Sub resolved."""
    function = template["Resources"]["EmrConsumerSupervisor"]["Properties"]
    values = {"AssetsBucket": "assets-bucket", "AssetsPrefix": "p/",
              "ProcessedBucketName": "processed-bucket", "EnvironmentName": "dev",
              "EmrConsumerTriggerSeconds": "60", **parameters}
    text = Resolver(template, values).value(function["Environment"]["Variables"]["JOB_DRIVER"])
    return json.loads(text)


def test_the_job_run_gets_every_argument_the_script_reads_and_the_connector():
    template = emr_template()
    driver = job_driver(template)["sparkSubmit"]
    args = stream_job.parse_arguments(driver["entryPointArguments"])
    assert args["output_location"] == "s3://processed-bucket/events_stream/"
    assert args["checkpoint_location"] == "s3://processed-bucket/_checkpoints/events_stream/"
    assert args["output_format"] == "parquet" and args["partition_keys"] == [
        "year", "month", "day"]
    assert args["trigger_seconds"] == 60 and args["region"] == "us-east-1"
    assert [c["name"] for c in args["schema"]] == [
        c.name for c in config_with(ON).config.record_schema.columns]
    assert driver["entryPoint"].startswith("s3://assets-bucket/p/assets/")
    assert driver["entryPoint"].endswith("/stream_job.py")
    submit = driver["sparkSubmitParameters"]
    assert f"--jars {ingestion.ingestion_emr.CONNECTOR_JAR}" in submit
    assert "/etl_job.py" in submit and "spark.speculation=false" in submit


def test_the_custom_resource_carries_the_job_driver_so_new_code_replaces_the_run():
    template = emr_template()
    starter = only_resource(template, "AWS::CloudFormation::CustomResource")["Properties"]
    function = template["Resources"]["EmrConsumerSupervisor"]["Properties"]
    assert starter["JobDriver"] == function["Environment"]["Variables"]["JOB_DRIVER"]
    assert starter["ServiceToken"] == {"Fn::GetAtt": ["EmrConsumerSupervisor", "Arn"]}
    assert starter["ServiceTimeout"] > function["Timeout"]


def test_the_rules_are_deleted_before_the_supervisor_stops_the_application():
    template = emr_template()
    rules = resources_of_type(template, "AWS::Events::Rule")
    assert set(rules) == {"EmrConsumerRunEndedRule", "EmrConsumerCheckRule"}
    for rule in rules.values():
        assert rule["DependsOn"] == ["EmrConsumerJob"]
        target = rule["Properties"]["Targets"][0]
        assert target["Arn"] == {"Fn::GetAtt": ["EmrConsumerSupervisor", "Arn"]}
        assert "DeadLetterConfig" in target
    ended = rules["EmrConsumerRunEndedRule"]["Properties"]["EventPattern"]
    assert ended["detail"] == {"applicationId": [{"Ref": "EmrConsumerApplication"}],
                               "state": ["SUCCESS", "FAILED", "CANCELLED"]}
    schedule = Resolver(template, {"EmrConsumerCheckMinutes": "10"}).value(
        rules["EmrConsumerCheckRule"]["Properties"]["ScheduleExpression"])
    assert schedule == "rate(10 minutes)"


# --- security ----------------------------------------------------------------------------------

def test_the_application_runs_in_the_private_subnets_with_a_group_of_its_own():
    template = emr_template()
    app = only_resource(template, "AWS::EMRServerless::Application")["Properties"]
    assert app["NetworkConfiguration"] == {
        "SubnetIds": {"Ref": "PrivateSubnetIds"},
        "SecurityGroupIds": [{"Ref": "EmrConsumerSecurityGroup"}]}
    group = template["Resources"]["EmrConsumerSecurityGroup"]["Properties"]
    assert "SecurityGroupIngress" not in group
    assert {(r["IpProtocol"], r["FromPort"], r["ToPort"]) for r in group["SecurityGroupEgress"]} \
        == {("tcp", 443, 443)}


def test_logs_go_only_to_the_encrypted_expiring_group_of_the_stack():
    template = emr_template()
    monitoring_config = only_resource(
        template, "AWS::EMRServerless::Application")["Properties"]["MonitoringConfiguration"]
    assert monitoring_config["CloudWatchLoggingConfiguration"]["LogGroupName"] == {
        "Ref": "EmrConsumerLogGroup"}
    assert monitoring_config["ManagedPersistenceMonitoringConfiguration"] == {"Enabled": False}
    group = template["Resources"]["EmrConsumerLogGroup"]["Properties"]
    assert group["KmsKeyId"] == {"Ref": "DataKeyArn"} and "RetentionInDays" in group


def test_the_job_role_is_trusted_by_emr_serverless_for_this_accounts_applications_only():
    role = emr_template()["Resources"]["EmrConsumerJobRole"]["Properties"]
    trust = role["AssumeRolePolicyDocument"]["Statement"][0]
    assert trust["Principal"] == {"Service": "emr-serverless.amazonaws.com"}
    assert trust["Condition"]["StringEquals"] == {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}
    assert "aws:SourceArn" in trust["Condition"]["ArnLike"]


def test_the_job_writes_only_its_own_folders_of_the_processed_bucket():
    role = emr_template()["Resources"]["EmrConsumerJobRole"]
    writes = with_action(statements(role), "s3:PutObject")
    resources = [r for s in writes for r in s["Resource"]]
    assert resources == [{"Fn::Sub": "${ProcessedBucketArn}/events_stream/*"},
                         {"Fn::Sub": "${ProcessedBucketArn}/_checkpoints/events_stream/*"}]
    reads = with_action(statements(role), "kinesis:GetRecords")
    assert [s["Resource"] for s in reads] == [[{"Fn::GetAtt": ["IngestStream", "Arn"]}]]


def test_the_supervisor_passes_only_the_job_role_and_only_to_emr_serverless():
    role = emr_template()["Resources"]["EmrConsumerSupervisorRole"]
    (passing,) = with_action(statements(role), "iam:PassRole")
    assert passing["Resource"] == [{"Fn::GetAtt": ["EmrConsumerJobRole", "Arn"]}]
    assert passing["Condition"] == {
        "StringEquals": {"iam:PassedToService": "emr-serverless.amazonaws.com"}}
    (stopping,) = with_action(statements(role), "emr-serverless:StopApplication")
    assert stopping["Resource"] == [{"Fn::GetAtt": ["EmrConsumerApplication", "Arn"]}]


def test_the_vpc_lets_the_supervisor_answer_cloudformation_only_when_it_exists():
    def endpoint_statements(changes):
        built = template_dict(network.build(config_with(changes).config))
        endpoint = built["Resources"]["S3Endpoint"]
        return built, endpoint["Properties"]["PolicyDocument"]["Statement"]
    _, plain = endpoint_statements(None)
    assert "CloudFormationCustomResourceResponses" not in [s.get("Sid") for s in plain]
    built, with_emr = endpoint_statements(ON)
    (responses,) = [s for s in with_emr if s.get("Sid") == "CloudFormationCustomResourceResponses"]
    assert responses["Action"] == ["s3:PutObject"]
    arns = Resolver(built, {}, region="us-west-2").value(responses["Resource"])
    assert arns == ["arn:aws:s3:::cloudformation-custom-resource-response-uswest2/*"]


def test_the_emr_consumer_asks_for_the_endpoints_its_compute_calls():
    config = config_with(ON).config
    assert {"emr-serverless", "kinesis-streams", "logs"} <= set(
        network.needed_interface_endpoints(config))


# --- configuration -----------------------------------------------------------------------------

def test_its_folder_must_differ_from_the_etl_jobs():
    with pytest.raises(UserError) as error:
        config_with({"stages": {"ingestion": {"emr_consumer": {
            "enabled": True, "prefix": "events/"}}}})
    assert "stages.ingestion.emr_consumer.prefix" in str(error.value)


@pytest.mark.parametrize("label", ["emr-6.15.0", "emr-7.0.0", "7.5.0", "emr-7.5"])
def test_a_release_without_the_kinesis_connector_is_refused(label):
    with pytest.raises(UserError) as error:
        config_with({"stages": {"ingestion": {"emr_consumer": {"release_label": label}}}})
    assert "release_label" in str(error.value)


@pytest.mark.parametrize("label", ["emr-7.1.0", "emr-7.10.0", "emr-8.1.0"])
def test_releases_from_7_1_are_accepted(label):
    config_with({"stages": {"ingestion": {"emr_consumer": {"release_label": label}}}})


# --- monitoring --------------------------------------------------------------------------------

def test_failed_job_runs_notify_and_are_graphed_from_the_metric_list():
    config = config_with(ON).config
    keys = [w.key for w in monitoring_metrics.watches(config)]
    assert "EmrConsumerFailedRuns" in keys
    assert "EmrConsumerFailedRuns" not in [
        w.key for w in monitoring_metrics.watches(config_with().config)]
    template = template_dict(monitoring.build(config))
    rule = template["Resources"][monitoring_metrics.EMR_CONSUMER_FAILURE_RULE]["Properties"]
    assert rule["EventPattern"]["detail"] == {
        "applicationId": [{"Ref": EMR_CONSUMER_APPLICATION_ID.name}], "state": ["FAILED"]}
    assert rule["Targets"][0]["Arn"] == {"Ref": "AlarmTopic"}


# --- the supervisor, against a stubbed EMR Serverless client -----------------------------------

ENV = {"APPLICATION_ID": APP, "EXECUTION_ROLE_ARN": ROLE, "JOB_NAME": "stream-consumer",
       "JOB_DRIVER": json.dumps({"sparkSubmit": {"entryPoint": "s3://b/k/stream_job.py"}}),
       "MAX_FAILED_PER_HOUR": "5"}


class Context:
    def get_remaining_time_in_millis(self):
        return 120_000


@pytest.fixture
def emr(monkeypatch):
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    client = boto3.client("emr-serverless", region_name="eu-west-1",
                          aws_access_key_id="testing", aws_secret_access_key="testing")
    monkeypatch.setattr(emr_supervisor, "emr", client)
    monkeypatch.setattr(emr_supervisor.time, "sleep", lambda seconds: None)
    with Stubber(client) as stubber:
        yield stubber
        stubber.assert_no_pending_responses()


def run(run_id: str, state: str) -> dict:
    now = datetime(2024, 5, 1, tzinfo=timezone.utc)
    return {"applicationId": APP, "id": run_id, "name": "stream-consumer",
            "arn": f"arn:aws:emr-serverless:eu-west-1:111122223333:/applications/{APP}/"
                   f"jobruns/{run_id}",
            "createdBy": ROLE, "createdAt": now, "updatedAt": now, "executionRole": ROLE,
            "state": state, "stateDetails": "-", "releaseLabel": "emr-7.5.0"}


def expect_runs(stubber, *runs):
    stubber.add_response("list_job_runs", {"jobRuns": list(runs)},
                         {"applicationId": APP, "states": emr_supervisor.ACTIVE})


def expect_start(stubber, token):
    stubber.add_response(
        "start_job_run", {"applicationId": APP, "jobRunId": "new1",
                          "arn": f"{APP_ARN}/jobruns/new1"},
        {"applicationId": APP, "executionRoleArn": ROLE, "name": "stream-consumer",
         "mode": "STREAMING", "jobDriver": json.loads(ENV["JOB_DRIVER"]),
         "retryPolicy": {"maxFailedAttemptsPerHour": 5}, "clientToken": token})


def expect_application(stubber, state):
    now = datetime(2024, 5, 1, tzinfo=timezone.utc)
    stubber.add_response("get_application", {"application": {
        "applicationId": APP, "arn": APP_ARN, "releaseLabel": "emr-7.5.0", "type": "Spark",
        "state": state, "createdAt": now, "updatedAt": now}}, {"applicationId": APP})


def test_a_run_that_ended_is_followed_by_a_new_streaming_run(emr):
    expect_runs(emr, run("old", "CANCELLING"))
    expect_start(emr, "event-1")
    event = {"id": "event-1", "detail-type": "EMR Serverless Job Run State Change",
             "detail": {"applicationId": APP, "state": "FAILED"}}
    assert emr_supervisor.handler(event, Context()) == "new1"


def test_nothing_is_started_while_a_run_is_active(emr):
    expect_runs(emr, run("live", "RUNNING"))
    assert emr_supervisor.handler({"id": "tick", "detail-type": "Scheduled Event"},
                                  Context()) == "live"


def custom_resource(kind: str) -> dict:
    return {"RequestType": kind, "ResponseURL": "https://example.invalid/response",
            "StackId": "stack", "RequestId": "request-1", "LogicalResourceId": "EmrConsumerJob",
            "PhysicalResourceId": APP, "ResourceProperties": {"ApplicationId": APP}}


def answered(urlopen) -> dict:
    request = urlopen.call_args.args[0]
    assert request.get_method() == "PUT"
    return json.loads(request.data)


def test_creation_starts_the_first_run_and_answers_cloudformation(emr):
    expect_runs(emr)
    expect_start(emr, "request-1")
    with mock.patch.object(emr_supervisor.urllib.request, "urlopen") as urlopen:
        emr_supervisor.handler(custom_resource("Create"), Context())
    assert answered(urlopen)["Status"] == "SUCCESS"
    assert answered(urlopen)["PhysicalResourceId"] == APP


def test_deletion_cancels_the_runs_and_stops_the_application_before_answering(emr):
    expect_runs(emr, run("live", "RUNNING"))
    emr.add_response("cancel_job_run", {"applicationId": APP, "jobRunId": "live"},
                     {"applicationId": APP, "jobRunId": "live"})
    expect_runs(emr, run("live", "CANCELLING"))
    expect_runs(emr)
    expect_application(emr, "STARTED")
    emr.add_response("stop_application", {}, {"applicationId": APP})
    expect_application(emr, "STOPPING")
    expect_application(emr, "STOPPED")
    with mock.patch.object(emr_supervisor.urllib.request, "urlopen") as urlopen:
        emr_supervisor.handler(custom_resource("Delete"), Context())
    assert answered(urlopen)["Status"] == "SUCCESS"


def test_a_failure_is_reported_to_cloudformation_not_left_to_time_out(emr):
    emr.add_client_error("list_job_runs", "AccessDeniedException", "no")
    with mock.patch.object(emr_supervisor.urllib.request, "urlopen") as urlopen:
        emr_supervisor.handler(custom_resource("Delete"), Context())
    reply = answered(urlopen)
    assert reply["Status"] == "FAILED" and "AccessDenied" in reply["Reason"]


def test_the_supervisor_fits_inline_lambda_code():
    assert len(ingestion.ingestion_emr.supervisor_code().encode()) <= 4096


def test_the_job_code_is_shipped_as_assets_with_the_etl_cleaning():
    built = ingestion.build(config_with(ON).config)
    names = sorted(asset.file_name for asset in built.assets)
    assert names == ["etl_job.py", "stream_job.py"]
    shipped = {a.file_name: a.content for a in built.assets}
    assert shipped["etl_job.py"] == open(etl_job.__file__, "rb").read()
