"""Pydantic's validation errors as one line per problem a user can act on.

Each line names the file, the field path, what is allowed and what was given:
`pipeline.yaml: stages.ingestion.shards: must be >= 1 (got 0)`.
"""

import difflib
import typing
from typing import Any

from pydantic import BaseModel, ValidationError

from .base import PATTERN_HINTS, unwrap_annotation

_MESSAGES = {
    "missing": "is required",
    "greater_than_equal": "must be >= {ge}",
    "greater_than": "must be > {gt}",
    "less_than_equal": "must be <= {le}",
    "less_than": "must be < {lt}",
    "literal_error": "must be one of {expected}",
    "enum": "must be one of {expected}",
    "int_type": "must be a whole number",
    "int_parsing": "must be a whole number",
    "int_from_float": "must be a whole number",
    "float_type": "must be a number",
    "float_parsing": "must be a number",
    "bool_type": "must be true or false",
    "bool_parsing": "must be true or false",
    "string_type": "must be a string",
    "string_pattern_mismatch": "must match {pattern}",
    "string_too_short": "must be at least {min_length} characters",
    "string_too_long": "must be at most {max_length} characters",
    "too_short": "must have at least {min_length} items",
    "too_long": "must have at most {max_length} items",
    "dict_type": "must be a mapping",
    "model_type": "must be a mapping",
    "model_attributes_type": "must be a mapping",
    "list_type": "must be a list",
    "set_type": "must be a list",
    "invalid-json-value": "must be text, a number, true or false, a list, a mapping or null "
                          "(quote a date or a time)",
}


def format_validation_error(
    error: ValidationError,
    source: str,
    root: type[BaseModel],
    in_environment: tuple[str, dict] | None = None,
) -> list[str]:
    lines = []
    for item in error.errors(include_url=False):
        loc = tuple(item["loc"])
        message = _message(item, root, loc)
        path = _path(loc)
        if in_environment is not None:
            env_name, overrides = in_environment
            if _present(overrides, loc):
                path = f"environments.{env_name}.{path}" if path else f"environments.{env_name}"
            else:
                message += f" (in environment {env_name!r})"
        lines.append(f"{source}: {path}: {message}" if path else f"{source}: {message}")
    # A union with None reports the same mistake once per member; say it once.
    return list(dict.fromkeys(lines))


def _message(item: dict, root: type[BaseModel], loc: tuple) -> str:
    kind = item["type"]
    ctx = item.get("ctx", {})
    if kind == "extra_forbidden":
        return _unknown_key(root, loc)
    if kind in ("value_error", "assertion_error"):
        text = str(ctx.get("error", item["msg"]))
        # A rule across several fields is about the mapping, which "got" would only repeat.
        return text if isinstance(item.get("input"), (dict, list)) else text + _got(item)
    text = _kind_text(kind, ctx, item["msg"])
    if loc and loc[-1] == "[key]":
        return f"key {text}{_got(item)}"
    return text if kind == "missing" else text + _got(item)


def _kind_text(kind: str, ctx: dict, fallback: str) -> str:
    if kind == "string_pattern_mismatch" and ctx.get("pattern") in PATTERN_HINTS:
        return f"must be {PATTERN_HINTS[ctx['pattern']]}"
    template = _MESSAGES.get(kind)
    return template.format(**ctx) if template else fallback[0].lower() + fallback[1:]


def _got(item: dict) -> str:
    if "input" not in item:
        return ""
    return f" (got {describe_value(item['input'])})"


def describe_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    text = repr(value) if isinstance(value, str) else str(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _path(loc: tuple) -> str:
    parts: list[str] = []
    for part in loc:
        if part == "[key]":
            continue
        if isinstance(part, int):
            parts.append(f"[{part}]")
        else:
            text = str(part)
            # A key with a newline or other control characters must not break the line.
            text = text if text.isprintable() and text.strip() == text else repr(text)
            parts.append(("." if parts else "") + text)
    return "".join(parts)


def _present(data: Any, loc: tuple) -> bool:
    """Whether the override mapping itself holds the value at `loc` (or a mapping above it)."""
    for part in loc:
        if part == "[key]":
            return True
        if isinstance(data, dict) and part in data:
            data = data[part]
        elif isinstance(data, list) and isinstance(part, int) and part < len(data):
            data = data[part]
        elif not isinstance(data, dict) and isinstance(part, str):
            # A union member's tag (`label_values[0].str`): pydantic names the type it tried
            # below the value itself, so the value is here.
            return True
        else:
            return False
    return True


def _unknown_key(root: type[BaseModel], loc: tuple) -> str:
    model = _model_at(root, loc[:-1])
    if model is None:
        return "unknown key"
    allowed = list(model.model_fields)
    close = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    return f"unknown key ({hint}allowed: {', '.join(allowed)})"


def _model_at(root: type[BaseModel], loc: tuple) -> type[BaseModel] | None:
    current: Any = root
    for part in loc:
        current = unwrap_annotation(current)
        if isinstance(current, type) and issubclass(current, BaseModel):
            field = current.model_fields.get(str(part))
            if field is None:
                return None
            current = field.annotation
        elif typing.get_origin(current) in (list, dict):
            current = typing.get_args(current)[-1]
        else:
            return None
    current = unwrap_annotation(current)
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None
