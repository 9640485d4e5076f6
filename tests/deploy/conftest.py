"""A moto server on 127.0.0.1 (random free port) for the deploy tests, with the support layer.

`moto_server` runs once per test process (pytest-xdist workers each get their own).
`bare_aws` resets it before each test (a failed create can leave moto answering 500 until reset)
and points boto3 at it through AWS_ENDPOINT_URL with throwaway credentials; `aws` also applies the
patches of moto_support.py. Both give an `AwsSandbox` for the test to look around with.
"""

import logging
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import boto3
import pytest
from click.testing import CliRunner

from mlops_cfn.cli import cli

from . import moto_support

REGION = "us-east-1"
BUCKET = "mlops-cfn-test-deployments"


@pytest.fixture(scope="session")
def moto_server():
    from moto.server import ThreadedMotoServer

    moto_support.check_moto_version()
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


def reset(url: str) -> None:
    urllib.request.urlopen(urllib.request.Request(f"{url}/moto-api/reset", method="POST"))


@dataclass
class AwsSandbox:
    url: str
    placeholders: list = field(default_factory=list)

    def client(self, service: str, region: str = REGION):
        return boto3.client(service, region_name=region, endpoint_url=self.url)

    @property
    def cfn(self):
        return self.client("cloudformation")

    @property
    def s3(self):
        return self.client("s3")

    def bucket(self, name: str = BUCKET, region: str = REGION) -> str:
        config = {} if region == "us-east-1" else {
            "CreateBucketConfiguration": {"LocationConstraint": region}}
        self.client("s3", region).create_bucket(Bucket=name, **config)
        return name

    def keys(self, bucket: str = BUCKET) -> list[str]:
        pages = self.s3.get_paginator("list_objects_v2").paginate(Bucket=bucket)
        return sorted(o["Key"] for page in pages for o in page.get("Contents", []))

    def stacks(self) -> dict[str, dict]:
        """Live stacks by name."""
        return {s["StackName"]: s for s in self.cfn.describe_stacks()["Stacks"]
                if s["StackStatus"] != "DELETE_COMPLETE"}

    def nested(self, root: str) -> dict[str, dict]:
        """The root's nested stacks by logical id, each as DescribeStacks returns it."""
        resources = self.cfn.list_stack_resources(StackName=root)["StackResourceSummaries"]
        return {r["LogicalResourceId"]:
                self.cfn.describe_stacks(StackName=r["PhysicalResourceId"])["Stacks"][0]
                for r in resources if r["ResourceType"] == "AWS::CloudFormation::Stack"}

    def resources(self, stack: str) -> dict[str, dict]:
        summaries = self.cfn.list_stack_resources(StackName=stack)["StackResourceSummaries"]
        return {r["LogicalResourceId"]: r for r in summaries}


@pytest.fixture
def bare_aws(moto_server, monkeypatch, tmp_path):
    """The moto server, reset, with boto3 pointed at it: no support patches."""
    reset(moto_server)
    for name in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SESSION_TOKEN", "AWS_REGION"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_server)
    # moto's 500s are answers, not hiccups: retrying them only slows a failing test down.
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    # No user configuration leaks in (profiles, endpoints, retries).
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    return AwsSandbox(moto_server)


@pytest.fixture
def aws(bare_aws):
    """The moto server, reset, with every patch of moto_support.py applied."""
    with moto_support.patched() as placeholders:
        bare_aws.placeholders = placeholders
        yield bare_aws


def run(*args: str, input: str | None = None):
    """The CLI as a user runs it; exceptions other than exit codes propagate."""
    return CliRunner().invoke(cli, [str(a) for a in args], input=input, catch_exceptions=False)


def write_config(path: Path, data: dict) -> Path:
    import yaml

    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path
