"""`mlops-cfn schema` accepts what the loader accepts (config/schema.py).

Every example, the bundled default and the starter pass both; over the fuzz corpus (the values
and places of tests/test_config_fuzz.py and tests/test_cli_fuzz.py, and any value at any key of
the model, in the base or in an environment), a file the loader accepts passes the schema, and
a file the loader refuses for a rule about one field fails it. Only the rules across several
fields that JSON Schema cannot state (config/schema.py, LOADER_ONLY) may leave a file the
loader refuses valid to the schema.

The schema is read as JSON Schema's own dialect says, with jsonschema (which cfn-lint brings):
patterns are ECMAScript's (`$` ends the text, `\\d` and `\\w` are ASCII), and a value's type is
its YAML type (YAML tells 2 from 2.0 and allows keys that are not text; JSON does neither, so
no schema can say it).
"""

import copy
import json
from pathlib import Path

import jsonschema
import pytest
import regex
import yaml
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError
from pydantic_core import to_jsonable_python

from mlops_cfn.cli import cli
from mlops_cfn.config import PipelineConfig, _BASE_ONLY, _deep_merge, load, load_data
from mlops_cfn.config.base import unwrap_annotation
from mlops_cfn.config.errors import _model_at
from mlops_cfn.config.schema import LOADER_ONLY, MIRRORED, pipeline_schema
from mlops_cfn.config.yaml_source import read_yaml
from mlops_cfn.errors import UserError
from mlops_cfn.reference import sections, starter_config

from .helpers import default_data
from .test_cli_fuzz import BAD_VALUES, KEY_NAMES, LEAVES, UNKNOWN_KEY_PLACES, put
from .test_config_fuzz import KNOWN_PATHS, values

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))


# --- the schema as its dialect reads it ------------------------------------------------------

def _ecmascript(pattern: str) -> str:
    """An ECMAScript pattern (no flags) as a Python one: `$` only at the very end, `.` short
    of line terminators, `\\d \\w \\s` as ECMAScript defines them."""
    out, in_class, index = [], False, 0
    while index < len(pattern):
        char = pattern[index]
        if char == "\\":
            escape = pattern[index:index + 2]
            out.append({"\\d": "0-9" if in_class else "[0-9]",
                        "\\w": "A-Za-z0-9_" if in_class else "[A-Za-z0-9_]",
                        "\\s": _SPACE if in_class else f"[{_SPACE}]"}.get(escape, escape))
            index += 2
            continue
        if char == "[" and not in_class:
            in_class = True
        elif char == "]" and in_class:
            in_class = False
        elif char == "$" and not in_class:
            char = r"\Z"
        elif char == "." and not in_class:
            char = r"[^\n\r\u2028\u2029]"
        out.append(char)
        index += 1
    return "".join(out)


# ECMAScript's WhiteSpace and LineTerminator code points.
_SPACE = (r"\t\n\v\f\r \u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\ufeff")


def _pattern(validator, pattern, instance, schema):
    # `regex` (which cfn-lint brings) knows ECMAScript's Unicode classes, \p{L} and friends.
    if isinstance(instance, str) and not regex.search(_ecmascript(pattern), instance):
        yield jsonschema.ValidationError(f"{instance!r} does not match {pattern!r}")


def _same(one, two) -> bool:
    """Equal as YAML values: 1, 1.0 and true are three different things."""
    if type(one) is not type(two) and not (isinstance(one, str) and isinstance(two, str)):
        return False
    if isinstance(one, list):
        return len(one) == len(two) and all(_same(a, b) for a, b in zip(one, two))
    if isinstance(one, dict):
        return one.keys() == two.keys() and all(_same(one[k], two[k]) for k in one)
    return one == two


def _enum(validator, enums, instance, schema):
    if not any(_same(instance, choice) for choice in enums):
        yield jsonschema.ValidationError(f"{instance!r} is not one of {enums!r}")


