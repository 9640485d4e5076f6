"""Extension stages (issue 14, points 2 and 4): a package adds a stage through the entry point group
`mlops_cfn.stages`, configured under `extensions.<name>` and checked by its own model; every verb
includes it, and the roles that deploy the templates (the delivery pipeline's, Service Catalog's)
follow what its template contains.

The extension is examples/extension/ (a DynamoDB table), installed per test through
importlib.metadata as pip would register it (tests/extension_example.py).
"""

import json
from pathlib import Path

import boto3
import cfn_flip
import pytest
import yaml
from click.testing import CliRunner
from moto import mock_aws

from mlops_cfn import config, pipeline
from mlops_cfn.cli import cli
from mlops_cfn.config import extensions
from mlops_cfn.config.extensions import GROUP
from mlops_cfn.config.schema import pipeline_schema
from mlops_cfn.errors import UserError

from .extension_example import EXAMPLE, declared_entry_points, install
from .helpers import default_data

TABLE = {"partition_key": "entity_id", "sort_key": "event_time", "sort_key_type": "N"}


@pytest.fixture
def dynamodb_extension(tmp_path, monkeypatch):
    install(tmp_path, monkeypatch)


def data_with_table(**section) -> dict:
    data = default_data()
    data["extensions"] = {"dynamodb": {**TABLE, **section}}
    return data


def write_config(path: Path, data: dict) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def cli_run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def deploy_role_actions(cicd_template: dict) -> set[str]:
    resources = cicd_template["Resources"]
    managed = [resources[ref["Ref"]] for ref in
               resources["DeployRole"]["Properties"]["ManagedPolicyArns"] if "Ref" in ref]
    return {action for policy in managed
            for statement in policy["Properties"]["PolicyDocument"]["Statement"]
            for action in statement["Action"]}


# --- the package declares what the loader reads ---------------------------------------------------

def test_the_example_declares_its_stage_in_the_group_the_loader_reads():
    assert declared_entry_points() == {GROUP: {"dynamodb": "mlops_cfn_dynamodb:STAGE"}}


def test_the_example_is_a_package_setuptools_installs():
    import tomllib

    pyproject = tomllib.loads((EXAMPLE / "pyproject.toml").read_text())
    assert pyproject["build-system"]["build-backend"] == "setuptools.build_meta"
    assert pyproject["tool"]["setuptools"]["packages"] == ["mlops_cfn_dynamodb"]
    assert (EXAMPLE / "mlops_cfn_dynamodb" / "__init__.py").is_file()
    assert "mlops-cfn" in pyproject["project"]["dependencies"]


# --- the section ----------------------------------------------------------------------------------

def test_the_section_is_validated_by_the_extensions_own_model(dynamodb_extension):
    loaded = config.load_data(data_with_table(), "pipeline.yaml")
    section = loaded.config.extensions.dynamodb
    assert type(section).__name__ == "DynamoDbConfig"
    assert (section.partition_key, section.sort_key, section.sort_key_type) == (
        "entity_id", "event_time", "N")


def test_an_unknown_key_under_an_extension_is_one_line_naming_the_allowed_keys(
        dynamodb_extension):
    with pytest.raises(UserError) as error:
        config.load_data(data_with_table(billing="cheap"), "pipeline.yaml")
    assert list(error.value.problems) == [
        "pipeline.yaml: extensions.dynamodb.billing: unknown key (allowed: enabled, purpose, "
        "partition_key, partition_key_type, sort_key, sort_key_type, recovery_period_days)"]


def test_a_bad_value_under_an_extension_names_its_path_in_the_environment(dynamodb_extension):
    data = data_with_table()
    data["environments"]["prod"] = {"extensions": {"dynamodb": {"recovery_period_days": 90}}}
    with pytest.raises(UserError) as error:
        config.load_data(data, "pipeline.yaml")
    assert list(error.value.problems) == [
        "pipeline.yaml: environments.prod.extensions.dynamodb.recovery_period_days: "
        "must be <= 35 (got 90)"]


def test_an_extension_nobody_installed_is_one_line_naming_the_installed_ones(dynamodb_extension):
    data = default_data()
    data["extensions"] = {"dynamo": {}}
    with pytest.raises(UserError) as error:
        config.load_data(data, "pipeline.yaml")
    assert list(error.value.problems) == [
        "pipeline.yaml: extensions.dynamo: no installed extension stage 'dynamo' (installed: "
        "dynamodb; a package adds one under the entry point group mlops_cfn.stages)"]


