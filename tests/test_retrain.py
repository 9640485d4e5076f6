"""The retrain Lambda (mlops_cfn/data/retrain.py) against a stubbed SageMaker client: it starts
the training pipeline on a drift alarm, starts nothing inside the cool-down or while a run is
going, ignores every other message, and logs clearly before failing."""

import json
from datetime import datetime, timedelta, timezone

import boto3
import pytest
from botocore.exceptions import ClientError
from botocore.stub import Stubber

from mlops_cfn.data import retrain

PIPELINE = "mlops-demo-dev-training"
PIPELINE_ARN = f"arn:aws:sagemaker:eu-west-1:111122223333:pipeline/{PIPELINE}"
DRIFT = "mlops-demo-dev-monitor-violations"
NOW = datetime(2024, 5, 1, 12, 0, tzinfo=timezone.utc)
ENV = {"PIPELINE_NAME": PIPELINE, "TRIGGER_ALARMS": f"{DRIFT},other-drift",
       "COOLDOWN_HOURS": "24"}
MESSAGE_ID = "95df01b4-ee98-5cb9-9903-4c221d41eb5e"


def alarm_event(name=DRIFT, state="ALARM", message_id=MESSAGE_ID) -> dict:
    message = {"AlarmName": name, "NewStateValue": state, "OldStateValue": "OK",
               "NewStateReason": "Threshold Crossed"}
    return {"Records": [{"EventSource": "aws:sns",
                         "Sns": {"MessageId": message_id, "Message": json.dumps(message)}}]}


@pytest.fixture
def sagemaker():
    client = boto3.client("sagemaker", region_name="eu-west-1", aws_access_key_id="testing",
                          aws_secret_access_key="testing")
    with Stubber(client) as stubber:
        yield client, stubber
        stubber.assert_no_pending_responses()


def expect_history(stubber, *executions):
    stubber.add_response(
        "list_pipeline_executions",
        {"PipelineExecutionSummaries": list(executions)},
        {"PipelineName": PIPELINE, "SortBy": "CreationTime", "SortOrder": "Descending",
         "MaxResults": 1})


def execution(started: datetime, status="Succeeded") -> dict:
    return {"PipelineExecutionArn": f"{PIPELINE_ARN}/execution/abc123", "StartTime": started,
            "PipelineExecutionStatus": status}


def expect_start(stubber):
    stubber.add_response(
        "start_pipeline_execution",
        {"PipelineExecutionArn": f"{PIPELINE_ARN}/execution/new456"},
        {"PipelineName": PIPELINE, "PipelineExecutionDescription": f"Started by alarm {DRIFT}",
         "ClientRequestToken": MESSAGE_ID})


def logged(capsys) -> list[dict]:
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()]


# --- start on alarm ---------------------------------------------------------------------------

def test_a_drift_alarm_starts_the_pipeline_when_it_never_ran(sagemaker, capsys):
    client, stubber = sagemaker
    expect_history(stubber)
    expect_start(stubber)
    assert retrain.handle(alarm_event(), client, ENV, NOW) == {"results": ["started"]}
    [entry] = logged(capsys)
    assert entry["message"] == "started the training pipeline"
    assert entry["alarm"] == DRIFT and entry["execution"].endswith("/execution/new456")


def test_a_drift_alarm_starts_the_pipeline_once_the_cooldown_is_over(sagemaker):
    client, stubber = sagemaker
    expect_history(stubber, execution(NOW - timedelta(hours=25)))
    expect_start(stubber)
    assert retrain.handle(alarm_event(), client, ENV, NOW)["results"] == ["started"]


def test_the_sns_message_id_makes_a_redelivered_message_idempotent(sagemaker):
    client, stubber = sagemaker
    expect_history(stubber)
    expect_start(stubber)  # asserts ClientRequestToken == the message id
    retrain.handle(alarm_event(), client, ENV, NOW)


# --- no start inside the cool-down ------------------------------------------------------------