def _const(validator, const, instance, schema):
    if not _same(instance, const):
        yield jsonschema.ValidationError(f"{instance!r} is not {const!r}")


_YAML_TYPES = jsonschema.Draft202012Validator.TYPE_CHECKER.redefine_many({
    "integer": lambda checker, value: isinstance(value, int) and not isinstance(value, bool),
    "object": lambda checker, value: (isinstance(value, dict)
                                      and all(isinstance(k, str) for k in value)),
})
Validator = jsonschema.validators.extend(
    jsonschema.Draft202012Validator,
    validators={"pattern": _pattern, "enum": _enum, "const": _const},
    type_checker=_YAML_TYPES)
SCHEMA = pipeline_schema()
VALIDATOR = Validator(SCHEMA)


# --- the loader's verdict, and which of its rules said no -------------------------------------

# Field validators among LOADER_ONLY: their errors name the field, not the model.
_LOADER_ONLY_FIELDS = {
    (model, field)
    for (model, name) in LOADER_ONLY
    if name in model.__pydantic_decorators__.field_validators
    for field in model.__pydantic_decorators__.field_validators[name].info.fields
}


def _one_field(error: dict) -> bool:
    """Whether a pydantic error is about one field (which the schema must mirror)."""
    if error["type"] not in ("value_error", "assertion_error"):
        return True
    loc = tuple(error["loc"])
    if _model_at(PipelineConfig, loc) is not None:
        return False  # a model validator: a rule across the model's fields
    model = _model_at(PipelineConfig, loc[:-1]) if loc else None
    return (model, loc[-1]) not in _LOADER_ONLY_FIELDS


def _refused_for_one_field(data) -> bool:
    """Whether pydantic refuses the file, or an environment's merge of it, for a rule about one
    field (the loader's later checks, StageToggle.problems_with and config/switches.py, are
    rules across sections)."""
    if not isinstance(data, dict):
        return True
    try:
        PipelineConfig.model_validate(data)
    except ValidationError as error:
        if any(_one_field(e) for e in error.errors()):
            return True
    environments = data.get("environments")
    if not isinstance(environments, dict):
        return False
    for overrides in environments.values():
        if not isinstance(overrides, dict):
            continue
        if any(key in overrides for key in _BASE_ONLY):
            return True
        try:
            PipelineConfig.model_validate(_deep_merge(data, overrides))
        except ValidationError as error:
            if any(_one_field(e) for e in error.errors()):
                return True
    return False


def loader_accepts(data) -> bool:
    try:
        load_data(data, "pipeline.yaml")
        return True
    except UserError:
        return False


def assert_agree(data) -> None:
    schema_errors = [e.message for e in VALIDATOR.iter_errors(data)]
    if loader_accepts(data):
        assert schema_errors == [], f"the loader accepts, the schema refuses: {data!r}"
    elif _refused_for_one_field(data):
        assert schema_errors, f"the loader refuses a field, the schema accepts: {data!r}"


# --- coverage -------------------------------------------------------------------------------

def _validators() -> set[tuple[type[BaseModel], str]]:
    found = set()
    for _, model in sections():
        decorators = model.__pydantic_decorators__
        for name in [*decorators.field_validators, *decorators.model_validators]:
            if model.__module__.startswith("mlops_cfn.config") and name != \
                    "_choices_of_numbers_take_whole_numbers":
                found.add((model, name))
        for field_name, field in model.model_fields.items():
            for marker in _annotated_validators(field.annotation):
                found.add((model, marker.func.__name__))
    return found


def _annotated_validators(annotation):
    """AfterValidator and friends inside an annotation (RepoPath in a list, say)."""
    import typing

    from pydantic.functional_validators import (AfterValidator, BeforeValidator,
                                                PlainValidator, WrapValidator)

    kinds = (AfterValidator, BeforeValidator, PlainValidator, WrapValidator)
    if typing.get_origin(annotation) is typing.Annotated:
        inner, *metadata = typing.get_args(annotation)
        yield from (m for m in metadata if isinstance(m, kinds))
        yield from _annotated_validators(inner)
    for argument in typing.get_args(annotation):
        if typing.get_origin(annotation) is not typing.Annotated:
            yield from _annotated_validators(argument)


