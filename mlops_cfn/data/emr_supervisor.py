"""Keeps one streaming job run going on the EMR Serverless application; stops it on deletion.

Invoked by EventBridge (a job run of the application ended, or the periodic check) it starts a
run unless one is active. As the stack's custom resource it starts the first run on creation,
replaces the run on update (new job code or arguments), and on deletion cancels the runs and
stops the application, which EMR Serverless refuses to delete while it is started.
"""
import json
import os
import time
import urllib.request

import boto3

ACTIVE = ["SUBMITTED", "PENDING", "SCHEDULED", "RUNNING", "QUEUED", "CANCELLING"]
emr = None


def client():
    global emr
    emr = emr or boto3.client("emr-serverless")
    return emr


def active_runs(app):
    pages = client().get_paginator("list_job_runs").paginate(applicationId=app, states=ACTIVE)
    return [r for p in pages for r in p["jobRuns"]]


def ensure_running(app, token=None):
    running = [r for r in active_runs(app) if r["state"] != "CANCELLING"]
    if running:
        return running[0]["id"]
    args = dict(
        applicationId=app, executionRoleArn=os.environ["EXECUTION_ROLE_ARN"],
        name=os.environ["JOB_NAME"], mode="STREAMING",
        jobDriver=json.loads(os.environ["JOB_DRIVER"]),
        retryPolicy={"maxFailedAttemptsPerHour": int(os.environ["MAX_FAILED_PER_HOUR"])})
    if token:
        args["clientToken"] = token
    run = client().start_job_run(**args)
    print(json.dumps({"message": "started job run", "jobRunId": run["jobRunId"]}))
    return run["jobRunId"]


def wait(condition, deadline, what):
    while not condition():
        if time.time() > deadline:
            raise TimeoutError(f"gave up waiting for {what}")
        time.sleep(10)


def cancel_runs(app, deadline):
    for run in active_runs(app):
        if run["state"] != "CANCELLING":
            client().cancel_job_run(applicationId=app, jobRunId=run["id"])
    wait(lambda: not active_runs(app), deadline, "the job runs to end")


def stop(app, deadline):
    cancel_runs(app, deadline)
    state = client().get_application(applicationId=app)["application"]["state"]
    if state in ("STARTING", "STARTED"):
        client().stop_application(applicationId=app)
    wait(lambda: client().get_application(applicationId=app)["application"]["state"]
         in ("CREATED", "STOPPED", "TERMINATED"), deadline, "the application to stop")


def on_custom_resource(event, deadline):
    app = event["ResourceProperties"]["ApplicationId"]
    kind = event["RequestType"]
    if kind == "Delete":
        stop(app, deadline)
    elif kind == "Update":
        cancel_runs(app, deadline)
        ensure_running(app, event["RequestId"])
    else:
        ensure_running(app, event["RequestId"])
    return app


def respond(event, status, reason, physical_id):
    body = json.dumps({
        "Status": status, "Reason": reason[:1000], "PhysicalResourceId": physical_id,
        "StackId": event["StackId"], "RequestId": event["RequestId"],
        "LogicalResourceId": event["LogicalResourceId"]}).encode()
    request = urllib.request.Request(event["ResponseURL"], data=body, method="PUT",
                                     headers={"Content-Type": ""})
    urllib.request.urlopen(request, timeout=30).close()


def handler(event, context):
    deadline = time.time() + context.get_remaining_time_in_millis() / 1000 - 30
    if "ResponseURL" not in event:
        return ensure_running(os.environ["APPLICATION_ID"], event.get("id"))
    physical = event.get("PhysicalResourceId", event["LogicalResourceId"])
    try:
        physical = on_custom_resource(event, deadline)
        respond(event, "SUCCESS", "done", physical)
    except Exception as error:  # noqa: BLE001 - CloudFormation must hear of every failure
        print(json.dumps({"message": "failed", "error": f"{type(error).__name__}: {error}"}))
        respond(event, "FAILED", f"{type(error).__name__}: {error}", physical)
