"""Day 90 and after (issue 12, finding 7): every reader of the data lake can still read what it
reads once the buckets' lifecycle rules have moved objects.

Read from the rendered templates, as AWS would run them: the storage classes each bucket's
lifecycle moves objects to (storage stage), against what the other stages read. An object in
GLACIER or DEEP_ARCHIVE answers InvalidObjectState to GetObject until restored (AWS: "Restoring
an archived object"), so a reader of a whole prefix (a Redshift COPY, a SageMaker processing
input, a Spectrum query) must never meet one; the readers of new data only (the ETL job with its
bookmarks, a crawler of new folders) may, provided they skip archived objects.
"""

import ast
import re
from pathlib import Path

import pytest

from mlops_cfn import pipeline
from mlops_cfn.config import load
from mlops_cfn.stages import etl
from tests.helpers import config_with

NEEDS_RESTORE = {"GLACIER", "DEEP_ARCHIVE"}
EXAMPLES = sorted(Path(__file__).resolve().parent.parent.glob("examples/*.yaml"))

VARIANTS = {
    "default": {},
    "deep-archive, processed to glacier-ir": {"stages": {"storage": {
        "archive_storage_class": "DEEP_ARCHIVE", "processed_storage_class": "GLACIER_IR"}}},
    "processed to standard-ia": {"stages": {"storage": {
        "processed_storage_class": "STANDARD_IA"}}},
    "csv, provisioned": {"stages": {"etl": {"output_format": "csv"},
                                    "analytics": {"deployment": "provisioned"}}},
}


def templates_of(loaded) -> dict[str, dict]:
    built = pipeline.build(loaded)
    return {stage.name: stage.template.to_dict() for stage in built.stages}


def all_cases():
    for name, changes in VARIANTS.items():
        yield pytest.param(config_with(changes), id=name)
    for path in EXAMPLES:
        first = load(path)
        for env in first.merged:
            yield pytest.param(first.for_environment(env), id=f"{path.stem}/{env}")


CASES = list(all_cases())
# The cases whose ETL job and raw crawler read the raw bucket.
WITH_ETL = [case for case in CASES if case.values[0].config.stages.etl.enabled]


def target_classes(storage: dict) -> dict[str, set[str]]:
    """Bucket name wire (RawBucketName, ...) -> storage classes its lifecycle moves objects to."""
    by_logical_id = {}
    for logical_id, resource in storage["Resources"].items():
        if resource["Type"] != "AWS::S3::Bucket":
            continue
        rules = resource["Properties"].get("LifecycleConfiguration", {}).get("Rules", [])
        by_logical_id[logical_id] = {t["StorageClass"] for rule in rules
                                     for t in rule.get("Transitions", [])}
    return {name: by_logical_id[output["Value"]["Ref"]]
            for name, output in storage["Outputs"].items()
            if name.endswith("BucketName") and output["Value"].get("Ref") in by_logical_id}


def bucket_wires(text: str) -> set[str]:
    """The bucket name parameters an s3:// URI (in a Sub pattern) names."""
    return set(re.findall(r"s3://\$\{(\w+BucketName)\}", text))


def sub_text(value) -> str:
    if isinstance(value, dict) and "Fn::Sub" in value:
        pattern = value["Fn::Sub"]
        return pattern if isinstance(pattern, str) else pattern[0]
    return value if isinstance(value, str) else ""