def test_every_validator_of_the_model_is_mirrored_or_named_loader_only():
    mirrored = {(model, name) for (model, _), (name, _) in MIRRORED.items()}
    # An AfterValidator mirrored on one field stands for its use everywhere.
    by_name = {name for _, name in mirrored}
    unaccounted = {(m.__name__, n) for m, n in _validators()
                   if (m, n) not in mirrored and (m, n) not in LOADER_ONLY and n not in by_name}
    assert unaccounted == set()
    assert all(refine is not None for _, refine in MIRRORED.values())


def test_the_schema_names_the_rules_only_the_tool_checks():
    assert all(reason in SCHEMA["description"] for reason in LOADER_ONLY.values())
    assert SCHEMA["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    # Its patterns are ECMAScript's, with Unicode classes (`u` flag): `regex` compiles them.
    formats = jsonschema.FormatChecker()
    formats.checks("regex", raises=regex.error)(regex.compile)
    meta = jsonschema.Draft202012Validator(jsonschema.Draft202012Validator.META_SCHEMA,
                                           format_checker=formats)
    meta.validate(SCHEMA)


# --- what the issue found -------------------------------------------------------------------

def test_numeric_and_boolean_hyperparameters_pass_both():
    data = default_data()
    data["stages"].setdefault("training", {})["hyperparameters"] = {
        "objective": "binary:logistic", "num_round": 200, "eta": 0.2, "verbose": True}
    assert loader_accepts(data)
    assert VALIDATOR.is_valid(data)


@pytest.mark.parametrize("name", ["Prod-1", "prod_eu", "production1", "1dev", ""])
def test_an_environment_name_the_tool_refuses_fails_the_schema(name):
    data = default_data()
    data["environments"][name] = {}
    assert not loader_accepts(data)
    assert not VALIDATOR.is_valid(data)


@pytest.mark.parametrize("overrides", [
    {"stages": {"ingestion": {"shardz": 4}}},
    {"netwrok": {}},
    {"stages": {"ingestion": {"shards": 0}}},
    {"project": "other"},
    {"environments": {"x": {}}},
    {"stages": {"training": {"hyperparameters": {"eta": [1]}}}},
])
def test_a_mistake_inside_an_environment_fails_the_schema(overrides):
    data = default_data()
    data["environments"]["prod"] = overrides
    assert not loader_accepts(data)
    assert not VALIDATOR.is_valid(data)


def test_an_environment_may_override_any_single_key_of_a_section():
    data = default_data()
    data["environments"]["prod"] = {"network": {"cidr": "10.90.0.0/16"},
                                    "stages": {"analytics": {"table": {"name": "sales"}}}}
    assert loader_accepts(data)
    assert VALIDATOR.is_valid(data)


def test_list_items_in_an_environment_are_whole():
    # A list replaces the base's, so its items need every required key.
    data = default_data()
    data["environments"]["prod"] = {"stages": {"analytics": {"table": {
        "columns": [{"name": "only_a_name"}]}}}}
    assert not loader_accepts(data)
    assert not VALIDATOR.is_valid(data)


@pytest.mark.parametrize("value", [True, 30.0])
def test_a_choice_of_numbers_takes_whole_numbers_only(value):
    data = default_data()
    data["log_retention_days"] = value
    assert not loader_accepts(data)
    assert not VALIDATOR.is_valid(data)


# --- every example, and the fuzz corpus --------------------------------------------------------

@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_every_example_passes_both(path):
    load(path)
    assert [e.message for e in VALIDATOR.iter_errors(read_yaml(path))] == []


def test_there_are_examples():
    assert len(EXAMPLES) >= 5


def test_the_default_and_the_starter_pass_both():
    for data in (default_data(), yaml.safe_load(starter_config("churn"))):
        assert loader_accepts(data)
        assert [e.message for e in VALIDATOR.iter_errors(data)] == []


def test_the_cli_prints_this_schema():
    result = CliRunner().invoke(cli, ["schema"])
    assert result.exit_code == 0
    assert json.loads(result.output) == json.loads(json.dumps(SCHEMA))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(path=st.sampled_from(KNOWN_PATHS), value=values, in_env=st.booleans())
def test_any_value_at_a_known_path_gets_one_verdict(path, value, in_env):
    data = default_data()
    target = data["environments"].setdefault("prod", {}) if in_env and path[0] not in (
        "project", "environments") else data
    for key in path[:-1]:
        if not isinstance(target.get(key), dict):
            target[key] = {}
        target = target[key]
    target[path[-1]] = value
    assert_agree(data)


@settings(max_examples=200, deadline=None)
@given(values)
def test_any_document_gets_one_verdict(document):
    assert_agree(document)


def _field_values(path):
    """Values worth trying at a field: valid ones of its kind and near misses."""
    model = PipelineConfig
    for part in path[:-1]:
        model = unwrap_annotation(model.model_fields[part].annotation)
    field = model.model_fields[path[-1]]
    default = (None if field.is_required()  # `project`
               else to_jsonable_python(field.default))  # as a file would hold it
    candidates = [default, copy.deepcopy(default)]
    if isinstance(default, bool):
        candidates += [not default, 1, "true"]
    elif isinstance(default, int):
        candidates += [default + 1, default - 1, 0, -1, 10**9, float(default), str(default)]
    elif isinstance(default, float):
        candidates += [0, 1, 0.5, 2.0, -0.5]
    elif isinstance(default, str):
        candidates += ["", default.upper(), default + "/", default + "\n", " " + default, "x" * 300,
                       "é" + default, default.replace("/", "")]
    elif isinstance(default, list):
        candidates += [[], default * 2, default[:1], [None]]
    elif isinstance(default, dict):
        candidates += [{}, {"aws:x": "y"}, {"AWS_X": "y"}, {"k": 1}, {"k": "v\n"}]
    return candidates


LEAF_VALUES = st.sampled_from(LEAVES).flatmap(
    lambda path: st.tuples(st.just(path), st.one_of(st.sampled_from(_field_values(path)),
                                                    values)))


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=LEAF_VALUES, in_env=st.booleans())
def test_any_value_at_any_key_gets_one_verdict(case, in_env):
    path, value = case
    data = default_data()
    if in_env and path[0] != "project":
        put(data["environments"].setdefault("prod", {}), path, copy.deepcopy(value))
    else:
        put(data, path, copy.deepcopy(value))
    assert_agree(data)


@settings(max_examples=60, deadline=None)
@given(case=BAD_VALUES, in_env=st.booleans())
def test_each_known_mistake_gets_one_verdict(case, in_env):
    path, value, _ = case
    data = default_data()
    if in_env and path[0] not in ("project", "environments"):
        put(data["environments"].setdefault("prod", {}), path, value)
    else:
        put(data, path, value)
    assert not loader_accepts(data)
    assert not VALIDATOR.is_valid(data)


@settings(max_examples=60, deadline=None)
@given(place=UNKNOWN_KEY_PLACES, key=KEY_NAMES, in_env=st.booleans())
def test_an_unknown_key_anywhere_gets_one_verdict(place, key, in_env):
    data = default_data()
    target = data["environments"].setdefault("prod", {}) if in_env else data
    for part in place:
        target = target.setdefault(part, {})
    target[key] = 1
    assert_agree(data)


@settings(max_examples=100, deadline=None)
@given(name=st.one_of(st.text(max_size=12), st.from_regex(r"\A[a-z][a-z0-9]{0,11}\Z")))
def test_any_environment_name_gets_one_verdict(name):
    data = default_data()
    data["environments"][name] = {}
    assert_agree(data)
