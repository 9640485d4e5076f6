"""Documentation generated from the config model, so it cannot fall behind the code.

`config_reference()` is docs/config.md: one table per section (key, type and allowed values,
default, the root parameter when the value may differ per environment, description).
`starter_config(project)` is what `mlops-cfn init` writes: every section with its defaults,
each described in a comment and linked to its part of the reference.
"""

import inspect
import json
import re
import textwrap
import typing
from typing import Any, Iterator

import annotated_types
import yaml
from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined, to_jsonable_python

from .config import PipelineConfig, Setting
from .config.base import unwrap_annotation
from .config.overrides import REFERENCE as OVERRIDES_REFERENCE
from .config.switches import SWITCHES

REFERENCE_PATH = "docs/config.md"
SCHEMA_FILE = "pipeline.schema.json"


def sections(model: type[BaseModel] = PipelineConfig, path: str = "") -> Iterator[
        tuple[str, type[BaseModel]]]:
    """(dotted path, model) for the file itself and every nested section, depth first."""
    yield path, model
    for name, field in model.model_fields.items():
        nested = unwrap_annotation(field.annotation)
        if isinstance(nested, type) and issubclass(nested, BaseModel):
            yield from sections(nested, f"{path}.{name}" if path else name)


def anchor(path: str) -> str:
    """The Markdown heading anchor GitHub gives the section's heading."""
    return re.sub(r"[^a-z0-9_-]", "", (path or "top-level").lower())


def describe_type(field: FieldInfo) -> str:
    annotation = unwrap_annotation(field.annotation)
    outer = field.annotation
    while typing.get_origin(outer) is typing.Annotated:
        outer = typing.get_args(outer)[0]
    optional = type(None) in typing.get_args(outer)
    text = _type_text(annotation, field.metadata)
    return f"{text} or null" if optional and "null" not in text else text


def _type_text(annotation: Any, metadata: list) -> str:
    origin = typing.get_origin(annotation)
    if origin is typing.Literal:
        return "one of " + ", ".join(f"`{json.dumps(v)}`" for v in typing.get_args(annotation))
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return "section"
    if origin is list:
        (item,) = typing.get_args(annotation)
        inner = unwrap_annotation(item)
        item_meta = list(getattr(item, "__metadata__", ()))
        return f"list of {_type_text(inner, item_meta)}"
    if origin is dict:
        return "mapping"
    bounds = []
    for constraint in metadata:
        if isinstance(constraint, annotated_types.Ge):
            bounds.append(f">= {constraint.ge}")
        elif isinstance(constraint, annotated_types.Le):
            bounds.append(f"<= {constraint.le}")
        elif isinstance(constraint, annotated_types.MaxLen):
            bounds.append(f"at most {constraint.max_length} characters")
        elif getattr(constraint, "pattern", None):
            bounds.append(f"matching `{constraint.pattern}`")
    name = {int: "integer", float: "number", bool: "boolean", str: "string"}.get(
        annotation, getattr(annotation, "__name__", str(annotation)))
    return name + (" " + ", ".join(bounds) if bounds else "")


def default_of(field: FieldInfo) -> Any:
    if field.default is PydanticUndefined and field.default_factory is None:
        return PydanticUndefined
    return to_jsonable_python(field.get_default(call_default_factory=True))


def setting_of(field: FieldInfo) -> str:
    return next((m.parameter for m in field.metadata if isinstance(m, Setting)), "")