def test_no_start_within_the_cooldown_of_the_last_run(sagemaker, capsys):
    client, stubber = sagemaker
    expect_history(stubber, execution(NOW - timedelta(hours=23)))
    # No start_pipeline_execution response is queued: calling it would fail the test.
    assert retrain.handle(alarm_event(), client, ENV, NOW)["results"] == ["skipped"]
    [entry] = logged(capsys)
    assert entry["message"] == "not started: a run started within the cool-down"
    assert entry["execution"].endswith("/execution/abc123")


def test_no_start_while_a_run_is_executing_however_old(sagemaker, capsys):
    client, stubber = sagemaker
    expect_history(stubber, execution(NOW - timedelta(days=3), status="Executing"))
    assert retrain.handle(alarm_event(), client, ENV, NOW)["results"] == ["skipped"]
    assert logged(capsys)[0]["message"] == "not started: a run is in progress"


def test_the_cooldown_comes_from_the_environment(sagemaker):
    client, stubber = sagemaker
    expect_history(stubber, execution(NOW - timedelta(hours=2)))
    expect_start(stubber)
    env = {**ENV, "COOLDOWN_HOURS": "1"}
    assert retrain.handle(alarm_event(), client, env, NOW)["results"] == ["started"]


# --- messages that start nothing --------------------------------------------------------------

@pytest.mark.parametrize("event", [
    alarm_event(state="OK"),
    alarm_event(state="INSUFFICIENT_DATA"),
    alarm_event(name="mlops-demo-dev-stream-iterator-age"),
    {"Records": [{"Sns": {"MessageId": MESSAGE_ID, "Message": "ETL job x run y ended FAILED"}}]},
    {"Records": [{"Sns": {"MessageId": MESSAGE_ID, "Message": "[1, 2]"}}]},
    {},
], ids=["ok", "insufficient-data", "not-a-trigger", "plain-text", "not-an-object", "no-records"])
def test_other_messages_call_nothing(sagemaker, event):
    client, _ = sagemaker  # no responses queued: any call fails the test
    results = retrain.handle(event, client, ENV, NOW)["results"]
    assert set(results) <= {"ignored"}


# --- failures ---------------------------------------------------------------------------------

def test_a_failed_start_is_logged_clearly_and_raised_for_lambda_to_retry(sagemaker, capsys):
    client, stubber = sagemaker
    expect_history(stubber)
    stubber.add_client_error("start_pipeline_execution", service_error_code="ResourceLimitExceeded",
                             service_message="Too many executions", http_status_code=400)
    with pytest.raises(ClientError):
        retrain.handle(alarm_event(), client, ENV, NOW)
    [entry] = logged(capsys)
    assert entry["message"] == "could not start the training pipeline"
    assert entry["pipeline"] == PIPELINE and entry["alarm"] == DRIFT
    assert "ResourceLimitExceeded" in entry["error"] and "Too many executions" in entry["error"]


def test_a_failed_history_lookup_is_logged_and_raised(sagemaker, capsys):
    client, stubber = sagemaker
    stubber.add_client_error("list_pipeline_executions", service_error_code="AccessDeniedException",
                             service_message="not authorized", http_status_code=400)
    with pytest.raises(ClientError):
        retrain.handle(alarm_event(), client, ENV, NOW)
    assert "AccessDeniedException" in logged(capsys)[0]["error"]


def test_the_lambda_entry_point_reads_its_settings_from_the_environment(monkeypatch):
    seen = {}
    monkeypatch.setenv("PIPELINE_NAME", PIPELINE)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    monkeypatch.setattr(retrain, "handle", lambda event, client, env, now: seen.update(
        pipeline=env["PIPELINE_NAME"], service=client.meta.service_model.service_name, now=now))
    retrain.handler({}, None)
    assert seen["pipeline"] == PIPELINE and seen["service"] == "sagemaker"
    assert seen["now"].tzinfo is not None
