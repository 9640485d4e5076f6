"""The public Python API, called as a user calls it: `import mlops_cfn`, then one call per verb.

What AWS is needed for (package_templates, preview_deployment, deploy_pipeline, and the README's
"Use it from Python" block) is in tests/deploy/test_python_api.py, on the moto sandbox.
"""

import json
import pkgutil
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

import mlops_cfn
from mlops_cfn.cli import cli

from .helpers import FOUNDATION_ONLY, _merge, default_data

REPOSITORY = Path(__file__).resolve().parents[1]
README = REPOSITORY / "README.md"


def python_section() -> str:
    text = README.read_text(encoding="utf-8")
    start = text.index("## Use it from Python\n")
    return text[start:text.index("\n## ", start + 1)]


def foundation_file(tmp_path: Path) -> Path:
    """The bundled config with only network, storage and ingestion: quick to lint."""
    data = default_data()
    _merge(data, FOUNDATION_ONLY)
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


# --- the package's surface -------------------------------------------------------------------

def test_all_names_what_the_readme_documents():
    documented = set()
    for row in re.findall(r"^\| (`.+?) \| ", python_section(), flags=re.MULTILINE):
        documented |= {re.sub(r"\(.*", "", name) for name in re.findall(r"`([^`]+)`", row)}
    assert documented == set(mlops_cfn.__all__)


def test_every_public_name_resolves_with_a_docstring():
    for name in mlops_cfn.__all__:
        value = getattr(mlops_cfn, name)
        assert value.__doc__ and value.__doc__.strip(), name


def test_star_import_gives_every_public_name():
    namespace: dict = {}
    exec("from mlops_cfn import *", namespace)
    assert set(mlops_cfn.__all__) <= set(namespace)
    assert callable(namespace["deploy_pipeline"])


def test_no_public_name_is_also_a_module_of_the_package():
    """Importing mlops_cfn.<module> sets the package attribute of that name: a public function
    of the same name would be replaced by the module as soon as anything imported it."""
    modules = {module.name for module in pkgutil.iter_modules(mlops_cfn.__path__)}
    assert {"render", "deploy", "validate", "package", "graph"} <= modules
    assert not modules & set(mlops_cfn.__all__)


def test_importing_the_package_loads_no_library():
    """`import mlops_cfn` resolves names on first use: the CLI's --help and a program that needs
    one call pay for that call's imports only."""
    heavy = ("troposphere", "pydantic", "boto3", "botocore", "cfnlint", "rich", "awacs",
             "mlops_cfn.api", "mlops_cfn.config")
    probe = ("import sys, mlops_cfn; assert mlops_cfn.__version__; "
             f"print([m for m in {heavy!r} if m in sys.modules])")
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                            check=True).stdout.strip()
    assert loaded == "[]"


def test_an_unknown_name_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'render_everything'"):
        mlops_cfn.render_everything  # noqa: B018


# --- config and pipelines --------------------------------------------------------------------

def test_load_config_reads_the_bundled_example_by_default():
    config = mlops_cfn.load_config()
    assert isinstance(config, mlops_cfn.LoadedConfig)
    assert config.config.project == "mlops-demo"
    assert config.environment == "dev"
    assert mlops_cfn.load_config(env="prod").environment == "prod"


def test_load_config_refuses_a_bad_file_with_a_user_error_naming_it(tmp_path):
    path = tmp_path / "pipeline.yaml"
    path.write_text("project: churn\nstages:\n  ingestion:\n    shardz: 4\n")
    with pytest.raises(mlops_cfn.UserError) as error:
        mlops_cfn.load_config(path)
    assert error.value.problems[0].startswith(f"{path}: stages.ingestion.shardz: unknown key")


def test_build_gives_one_environment_and_build_all_every_one():
    config = mlops_cfn.load_config()
    prod = mlops_cfn.build(config, "prod")
    assert isinstance(prod, mlops_cfn.Pipeline)
    assert (prod.environment, prod.protected) == ("prod", True)
    assert mlops_cfn.build(config).environment == "dev"
    assert [p.environment for p in mlops_cfn.build_all(config)] == ["dev", "prod"]
    assert [p.environment for p in mlops_cfn.build_all(config, ["prod"])] == ["prod"]


def test_an_unknown_environment_is_a_user_error():
    config = mlops_cfn.load_config()
    for call in (lambda: mlops_cfn.build(config, "qa"),
                 lambda: mlops_cfn.build_all(config, ["dev", "qa"])):
        with pytest.raises(mlops_cfn.UserError, match="no environment 'qa'"):
            call()


