"""Finding 4 of issue 12: every environment the pipeline deploys can read its own packages.

For every example and every environment, each object a stack reads from the packages bucket
(Glue scripts, pipeline step code, the build's wheel, Lambda zips, nested templates) is readable
by the principal that reads it: s3:GetObject on the object and kms:Decrypt on the bucket's key
through S3 (tests/asset_access.py says who reads what and why).
"""

from pathlib import Path

import pytest

from mlops_cfn import config
from mlops_cfn.config import DEFAULT_CONFIG
from mlops_cfn.stages import cicd

from . import asset_access

REPO = Path(__file__).resolve().parents[1]
CONFIGS = {path.stem: path for path in sorted((REPO / "examples").glob("*.yaml"))}
CONFIGS["default"] = DEFAULT_CONFIG


def expected_kinds(merged, home: bool) -> set[str]:
    """What an environment of this config must be found reading, at least."""
    kinds = {"root template", "CicdStack template", "StorageStack template"}
    if home:
        kinds.add("CicdStack build input MLOPS_CFN_WHEEL")
    if merged.stages.etl.enabled:
        kinds.add("EtlStack Glue script")
    if merged.stages.training.enabled:
        kinds.add("TrainingStack build source" if merged.stages.training.engine == "codebuild"
                  else "TrainingStack pipeline step code")
    if merged.stages.ingestion.enabled and merged.stages.ingestion.ec2_consumer.enabled:
        kinds.add("IngestionStack instance boot download")
    if merged.stages.ingestion.enabled and merged.stages.ingestion.emr_consumer.enabled:
        kinds.add("IngestionStack EMR Serverless job code")
    return kinds


def home_of(loaded) -> str:
    return cicd.home_environment(loaded.config)


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_every_environment_the_pipeline_delivers_reads_its_packages(name):
    loaded = config.load(CONFIGS[name], None)
    report = asset_access.check(loaded, "delivered")
    assert report.problems == []
    for env, merged in loaded.merged.items():
        found = {read.what for read in report.reads if read.environment == env}
        assert expected_kinds(merged, env == home_of(loaded)) <= found, env


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_the_home_environment_deployed_by_hand_reads_its_packages_from_the_users_bucket(name):
    loaded = config.load(CONFIGS[name], None)
    report = asset_access.check(loaded, "bootstrapped")
    assert report.problems == []
    merged = loaded.merged[home_of(loaded)]
    found = {read.what for read in report.reads}
    assert expected_kinds(merged, True) - {"root template", "CicdStack template",
                                           "StorageStack template"} <= found
    assert all(read.key_arn == asset_access.USER_KEY for read in report.reads)


def test_a_reader_without_the_key_is_found_out(monkeypatch):
    """The check fails where a role could read the object but not decrypt it."""
    from mlops_cfn import stage

    monkeypatch.setattr(stage, "key_policies", lambda: [])
    report = asset_access.check(config.load(DEFAULT_CONFIG, None), "delivered")
    assert "prod: EtlStack Glue script: JobRole may not kms:Decrypt" in "\n".join(
        report.problems)


def test_a_reference_nobody_is_known_to_read_is_a_problem():
    """A new kind of consumer cannot slip past the check."""
    from troposphere import Output, sqs

    from mlops_cfn.stage import StageBuilder

    b = StageBuilder("demo", "p", "demo")
    script = b.asset("x.py", b"x")
    b.add(sqs.Queue("Queue", QueueName=script.s3_uri))
    b.template.add_output(Output("Unused", Value="-"))
    place = asset_access.Place("bucket-1", "delivery/", None)
    resolver = asset_access.Resolver(b.finish().template.to_dict(), place.parameters())
    [(read, _, reader)] = asset_access.reads_of("dev", b.finish(), resolver, place, None)
    assert read.what.endswith("(no known reader)") and reader == ""
    assert asset_access.evaluate(read, resolver, reader, place) == [
        "dev: DemoStack Queue (no known reader): arn:aws:s3:::bucket-1/delivery/assets/"
        f"{script.key.split('/')[1]}/x.py is read by a principal the check cannot name"]
