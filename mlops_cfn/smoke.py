"""After a deployment, ask what serves for one prediction: the smoke check.

A stack that deployed can still serve nothing useful: an endpoint whose container cannot read
its model, an API task that answers 500, a model trained on other columns. This sends one
sample record, in the training order of the record schema's features (every value 0), to
whatever the environment's live root stack says serves:

- the SageMaker endpoint (EndpointExists and EndpointName outputs), through SageMaker Runtime's
  InvokeEndpoint with `text/csv` in and out, as the built-in XGBoost endpoint takes it;
- the Fargate model API (ApiServiceExists, and ApiUrl: the load balancer, or API Gateway in
  front of it, whose IAM authorization the request is signed for), `GET /health` then `POST
  /predict` with the same CSV row.

Each answer must be one finite number (or one list of them, for a multi-class model); anything
else, an error or a timeout fails the check with one line saying what came back. An environment
where nothing serves yet (no model, no image) passes with a note: there is nothing to check.
"""

from __future__ import annotations

import math
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from .deploy import Aws, aws_errors, describe_stack

TIMEOUT_SECONDS = 30


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
    if outputs.get("EndpointExists") == "true" and outputs.get("EndpointName"):
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
