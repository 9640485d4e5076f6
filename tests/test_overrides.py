"""pipeline.yaml's `overrides`: one property of one rendered resource, set or deleted by path.

The escape hatch for what the config has no key for: applied where a stage is built, before the
environments share it, so every environment's template carries it and environments that differ
only in values keep byte-identical templates; refused, in one line naming the file and the
field, when it names a stage or resource the pipeline does not have or a path that cannot be;
and judged by `validate` like any other template content.
"""

from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from mlops_cfn import boundary, pipeline
from mlops_cfn.cli import cli
from mlops_cfn.config import load_data
from mlops_cfn.render import render_environments, render_files, write_tree
from mlops_cfn.validate import validate

from .helpers import FOUNDATION_ONLY, _merge, default_data, foundation_config_with, template_dict


def built_with(overrides: dict, env: str = "dev", **changes) -> pipeline.Pipeline:
    return pipeline.build(foundation_config_with({"overrides": overrides, **changes}, env))


def resource(built: pipeline.Pipeline, stage: str, logical_id: str) -> dict:
    [found] = [s for s in built.stages if s.name == stage]
    return template_dict(found)["Resources"][logical_id]


def test_an_override_sets_a_property_creating_the_mappings_on_its_way():
    built = built_with({"storage": {"RawBucket": {
        "VersioningConfiguration.Status": "Suspended",
        "AccelerateConfiguration.AccelerationStatus": "Enabled",
        "ObjectLockEnabled": True,
    }}})
    properties = resource(built, "storage", "RawBucket")["Properties"]
    assert properties["VersioningConfiguration"] == {"Status": "Suspended"}
    assert properties["AccelerateConfiguration"] == {"AccelerationStatus": "Enabled"}
    assert properties["ObjectLockEnabled"] is True
    # the rest of the resource is as the stage made it
    untouched = resource(built_with({}), "storage", "RawBucket")
    assert {k: v for k, v in properties.items()
            if k not in ("VersioningConfiguration", "AccelerateConfiguration",
                         "ObjectLockEnabled")} == \
        {k: v for k, v in untouched["Properties"].items() if k != "VersioningConfiguration"}
    assert resource(built, "storage", "RawBucket")["DeletionPolicy"] == "Retain"


def test_null_deletes_a_property_and_an_index_reaches_into_a_list():
    before = resource(built_with({}), "storage", "RawBucket")["Properties"]
    assert before["LifecycleConfiguration"]["Rules"][0]["Id"] == "archive"
    built = built_with({"storage": {"RawBucket": {
        "NotificationConfiguration": None,
        "LifecycleConfiguration.Rules.0.Id": "to-glacier",
        "LifecycleConfiguration.Rules.1": None,
    }}})
    after = resource(built, "storage", "RawBucket")["Properties"]
    assert "NotificationConfiguration" not in after
    assert [rule["Id"] for rule in after["LifecycleConfiguration"]["Rules"]] == ["to-glacier"]


def test_a_value_may_be_an_intrinsic_function_in_its_long_form():
    built = built_with({"storage": {"RawBucket": {
        "Tags": [{"Key": "owner", "Value": {"Fn::Sub": "${EnvironmentName}-team"}}]}}})
    assert resource(built, "storage", "RawBucket")["Properties"]["Tags"] == [
        {"Key": "owner", "Value": {"Fn::Sub": "${EnvironmentName}-team"}}]


def test_environments_that_differ_only_in_values_keep_identical_templates_with_the_override():
    data = default_data()
    _merge(data, {
        "overrides": {
            "storage": {"RawBucket": {"VersioningConfiguration.Status": "Suspended"}},
            "ingestion": {"IngestStream": {"StreamModeDetails.StreamMode": "PROVISIONED"}}},
        "environments": {"dev": {}, "qa": {"stages": {"ingestion": {"retention_hours": 48}}}}})
    dev, qa = pipeline.build_all(load_data(data, "pipeline.yaml"), ["dev", "qa"])
    assert dev.parameters != qa.parameters
    dev_files, qa_files = render_environments([dev, qa])
    assert {k for k in dev_files if dev_files[k] != qa_files[k]} == {"parameters.json"}
    assert "Status: Suspended" in dev_files["storage.yaml"]
    assert "StreamMode: PROVISIONED" in qa_files["ingestion.yaml"]
    # one stage object for both: the override is applied before they share it
    for a, b in zip(dev.stages, qa.stages, strict=True):
        assert a is b, a.name
    assert [o.field for o in qa.overrides] == [
        "overrides.storage.RawBucket.VersioningConfiguration.Status",
        "overrides.ingestion.IngestStream.StreamModeDetails.StreamMode"]


