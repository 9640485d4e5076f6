"""Whether an override's value can stand where its path puts it, before anything reads it.

The stages' templates are troposphere's, so their values have the shapes CloudFormation takes;
an override's value comes straight from pipeline.yaml, and the code that reads the built
templates (the permissions boundary, the deploy role's requirements, the YAML writer) relies on
those shapes. So each value is checked when it is applied:

- against the resource type's registry schema as cfn-lint ships it: a property the type does
  not have (where the schema closes its properties) is named, and a value must be of the kind
  the schema gives: a list where a list goes, a mapping where a mapping goes, a plain value
  where one goes (text, a number and true/false stand for one another, as CloudFormation
  converts them);
- intrinsic functions, wherever they are in the value, must have the arguments CloudFormation
  requires (`Ref` a name, `Fn::Sub` text or [text, mapping], ...).
A type the schemas do not know (a custom resource, an extension's own type) is checked for its
functions only. Everything finer (allowed values, patterns, what a property requires with it)
is cfn-lint's when the templates are validated.
"""

import difflib
from typing import Any, Iterator

# CloudFormation's intrinsic functions, each with a check of its argument.
_FUNCTIONS: dict[str, Any] = {
    "Ref": lambda a: isinstance(a, str),
    "Condition": lambda a: isinstance(a, str),
    "Fn::GetAtt": lambda a: (isinstance(a, str) and "." in a) or (
        isinstance(a, list) and len(a) == 2 and isinstance(a[0], str)),
    "Fn::Sub": lambda a: isinstance(a, str) or (
        isinstance(a, list) and len(a) == 2 and isinstance(a[0], str) and isinstance(a[1], dict)),
    "Fn::Join": lambda a: isinstance(a, list) and len(a) == 2 and isinstance(a[0], str)
    and isinstance(a[1], (list, dict)),
    "Fn::If": lambda a: isinstance(a, list) and len(a) == 3 and isinstance(a[0], str),
    "Fn::Select": lambda a: isinstance(a, list) and len(a) == 2
    and isinstance(a[0], (int, str, dict)) and not isinstance(a[0], bool)
    and isinstance(a[1], (list, dict)),
    "Fn::Split": lambda a: isinstance(a, list) and len(a) == 2 and isinstance(a[0], str)
    and isinstance(a[1], (str, dict)),
    "Fn::FindInMap": lambda a: isinstance(a, list) and len(a) in (3, 4),
    "Fn::Cidr": lambda a: isinstance(a, list) and len(a) == 3,
    "Fn::ImportValue": lambda a: isinstance(a, (str, dict)),
    "Fn::Base64": lambda a: isinstance(a, (str, dict)),
    "Fn::GetAZs": lambda a: isinstance(a, (str, dict)),
    "Fn::Length": lambda a: isinstance(a, (list, dict)),
    "Fn::ToJsonString": lambda a: isinstance(a, (list, dict)),
}
_SCALAR = ("string", "integer", "number", "boolean")


def problems(resource_type: str | None, keys: tuple[str, ...], value: Any) -> list[str]:
    """What is wrong with `value` at `keys` under a `resource_type` resource's Properties,
    each as a phrase (empty: nothing this module can see)."""
    found = [f"{where}: {what}" if where else what for where, what in _functions(value, ())]
    if resource_type is not None and not found:
        found += _against_schema(resource_type, keys, value)
    return found


def _functions(node: Any, path: tuple[str, ...]) -> Iterator[tuple[str, str]]:
    """(where in the value, what is wrong) for each ill-formed intrinsic function."""
    if isinstance(node, list):
        for index, item in enumerate(node):
            yield from _functions(item, (*path, str(index)))
    elif isinstance(node, dict):
        if len(node) == 1:
            (name, argument), = node.items()
            if (name == "Ref" or name.startswith("Fn::")) and (
                    name not in _FUNCTIONS or not _FUNCTIONS[name](argument)):
                known = name in _FUNCTIONS
                yield ".".join(path), (f"{name} with an argument CloudFormation does not take"
                                       if known else f"{name} is no intrinsic function")
                return
        for key, item in node.items():
            yield from _functions(item, (*path, key))


def _is_function(value: Any) -> bool:
    return isinstance(value, dict) and len(value) == 1 and next(iter(value)) in _FUNCTIONS


def _against_schema(resource_type: str, keys: tuple[str, ...], value: Any) -> list[str]:
    schema = _schema(resource_type)
    if schema is None:
        return []
    node: dict | None = schema
    walked: list[str] = []
    for key in keys:
        if key in _FUNCTIONS:
            return []  # inside a function the path names: its branches are not typed here
        node = _resolved(schema, node)
        if node is None:
            return []
        kinds = _kinds(node)
        if "array" in kinds and key.isdigit():
            node = node.get("items")
        elif "object" in kinds or "properties" in node:
            properties = node.get("properties")
            if properties is not None and key in properties:
                node = properties[key]
            elif properties is not None and node.get("additionalProperties") is False \
                    and not node.get("patternProperties"):
                where = f" in {'.'.join(walked)}" if walked else ""
                close = difflib.get_close_matches(key, list(properties), n=1)
                hint = (f"did you mean {close[0]!r}?" if close else
                        f"properties: {', '.join(sorted(properties))}")
                return [f"{resource_type} has no property {key}{where} ({hint})"]
            else:
                return []  # a free-form mapping (a policy document, tags by name)
        else:
            return []
        walked.append(key)
    node = _resolved(schema, node)
    if node is None or _is_function(value):
        return []
    kinds = _kinds(node)
    if not kinds or _fits(value, kinds):
        return []
    return [f"must be {_kind_words(kinds)} for {resource_type} (got {_kind_of(value)})"]


def _schema(resource_type: str) -> dict | None:
    from cfnlint.schema import PROVIDER_SCHEMA_MANAGER, ResourceNotFoundError

    try:
        return PROVIDER_SCHEMA_MANAGER.get_resource_schema("us-east-1", resource_type).schema
    except ResourceNotFoundError:
        return None


def _resolved(schema: dict, node: Any) -> dict | None:
    """`node` with its `$ref` (into the schema's definitions) followed."""
    for _ in range(20):
        if not isinstance(node, dict):
            return None
        reference = node.get("$ref")
        if not isinstance(reference, str):
            return node
        if not reference.startswith("#/"):
            return None
        target: Any = schema
        for part in reference[2:].split("/"):
            target = target.get(part) if isinstance(target, dict) else None
        node = target
    return None


def _kinds(node: dict) -> set[str]:
    kind = node.get("type")
    kinds = set(kind if isinstance(kind, list) else [kind] if kind else [])
    if not kinds and "properties" in node:
        kinds = {"object"}
    return kinds


def _fits(value: Any, kinds: set[str]) -> bool:
    if isinstance(value, list):
        return "array" in kinds
    if isinstance(value, dict):
        return "object" in kinds
    # CloudFormation converts text, numbers and true/false into one another.
    return bool(kinds & set(_SCALAR))


def _kind_of(value: Any) -> str:
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return "a plain value"


def _kind_words(kinds: set[str]) -> str:
    words = []
    if "array" in kinds:
        words.append("a list")
    if "object" in kinds:
        words.append("a mapping")
    if kinds & set(_SCALAR):
        words.append("a plain value (text, a number or true/false)")
    return " or ".join(words)
