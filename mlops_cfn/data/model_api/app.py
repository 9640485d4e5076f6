"""The model API the serving stage runs on Fargate: one XGBoost model behind a small HTTP service.

It serves the model package the stack was deployed for, the same `model.tar.gz` the SageMaker
endpoint serves (the training pipeline's built-in XGBoost artifact, a booster named
`xgboost-model`), so both targets answer the same record with the same number.

- `POST /predict`: a batch of records, as JSON (`{"records": [{feature: value, ...}]}` or
  `{"instances": [[value, ...]]}`, values in the training order) or CSV rows (`text/csv`, no
  header, values in the training order, an empty field or `nan` is a missing value, as for
  SageMaker's built-in XGBoost). Answers as the built-in XGBoost endpoint does ("Common data
  formats for inference", SageMaker Developer Guide): `Accept: application/json` gives
  `{"predictions": [{"score": x}, ...]}`, `Accept: text/csv` one prediction per line; with no
  Accept (or `*/*`) the answer takes the request's type. A malformed body, an unknown or
  missing field, a value that is not a number, or a batch above the configured size is a 4xx
  with a one-line reason.
- `GET /health` (and `GET /ping`, SageMaker's name for it): 200 once the model is loaded, 503
  before; the load balancer sends traffic only then.
- Logs: one JSON object per line on stdout (the task's awslogs driver ships them), each request
  with its id (the `X-Request-Id` header when the caller sends one, a new one otherwise, echoed
  in the answer).

Settings come from the environment the task definition sets:
  MODEL_PACKAGE_ARN  the model package to serve (its ModelDataUrl is read from SageMaker), or
  MODEL_DATA_URL     the s3:// URI of a model.tar.gz (or file:///path, to run the image
                     locally with the archive mounted);
  MODEL_FEATURES     JSON list of the feature names in the order the model learnt them;
  MAX_BATCH_ROWS     largest batch one request may send (default 100);
  PORT               where to listen (default 8080); MODEL_DIR where to unpack (default /tmp).

The model loads in the background, so the process answers health checks (503) while it loads;
if loading fails the process stops (exit status 1) and ECS starts a new task. SIGTERM (what ECS
sends before stopping a task) lets requests in flight finish, then exits.

Run: `python3 app.py` (what the image runs), or `create_app(settings, load)` in tests.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import os
import pathlib
import sys
import tarfile
import threading
import time
import uuid
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

MODEL_FILE = "xgboost-model"  # what the built-in XGBoost algorithm writes in model.tar.gz
# SageMaker's own limit on a real-time request's payload ("InvokeEndpoint", Body): the same
# batch fits both targets.
MAX_BODY_BYTES = 6 * 1024 * 1024
DEFAULT_MAX_BATCH_ROWS = 100
REQUEST_ID_HEADER = "x-request-id"

Predictor = Callable[[Sequence[Sequence[float]]], list[float]]

log = logging.getLogger("model_api")


# --- settings --------------------------------------------------------------------------------

class SettingsError(ValueError):
    """The task's environment does not say what to serve."""


