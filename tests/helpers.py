"""Small helpers that let tests read like the behaviour they specify."""

import copy
from typing import Any

from mlops_cfn.config import LoadedConfig, StagesConfig, load_data
from mlops_cfn.config.yaml_source import read_yaml
from mlops_cfn.config import DEFAULT_CONFIG


def default_data() -> dict:
    """The bundled default config as plain data, for tests to change."""
    return copy.deepcopy(read_yaml(DEFAULT_CONFIG))


# The stages beyond network, storage and ingestion: off, for tests of the foundation whose
# subject (a 2-zone VPC, an explicit endpoint list) those stages' own rules would refuse.
# (From the one list of stages, the config model's `stages` sections.)
LATER_STAGES = tuple(name for name in StagesConfig.model_fields
                     if name not in ("storage", "ingestion"))
FOUNDATION_ONLY = {"stages": {name: {"enabled": False} for name in LATER_STAGES}}


def config_with(changes: dict | None = None, env: str = "dev") -> LoadedConfig:
    """The bundled default with `changes` merged in (mappings merge, other values replace)."""
    data = default_data()
    _merge(data, changes or {})
    return load_data(data, "pipeline.yaml", env)


def foundation_config_with(changes: dict | None = None, env: str = "dev") -> LoadedConfig:
    """`config_with`, with only the network, storage and ingestion stages on."""
    data = copy.deepcopy(FOUNDATION_ONLY)
    _merge(data, changes or {})
    return config_with(data, env)


def _merge(target: dict, changes: dict) -> None:
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(target.get(key), dict):
            _merge(target[key], value)
        else:
            target[key] = value


def template_dict(stage_or_template: Any) -> dict:
    template = getattr(stage_or_template, "template", stage_or_template)
    return template.to_dict()


def resources_of_type(template: dict, resource_type: str) -> dict[str, dict]:
    return {name: r for name, r in template.get("Resources", {}).items()
            if r["Type"] == resource_type}


def only_resource(template: dict, resource_type: str) -> dict:
    found = resources_of_type(template, resource_type)
    assert len(found) == 1, f"expected one {resource_type}, found {sorted(found)}"
    return next(iter(found.values()))


def statements(resource: dict, absent: tuple[str, ...] = ()) -> list[dict]:
    """Every statement of a role's inline policies, or of a managed or inline policy resource.

    A statement under Fn::If is there when its condition holds: every condition does except
    those in `absent` (by default, once the model and the image are supplied).
    """
    props = resource["Properties"]
    # A conditional inline policy (Fn::If [condition, policy, AWS::NoValue]) counts as present.
    policies = [p["Fn::If"][1] if "Fn::If" in p else p for p in props.get("Policies", [])]
    documents = [p["PolicyDocument"] for p in policies]
    if "PolicyDocument" in props:
        documents.append(props["PolicyDocument"])
    found = []
    for document in documents:
        for statement in document["Statement"]:
            while "Fn::If" in statement:
                condition, when_true, when_false = statement["Fn::If"]
                statement = when_false if condition in absent else when_true
            if statement != {"Ref": "AWS::NoValue"}:
                found.append(statement)
    return found


def with_action(found: list[dict], action: str) -> list[dict]:
    return [s for s in found if action in s["Action"]]