def config_reference() -> str:
    lines = [
        "# pipeline.yaml reference",
        "",
        "Generated from the config model by `scripts/gen-config-docs` (a test fails when this",
        "file is out of date). Unknown keys are errors. Keys marked with a **parameter** may",
        "differ between environments without changing the templates: their value for each",
        "environment goes to `templates/<env>/parameters.json` and the root template takes them",
        "as that CloudFormation parameter. Every other key is structural.",
        "",
        "Editors: `mlops-cfn schema > pipeline.schema.json` and start pipeline.yaml with",
        "`# yaml-language-server: $schema=pipeline.schema.json` for completion and checks",
        "(VS Code's YAML extension and other yaml-language-server clients read that line).",
        "",
        "An environment's overrides (`environments.<name>`) may hold any key below except",
        "`project`, `environments`, `record_schema` and `overrides`; mappings merge key by key,",
        "lists and values replace. To change a rendered resource where no key does, see",
        "[overrides](#overrides-the-escape-hatch).",
    ]
    for path, model in sections():
        title = path or "top-level"
        lines += ["", f"## {title}", ""]
        doc = (model.__doc__ or "").strip()
        if doc and model is not PipelineConfig and not doc.startswith(model.__name__ + "("):
            lines += [inspect.cleandoc(doc).split("\n\n")[0].replace("\n", " "), ""]
        lines += ["| key | type | default | parameter | description |",
                  "|---|---|---|---|---|"]
        for name, field in model.model_fields.items():
            nested = unwrap_annotation(field.annotation)
            is_section = isinstance(nested, type) and issubclass(nested, BaseModel)
            key_path = f"{path}.{name}" if path else name
            default = default_of(field)
            shown_default = ("(required)" if default is PydanticUndefined
                             else f"[section](#{anchor(key_path)})" if is_section
                             else f"`{json.dumps(default)}`")
            parameter = f"`{setting_of(field)}`" if setting_of(field) else ""
            description = (field.description or "").replace("|", "\\|").replace("\n", " ")
            lines.append(f"| `{name}` | {describe_type(field)} | {shown_default} | {parameter} "
                         f"| {description} |")
    return "\n".join(lines) + "\n\n" + OVERRIDES_REFERENCE


# Keys whose absence means something their default does not: `protected` unset is true for an
# environment named prod or production; a switch with a prerequisite elsewhere in the file
# (config/switches.py) is on where it can be, while an explicit true is an error where it
# cannot. The starter shows them commented out, so that writing one is a decision.
DERIVED_WHEN_UNSET = {"protected"} | {switch.path for switch in SWITCHES}


def starter_config(project: str) -> str:
    """A commented pipeline.yaml with every key at its default."""
    out = [
        f"# yaml-language-server: $schema={SCHEMA_FILE}",
        "# mlops-cfn pipeline. Every key shows its default: delete what you keep as is.",
        f"# Reference: {REFERENCE_PATH} (or `mlops-cfn schema`).",
    ]
    out += _section_lines(PipelineConfig, "", 0, {"project": project})
    return "\n".join(out) + "\n"


def _section_lines(model: type[BaseModel], path: str, depth: int,
                   values: dict[str, Any]) -> list[str]:
    indent = "  " * depth
    lines: list[str] = []
    for name, field in model.model_fields.items():
        key_path = f"{path}.{name}" if path else name
        nested = unwrap_annotation(field.annotation)
        comment = _comment(field, key_path)
        if isinstance(nested, type) and issubclass(nested, BaseModel):
            # A section without keys of its own (`extensions` with none installed) is an empty
            # mapping, not a bare key YAML would read as null.
            empty = " {}" if not nested.model_fields else ""
            lines += ["", f"{indent}{name}:{empty}  # {REFERENCE_PATH}#{anchor(key_path)}"]
            lines += _section_lines(nested, key_path, depth + 1, {})
            continue
        value = values.get(name, default_of(field))
        for text in comment:
            lines.append(f"{indent}# {text}")
        if value is None or key_path in DERIVED_WHEN_UNSET:
            lines.append(f"{indent}# {name}:{'' if value is None else ' ' + _flow(value)}")
        elif name == "environments" and model is PipelineConfig:
            lines += [f"{indent}{name}:", f"{indent}  dev: {{}}",
                      f"{indent}  # prod:", f"{indent}  #   protected: true",
                      f"{indent}  #   stages:", f"{indent}  #     ingestion:",
                      f"{indent}  #       retention_hours: 168"]
        else:
            lines.append(f"{indent}{name}: {_flow(value)}")
    return lines


def _comment(field: FieldInfo, key_path: str) -> list[str]:
    text = field.description or ""
    if parameter := setting_of(field):
        text += f" [per environment: parameter {parameter}]"
    return textwrap.wrap(text, width=92) if text else []


def _flow(value: Any) -> str:
    return yaml.safe_dump(value, default_flow_style=True, sort_keys=False,
                          width=1000).strip().removesuffix("\n...").removesuffix("...").strip()
