"""`mlops-cfn smoke`: one sample record to what a live environment serves, checked.

The endpoint is moto's (its answer set through moto's endpoint-results API: moto runs no
model); the API is the real model API (mlops_cfn/data/model_api) serving a model trained here,
on 127.0.0.1, where the stack's ApiUrl points.
"""

import json
import socket
import threading
import time
import urllib.request

import pytest

from tests.test_model_api import api, pack

from .conftest import REGION, run

OUTPUTS = ("EndpointName", "EndpointExists", "ApiUrl", "ApiServiceExists", "AsyncInputS3Uri")
ROOT = {
    "Parameters": {name: {"Type": "String", "Default": ""} for name in OUTPUTS},
    "Resources": {"Nothing": {"Type": "AWS::SQS::Queue"}},
    "Outputs": {name: {"Value": {"Ref": name}} for name in OUTPUTS},
}


def root_stack(aws, **values: str) -> None:
    aws.cfn.create_stack(StackName="mlops-demo-dev", TemplateBody=json.dumps(ROOT),
                         Parameters=[{"ParameterKey": k, "ParameterValue": v}
                                     for k, v in values.items()])


def endpoint_answers(aws, body: str) -> None:
    request = urllib.request.Request(
        f"{aws.url}/moto-api/static/sagemaker/endpoint-results", method="POST",
        data=json.dumps({"region": REGION, "results": [
            {"Body": body, "ContentType": "text/csv"}]}).encode(),
        headers={"Content-Type": "application/json"})
    urllib.request.urlopen(request).read()


def async_endpoint_answers(aws, *results: tuple[bool, str]) -> None:
    """What moto's asynchronous endpoint writes to S3 for the next requests (its
    async-endpoint-results API: moto runs no model)."""
    request = urllib.request.Request(
        f"{aws.url}/moto-api/static/sagemaker/async-endpoint-results", method="POST",
        data=json.dumps({"region": REGION, "results": [
            {"is_failure": failed, "data": data} for failed, data in results]}).encode(),
        headers={"Content-Type": "application/json"})
    urllib.request.urlopen(request).read()


@pytest.fixture(scope="module")
def model_api(tmp_path_factory):
    """The model API on a free local port, serving a one-feature model (the bundled record
    schema's features: value)."""
    import uvicorn
    import xgboost

    rows = [[float(v)] for v in range(200)]
    booster = xgboost.train({"objective": "binary:logistic", "nthread": 1},
                            xgboost.DMatrix(rows, label=[float(r[0] > 100) for r in rows]), 5)
    folder = tmp_path_factory.mktemp("model")
    archive = pack(booster, folder)
    settings = api.Settings(features=("value",), model_data_url=f"file://{archive}")
    app = api.create_app(settings, load=lambda s: api.predictor_from_archive(archive, folder))
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None,
                                           access_log=False))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=1) as answer:
                if answer.status == 200:
                    break
        except OSError:
            time.sleep(0.2)
    else:
        raise AssertionError("the model API did not start")
    yield url
    server.should_exit = True
    thread.join(10)


def test_both_targets_answer_one_prediction(aws, model_api):
    root_stack(aws, EndpointName="mlops-demo-dev-endpoint", EndpointExists="true",
               ApiUrl=model_api, ApiServiceExists="true")
    endpoint_answers(aws, "0.1234\n")
    result = run("smoke", "--region", REGION)
    assert result.exit_code == 0, result.output
    assert "ok: endpoint mlops-demo-dev-endpoint: 0.1234" in result.output
    [api_line] = [line for line in result.output.splitlines() if line.startswith("ok: API ")]
    assert float(api_line.rsplit(": ", 1)[1]) < 0.5  # value 0 is far below the split at 100


def test_an_answer_that_is_not_one_prediction_fails_the_check(aws, model_api):
    root_stack(aws, EndpointName="mlops-demo-dev-endpoint", EndpointExists="true",
               ApiUrl=model_api, ApiServiceExists="true")
    endpoint_answers(aws, "<html>upstream error</html>")
    result = run("smoke", "--region", REGION)
    assert result.exit_code == 1
    assert "FAILED: endpoint mlops-demo-dev-endpoint: not one prediction" in result.output
    assert "ok: API " in result.output