def test_the_cli_refuses_an_unknown_extension_key_with_exit_2_and_writes_nothing(
        dynamodb_extension, tmp_path):
    path = write_config(tmp_path / "pipeline.yaml", data_with_table(billing="cheap"))
    result = cli_run("render", "--config", path, "--out", tmp_path / "out")
    assert result.exit_code == 2
    assert result.output.count("\n") == 1
    assert "extensions.dynamodb.billing: unknown key" in result.output
    assert not (tmp_path / "out").exists()


def test_without_the_package_the_section_is_refused(tmp_path, monkeypatch):
    # As on a machine where nothing registers in the group (even if this one has the example
    # installed).
    monkeypatch.setattr(extensions, "available", lambda: {})
    path = write_config(tmp_path / "pipeline.yaml", data_with_table())
    result = cli_run("render", "--config", path, "--out", tmp_path / "out")
    assert result.exit_code == 2
    assert "extensions.dynamodb: no installed extension stage 'dynamodb'" in result.output


def test_an_extension_may_not_take_the_name_of_a_stage_of_mlops_cfn(tmp_path, monkeypatch):
    info = tmp_path / "impostor-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: impostor\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[{GROUP}]\nstorage = mlops_cfn_dynamodb:STAGE\n")
    monkeypatch.syspath_prepend(str(EXAMPLE))
    monkeypatch.syspath_prepend(str(tmp_path))
    data = default_data()
    data["extensions"] = {"storage": {}}
    with pytest.raises(UserError) as error:
        config.load_data(data, "pipeline.yaml")
    [problem] = error.value.problems
    assert problem.startswith("pipeline.yaml: extensions.storage: entry point storage = "
                              "mlops_cfn_dynamodb:STAGE in group mlops_cfn.stages: the name must")
    assert "storage" in problem.split("mlops-cfn's own stages")[1]


# --- the stage in the pipeline --------------------------------------------------------------------

def test_the_stage_is_wired_to_the_data_key_by_name_and_keeps_its_data(dynamodb_extension):
    built = pipeline.build(config.load_data(data_with_table(), "pipeline.yaml"))
    stage = next(s for s in built.stages if s.name == "dynamodb")
    table = stage.template.to_dict()["Resources"]["Table"]
    assert table["Properties"]["SSESpecification"] == {
        "SSEEnabled": True, "SSEType": "KMS", "KMSMasterKeyId": {"Ref": "DataKeyArn"}}
    assert table["Properties"]["PointInTimeRecoverySpecification"] == {
        "PointInTimeRecoveryEnabled": True,
        "RecoveryPeriodInDays": {"Ref": "FeatureTableRecoveryDays"}}
    assert (table["DeletionPolicy"], table["UpdateReplacePolicy"]) == ("Retain", "Retain")
    root = built.root.to_dict()["Resources"]["DynamodbStack"]
    assert root["Properties"]["Parameters"]["DataKeyArn"] == {
        "Fn::GetAtt": ["StorageStack", "Outputs.DataKeyArn"]}
    names = [s.name for s in built.stages]
    assert names.index("storage") < names.index("dynamodb")


def test_a_disabled_section_leaves_the_stage_out(dynamodb_extension):
    built = pipeline.build(config.load_data(data_with_table(enabled=False), "pipeline.yaml"))
    assert "dynamodb" not in [s.name for s in built.stages]


def test_environments_differing_only_in_the_extensions_setting_share_its_template(
        dynamodb_extension):
    data = data_with_table()
    data["environments"]["dev"] = {**(data["environments"]["dev"] or {}),
                                   "extensions": {"dynamodb": {"recovery_period_days": 7}}}
    loaded = config.load_data(data, "pipeline.yaml")
    dev, prod = pipeline.build_all(loaded, ["dev", "prod"])
    assert [s for s in dev.stages if s.name == "dynamodb"] == [
        s for s in prod.stages if s.name == "dynamodb"]
    assert (dev.parameters["FeatureTableRecoveryDays"],
            prod.parameters["FeatureTableRecoveryDays"]) == ("7", "35")