def whole_prefix_readers(templates: dict[str, dict]) -> list[tuple[str, str]]:
    """(reader, bucket name wire) for every reader of a whole prefix."""
    readers = []
    for resource in templates.get("analytics", {}).get("Resources", {}).values():
        if resource["Type"] != "AWS::Events::Rule":
            continue
        for target in resource["Properties"]["Targets"]:
            data = target.get("RedshiftDataParameters", {})
            for sql in data.get("Sqls", []) + ([data["Sql"]] if "Sql" in data else []):
                text = sub_text(sql)
                if text.startswith("COPY"):
                    readers += [("Redshift COPY", w) for w in bucket_wires(text)]
                if "EXTERNAL SCHEMA" in text:
                    # Spectrum queries the processed table in place.
                    readers.append(("Redshift Spectrum", "ProcessedBucketName"))
    for resource in templates.get("training", {}).get("Resources", {}).values():
        if resource["Type"] == "AWS::SageMaker::Pipeline":
            body = sub_text(resource["Properties"]["PipelineDefinition"][
                "PipelineDefinitionBody"])
            default_input = re.search(r'"Name": "InputDataUri".*?"DefaultValue": "([^"]+)"',
                                      body, re.S).group(1)
            readers += [("SageMaker training input", w) for w in bucket_wires(default_input)]
        if resource["Type"] == "AWS::CodeBuild::Project":
            # engine codebuild: the training build downloads everything under INPUT_URI.
            for variable in resource["Properties"]["Environment"].get("EnvironmentVariables", []):
                if variable["Name"] == "INPUT_URI":
                    readers += [("CodeBuild training input", w)
                                for w in bucket_wires(sub_text(variable["Value"]))]
    for resource in templates.get("etl", {}).get("Resources", {}).values():
        if (resource["Type"] == "AWS::Glue::Crawler" and resource["Properties"][
                "RecrawlPolicy"]["RecrawlBehavior"] == "CRAWL_EVERYTHING"):
            for target in resource["Properties"]["Targets"]["S3Targets"]:
                readers += [("crawler of every folder", w)
                            for w in bucket_wires(sub_text(target["Path"]))]
    return readers


@pytest.mark.parametrize("loaded", CASES)
def test_no_reader_of_a_whole_prefix_meets_an_object_that_needs_a_restore(loaded):
    templates = templates_of(loaded)
    classes = target_classes(templates["storage"])
    readers = whole_prefix_readers(templates)
    stages = loaded.config.stages
    if stages.analytics.enabled and stages.etl.enabled and stages.analytics.load.enabled:
        assert ("Redshift COPY", "ProcessedBucketName") in readers
    if stages.training.enabled:
        engine = "CodeBuild" if stages.training.engine == "codebuild" else "SageMaker"
        assert (f"{engine} training input", "ProcessedBucketName") in readers
    for reader, bucket in readers:
        assert not classes[bucket] & NEEDS_RESTORE, (
            f"{reader} reads all of {bucket}, whose objects move to {classes[bucket]}")


def test_the_cases_cover_the_etl_stage():
    assert len(WITH_ETL) > len(VARIANTS)


@pytest.mark.parametrize("loaded", WITH_ETL)
def test_readers_of_archived_raw_data_read_only_what_is_new_and_skip_archived_objects(loaded):
    templates = templates_of(loaded)
    archived = target_classes(templates["storage"])["RawBucketName"] & NEEDS_RESTORE
    assert archived, "the raw bucket is the pipeline's archive (the backup to Glacier)"
    crawlers = {name: r["Properties"] for name, r in templates["etl"]["Resources"].items()
                if r["Type"] == "AWS::Glue::Crawler"}
    assert crawlers["RawCrawler"]["RecrawlPolicy"] == {
        "RecrawlBehavior": "CRAWL_NEW_FOLDERS_ONLY"}
    job = next(r["Properties"] for r in templates["etl"]["Resources"].values()
               if r["Type"] == "AWS::Glue::Job")
    assert job["DefaultArguments"]["--job-bookmark-option"] == "job-bookmark-enable"
    assert archived <= set(excluded_storage_classes(etl.JOB_SCRIPT.read_text()))


def excluded_storage_classes(script: str) -> list[str]:
    """The classes the job script's catalog read skips: the `excludeStorageClasses` it passes
    to create_dynamic_frame.from_catalog (AWS: "Excluding Amazon S3 storage classes")."""
    tree = ast.parse(script)
    constants = {node.targets[0].id: ast.literal_eval(node.value) for node in tree.body
                 if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name)
                 and isinstance(node.value, (ast.Tuple, ast.List))}
    for node in ast.walk(tree):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                and node.func.attr == "from_catalog"):
            [options] = [k.value for k in node.keywords if k.arg == "additional_options"]
            [value] = [v for k, v in zip(options.keys, options.values)
                       if ast.literal_eval(k) == "excludeStorageClasses"]
            name = value.args[0].id if isinstance(value, ast.Call) else value.id
            return list(constants[name])
    raise AssertionError("the job script reads no catalog table")
