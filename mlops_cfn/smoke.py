"""After a deployment, ask what serves for one prediction: the smoke check.

A stack that deployed can still serve nothing useful: an endpoint whose container cannot read
its model, an API task that answers 500, a model trained on other columns. This sends one
sample record, in the training order of the record schema's features (every value 0), to
whatever the environment's live root stack says serves:

- the SageMaker endpoint (EndpointExists and EndpointName outputs), through SageMaker Runtime's
  InvokeEndpoint with `text/csv` in and out, as the built-in XGBoost endpoint takes it; an
  asynchronous endpoint (AsyncInputS3Uri output) gets the record as an object under its input
  prefix and InvokeEndpointAsync, and the answer is read from the output location once SageMaker
  writes it (or the error from the failure location), waiting up to ASYNC_TIMEOUT_SECONDS: an
  endpoint scaled to zero first starts an instance;
- the Fargate model API (ApiServiceExists, and ApiUrl: the load balancer, or API Gateway in
  front of it, whose IAM authorization the request is signed for), `GET /health` then `POST
  /predict` with the same CSV row.

Each answer must be one finite number (or one list of them, for a multi-class model); anything
else, an error or a timeout fails the check with one line saying what came back. An environment
where nothing serves yet (no model, no image) passes with a note: there is nothing to check.
"""

from __future__ import annotations

import math
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from .deploy import Aws, aws_errors, describe_stack

TIMEOUT_SECONDS = 30
# An asynchronous endpoint scaled to zero starts an instance first (minutes), then answers.
ASYNC_TIMEOUT_SECONDS = 900
ASYNC_POLL_SECONDS = 5


@dataclass(frozen=True)
class Check:
    target: str  # "endpoint <name>" or "API <url>"
    ok: bool
    detail: str  # the prediction, or what was wrong


def sample_row(features: Sequence[str]) -> str:
    """One CSV record of the features, every value 0: valid for any numeric schema."""
    if not features:
        raise ValueError("the record schema has no features to send")
    return ",".join("0" for _ in features) + "\n"


def one_prediction(text: str) -> str | None:
    """The prediction of a one-record CSV answer, or None when the answer is not one (a number,
    or a comma-separated list of numbers on one line)."""
    lines = [line for line in text.strip().splitlines() if line.strip()]
    if len(lines) != 1:
        return None
    try:
        values = [float(v) for v in lines[0].split(",")]
    except ValueError:
        return None
    if not values or not all(math.isfinite(v) for v in values):
        return None
    return lines[0].strip()


def check_endpoint(runtime, endpoint: str, row: str) -> Check:
    target = f"endpoint {endpoint}"
    try:
        with aws_errors(f"invoking {endpoint}"):
            answer = runtime.invoke_endpoint(EndpointName=endpoint, ContentType="text/csv",
                                             Accept="text/csv", Body=row.encode())
    except Exception as error:  # noqa: BLE001 - DeployFailed: AWS's own message
        return Check(target, False, str(error))
    text = answer["Body"].read().decode("utf-8", "replace")
    found = one_prediction(text)
    if found is None:
        return Check(target, False, f"not one prediction: {text[:200]!r}")
    return Check(target, True, found)


def split_s3_uri(uri: str) -> tuple[str, str]:
    """s3://bucket/key -> (bucket, key)."""
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    return bucket, key


def read_if_written(s3, uri: str) -> str | None:
    """The object's text, or None while it does not exist."""
    from botocore.exceptions import ClientError

    bucket, key = split_s3_uri(uri)
    try:
        answer = s3.get_object(Bucket=bucket, Key=key)
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
            return None
        raise
    return answer["Body"].read().decode("utf-8", "replace")


def check_async_endpoint(runtime, s3, endpoint: str, input_uri: str, row: str,
                         timeout: float = ASYNC_TIMEOUT_SECONDS,
                         sleep: Callable[[float], None] = time.sleep,
                         clock: Callable[[], float] = time.monotonic) -> Check:
    """The record as a request object under `input_uri`, InvokeEndpointAsync, then the answer
    from the output location (or the error from the failure location) once written."""
    target = f"asynchronous endpoint {endpoint}"
    bucket, prefix = split_s3_uri(input_uri)
    key = f"{prefix.rstrip('/')}/smoke/{uuid.uuid4().hex}.csv"
    try:
        with aws_errors(f"writing the request s3://{bucket}/{key}"):
            s3.put_object(Bucket=bucket, Key=key, Body=row.encode(), ContentType="text/csv")
        with aws_errors(f"invoking {endpoint}"):
            answer = runtime.invoke_endpoint_async(
                EndpointName=endpoint, InputLocation=f"s3://{bucket}/{key}",
                ContentType="text/csv", Accept="text/csv")
        output, failure = answer["OutputLocation"], answer.get("FailureLocation")
        deadline = clock() + timeout
        while True:
            with aws_errors(f"reading the answer {output}"):
                text = read_if_written(s3, output)
                error = read_if_written(s3, failure) if failure else None
            if text is not None:
                found = one_prediction(text)
                if found is None:
                    return Check(target, False, f"not one prediction: {text[:200]!r}")
                return Check(target, True, found)
            if error is not None:
                return Check(target, False, f"the request failed: {error[:200]!r}")
            if clock() >= deadline:
                return Check(target, False, f"no answer at {output} within {timeout:.0f} s")
            sleep(ASYNC_POLL_SECONDS)
    except Exception as error:  # noqa: BLE001 - DeployFailed: AWS's own message
        return Check(target, False, str(error))