def test_the_delivery_pipelines_deploy_role_holds_the_tables_permissions(dynamodb_extension):
    built = pipeline.build(config.load_data(data_with_table(), "pipeline.yaml"))
    cicd = next(s for s in built.stages if s.name == "cicd")
    actions = deploy_role_actions(cicd.template.to_dict())
    assert {"dynamodb:CreateTable", "dynamodb:UpdateTable", "dynamodb:DeleteTable",
            "dynamodb:UpdateContinuousBackups"} <= actions


def test_without_the_extension_the_deploy_role_has_no_dynamodb_permission():
    built = pipeline.build(config.load_data(default_data(), "pipeline.yaml"))
    cicd = next(s for s in built.stages if s.name == "cicd")
    assert not {a for a in deploy_role_actions(cicd.template.to_dict())
                if a.startswith("dynamodb:")}


# --- every verb -----------------------------------------------------------------------------------

def test_render_writes_the_stage_and_validate_passes_it(dynamodb_extension, tmp_path):
    path = write_config(tmp_path / "pipeline.yaml", data_with_table())
    out = tmp_path / "templates"
    result = cli_run("render", "--config", path, "--all-envs", "--out", out)
    assert result.exit_code == 0, result.output
    for env in ("dev", "prod"):
        assert (out / env / "dynamodb.yaml").is_file()
        values = json.loads((out / env / "parameters.json").read_text())["Parameters"]
        assert values["FeatureTableRecoveryDays"] == "35"
    result = cli_run("validate", "--no-cache", "--no-security", out / "dev" / "dynamodb.yaml",
                     out / "dev" / "root.yaml")
    assert result.exit_code == 0, result.output


def test_graph_draws_the_stage_and_its_wire(dynamodb_extension, tmp_path):
    path = write_config(tmp_path / "pipeline.yaml", data_with_table())
    result = cli_run("graph", "--config", path)
    assert result.exit_code == 0, result.output
    assert 'dynamodb_Table["Table<br/><small>DynamoDB::Table</small>"]' in result.output
    assert "storage -->|DataKeyArn| dynamodb" in result.output


def test_the_schema_describes_the_installed_extensions_keys(dynamodb_extension):
    schema = json.loads(cli_run("schema").output)
    sections = schema["properties"]["extensions"]
    definition = schema["$defs"][sections["$ref"].rsplit("/", 1)[1]]
    table = schema["$defs"][definition["properties"]["dynamodb"]["anyOf"][0]["$ref"]
                            .rsplit("/", 1)[1]]
    assert table["additionalProperties"] is False
    assert {"partition_key", "sort_key", "recovery_period_days"} <= set(table["properties"])


def test_without_extensions_the_schema_refuses_any_extension_section():
    schema = pipeline_schema(extensions={})
    definition = schema["$defs"]["ExtensionsConfig"]
    assert definition["properties"] == {} and definition["additionalProperties"] is False


def test_the_service_catalog_launch_role_holds_the_tables_permissions(
        dynamodb_extension, tmp_path, monkeypatch):
    for name, value in (("AWS_ACCESS_KEY_ID", "testing"), ("AWS_SECRET_ACCESS_KEY", "testing"),
                        ("AWS_DEFAULT_REGION", "us-east-1")):
        monkeypatch.setenv(name, value)
    for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    data = data_with_table()
    data["stages"]["cicd"] = {"enabled": False}
    path = write_config(tmp_path / "pipeline.yaml", data)
    with mock_aws():
        boto3.client("s3", region_name="us-east-1").create_bucket(Bucket="handoff")
        result = cli_run("servicecatalog", "--config", path, "--bucket", "handoff",
                         "--out", tmp_path / "bundle")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "bundle" / "templates" / "dynamodb.yaml").is_file()
    portfolio = cfn_flip.load_yaml((tmp_path / "bundle" / "portfolio.yaml").read_text())
    actions = {action
               for resource in portfolio["Resources"].values()
               if resource["Type"] == "AWS::IAM::ManagedPolicy"
               for statement in resource["Properties"]["PolicyDocument"]["Statement"]
               for action in statement["Action"]}
    assert {"dynamodb:CreateTable", "dynamodb:DeleteTable"} <= actions
