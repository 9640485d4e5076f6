"""A stage's template depends on a setting's shape only, never on its value.

`pipeline.build_all` builds a stage once for every environment of the same structure
(`config.structure_of`: the config with each setting reduced to set or unset, empty or not,
how many items, true or false). That is safe exactly when no stage reads more of a setting than
its shape; these tests hold every stage to it, for every setting the bundled config gives a
value and every one a config with the optional settings given has, with values drawn from the
setting's own constraints.
"""

import copy
import json
import typing

import annotated_types
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from mlops_cfn import pipeline
from mlops_cfn.config import Model, Setting, load_data, structure_of
from mlops_cfn.config.base import unwrap_annotation
from mlops_cfn.errors import UserError
from mlops_cfn.render import render_environments, render_files

from .helpers import _merge, config_with, default_data


def setting_fields(model: Model, path: tuple[str, ...] = ()):
    """(path, field, value) of every Setting-marked field the config gives a value."""
    for name, field in type(model).model_fields.items():
        value = getattr(model, name)
        if any(isinstance(marker, Setting) for marker in field.metadata):
            if value is not None:
                yield path + (name,), field, value
        elif isinstance(value, Model):
            yield from setting_fields(value, path + (name,))


# Settings the bundled config leaves unset, set: a stage may decide on whether they are set,
# and must then use their values only through parameters.
FILLED = {"network": {"s3_prefix_list_id": "pl-63a5400a"}, "stages": {
    "analytics": {"allowed_cidrs": ["10.40.0.0/16", "10.60.0.0/16"],
                  "quicksight": {"enabled": True, "owner_arn":
                                 "arn:aws:quicksight:us-east-1:123456789012:user/default/admin"}},
    "training": {"image_uri": "123456789012.dkr.ecr.us-east-1.amazonaws.com/train:1",
                 "evaluation_image_uri": "123456789012.dkr.ecr.us-east-1.amazonaws.com/eval:1"},
    "serving": {
        "model_package_arn": "arn:aws:sagemaker:us-east-1:123456789012:model-package/churn/3",
        "fargate": {"image_tag": "v1", "certificate_arn": "arn:aws:acm:us-east-1:123456789012:"
                    "certificate/12345678-1234-1234-1234-123456789012"},
        "api_gateway": {"enabled": True, "tls_server_name": "api.example.com"}},
    "monitoring": {"alarm_email": "ops@example.com",
                   "model_monitor": {"image_account": "156813124566"}},
    "cicd": {"source": {"provider": "connection", "repository": "example/churn",
                        "connection_arn": "arn:aws:codeconnections:us-east-1:123456789012:"
                        "connection/12345678-1234-1234-1234-123456789012"}},
}}
BASES = {"bundled": {}, "filled": FILLED}
DEFAULT = config_with().config
SETTINGS = {name: sorted(setting_fields(config_with(changes).config), key=lambda item: item[0])
            for name, changes in BASES.items()}


def same_shape_values(field, current) -> st.SearchStrategy:
    """Values the field accepts, of the same shape as `current` (config.structure_of)."""
    annotation = unwrap_annotation(field.annotation)
    bounds = {type(c): c for c in field.metadata}
    if typing.get_origin(annotation) is typing.Literal:
        return st.sampled_from(typing.get_args(annotation))
    if isinstance(current, bool):
        return st.just(current)
    if isinstance(current, int):
        low = getattr(bounds.get(annotated_types.Ge), "ge", -10**6)
        high = getattr(bounds.get(annotated_types.Le), "le", 10**6)
        return st.integers(low, high)
    if isinstance(current, float):
        low = getattr(bounds.get(annotated_types.Ge), "ge", -10**6)
        high = getattr(bounds.get(annotated_types.Le), "le", 10**6)
        return st.floats(low, high, allow_nan=False)
    if isinstance(current, str):
        pattern = next((c.pattern for c in field.metadata if getattr(c, "pattern", None)), None)
        texts = (st.from_regex(pattern, fullmatch=True) if pattern
                 else st.text(st.characters(min_codepoint=33, max_codepoint=126), max_size=40))
        return texts.filter(lambda text: bool(text) == bool(current))
    return st.just(current)  # lists and mappings: their item count is their shape


