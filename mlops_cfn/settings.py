"""CloudFormation parameters for the values that may differ between environments.

A config field marked with `Setting` becomes a parameter whose type and constraints come from the
field itself (bounds, allowed values, pattern), so a value CloudFormation accepts is a value the
config model accepts too. The environment name is the one setting that is not a config field.
"""

import re
import typing
from typing import Any

import annotated_types
from pydantic import BaseModel
from troposphere import Parameter

from .config import ENVIRONMENT_MAX_LENGTH, ENVIRONMENT_PATTERN, Setting
from .config.base import unwrap_annotation
from .naming import environment_length

ENVIRONMENT_NAME = "EnvironmentName"


def environment_parameter() -> Parameter:
    """EnvironmentName, as long as the names being built allow (naming.environment_token)."""
    length = environment_length()
    pattern = (ENVIRONMENT_PATTERN if length == ENVIRONMENT_MAX_LENGTH
               else rf"^[a-z][a-z0-9]{{0,{length - 1}}}$")
    return Parameter(
        ENVIRONMENT_NAME,
        Type="String",
        Description="Deployment environment; part of every physical name",
        AllowedPattern=pattern,
        MaxLength=length,
        ConstraintDescription=f"1-{length} characters: a-z then a-z or 0-9",
    )


def setting_of(section: type[BaseModel], field_name: str) -> Setting:
    field = section.model_fields[field_name]
    for marker in field.metadata:
        if isinstance(marker, Setting):
            return marker
    raise KeyError(f"{section.__name__}.{field_name} is not marked as a Setting")


# Where a parameter's description ends: after its first sentence, at most this long. The whole
# text is the config key's (docs/config.md); the root carries ~100 parameters and must stay
# under CloudFormation's 51,200-byte request body, so the console shows the gist only.
DESCRIPTION_LENGTH = 200
_SENTENCE_END = re.compile(r"(?<!e\.g)(?<!i\.e)\.(\s|$)")


def parameter_description(text: str) -> str:
    """The first sentence of a config key's description, cut at DESCRIPTION_LENGTH."""
    end = _SENTENCE_END.search(text)
    first = text[:end.start() + 1] if end else text
    if len(first) > DESCRIPTION_LENGTH:
        first = first[:DESCRIPTION_LENGTH - 1].rstrip() + "…"
    return first


def setting_parameter(section: type[BaseModel], field_name: str) -> Parameter:
    """The parameter for one Setting-marked field."""
    field = section.model_fields[field_name]
    setting = setting_of(section, field_name)
    props: dict[str, Any] = {"Description": parameter_description(field.description or field_name)}
    annotation = unwrap_annotation(field.annotation)
    origin = typing.get_origin(annotation)
    if origin is typing.Literal:
        choices = typing.get_args(annotation)
        numeric = all(isinstance(c, int) and not isinstance(c, bool) for c in choices)
        props["Type"] = "Number" if numeric else "String"
        props["AllowedValues"] = [str(c) if numeric else c for c in choices]
    elif annotation in (int, float):
        props["Type"] = "Number"
    elif annotation is bool:
        props["Type"] = "String"
        props["AllowedValues"] = ["true", "false"]
    else:
        props["Type"] = "String"
    for constraint in field.metadata:
        if isinstance(constraint, annotated_types.Ge):
            props["MinValue"] = constraint.ge
        elif isinstance(constraint, annotated_types.Le):
            props["MaxValue"] = constraint.le
        elif isinstance(constraint, annotated_types.MaxLen) and props["Type"] == "String":
            props["MaxLength"] = constraint.max_length
        elif hasattr(constraint, "pattern") and constraint.pattern and props["Type"] == "String":
            props["AllowedPattern"] = constraint.pattern
    if setting.type is not None:
        props = {"Type": setting.type, "Description": props["Description"]}
    return Parameter(setting.parameter, **props)


def parameter_value(value: Any) -> str:
    """A config value as CloudFormation parameter text."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return ",".join(parameter_value(v) for v in value)
    return str(value)


def run_time_parameters(model: type[BaseModel] | None = None) -> frozenset[str]:
    """The parameters of `Setting(..., run_time=True)` fields (which model serves, which image
    runs), over the whole config model by default, with DeliveryAccountId then."""
    if model is None:
        from .config import PipelineConfig

        model = PipelineConfig
        # Not a config field: the account the delivery pipeline runs in (sharing.py).
        from .sharing import DELIVERY_ACCOUNT

        found: set[str] = {DELIVERY_ACCOUNT}
    else:
        found = set()
    for field in model.model_fields.values():
        for marker in field.metadata:
            if isinstance(marker, Setting) and marker.run_time:
                found.add(marker.parameter)
        annotation = unwrap_annotation(field.annotation)
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            found |= run_time_parameters(annotation)
    return frozenset(found)


def left_to_run_time(values: dict[str, str]) -> frozenset[str]:
    """The run-time parameters among `values` (an environment's parameter values) that the
    config leaves empty: a deployment keeps whatever the stack has for them now.

    Why: CloudFormation gives a parameter missing from an update its template default, not its
    previous value (AWS CloudFormation API Reference, "Parameter": "If you don't specify a key
    and value for a particular parameter, CloudFormation uses the default value that's
    specified in your template"), and CodePipeline's CloudFormation action has no
    UsePreviousValue. So no file the pipeline replays may carry these; each deployment passes
    the live value instead (deploy.live_values)."""
    return frozenset(name for name in run_time_parameters()
                     if name in values and values[name] == "")