def test_build_names_nested_templates_in_the_format_asked():
    pipeline = mlops_cfn.build(mlops_cfn.load_config(), fmt="json")
    urls = {r.properties["TemplateURL"] for r in pipeline.root.resources.values()
            if "TemplateURL" in r.properties}
    assert urls and all(url.endswith(".json") for url in urls)
    with pytest.raises(mlops_cfn.UserError, match="must be yaml or json"):
        mlops_cfn.build(mlops_cfn.load_config(), fmt="toml")


def test_diagram_draws_mermaid_or_dot():
    pipeline = mlops_cfn.build(mlops_cfn.load_config())
    assert mlops_cfn.diagram(pipeline).startswith("flowchart LR")
    assert "storage -->|DataKeyArn| ingestion" in mlops_cfn.diagram(pipeline)
    assert mlops_cfn.diagram(pipeline, "dot").startswith("digraph")
    with pytest.raises(mlops_cfn.UserError, match="must be mermaid or dot"):
        mlops_cfn.diagram(pipeline, "svg")


# --- rendering -------------------------------------------------------------------------------

def test_render_templates_writes_what_the_cli_renders(tmp_path):
    """The committed templates/ are `mlops-cfn render --all-envs`: the API writes the same."""
    pipelines = mlops_cfn.build_all(mlops_cfn.load_config())
    rendered = mlops_cfn.render_templates(pipelines, tmp_path)
    assert rendered.directories == {"dev": tmp_path / "dev", "prod": tmp_path / "prod"}
    assert mlops_cfn.outdated_templates(pipelines, REPOSITORY / "templates") == []
    for name in ("dev", "prod"):
        on_disk = sorted(p.relative_to(tmp_path / name).as_posix()
                         for p in (tmp_path / name).rglob("*") if p.is_file())
        assert on_disk == sorted(rendered.files[name])
        assert (tmp_path / name / "root.yaml").read_text() == \
            (REPOSITORY / "templates" / name / "root.yaml").read_text()


def test_one_pipeline_is_written_into_out_itself(tmp_path):
    pipeline = mlops_cfn.build(mlops_cfn.load_config(), "prod")
    rendered = mlops_cfn.render_templates(pipeline, tmp_path / "here")
    assert rendered.directories == {"prod": tmp_path / "here"}
    assert json.loads((tmp_path / "here" / "parameters.json").read_text())["Tags"][
        "mlops-cfn:environment"] == "prod"