@dataclass(frozen=True)
class Settings:
    features: tuple[str, ...]
    model_package_arn: str = ""
    model_data_url: str = ""
    max_batch_rows: int = DEFAULT_MAX_BATCH_ROWS
    port: int = 8080
    model_dir: pathlib.Path = pathlib.Path("/tmp")

    @classmethod
    def from_environment(cls, environ: dict[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        try:
            features = json.loads(env.get("MODEL_FEATURES", ""))
        except ValueError:
            raise SettingsError("MODEL_FEATURES: expected a JSON list of feature names")
        if (not isinstance(features, list) or not features
                or not all(isinstance(f, str) and f for f in features)
                or len(set(features)) != len(features)):
            raise SettingsError("MODEL_FEATURES: expected a JSON list of distinct feature names")
        package, url = env.get("MODEL_PACKAGE_ARN", ""), env.get("MODEL_DATA_URL", "")
        if bool(package) == bool(url):
            raise SettingsError("set exactly one of MODEL_PACKAGE_ARN and MODEL_DATA_URL")
        if url and not url.startswith(("s3://", "file:///")):
            raise SettingsError("MODEL_DATA_URL: expected s3://bucket/key or file:///path")
        return cls(features=tuple(features), model_package_arn=package, model_data_url=url,
                   max_batch_rows=_positive(env, "MAX_BATCH_ROWS", DEFAULT_MAX_BATCH_ROWS),
                   port=_positive(env, "PORT", 8080),
                   model_dir=pathlib.Path(env.get("MODEL_DIR", "/tmp")))

    @property
    def model(self) -> str:
        return self.model_package_arn or self.model_data_url


def _positive(env, name: str, default: int) -> int:
    raw = env.get(name, "")
    if not raw:
        return default
    if not raw.isdigit() or int(raw) < 1:
        raise SettingsError(f"{name}: expected a positive whole number (got {raw!r})")
    return int(raw)


# --- the model -------------------------------------------------------------------------------

def aws_client(service: str):
    """A client that fails within seconds when a VPC endpoint is missing, so the reason reaches
    the logs before the load balancer gives up on the task (boto3's defaults retry for
    minutes)."""
    import boto3
    from botocore.config import Config

    return boto3.client(service, config=Config(connect_timeout=5, read_timeout=60,
                                               retries={"max_attempts": 3, "mode": "standard"}))


def model_data_url(settings: Settings, sagemaker=None) -> str:
    """Where the model artifact is: given, or the package's first container's ModelDataUrl."""
    if settings.model_data_url:
        return settings.model_data_url
    client = sagemaker or aws_client("sagemaker")
    package = client.describe_model_package(ModelPackageName=settings.model_package_arn)
    return package["InferenceSpecification"]["Containers"][0]["ModelDataUrl"]


def download(url: str, target: pathlib.Path, s3=None) -> pathlib.Path:
    bucket, _, key = url.removeprefix("s3://").partition("/")
    target.mkdir(parents=True, exist_ok=True)
    archive = target / "model.tar.gz"
    (s3 or aws_client("s3")).download_file(bucket, key, str(archive))
    return archive


def extract(archive: pathlib.Path, target: pathlib.Path) -> None:
    """Unpack `archive` into `target`, refusing members that would land outside it."""
    root = target.resolve()
    root.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive) as tar:
        for member in tar.getmembers():
            destination = (root / member.name).resolve()
            if not (root == destination or root in destination.parents):
                raise ValueError(f"{archive}: member {member.name!r} lies outside the archive")
            if not (member.isfile() or member.isdir()):
                raise ValueError(f"{archive}: member {member.name!r} is not a file")
        if hasattr(tarfile, "data_filter"):  # Python 3.11.4 and later (PEP 706)
            tar.extractall(root, filter="data")
        else:
            tar.extractall(root)  # noqa: S202 - every member was checked above


def load_booster(model_file: pathlib.Path):
    """The booster, in XGBoost's own format (what the built-in algorithm 1.3 and later saves) or
    pickled (what older containers wrote)."""
    import xgboost

    booster = xgboost.Booster()
    try:
        with warnings.catch_warnings():
            # The deprecated binary format (what the built-in 1.3-1.7 containers save) loads
            # with a warning on stderr that would break the JSON log lines.
            warnings.simplefilter("ignore")
            booster.load_model(str(model_file))
    except xgboost.core.XGBoostError:
        import pickle

        with model_file.open("rb") as handle:
            booster = pickle.load(handle)  # noqa: S301 - this project's own training artifact
    return booster


def predictor_from_archive(archive: pathlib.Path, workdir: pathlib.Path) -> Predictor:
    import numpy
    import xgboost

    extracted = workdir / "model"
    extract(archive, extracted)
    booster = load_booster(extracted / MODEL_FILE)

    def predict(rows: Sequence[Sequence[float]]) -> list:
        matrix = xgboost.DMatrix(numpy.asarray(rows, dtype=float), missing=math.nan)
        # One number per row, or one list per row for a multi-class objective (multi:softprob).
        return booster.predict(matrix).tolist()

    return predict


def load_model(settings: Settings) -> Predictor:
    url = model_data_url(settings)
    log.info("loading the model", extra={"fields": {"model_data_url": url}})
    if url.startswith("file://"):
        archive = pathlib.Path(url.removeprefix("file://"))
    else:
        archive = download(url, settings.model_dir)
    return predictor_from_archive(archive, settings.model_dir)


# --- requests --------------------------------------------------------------------------------

class BadRequest(Exception):
    def __init__(self, status: int, reason: str):
        super().__init__(reason)
        self.status, self.reason = status, reason


def number(value: Any, where: str) -> float:
    """A feature value as XGBoost takes it: a number, a boolean as 1 or 0, null as missing."""
    if value is None:
        return math.nan
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    if isinstance(value, (int, float)) and math.isfinite(value):
        return float(value)
    raise BadRequest(400, f"{where}: expected a number, true/false or null (got {value!r})")


def rows_from_json(body: bytes, features: Sequence[str]) -> list[list[float]]:
    try:
        document = json.loads(body)
    except ValueError as error:
        raise BadRequest(400, f"the body is not valid JSON ({error})")
    if not isinstance(document, dict) or len(document) != 1 or not (
            set(document) <= {"records", "instances"}):
        raise BadRequest(400, 'expected {"records": [{feature: value}, ...]} or '
                              '{"instances": [[value, ...], ...]}')
    (kind, items), = document.items()
    if not isinstance(items, list):
        raise BadRequest(400, f"{kind}: expected a list")
    rows = []
    for index, item in enumerate(items):
        if kind == "records":
            if not isinstance(item, dict):
                raise BadRequest(400, f"records[{index}]: expected an object of features")
            unknown = sorted(set(item) - set(features))
            if unknown:
                raise BadRequest(400, f"records[{index}]: unknown field {unknown[0]!r} (the "
                                      f"model's features: {', '.join(features)})")
            missing = [f for f in features if f not in item]
            if missing:
                raise BadRequest(400, f"records[{index}]: missing field {missing[0]!r} (send "
                                      "null for a missing value)")
            rows.append([number(item[f], f"records[{index}].{f}") for f in features])
        else:
            if not isinstance(item, list) or len(item) != len(features):
                raise BadRequest(400, f"instances[{index}]: expected a list of "
                                      f"{len(features)} values ({', '.join(features)})")
            rows.append([number(v, f"instances[{index}][{i}]") for i, v in enumerate(item)])
    return rows


def rows_from_csv(body: bytes, features: Sequence[str]) -> list[list[float]]:
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise BadRequest(400, "the body is not UTF-8 text")
    rows = []
    for line_number, fields in enumerate(csv.reader(io.StringIO(text)), start=1):
        if not fields:
            continue
        if len(fields) != len(features):
            raise BadRequest(400, f"line {line_number}: {len(fields)} values, expected "
                                  f"{len(features)} ({', '.join(features)})")
        row = []
        for feature, field in zip(features, fields):
            field = field.strip()
            if not field or field.lower() == "nan":
                row.append(math.nan)
                continue
            try:
                value = float(field)
            except ValueError:
                value = math.inf
            if not math.isfinite(value):
                raise BadRequest(400, f"line {line_number}, {feature}: expected a number "
                                      f"(got {field!r})")
            row.append(value)
        rows.append(row)
    return rows


def parse(content_type: str, body: bytes, settings: Settings) -> list[list[float]]:
    if len(body) > MAX_BODY_BYTES:
        raise BadRequest(413, f"the body is {len(body)} bytes; at most {MAX_BODY_BYTES}")
    media = content_type.split(";")[0].strip().lower()
    if media == "application/json":
        rows = rows_from_json(body, settings.features)
    elif media == "text/csv":
        rows = rows_from_csv(body, settings.features)
    else:
        raise BadRequest(415, f"Content-Type {media or '(none)'!r}: send application/json or "
                              "text/csv")
    if not rows:
        raise BadRequest(400, "the batch is empty")
    if len(rows) > settings.max_batch_rows:
        raise BadRequest(413, f"the batch has {len(rows)} rows; at most "
                              f"{settings.max_batch_rows} per request")
    return rows


def answer_type(accept: str, content_type: str) -> str | None:
    """The answer's media type: the first of Accept's that the API writes; the request's own
    type for none or `*/*` (SageMaker's built-in XGBoost answers CSV to CSV); None when Accept
    names only types the API cannot write."""
    asked = [part.split(";")[0].strip().lower() for part in accept.split(",") if part.strip()]
    for media in asked:
        if media in ("application/json", "text/csv"):
            return media
    if not asked or any(media in ("*/*", "text/*", "application/*") for media in asked):
        return "text/csv" if content_type.split(";")[0].strip().lower() == "text/csv" \
            else "application/json"
    return None


def csv_line(prediction) -> str:
    if isinstance(prediction, list):
        return ",".join(repr(p) for p in prediction) + "\n"
    return f"{prediction!r}\n"


# --- the service -----------------------------------------------------------------------------

class ModelHolder:
    """The predictor once loaded; the state health checks report."""

    def __init__(self):
        self.predict: Predictor | None = None
        self.failure: str | None = None
        self.loaded = threading.Event()


def create_app(settings: Settings, load: Callable[[Settings], Predictor] = load_model,
               on_failure: Callable[[], None] | None = None) -> Starlette:
    """The service. `load` runs in a background thread at start; `on_failure` (default: stop
    the process with status 1) runs when it raises."""
    holder = ModelHolder()

    def load_in_background():
        started = time.monotonic()
        try:
            holder.predict = load(settings)
        except Exception as error:  # noqa: BLE001 - any failure leaves nothing to serve
            holder.failure = f"{type(error).__name__}: {error}"
            log.error("the model could not be loaded",
                      extra={"fields": {"model": settings.model, "error": holder.failure}})
            (on_failure or _exit_with_failure)()
        else:
            log.info("the model is loaded", extra={"fields": {
                "model": settings.model,
                "seconds": round(time.monotonic() - started, 3)}})
        finally:
            holder.loaded.set()

    async def health(request: Request) -> Response:
        if holder.predict is None:
            return JSONResponse({"status": "failed" if holder.failure else "loading"},
                                status_code=503)
        return JSONResponse({"status": "ready", "model": settings.model})

    async def predict(request: Request) -> Response:
        if holder.predict is None:
            return JSONResponse({"error": "the model is not loaded yet"}, status_code=503)
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
            return JSONResponse({"error": f"the body is {declared} bytes; at most "
                                          f"{MAX_BODY_BYTES}"}, status_code=413)
        try:
            rows = parse(request.headers.get("content-type", ""), await request.body(),
                         settings)
        except BadRequest as error:
            return JSONResponse({"error": error.reason}, status_code=error.status)
        predictions = await run_in_threadpool(holder.predict, rows)
        answer = answer_type(request.headers.get("accept", ""),
                             request.headers.get("content-type", ""))
        if answer is None:
            return JSONResponse({"error": "Accept: answers are application/json or text/csv"},
                                status_code=406)
        if answer == "text/csv":
            return PlainTextResponse("".join(csv_line(p) for p in predictions),
                                     media_type="text/csv")
        return JSONResponse({"predictions": [{"score": p} for p in predictions]})

    from contextlib import asynccontextmanager

    @asynccontextmanager
    async def lifespan(app):
        threading.Thread(target=load_in_background, name="load-model", daemon=True).start()
        yield

    app = Starlette(
        routes=[Route("/health", health), Route("/ping", health),
                Route("/predict", predict, methods=["POST"])],
        middleware=[Middleware(RequestLog)],
        lifespan=lifespan,
    )
    app.state.model = holder
    return app


class RequestLog:
    """Gives every request an id (the caller's X-Request-Id or a new one), echoes it, and logs
    one line per request with its outcome."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1")
                   for k, v in scope.get("headers", [])}
        request_id = headers.get(REQUEST_ID_HEADER, "")[:128] or uuid.uuid4().hex
        started = time.monotonic()
        status = {"code": 500}

        async def send_with_id(message):
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
                message.setdefault("headers", [])
                message["headers"] = list(message["headers"]) + [
                    (REQUEST_ID_HEADER.encode(), request_id.encode("latin-1", "replace"))]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            if scope["path"] not in ("/health", "/ping") or status["code"] != 200:
                log.info("request", extra={"fields": {
                    "request_id": request_id, "method": scope["method"],
                    "path": scope["path"], "status": status["code"],
                    "duration_ms": round((time.monotonic() - started) * 1000, 2)}})


def _exit_with_failure():
    # A task that cannot serve should stop: ECS replaces it, and the service's events say why.
    os._exit(1)


# --- logs and start --------------------------------------------------------------------------

class JsonLines(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {"time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S%z"),
                 "level": record.levelname, "logger": record.name,
                 "message": record.getMessage()}
        entry.update(getattr(record, "fields", {}))
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure_logging(stream=None) -> None:
    handler = logging.StreamHandler(stream or sys.stdout)
    handler.setFormatter(JsonLines())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)


def main() -> int:
    configure_logging()
    try:
        settings = Settings.from_environment()
    except SettingsError as error:
        log.error("the task's settings are incomplete", extra={"fields": {"error": str(error)}})
        return 2
    import uvicorn

    # uvicorn stops accepting on SIGTERM and lets requests in flight finish (within ECS's
    # stop timeout, 30 s by default); access logs are ours (RequestLog), in JSON.
    uvicorn.run(create_app(settings), host="0.0.0.0", port=settings.port,  # noqa: S104
                access_log=False, log_config=None, timeout_graceful_shutdown=20,
                server_header=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