def test_an_override_of_a_resource_some_environments_lack_acts_where_the_resource_is():
    # the consumer (a structural key) only in prod: dev's ingestion template has no function
    changes = {"stages": {"ingestion": {"consumer": {"enabled": False}}},
               "environments": {"dev": {}, "prod": {
                   "stages": {"ingestion": {"consumer": {"enabled": True}}}}}}
    overrides = {"ingestion": {"ConsumerFunction": {"MemorySize": 512}}}
    dev = built_with(overrides, "dev", **changes)
    prod = built_with(overrides, "prod", **changes)
    assert resource(prod, "ingestion", "ConsumerFunction")["Properties"]["MemorySize"] == 512
    assert "ConsumerFunction" not in template_dict(
        [s for s in dev.stages if s.name == "ingestion"][0])["Resources"]
    assert [o.field for o in prod.overrides] == [
        "overrides.ingestion.ConsumerFunction.MemorySize"]
    assert dev.overrides == ()


def test_what_is_derived_from_the_stages_sees_the_overridden_template():
    """The permissions boundary is derived from the roles' policies after the override."""
    action = "dynamodb:GetItem"
    plain = built_with({})
    built = built_with({"ingestion": {"ConsumerRole": {
        "Policies.0.PolicyDocument.Statement.0.Action": ["kinesis:GetRecords", action]}}})
    assert "dynamodb:*" not in boundary_actions(plain)
    assert "dynamodb:*" in boundary_actions(built)


def boundary_actions(built: pipeline.Pipeline) -> set[str]:
    document = resource(built, boundary.NAME, boundary.RESOURCE)["Properties"]["PolicyDocument"]
    return {action for statement in document["Statement"] if statement["Effect"] == "Allow"
            for action in statement["Action"]}


# --- refused: exit 2, one line naming the file and the field, nothing written -----------------

REFUSED = {
    "an unknown stage": (
        {"overrides": {"storge": {"RawBucket": {"ObjectLockEnabled": True}}}},
        "p.yaml: overrides.storge: no stage 'storge' (stages: network, storage, "),
    "an unknown logical id": (
        {"overrides": {"storage": {"RawBuckt": {"ObjectLockEnabled": True}}}},
        "p.yaml: overrides.storage.RawBuckt.ObjectLockEnabled: no resource RawBuckt in stage "
        "'storage' (resources: AccessLogsBucket, "),
    "a logical id that cannot be one": (
        {"overrides": {"storage": {"Raw-Bucket": {"ObjectLockEnabled": True}}}},
        "p.yaml: overrides.storage.Raw-Bucket: key must be a logical id"),
    "a path with an empty key": (
        {"overrides": {"storage": {"RawBucket": {"VersioningConfiguration..Status": "x"}}}},
        "p.yaml: overrides.storage.RawBucket.VersioningConfiguration..Status: key must be a "
        "property name, then keys or list indexes separated by dots"),
    "a path into a list by name": (
        {"overrides": {"storage": {"RawBucket": {"LifecycleConfiguration.Rules.Id": "x"}}}},
        "p.yaml: overrides.storage.RawBucket.LifecycleConfiguration.Rules.Id: RawBucket "
        "Properties.LifecycleConfiguration.Rules is a list: the next key must be an index "
        "(0 to 1), not 'Id'"),
    "a path through text": (
        {"overrides": {"storage": {"RawBucket": {"VersioningConfiguration.Status.X": "x"}}}},
        "p.yaml: overrides.storage.RawBucket.VersioningConfiguration.Status.X: RawBucket "
        "Properties.VersioningConfiguration.Status is a value (str), not a mapping or a list"),
    "a path into an intrinsic function it does not name": (
        {"overrides": {"storage": {"RawBucket": {"BucketName.Prefix": "x"}}}},
        "p.yaml: overrides.storage.RawBucket.BucketName.Prefix: RawBucket Properties.BucketName "
        "is an intrinsic function (Fn::Sub); name it in the path"),
    "deleting what is not there": (
        {"overrides": {"storage": {"RawBucket": {"AccelerateConfiguration": None}}}},
        "p.yaml: overrides.storage.RawBucket.AccelerateConfiguration: RawBucket has no "
        "Properties.AccelerateConfiguration to delete"),
    "a property the resource type does not have": (
        {"overrides": {"storage": {"RawBucket": {"ObjectLockEnabld": True}}}},
        "p.yaml: overrides.storage.RawBucket.ObjectLockEnabld: AWS::S3::Bucket has no property "
        "ObjectLockEnabld (did you mean 'ObjectLockEnabled'?)"),
    "a value of the wrong kind": (
        {"overrides": {"storage": {"RawBucket": {"LifecycleConfiguration.Rules": {"Id": "x"}}}}},
        "p.yaml: overrides.storage.RawBucket.LifecycleConfiguration.Rules: must be a list for "
        "AWS::S3::Bucket (got a mapping)"),
    "an intrinsic function with the wrong argument": (
        {"overrides": {"storage": {"RawBucket": {"Tags": [{"Key": "a", "Value": {
            "Fn::Sub": ["${A}"]}}]}}}},
        "p.yaml: overrides.storage.RawBucket.Tags: 0.Value: Fn::Sub with an argument "
        "CloudFormation does not take"),
    "a stage no environment enables": (
        {"overrides": {"analytics": {"Namespace": {"DbName": "x"}}}},
        "p.yaml: overrides.analytics: stage 'analytics' is enabled in no environment"),
    "the permissions boundary": (
        {"overrides": {"boundary": {"PermissionsBoundary": {"Description": "x"}}}},
        "p.yaml: overrides.boundary: the permissions boundary is derived from the roles of the "
        "other stages"),
    "an override in one environment": (
        {"environments": {"dev": {}, "prod": {
            "overrides": {"storage": {"RawBucket": {"ObjectLockEnabled": True}}}}}},
        "p.yaml: environments.prod.overrides: is set once for the whole file, not per "
        "environment (every environment deploys the same templates; a value that differs "
        "between environments is a setting)"),
    "a value YAML reads as a date": (
        {"overrides": {"storage": {"RawBucket": {"Tags.0.Value": "A_DATE"}}}},
        "p.yaml: overrides.storage.RawBucket.Tags.0.Value: must be text, a number, true or "
        "false, a list, a mapping or null (quote a date or a time)"),
}


