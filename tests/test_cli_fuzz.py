"""Malformed pipeline files through the command line: exit 2, one line naming the field, no
traceback, and no output directory (not even half of one)."""

import copy

import yaml
from click.testing import CliRunner
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from mlops_cfn.cli import cli
from mlops_cfn.config import PipelineConfig
from mlops_cfn.config.base import unwrap_annotation

from .helpers import default_data

# (path, a value that is wrong there, the text the message must name)
BAD_VALUES = st.sampled_from([
    (("stages", "ingestion", "shards"), 0, "stages.ingestion.shards"),
    (("stages", "ingestion", "shards"), "many", "stages.ingestion.shards"),
    (("stages", "ingestion", "shards"), 10**9, "stages.ingestion.shards"),
    (("stages", "ingestion", "retention_hours"), 1, "stages.ingestion.retention_hours"),
    (("stages", "ingestion", "stream_mode"), "fast", "stages.ingestion.stream_mode"),
    (("stages", "storage", "archive_after_days"), -5, "stages.storage.archive_after_days"),
    (("stages", "storage", "enabled"), "perhaps", "stages.storage.enabled"),
    (("network", "cidr"), "10.0.0.0/8", "network.cidr"),
    (("network", "availability_zones"), 4, "network.availability_zones"),
    (("network", "interface_endpoints"), ["s3"], "network.interface_endpoints[0]"),
    (("log_retention_days",), 2, "log_retention_days"),
    (("project",), "Has Spaces", "project"),
    (("project",), "x", "project"),
    (("project",), 42, "project"),
    (("tags",), ["a", "b"], "tags"),
    (("environments",), {"Prod-1": {}}, "environments.Prod-1"),
    (("stages", "ingestion", "firehose", "prefix"), "no-trailing-slash",
     "stages.ingestion.firehose.prefix"),
])
UNKNOWN_KEY_PLACES = st.sampled_from([(), ("network",), ("stages",), ("stages", "storage"),
                                      ("stages", "ingestion", "firehose")])
KEY_NAMES = st.from_regex(r"\A[a-z][a-z_]{2,12}\Z", fullmatch=True)


def run_render(tmp_path, text):
    for child in tmp_path.iterdir():
        if child.is_file():
            child.unlink()
    (tmp_path / "pipeline.yaml").write_text(text)
    out = tmp_path / "out"
    result = CliRunner().invoke(cli, ["render", "--config", str(tmp_path / "pipeline.yaml"),
                                      "--out", str(out)])
    return result, out


def assert_refused(result, out, names):
    lines = result.output.strip().splitlines()
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert lines and all(line.startswith("error: ") for line in lines), result.output
    assert any(names in line for line in lines), (names, result.output)
    assert not out.exists()
    assert not list(out.parent.glob(".out.*")), "no staging directory left behind"


def put(data, path, value):
    target = data
    for key in path[:-1]:
        target = target.setdefault(key, {})
    target[path[-1]] = value


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=BAD_VALUES, in_env=st.booleans())
def test_a_wrong_value_anywhere_is_refused_by_name(tmp_path, case, in_env):
    path, value, names = case
    data = default_data()
    if in_env and path[0] not in ("project", "environments"):
        put(data["environments"].setdefault("prod", {}), path, value)
        names = f"environments.prod.{names}"
    else:
        put(data, path, value)
    result, out = run_render(tmp_path, yaml.safe_dump(data))
    assert_refused(result, out, names)


def fields_at(place):
    model = PipelineConfig
    for part in place:
        model = unwrap_annotation(model.model_fields[part].annotation)
    return set(model.model_fields)


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(place=UNKNOWN_KEY_PLACES, key=KEY_NAMES)
def test_an_unknown_key_is_refused_by_name(tmp_path, place, key):
    assume(key not in fields_at(place))
    data = default_data()
    target = data
    for part in place:
        target = target.setdefault(part, {})
    target[key] = 1
    result, out = run_render(tmp_path, yaml.safe_dump(data))
    assert_refused(result, out, ".".join([*place, key]) + ": unknown key")


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cut=st.integers(min_value=1, max_value=400), junk=st.sampled_from(
    ["[", "{", ": :", "\t", "- a\nb: c", "!!python/object:os.system ls", "&a *b", "'"]))
def test_broken_yaml_is_refused_with_a_location(tmp_path, cut, junk):
    text = yaml.safe_dump(default_data())
    broken = text[:cut] + junk + text[cut:]
    try:
        yaml.safe_load(broken)
        return  # still valid YAML: not this test's case
    except yaml.YAMLError:
        pass
    result, out = run_render(tmp_path, broken)
    assert_refused(result, out, "YAML syntax error")


def test_the_defaults_render(tmp_path):
    result, out = run_render(tmp_path, yaml.safe_dump(copy.deepcopy(default_data())))
    assert result.exit_code == 0, result.output
    assert (out / "root.yaml").exists()


def leaf_paths(model=PipelineConfig, prefix=()):
    """Every field of the model that is not itself a section (environments aside)."""
    for name, field in model.model_fields.items():
        if not prefix and name == "environments":
            continue
        nested = unwrap_annotation(field.annotation)
        if isinstance(nested, type) and hasattr(nested, "model_fields"):
            yield from leaf_paths(nested, (*prefix, name))
        else:
            yield (*prefix, name)


LEAVES = sorted(leaf_paths())
# Sections an environment may not override (config/__init__.py): refused there as a whole.
BASE_ONLY = ("record_schema", "servicecatalog")
# A value no field of the model accepts: a list of lists of mappings.
UNACCEPTABLE = [[{"x": 1}]]


def test_every_section_has_leaves_to_fuzz():
    sections = {path[1] for path in LEAVES if path[0] == "stages"}
    assert sections == {"storage", "ingestion", "etl", "analytics", "training", "serving",
                        "monitoring", "cicd"}


@settings(max_examples=80, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(path=st.sampled_from(LEAVES), in_env=st.booleans())
def test_an_unacceptable_value_at_any_key_is_refused_by_name(tmp_path, path, in_env):
    data = default_data()
    names = ".".join(path)
    if in_env and path[0] != "project":
        put(data["environments"].setdefault("prod", {}), path, UNACCEPTABLE)
        # A key set once for the whole file is refused as a whole in an environment.
        names = f"environments.prod.{path[0] if path[0] in BASE_ONLY else names}"
    else:
        put(data, path, UNACCEPTABLE)
    result, out = run_render(tmp_path, yaml.safe_dump(data))
    assert_refused(result, out, names)
