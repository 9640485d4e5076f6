"""The config reference and the starter file come from the model and stay true to it."""

import json
from pathlib import Path

import yaml
from click.testing import CliRunner

from mlops_cfn.cli import cli
from mlops_cfn.config import PipelineConfig, load, load_data
from mlops_cfn.reference import REFERENCE_PATH, config_reference, sections, starter_config

REPO = Path(__file__).resolve().parents[1]


def test_docs_config_md_is_up_to_date():
    committed = (REPO / REFERENCE_PATH).read_text()
    assert committed == config_reference(), "refresh with: scripts/gen-config-docs"


def test_the_reference_documents_every_key_of_every_section():
    text = config_reference()
    for path, model in sections():
        assert f"## {path or 'top-level'}\n" in text
        for name in model.model_fields:
            assert f"| `{name}` |" in text, (path, name)


def test_per_environment_keys_name_their_parameter():
    text = config_reference()
    assert "| `shards` | integer >= 1, <= 500 | `2` | `StreamShardCount` |" in text


def test_the_starter_file_loads_to_the_defaults():
    data = yaml.safe_load(starter_config("churn"))
    assert load_data(data, "pipeline.yaml").config == load_data(
        {"project": "churn"}, "pipeline.yaml").config


def test_the_starter_file_behaves_as_no_file_for_a_prod_environment_added_to_it():
    # Keys whose absence is meaningful stay commented out: an uncommented `protected: false`
    # would leave a prod environment added later unguarded.
    data = yaml.safe_load(starter_config("churn"))
    data["environments"]["prod"] = {}
    bare = {"project": "churn", "environments": {"dev": {}, "prod": {}}}
    from_starter = load_data(data, "pipeline.yaml", "prod")
    assert from_starter.config == load_data(bare, "pipeline.yaml", "prod").config
    assert from_starter.config.protected is True


def test_the_starter_file_links_every_section_to_the_reference():
    text = starter_config("churn")
    assert text.startswith("# yaml-language-server: $schema=pipeline.schema.json\n")
    for path, _ in sections():
        if path:
            anchor = path.replace(".", "").lower()
            assert f"  # {REFERENCE_PATH}#{anchor}" in text, path


def test_init_writes_a_starter_and_its_schema_and_refuses_to_overwrite(tmp_path):
    runner = CliRunner()
    target = tmp_path / "churn-model" / "pipeline.yaml"
    result = runner.invoke(cli, ["init", str(target)])
    assert result.exit_code == 0, result.output
    assert load(target).config.project == "churn-model"
    assert (target.parent / "pipeline.schema.json").exists()

    again = runner.invoke(cli, ["init", str(target)])
    assert again.exit_code == 2
    assert again.output.strip() == f"error: {target}: exists; pass --force to overwrite"
    assert runner.invoke(cli, ["init", str(target), "--force", "--project", "other"]).exit_code == 0
    assert load(target).config.project == "other"


def test_init_refuses_a_bad_project_name(tmp_path):
    result = CliRunner().invoke(cli, ["init", str(tmp_path / "p.yaml"), "--project", "Bad Name"])
    assert result.exit_code == 2
    assert "--project: must match" in result.output
    assert not (tmp_path / "p.yaml").exists()


def test_the_schema_describes_the_model():
    schema = PipelineConfig.model_json_schema()
    assert schema["properties"]["stages"]["$ref"].endswith("StagesConfig")


def test_init_into_a_directory_writes_that_directorys_pipeline_yaml(tmp_path):
    project = tmp_path / "churn"
    project.mkdir()
    result = CliRunner().invoke(cli, ["init", str(project)])
    assert result.exit_code == 0, result.output
    assert load(project / "pipeline.yaml").config.project == "churn"
    assert (project / "pipeline.schema.json").is_file()


def test_init_beside_an_existing_schema_refreshes_it_and_keeps_other_files(tmp_path):
    # `mlops-cfn schema > pipeline.schema.json`, as the README shows, then a second config.
    (tmp_path / "pipeline.schema.json").write_text("{}")
    (tmp_path / "pipeline.yaml").write_text("project: kept\n")
    result = CliRunner().invoke(cli, ["init", str(tmp_path / "other.yaml")])
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "pipeline.schema.json").read_text())["title"] == "PipelineConfig"
    assert (tmp_path / "pipeline.yaml").read_text() == "project: kept\n"
