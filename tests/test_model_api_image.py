"""The model API's image, built from its Dockerfile and run as the Fargate task runs it.

The base image comes from scripts/install-model-api-base (Debian packages, no registry needed;
scripts/test runs it and sets MLOPS_CFN_MODEL_API_BASE). The container runs the way the task
definition demands: non-root, read-only root filesystem, /tmp writable, no capabilities; it
loads a real model trained here and answers as the booster does.
"""

import json
import os
import shutil
import subprocess
import time
import urllib.error
import urllib.request
import uuid

import pytest

from tests.test_model_api import APP_DIR, direct, generated_rows, pack

BASE_ENV = "MLOPS_CFN_MODEL_API_BASE"
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("model-api-image")]


def docker(*arguments: str, timeout: int = 600, check: bool = True) -> str:
    result = subprocess.run(["docker", *arguments], capture_output=True, text=True,
                            timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f"docker {' '.join(arguments)}: {result.stdout}{result.stderr}")
    return result.stdout.strip()


@pytest.fixture(scope="module")
def image():
    base = os.environ.get(BASE_ENV)
    assert base, (f"{BASE_ENV} is not set: run scripts/install-model-api-base (as root) and "
                  f"export {BASE_ENV} to the image it prints (scripts/test does both)")
    assert shutil.which("docker"), "no docker client (scripts/install-model-api-base installs it)"
    tag = f"mlops-cfn-model-api-test:{uuid.uuid4().hex[:12]}"
    docker("build", "--quiet", "--build-arg", f"BASE_IMAGE={base}", "--tag", tag, str(APP_DIR),
           timeout=1200)
    yield tag
    docker("rmi", "--force", tag, check=False)


def wait_healthy(port: int, container: str, seconds: int = 60) -> dict:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as answer:
                return json.loads(answer.read())
        except (urllib.error.URLError, ConnectionError):
            time.sleep(0.3)
    raise AssertionError("not healthy in time: " + docker("logs", container, check=False))


def test_the_image_serves_the_model_as_the_task_definition_runs_it(image, tmp_path):
    import xgboost

    rows, labels = generated_rows(300)
    booster = xgboost.train({"objective": "binary:logistic", "max_depth": 3, "nthread": 1},
                            xgboost.DMatrix(rows, label=labels), num_boost_round=10)
    archive = pack(booster, tmp_path / "model")
    archive.chmod(0o644)
    name = f"model-api-{uuid.uuid4().hex[:8]}"
    features = ["value", "amount", "is_repeat"]
    # The scratch volume as ECS gives it: a fresh volume over /tmp that takes the image's
    # ownership and mode because the image declares VOLUME /tmp (not a world-writable tmpfs).
    docker("run", "--detach", "--name", name, "--read-only", "--volume", "/tmp",
           "--user", "1000:1000", "--cap-drop", "ALL", "--publish", "127.0.0.1::8080",
           "--volume", f"{archive}:/model/model.tar.gz:ro",
           "--env", "MODEL_DATA_URL=file:///model/model.tar.gz",
           "--env", f"MODEL_FEATURES={json.dumps(features)}", image)
    try:
        port = int(docker("port", name, "8080/tcp").splitlines()[0].rsplit(":", 1)[1])
        assert wait_healthy(port, name)["status"] == "ready"
        sample, _ = generated_rows(5, seed=9)
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/predict",
            data=json.dumps({"records": [dict(zip(features, r)) for r in sample.tolist()]})
            .encode(), headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=10) as answer:
            predictions = [p["score"] for p in json.loads(answer.read())["predictions"]]
        assert predictions == pytest.approx(direct(booster, sample), abs=1e-6)
        # ECS stops a task with SIGTERM, then SIGKILL after its stop timeout (30 s).
        started = time.monotonic()
        docker("stop", "--time", "30", name)
        assert time.monotonic() - started < 10, "the API did not stop on SIGTERM"
        state = json.loads(docker("inspect", name))[0]["State"]
        assert state["OOMKilled"] is False
        logs = [json.loads(line) for line in docker("logs", name).splitlines()
                if line.startswith("{")]
        assert "Finished server process" in " ".join(e["message"] for e in logs)
        assert any(e.get("path") == "/predict" and e.get("status") == 200 for e in logs)
    finally:
        docker("rm", "--force", name, check=False)


def test_the_image_declares_its_scratch_volume_writable_by_any_user(image):
    config = json.loads(docker("image", "inspect", image))[0]["Config"]
    assert "/tmp" in (config.get("Volumes") or {})
    mode = docker("run", "--rm", "--entrypoint", "/usr/bin/stat", image, "-c", "%a %U", "/tmp")
    assert mode == "1777 root"


def test_the_image_runs_as_a_user_that_cannot_write_its_own_code(image):
    output = docker("run", "--rm", "--read-only", "--entrypoint", "/bin/sh", image, "-c",
                    "id -u; touch /opt/model-api/app.py 2>&1 || echo refused")
    lines = output.splitlines()
    assert lines[0] == "1000"
    assert lines[-1] == "refused"