def test_an_api_that_cannot_be_reached_fails_the_check(aws):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    root_stack(aws, ApiUrl=f"http://127.0.0.1:{closed}", ApiServiceExists="true",
               EndpointName="mlops-demo-dev-endpoint", EndpointExists="false")
    result = run("smoke", "--region", REGION)
    assert result.exit_code == 1
    assert "FAILED: API http://127.0.0.1:" in result.output and "answered 0" in result.output
    assert "note: no SageMaker endpoint yet" in result.output


def test_before_anything_serves_there_is_nothing_to_check(aws):
    root_stack(aws, EndpointName="mlops-demo-dev-endpoint", EndpointExists="false",
               ApiUrl="http://internal", ApiServiceExists="false")
    result = run("smoke", "--region", REGION)
    assert result.exit_code == 0, result.output
    assert "nothing serves yet" in result.output


def test_a_stack_that_does_not_exist_is_one_line_and_exit_2(aws):
    result = run("smoke", "--region", REGION)
    assert result.exit_code == 2
    assert "no such stack" in result.output.strip().splitlines()[-1]


ASYNC_BUCKET = "mlops-demo-dev-artifacts-123456789012-us-east-1"


def test_an_asynchronous_endpoint_gets_the_record_through_s3_and_answers_into_s3(aws):
    aws.bucket(ASYNC_BUCKET)
    root_stack(aws, EndpointName="mlops-demo-dev-endpoint", EndpointExists="true",
               AsyncInputS3Uri=f"s3://{ASYNC_BUCKET}/async/input")
    async_endpoint_answers(aws, (False, "0.875\n"))
    result = run("smoke", "--region", REGION, "--endpoint-only")
    assert result.exit_code == 0, result.output
    assert "ok: asynchronous endpoint mlops-demo-dev-endpoint: 0.875" in result.output
    [request] = aws.client("s3").list_objects_v2(
        Bucket=ASYNC_BUCKET, Prefix="async/input/smoke/")["Contents"]
    body = aws.client("s3").get_object(Bucket=ASYNC_BUCKET, Key=request["Key"])["Body"]
    assert body.read().decode() == "0\n", "the sample record of the bundled schema (value)"


def test_a_failed_asynchronous_request_fails_the_check_with_its_error(aws):
    aws.bucket(ASYNC_BUCKET)
    root_stack(aws, EndpointName="mlops-demo-dev-endpoint", EndpointExists="true",
               AsyncInputS3Uri=f"s3://{ASYNC_BUCKET}/async/input")
    async_endpoint_answers(aws, (True, "ModelError: cannot parse the record"))
    result = run("smoke", "--region", REGION, "--endpoint-only")
    assert result.exit_code == 1
    assert ("FAILED: asynchronous endpoint mlops-demo-dev-endpoint: the request failed: "
            "'ModelError: cannot parse the record'") in result.output


def test_an_answer_that_never_comes_fails_after_the_wait():
    """No moto here: an endpoint that takes the request and never writes an answer."""
    from botocore.exceptions import ClientError

    from mlops_cfn.smoke import check_async_endpoint

    class Runtime:
        def invoke_endpoint_async(self, **request):
            return {"OutputLocation": "s3://b/async/output/1.out",
                    "FailureLocation": "s3://b/async/failure/1-error.out"}

    class S3:
        written: list[str] = []

        def put_object(self, Bucket, Key, **_):
            self.written.append(f"s3://{Bucket}/{Key}")

        def get_object(self, Bucket, Key):
            raise ClientError({"Error": {"Code": "NoSuchKey"}}, "GetObject")

    now, waits = [0.0], []

    def sleep(seconds):
        waits.append(seconds)
        now[0] += seconds

    found = check_async_endpoint(Runtime(), S3(), "e", "s3://b/async/input", "0\n",
                                 timeout=60, sleep=sleep, clock=lambda: now[0])
    assert not found.ok and found.detail == "no answer at s3://b/async/output/1.out within 60 s"
    assert sum(waits) >= 60 and S3.written[0].startswith("s3://b/async/input/smoke/")