@pytest.mark.parametrize("changes, message", REFUSED.values(), ids=REFUSED.keys())
def test_a_bad_override_is_refused_in_one_line_and_nothing_is_written(tmp_path, changes,
                                                                      message):
    data = default_data()
    _merge(data, FOUNDATION_ONLY)
    _merge(data, changes)
    text = yaml.safe_dump(data, sort_keys=False).replace("A_DATE", "2024-01-01")
    (tmp_path / "p.yaml").write_text(text)
    out = tmp_path / "out"
    result = CliRunner().invoke(cli, ["render", "--config", str(tmp_path / "p.yaml"),
                                      "--all-envs", "--out", str(out)])
    assert result.exit_code == 2, result.output
    [line] = result.output.splitlines()
    assert line.startswith(f"error: {tmp_path / message}"), line
    assert not out.exists()


@pytest.mark.slow
def test_an_override_that_breaks_a_security_rule_still_applies_and_validate_reports_it(tmp_path):
    """The escape hatch does what it is told (the stream loses its KMS encryption); the
    security scan of the rendered templates says what that breaks."""
    built = built_with({"ingestion": {"IngestStream": {"StreamEncryption": None}}})
    assert "StreamEncryption" not in resource(built, "ingestion", "IngestStream")["Properties"]
    write_tree(render_files(built), tmp_path / "dev")
    report = validate([tmp_path / "dev" / "ingestion.yaml"], security=True)
    assert not report.ok
    assert ("CKV_AWS_43", "Ensure Kinesis Stream is securely encrypted") in \
        [(f.rule, f.message) for f in report.findings if f.fails]


def test_the_documented_example_renders_lint_clean_templates_carrying_it(tmp_path):
    text = (Path(__file__).resolve().parents[1] / "docs" / "config.md").read_text()
    section = text[text.index("## overrides: the escape hatch"):]
    example = yaml.safe_load(section.split("```yaml\n", 1)[1].split("```", 1)[0])
    built = pipeline.build(foundation_config_with(example))
    raw = resource(built, "storage", "RawBucket")["Properties"]
    assert raw["ObjectLockEnabled"] is True
    assert raw["LifecycleConfiguration"]["Rules"][0]["Transitions"][0]["StorageClass"] == \
        "DEEP_ARCHIVE"
    consumer = resource(built, "ingestion", "ConsumerFunction")["Properties"]
    assert consumer["EphemeralStorage"] == {"Size": 1024} and "Description" not in consumer
    write_tree(render_files(built), tmp_path / "dev")
    report = validate([tmp_path / "dev"], security=False)
    assert report.ok and not [f for f in report.findings if f.rule != "body-size-request"], \
        report.render()