def check_api(url: str, row: str, send: Callable[[urllib.request.Request], tuple[int, str]]
              ) -> Check:
    target = f"API {url}"
    base = url.rstrip("/")
    status, text = send(urllib.request.Request(f"{base}/health"))
    if status != 200:
        return Check(target, False, f"GET /health answered {status}: {text[:200]!r}")
    status, text = send(urllib.request.Request(
        f"{base}/predict", data=row.encode(), method="POST",
        headers={"Content-Type": "text/csv", "Accept": "text/csv"}))
    if status != 200:
        return Check(target, False, f"POST /predict answered {status}: {text[:200]!r}")
    found = one_prediction(text)
    if found is None:
        return Check(target, False, f"POST /predict: not one prediction: {text[:200]!r}")
    return Check(target, True, found)


def http_sender(aws: Aws, url: str) -> Callable[[urllib.request.Request], tuple[int, str]]:
    """Sends a request, signed with SigV4 for API Gateway's IAM authorization when `url` is an
    execute-api URL; returns the status and body (an unreachable URL is status 0)."""
    signed = ".execute-api." in url

    def send(request: urllib.request.Request) -> tuple[int, str]:
        if signed:
            from botocore.auth import SigV4Auth
            from botocore.awsrequest import AWSRequest

            aws_request = AWSRequest(method=request.get_method(), url=request.full_url,
                                     data=request.data, headers=dict(request.header_items()))
            SigV4Auth(aws.session.get_credentials(), "execute-api", aws.region).add_auth(
                aws_request)
            request = urllib.request.Request(request.full_url, data=request.data,
                                             method=request.get_method(),
                                             headers=dict(aws_request.headers.items()))
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT_SECONDS) as answer:
                return answer.status, answer.read().decode("utf-8", "replace")
        except urllib.error.HTTPError as error:
            return error.code, error.read().decode("utf-8", "replace")
        except (urllib.error.URLError, OSError) as error:
            return 0, f"unreachable: {getattr(error, 'reason', error)}"

    return send


def smoke(aws: Aws, stack_name: str, features: Sequence[str],
          send: Callable[[urllib.request.Request], tuple[int, str]] | None = None,
          endpoint_only: bool = False) -> tuple[list[Check], list[str]]:
    """The checks of what `stack_name` serves, and notes (what was not checked, and why)."""
    from .errors import UserError

    with aws_errors(f"reading stack {stack_name}"):
        stack = describe_stack(aws.client("cloudformation"), stack_name)
    if stack is None:
        raise UserError(f"--stack-name {stack_name}: no such stack; deploy it first")
    outputs = {o["OutputKey"]: o.get("OutputValue", "") for o in stack.get("Outputs", [])}
    row = sample_row(features)
    checks, notes = [], []
    if (outputs.get("EndpointExists") == "true" and outputs.get("EndpointName")
            and outputs.get("AsyncInputS3Uri")):
        checks.append(check_async_endpoint(
            aws.client("sagemaker-runtime"), aws.client("s3"), outputs["EndpointName"],
            outputs["AsyncInputS3Uri"], row))
    elif outputs.get("EndpointExists") == "true" and outputs.get("EndpointName"):
        checks.append(check_endpoint(aws.client("sagemaker-runtime"), outputs["EndpointName"],
                                     row))
    elif "EndpointName" in outputs:
        notes.append("no SageMaker endpoint yet (no model named): not checked")
    api_url = outputs.get("ApiUrl", "")
    if endpoint_only and "ApiServiceExists" in outputs:
        notes.append("the Fargate API: not checked (--endpoint-only)")
    elif outputs.get("ApiServiceExists") == "true" and api_url:
        checks.append(check_api(api_url, row, send or http_sender(aws, api_url)))
    elif "ApiServiceExists" in outputs:
        notes.append("no Fargate API service yet (no image or no model named): not checked")
    return checks, notes