def test_without_out_nothing_is_written(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    rendered = mlops_cfn.render_templates(mlops_cfn.build(mlops_cfn.load_config()))
    assert rendered.directories == {}
    assert "root.yaml" in rendered.files["dev"]
    assert list(tmp_path.iterdir()) == []


def test_render_writes_the_format_the_pipelines_were_built_for(tmp_path):
    pipeline = mlops_cfn.build(mlops_cfn.load_config(), fmt="json")
    rendered = mlops_cfn.render_templates(pipeline, tmp_path)
    assert "root.json" in rendered.files["dev"] and "storage.json" in rendered.files["dev"]
    json.loads((tmp_path / "root.json").read_text())


def test_outdated_templates_names_each_file_that_differs(tmp_path):
    pipelines = mlops_cfn.build_all(mlops_cfn.load_config())
    mlops_cfn.render_templates(pipelines, tmp_path)
    (tmp_path / "prod" / "storage.yaml").write_text("edited\n")
    (tmp_path / "dev" / "network.yaml").unlink()
    assert mlops_cfn.outdated_templates(pipelines, tmp_path) == [
        f"{tmp_path / 'dev' / 'network.yaml'}: missing",
        f"{tmp_path / 'prod' / 'storage.yaml'}: differs from what the code renders"]


def test_prune_removes_an_environment_the_config_dropped(tmp_path):
    config = mlops_cfn.load_config()
    mlops_cfn.render_templates(mlops_cfn.build_all(config), tmp_path)
    dev_only = mlops_cfn.build_all(config, ["dev"])
    assert mlops_cfn.outdated_templates(dev_only, tmp_path, prune=True) == [
        f"{tmp_path / 'prod'}/: environment 'prod' is no longer in the config (stale)"]
    kept = mlops_cfn.render_templates(dev_only, tmp_path)
    assert (tmp_path / "prod").is_dir() and kept.removed == ()
    pruned = mlops_cfn.render_templates(dev_only, tmp_path, prune=True)
    assert pruned.removed == (tmp_path / "prod",)
    assert not (tmp_path / "prod").exists()


def test_prune_needs_several_pipelines_and_a_directory(tmp_path):
    config = mlops_cfn.load_config()
    with pytest.raises(mlops_cfn.UserError, match="prune: needs a sequence"):
        mlops_cfn.render_templates(mlops_cfn.build(config), tmp_path, prune=True)
    with pytest.raises(mlops_cfn.UserError, match="prune: needs an output directory"):
        mlops_cfn.render_templates(mlops_cfn.build_all(config), prune=True)


def test_render_refuses_a_directory_that_is_not_rendered_output(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(mlops_cfn.UserError):
        mlops_cfn.render_templates(mlops_cfn.build(mlops_cfn.load_config()), tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]


# --- validation ------------------------------------------------------------------------------

def test_validate_templates_returns_a_report(tmp_path):
    config = mlops_cfn.load_config(foundation_file(tmp_path))
    mlops_cfn.render_templates(mlops_cfn.build(config), tmp_path / "dev")
    report = mlops_cfn.validate_templates([tmp_path / "dev"], security=False, jobs=1,
                                          cache_dir=tmp_path / "cache")
    assert isinstance(report, mlops_cfn.Report)
    assert report.ok, report.render()
    assert {f.name for f in report.files} == {"root.yaml", "boundary.yaml", "network.yaml",
                                              "storage.yaml", "ingestion.yaml"}
    # The cache answers the second run; its report is the same. One path needs no list.
    assert mlops_cfn.validate_templates(str(tmp_path / "dev"), security=False,
                                        cache_dir=tmp_path / "cache").summary() == \
        report.summary()


def test_validate_templates_reports_findings_rather_than_raising(tmp_path):
    (tmp_path / "broken.yaml").write_text(
        "Resources:\n  Queue:\n    Type: AWS::SQS::Queue\n    Properties:\n"
        "      VisibilityTimeout: forever\n")
    report = mlops_cfn.validate_templates([tmp_path], security=False)
    assert not report.ok
    assert any(f.resource == "Queue" and f.tool == "cfn-lint" for f in report.findings)


def test_validate_templates_refuses_what_is_not_there(tmp_path):
    with pytest.raises(mlops_cfn.UserError) as error:
        mlops_cfn.validate_templates([tmp_path / "nowhere"], security=False)
    assert error.value.problems == (f"{tmp_path / 'nowhere'}: no such file or directory",)
    (tmp_path / "file").write_text("")
    with pytest.raises(mlops_cfn.UserError, match="not a directory"):
        mlops_cfn.validate_templates([tmp_path], security=False, cache_dir=tmp_path / "file")


# --- AWS connection (no call is made) --------------------------------------------------------

def test_connect_takes_a_region_and_an_endpoint():
    aws = mlops_cfn.connect(region="eu-west-1", endpoint_url="http://127.0.0.1:5000")
    assert isinstance(aws, mlops_cfn.Aws)
    assert aws.region == "eu-west-1"
    assert aws.client("s3").meta.endpoint_url == "http://127.0.0.1:5000"


def test_connect_refuses_what_is_not_a_region_or_url():
    with pytest.raises(mlops_cfn.UserError, match="is not a region name"):
        mlops_cfn.connect(region="eu west")
    with pytest.raises(mlops_cfn.UserError, match="is not a URL"):
        mlops_cfn.connect(region="eu-west-1", endpoint_url="localhost 5000")


def test_package_templates_refuses_a_tree_render_did_not_write(tmp_path):
    with pytest.raises(mlops_cfn.UserError, match="not a directory"):
        mlops_cfn.package_templates(tmp_path / "nowhere", "bucket",
                                    aws=mlops_cfn.connect(region="us-east-1"))
    with pytest.raises(mlops_cfn.UserError, match="latest_approved_model needs stack_name"):
        mlops_cfn.package_templates(tmp_path, "bucket", latest_approved_model=True)


# --- the CLI is a shell over these calls -----------------------------------------------------

class Called(Exception):
    """Raised by a stand-in API call: the verb reached it."""


@pytest.mark.parametrize("verb, call, args", [
    ("render", "render_templates", ["--env", "dev", "--out", "{tmp}/out"]),
    ("render", "outdated_templates", ["--check", "--out", "{tmp}/out"]),
    ("validate", "validate_templates", ["--no-security", "{tmp}"]),
    ("graph", "diagram", []),
    ("package", "package_templates", ["--bucket", "b", "--region", "us-east-1", "{tmp}"]),
    ("diff", "preview_deployment", ["--region", "us-east-1"]),
    ("deploy", "deploy_pipeline", ["--region", "us-east-1"]),
])
def test_each_verb_calls_its_api_function(verb, call, args, tmp_path, monkeypatch):
    import mlops_cfn.api

    seen = []

    def stand_in(*args, **kwargs):
        seen.append(call)
        raise Called

    monkeypatch.setattr(mlops_cfn.api, call, stand_in)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(Called):
        CliRunner().invoke(cli, [verb, *(a.format(tmp=tmp_path) for a in args)],
                           catch_exceptions=False)
    assert seen == [call]
