"""Starts the training pipeline when a drift alarm fires, at most once per cool-down.

Subscribed to the alarm topic. A message starts a run only when it is a CloudWatch alarm
entering ALARM whose name is in TRIGGER_ALARMS. The cool-down needs no state store: the
pipeline's own history is the record. A run still executing, or one started within
COOLDOWN_HOURS, means this incident already has its run. The function's reserved concurrency
of 1 makes that check and the start one step, and the SNS message id as the request token makes
a retried message start nothing new. Logs are JSON lines.
"""

import json
import os
from datetime import datetime, timedelta, timezone

import boto3
from botocore.exceptions import BotoCoreError, ClientError

BUSY = ("Executing", "Stopping")


def handler(event, context):
    return handle(event, boto3.client("sagemaker"), os.environ, datetime.now(timezone.utc))


def handle(event, client, env, now):
    pipeline = env["PIPELINE_NAME"]
    triggers = {n for n in env.get("TRIGGER_ALARMS", "").split(",") if n}
    cooldown = timedelta(hours=int(env.get("COOLDOWN_HOURS", "24")))
    results = []
    for record in event.get("Records", []):
        sns = record.get("Sns", {})
        alarm = trigger_of(sns.get("Message", ""), triggers)
        if alarm is None:
            log("ignored", message_id=sns.get("MessageId"))
            results.append("ignored")
            continue
        results.append(retrain(client, pipeline, alarm, sns["MessageId"], cooldown, now))
    return {"results": results}


def trigger_of(text, triggers):
    """The alarm's name if the message is one of the trigger alarms entering ALARM."""
    try:
        message = json.loads(text)
    except ValueError:
        return None
    if not isinstance(message, dict) or message.get("NewStateValue") != "ALARM":
        return None
    name = message.get("AlarmName")
    return name if name in triggers else None


def retrain(client, pipeline, alarm, message_id, cooldown, now):
    try:
        latest = client.list_pipeline_executions(
            PipelineName=pipeline, SortBy="CreationTime", SortOrder="Descending",
            MaxResults=1)["PipelineExecutionSummaries"]
        if latest:
            last = latest[0]
            if last["PipelineExecutionStatus"] in BUSY:
                return skipped("a run is in progress", pipeline, alarm, last)
            if now - last["StartTime"] < cooldown:
                return skipped("a run started within the cool-down", pipeline, alarm, last)
        started = client.start_pipeline_execution(
            PipelineName=pipeline,
            PipelineExecutionDescription=f"Started by alarm {alarm}"[:3072],
            ClientRequestToken=message_id)
    except (BotoCoreError, ClientError) as error:
        # Raised again: Lambda retries the message, then hands it to the dead-letter queue.
        log("could not start the training pipeline", pipeline=pipeline, alarm=alarm,
            error=f"{type(error).__name__}: {error}")
        raise
    log("started the training pipeline", pipeline=pipeline, alarm=alarm,
        execution=started["PipelineExecutionArn"])
    return "started"


def skipped(reason, pipeline, alarm, last):
    log("not started: " + reason, pipeline=pipeline, alarm=alarm,
        execution=last["PipelineExecutionArn"], status=last["PipelineExecutionStatus"],
        started=last["StartTime"].isoformat())
    return "skipped"


def log(message, **fields):
    print(json.dumps({"message": message, **fields}))
