"""The command line as a user meets it: exit codes, messages, and what lands on disk."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from mlops_cfn.cli import cli


@pytest.fixture
def in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


def run(*args):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def test_render_with_no_arguments_writes_the_default_dev_pipeline(in_tmp):
    result = run("render")
    assert result.exit_code == 0, result.output
    written = sorted(p.name for p in (in_tmp / "templates" / "dev").iterdir())
    assert written == ["analytics.yaml", "assets", "boundary.yaml", "cicd.yaml", "etl.yaml",
                       "ingestion.yaml",
                       "monitoring.yaml", "network.yaml", "parameters.json", "root.yaml",
                       "serving.yaml", "storage.yaml", "training.yaml"]
    assets = sorted(p.name for p in (in_tmp / "templates/dev/assets").rglob("*") if p.is_file())
    assert assets == ["etl_job.py", "evaluate.py", "prepare.py"]
    parameters = json.loads((in_tmp / "templates/dev/parameters.json").read_text())
    assert parameters["Parameters"]["EnvironmentName"] == "dev"
    assert parameters["Tags"]["mlops-cfn:environment"] == "dev"


def test_nested_template_urls_are_relative_paths_the_aws_cli_can_package(in_tmp):
    run("render")
    root = (in_tmp / "templates/dev/root.yaml").read_text()
    assert "TemplateURL: storage.yaml" in root
    assert "!GetAtt StorageStack.Outputs." in root


def test_render_json_format(in_tmp):
    assert run("render", "--format", "json", "--out", "out").exit_code == 0
    root = json.loads((in_tmp / "out/root.json").read_text())
    assert root["Resources"]["StorageStack"]["Properties"]["TemplateURL"] == "storage.json"


def test_render_all_envs_writes_one_directory_per_environment(in_tmp):
    assert run("render", "--all-envs").exit_code == 0
    assert sorted(p.name for p in (in_tmp / "templates").iterdir()) == ["dev", "prod"]
    dev, prod = in_tmp / "templates/dev", in_tmp / "templates/prod"
    templates = sorted(dev.glob("*.yaml"))
    assert templates
    for template in templates:
        assert template.read_text() == (prod / template.name).read_text(), template.name
    assert (dev / "parameters.json").read_text() != (prod / "parameters.json").read_text()


def test_check_passes_when_in_sync_and_exits_1_on_drift(in_tmp):
    run("render")
    assert run("render", "--check").exit_code == 0
    storage = in_tmp / "templates/dev/storage.yaml"
    storage.write_text(storage.read_text() + "# edited\n")
    result = run("render", "--check")
    assert result.exit_code == 1
    assert "templates/dev/storage.yaml: differs from what the code renders" in result.output
    assert storage.read_text().endswith("# edited\n"), "--check must write nothing"


def test_check_reports_stale_files_the_config_no_longer_renders(in_tmp):
    run("render")
    (in_tmp / "templates/dev/retired.yaml").write_text("Resources: {}\n")
    result = run("render", "--check")
    assert result.exit_code == 1
    assert "retired.yaml: not rendered by the current config (stale)" in result.output


def test_check_compares_in_the_format_already_on_disk(in_tmp):
    run("render", "--format", "json")
    assert run("render", "--check").exit_code == 0
    storage = in_tmp / "templates/dev/storage.json"
    storage.write_text(storage.read_text() + "\n")
    result = run("render", "--check")
    assert result.exit_code == 1
    assert "storage.json: differs" in result.output
    assert "run `mlops-cfn render --format json`" in result.output
    assert run("render", "--check", "--format", "yaml").exit_code == 1  # asked for, compared


def test_rerender_replaces_the_directory_whole(in_tmp):
    run("render")
    (in_tmp / "templates/dev/old-stage.yaml").write_text("Resources: {}\n")
    assert run("render").exit_code == 0
    assert not (in_tmp / "templates/dev/old-stage.yaml").exists()


def test_render_refuses_to_replace_a_directory_it_did_not_write(in_tmp):
    (in_tmp / "mine").mkdir()
    (in_tmp / "mine/notes.txt").write_text("precious")
    result = run("render", "--out", "mine")
    assert result.exit_code == 2
    assert "holds files mlops-cfn did not render (notes.txt)" in result.output
    assert (in_tmp / "mine/notes.txt").read_text() == "precious"


BAD_CONFIGS = {
    "missing file": (None, "error: absent.yaml: no such file"),
    "yaml syntax": ("project: ok\nstages:\n  ingestion: [\n",
                    "error: pipeline.yaml:4:1: YAML syntax error: "),
    "unknown key": ("project: ok\nstages:\n  ingestion:\n    shardz: 2\n",
                    "error: pipeline.yaml: stages.ingestion.shardz: unknown key"),
    "wrong type": ("project: ok\nstages:\n  ingestion:\n    shards: many\n",
                   "error: pipeline.yaml: stages.ingestion.shards: must be a whole number "
                   "(got 'many')"),
    "out of range": ("project: ok\nstages:\n  ingestion:\n    shards: 0\n",
                     "error: pipeline.yaml: stages.ingestion.shards: must be >= 1 (got 0)"),
    "bad environment override": (
        "project: ok\nenvironments:\n  dev: {}\n  prod:\n    log_retention_days: 2\n",
        "error: pipeline.yaml: environments.prod.log_retention_days: must be one of 1, 3"),
    "vpc range with host bits": (
        "project: ok\nnetwork: {cidr: 10.0.0.5/16}\n",
        "error: pipeline.yaml: network.cidr: 10.0.0.5/16 has host bits set; the range is "
        "10.0.0.0/16"),
    "description over CloudFormation's bytes": (
        "project: ok\ndescription: " + "é" * 600 + "\n",
        "error: pipeline.yaml: description: is 1200 bytes in UTF-8; CloudFormation takes at "
        "most 1024"),
    "tag value AWS refuses": (
        "project: ok\ntags: {team: 'a|b'}\n",
        "error: pipeline.yaml: tags.team: must be letters, digits, spaces and _.:/=+-@"),
    "yaml merge key": (
        "project: ok\nbase: &b {x: 1}\nstages:\n  <<: *b\n",
        "error: pipeline.yaml:4:3: YAML syntax error: merge keys (<<) are not supported"),
    "etl script that cannot be read": (
        "project: ok\nstages: {etl: {script: /nonexistent/job.py}}\n",
        "error: pipeline.yaml: stages.etl.script: cannot read '/nonexistent/job.py'"),
    "storage off while others need it": (
        "project: ok\nstages: {storage: {enabled: false}}\n",
        "error: pipeline.yaml: stage 'storage' is disabled, but 'network', 'ingestion'"),
}


@pytest.mark.parametrize("case", BAD_CONFIGS)
def test_bad_input_exits_2_with_one_clear_line_and_writes_nothing(in_tmp, case):
    content, expected = BAD_CONFIGS[case]
    name = "absent.yaml" if content is None else "pipeline.yaml"
    if content is not None:
        (in_tmp / name).write_text(content)
    result = run("render", "--config", name)
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(expected), result.output
    assert "Traceback" not in result.output
    assert sorted(p.name for p in in_tmp.iterdir()) == ([name] if content else [])


def test_a_failed_render_leaves_the_previous_output_untouched(in_tmp):
    run("render")
    before = {p: p.read_bytes() for p in (in_tmp / "templates/dev").rglob("*") if p.is_file()}
    (in_tmp / "pipeline.yaml").write_text("project: ok\nstages: {ingestion: {shards: 0}}\n")
    assert run("render", "--config", "pipeline.yaml").exit_code == 2
    after = {p: p.read_bytes() for p in (in_tmp / "templates/dev").rglob("*") if p.is_file()}
    assert after == before
    assert sorted(p.name for p in (in_tmp / "templates").iterdir()) == ["dev"]


def test_all_envs_writes_no_environment_when_one_cannot_be_written(in_tmp):
    (in_tmp / "p.yaml").write_text("project: ok\nenvironments:\n  dev: {}\n  prod: {}\n")
    (in_tmp / "out/prod").mkdir(parents=True)
    (in_tmp / "out/prod/notes.txt").write_text("precious")
    result = run("render", "--config", "p.yaml", "--all-envs", "--out", "out")
    assert result.exit_code == 2
    assert "out/prod: holds files mlops-cfn did not render" in result.output
    assert sorted(p.name for p in (in_tmp / "out").iterdir()) == ["prod"], "no out/dev"
    assert (in_tmp / "out/prod/notes.txt").read_text() == "precious"


def test_an_out_directory_under_a_file_names_the_file(in_tmp):
    (in_tmp / "f").write_text("x")
    result = run("render", "--out", "f/sub")
    assert result.exit_code == 2
    assert result.output.strip() == \
        "error: f/sub: f is a file, not a directory; choose another --out"


def test_unicode_tags_render_a_parameters_file_cfn_lint_reads(in_tmp):
    (in_tmp / "p.yaml").write_text("project: ok\ntags: {équipe: Zoë}\n", encoding="utf-8")
    assert run("render", "--config", "p.yaml", "--out", "out").exit_code == 0
    text = (in_tmp / "out/parameters.json").read_text(encoding="utf-8")
    assert '"équipe": "Zoë"' in text
    from cfnlint.decode import decode

    _, matches = decode(str(in_tmp / "out/parameters.json"))
    assert matches == []


@pytest.mark.parametrize("kind", ["directory", "broken link", "fifo"])
def test_a_pipeline_yaml_that_is_no_file_is_an_error_not_the_bundled_example(in_tmp, kind):
    local = in_tmp / "pipeline.yaml"
    {"directory": local.mkdir, "broken link": lambda: local.symlink_to("nowhere"),
     "fifo": lambda: os.mkfifo(local)}[kind]()
    result = run("render")
    assert result.exit_code == 2
    assert "error: pipeline.yaml: " in result.output
    assert not (in_tmp / "templates").exists()


@pytest.mark.parametrize("args, message", [
    (["render", "--env", ""], "no environment ''"),
    (["render", "--config", ""], "Invalid value for '--config': an empty file name"),
])
def test_empty_names_are_refused(in_tmp, args, message):
    result = run(*args)
    assert result.exit_code == 2
    assert message in result.output
    assert not (in_tmp / "templates").exists()


def test_debug_shows_the_traceback_and_keeps_the_exit_status(in_tmp):
    result = CliRunner().invoke(cli, ["--debug", "render", "--config", "nope.yaml"])
    assert result.exit_code == 2
    assert "Traceback" in result.stderr and "error: nope.yaml: no such file" in result.stderr


def test_validate_refusing_its_input_leaves_no_cache_behind(in_tmp):
    (in_tmp / "p.yaml").write_text("project: ok\n")
    result = run("validate", "--no-security", "p.yaml")
    assert result.exit_code == 2
    assert "p.yaml: not a CloudFormation template" in result.output
    assert not (in_tmp / ".mlops-cfn-cache").exists()


def test_validate_refuses_a_cache_dir_that_is_a_file(in_tmp):
    run("render")
    (in_tmp / "f").write_text("x")
    result = run("validate", "--no-security", "--cache-dir", "f")
    assert result.exit_code == 2
    assert result.output.strip() == "error: --cache-dir f: not a directory"


def test_unknown_environment_is_a_usage_error(in_tmp):
    result = run("render", "--env", "qa")
    assert result.exit_code == 2
    assert "no environment 'qa' (defined: dev, prod)" in result.output


def test_schema_is_the_json_schema_of_the_config_model():
    result = run("schema")
    schema = json.loads(result.output)
    assert schema["title"] == "PipelineConfig"
    assert "project" in schema["required"]
    assert schema["additionalProperties"] is False


def test_validate_of_a_missing_path_is_a_usage_error(in_tmp):
    result = run("validate", "nowhere")
    assert result.exit_code == 2
    assert result.output.strip() == "error: nowhere: no such file or directory"


def test_the_installed_command_prints_no_traceback_for_a_user_mistake(in_tmp):
    (in_tmp / "p.yaml").write_text("project: [\n")
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    done = subprocess.run([sys.executable, "-m", "mlops_cfn", "render", "--config", "p.yaml"],
                          capture_output=True, text=True, env=env, cwd=in_tmp)
    assert done.returncode == 2
    assert done.stderr.startswith("error: p.yaml:2:1: YAML syntax error")
    assert "Traceback" not in done.stderr


def test_a_pipeline_yaml_in_the_current_directory_is_used_without_config(in_tmp):
    (in_tmp / "pipeline.yaml").write_text("project: churn\n")
    result = CliRunner().invoke(cli, ["render"])
    assert result.exit_code == 0
    assert "using ./pipeline.yaml" in result.stderr
    parameters = json.loads((in_tmp / "templates/dev/parameters.json").read_text())
    assert parameters["Tags"]["mlops-cfn:project"] == "churn"


def test_the_drift_hint_repeats_the_options_that_were_checked(in_tmp):
    (in_tmp / "mine.yaml").write_text("project: churn\n")
    run("render", "--config", "mine.yaml", "--all-envs", "--out", "built")
    (in_tmp / "built/dev/root.yaml").write_text("edited\n")
    result = run("render", "--config", "mine.yaml", "--all-envs", "--out", "built", "--check")
    assert result.exit_code == 1
    assert ("run `mlops-cfn render --config mine.yaml --all-envs --out built`"
            in result.output)


def test_a_usage_mistake_through_the_console_script_is_one_line(in_tmp):
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    done = subprocess.run([sys.executable, "-m", "mlops_cfn", "render", "--format", "xml"],
                          capture_output=True, text=True, env=env, cwd=in_tmp)
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        "error: Invalid value for '--format': 'xml' is not one of 'yaml', 'json'. "
        "(see `mlops-cfn render --help`)"]


def test_help_and_render_import_neither_cfn_lint_nor_boto3(in_tmp):
    probe = ("import sys; from click.testing import CliRunner; from mlops_cfn.cli import cli; "
             "r = CliRunner().invoke(cli, sys.argv[1:]); assert r.exit_code == 0, r.output; "
             "print(sorted(m for m in ('cfnlint', 'boto3', 'moto') if m in sys.modules))")
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    for args in (["--help"], ["render", "--out", "out"]):
        done = subprocess.run([sys.executable, "-c", probe, *args], capture_output=True,
                              text=True, env=env, cwd=in_tmp, check=True)
        assert done.stdout.split("\n")[-2] == "[]", (args, done.stdout)


def test_a_verb_imports_its_own_module_and_help_lists_every_verb(in_tmp):
    probe = ("import sys; from click.testing import CliRunner; from mlops_cfn.cli import cli; "
             "r = CliRunner().invoke(cli, sys.argv[1:]); assert r.exit_code == 0, r.output; "
             "print(sorted(m for m in sys.modules if m.startswith('mlops_cfn.cli.')))")
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    done = subprocess.run([sys.executable, "-c", probe, "validate", "--help"],
                          capture_output=True, text=True, env=env, cwd=in_tmp, check=True)
    assert done.stdout.split("\n")[-2] == "['mlops_cfn.cli.validate']"
    verbs = sorted(p.stem for p in (Path(__file__).resolve().parents[1] / "mlops_cfn" / "cli")
                   .glob("*.py") if p.stem not in ("__init__", "options"))
    listed = [line.split()[0] for line in run("--help").output.split("Commands:")[1].splitlines()
              if line.startswith("  ")]
    assert listed == verbs


def test_a_warm_validate_imports_no_stage_model_or_linter(in_tmp):
    run("render")
    assert run("validate", "templates", "--no-security").exit_code == 0
    probe = ("import sys; from click.testing import CliRunner; from mlops_cfn.cli import cli; "
             "r = CliRunner().invoke(cli, sys.argv[1:]); assert r.exit_code == 0, r.output; "
             "print(sorted({m.split('.')[0] for m in sys.modules} & {'cfnlint', 'troposphere', "
             "'pydantic', 'awacs', 'boto3', 'yaml'}))")
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    done = subprocess.run([sys.executable, "-c", probe, "validate", "templates", "--no-security"],
                          capture_output=True, text=True, env=env, cwd=in_tmp, check=True)
    assert done.stdout.split("\n")[-2] == "[]"


def test_validate_no_cache_keeps_no_results(in_tmp):
    run("render")
    result = run("validate", "templates/dev/network.yaml", "--no-security", "--no-cache")
    assert result.exit_code == 0, result.output
    assert not (in_tmp / ".mlops-cfn-cache").exists()
    assert run("validate", "templates/dev/network.yaml", "--no-security").exit_code == 0
    assert any((in_tmp / ".mlops-cfn-cache").glob("*.json"))


# --- environments dropped from the config -----------------------------------------------------

THREE_ENVS = "project: ok\nenvironments:\n  dev: {}\n  staging: {}\n  prod: {}\n"
TWO_ENVS = "project: ok\nenvironments:\n  dev: {}\n  prod: {}\n"


def test_check_reports_the_folder_of_an_environment_removed_from_the_config(in_tmp):
    (in_tmp / "p.yaml").write_text(THREE_ENVS)
    assert run("render", "--config", "p.yaml", "--all-envs").exit_code == 0
    (in_tmp / "p.yaml").write_text(TWO_ENVS)
    result = run("render", "--config", "p.yaml", "--all-envs", "--check")
    assert result.exit_code == 1
    assert ("templates/staging/: environment 'staging' is no longer in the config (stale)"
            in result.output)
    assert (in_tmp / "templates/staging/root.yaml").exists(), "--check writes nothing"


def test_render_all_envs_removes_the_folder_of_an_environment_removed_from_the_config(in_tmp):
    (in_tmp / "p.yaml").write_text(THREE_ENVS)
    run("render", "--config", "p.yaml", "--all-envs")
    (in_tmp / "p.yaml").write_text(TWO_ENVS)
    result = run("render", "--config", "p.yaml", "--all-envs")
    assert result.exit_code == 0, result.output
    assert "removed templates/staging/ (environment 'staging' is no longer in the config)" \
        in result.output
    assert sorted(p.name for p in (in_tmp / "templates").iterdir()) == ["dev", "prod"]
    assert run("render", "--config", "p.yaml", "--all-envs", "--check").exit_code == 0


def test_only_folders_this_tool_wrote_for_this_project_are_removed(in_tmp):
    (in_tmp / "p.yaml").write_text(THREE_ENVS)
    run("render", "--config", "p.yaml", "--all-envs")
    # Another project rendered beside it, a folder of someone's own, and a rendered folder
    # someone added notes to: none is this project's to delete.
    (in_tmp / "other.yaml").write_text("project: other\nenvironments:\n  qa: {}\n")
    run("render", "--config", "other.yaml", "--all-envs")
    (in_tmp / "templates/docs").mkdir()
    (in_tmp / "templates/docs/index.yaml").write_text("title: mine\n")
    (in_tmp / "templates/staging/notes.txt").write_text("why staging exists")
    (in_tmp / "p.yaml").write_text(TWO_ENVS)
    result = run("render", "--config", "p.yaml", "--all-envs")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (in_tmp / "templates").iterdir()) == [
        "dev", "docs", "prod", "qa", "staging"]
    assert "left templates/staging/: environment 'staging' is no longer in the config, but " \
        "the directory holds files mlops-cfn did not render" in result.output
    check = run("render", "--config", "p.yaml", "--all-envs", "--check")
    assert check.exit_code == 1
    assert "templates/staging/: environment 'staging' is no longer in the config (stale); it " \
        "holds files mlops-cfn did not render, so remove it yourself" in check.output
    assert "qa" not in check.output and "docs" not in check.output


def test_a_folder_named_like_an_environment_with_a_forged_parameters_file_is_kept(in_tmp):
    (in_tmp / "p.yaml").write_text(TWO_ENVS)
    run("render", "--config", "p.yaml", "--all-envs")
    (in_tmp / "templates/old").mkdir()
    (in_tmp / "templates/old/parameters.json").write_text('{"Tags": {"mlops-cfn:project": "ok"}}')
    assert run("render", "--config", "p.yaml", "--all-envs").exit_code == 0
    assert (in_tmp / "templates/old/parameters.json").exists()