def with_override(path: tuple[str, ...], value) -> dict:
    override: dict = {}
    target = override
    for key in path[:-1]:
        target = target.setdefault(key, {})
    target[path[-1]] = value
    return override


def without_overrides(structure: str) -> dict:
    """A structure without the file's raw environment overrides, which this test changes."""
    parsed = json.loads(structure)
    parsed.pop("environments")
    return parsed


def stage_texts(loaded) -> dict[str, str]:
    built = pipeline.build(loaded)
    return {name: text for name, text in render_files(built).items()
            if name.endswith(".yaml")}


BASELINES = {name: stage_texts(config_with(changes)) for name, changes in BASES.items()}


CASES = [(base, path, field, current) for base in BASES
         for path, field, current in SETTINGS[base]]


@pytest.mark.parametrize("base, path, field, current", CASES,
                         ids=[f"{base}:{'.'.join(path)}" for base, path, _, _ in CASES])
@settings(max_examples=4, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(data=st.data())
def test_a_setting_of_the_same_shape_renders_the_same_templates(base, path, field, current,
                                                                 data):
    # The current value keeps a setting whose rules admit few others (Fargate's memory sizes
    # for its CPU) from being refused every time.
    value = data.draw(same_shape_values(field, current) | st.just(current), label="value")
    changes = copy.deepcopy(BASES[base])
    _merge(changes, {"environments": {"dev": with_override(path, value)}})
    try:
        loaded = config_with(changes)
    except UserError:
        assume(False)  # refused by a rule across fields (a minimum above a maximum, say)
    unchanged = config_with(BASES[base]).config
    assert without_overrides(structure_of(loaded.config)) == without_overrides(
        structure_of(unchanged))
    assert stage_texts(loaded) == BASELINES[base], (
        f"{'.'.join(path)} = {value!r} changed a template")


def test_the_property_covers_the_settings_of_every_stage():
    sections = {path[1] for path, _, _ in SETTINGS["bundled"] if path[0] == "stages"}
    assert sections == {"storage", "ingestion", "etl", "analytics", "training", "serving",
                        "monitoring", "cicd"}
    assert len(SETTINGS["bundled"]) > 60
    assert len(SETTINGS["filled"]) - len(SETTINGS["bundled"]) >= 8


def test_whether_a_setting_is_given_is_structure_and_its_value_is_not():
    def structure(email: str) -> str:
        return structure_of(config_with({"stages": {"monitoring": {"alarm_email": email}}}).config)

    assert structure("") != structure("ops@example.com") == structure("oncall@example.org")


ENVIRONMENTS_DIFFERING_IN_VALUES = {
    f"env{i}": {"log_retention_days": 30 if i % 2 else 90,
                "stages": {"ingestion": {"retention_hours": 24 + i},
                           "serving": {"sagemaker": {"max_instances": 4 + i}}}}
    for i in range(4)
} | {"prod": {"protected": True}, "alt": {"stages": {"analytics": {"enabled": False}}}}


@pytest.mark.parametrize("fmt", ["yaml", "json"])
def test_building_all_environments_at_once_renders_what_separate_builds_render(fmt):
    data = default_data()
    data["environments"] = ENVIRONMENTS_DIFFERING_IN_VALUES
    loaded = load_data(data, "pipeline.yaml")
    names = list(ENVIRONMENTS_DIFFERING_IN_VALUES)
    suffix = f".{fmt}"
    together = render_environments(pipeline.build_all(loaded, names, suffix), fmt)
    apart = [render_files(pipeline.build(loaded.for_environment(name), suffix), fmt)
             for name in names]
    assert together == apart


def test_environments_of_one_structure_share_their_stages():
    data = default_data()
    data["environments"] = ENVIRONMENTS_DIFFERING_IN_VALUES
    loaded = load_data(data, "pipeline.yaml")
    env0, env1, prod = pipeline.build_all(loaded, ["env0", "env1", "prod"])
    assert all(a is b for a, b in zip(env0.stages, env1.stages, strict=True))
    assert env0.parameters != env1.parameters
    # prod differs in a value that is structure (protected), so it is built on its own
    assert not any(a is b for a, b in zip(env0.stages, prod.stages))
