"""What the rules of this pack share: documented exceptions, and reading properties through
`Fn::If`.

The file name starts with an underscore so that cfn-lint, loading the pack as a directory
(`--append-rules DIR` imports every `[A-Za-z1-9]*.py` in it), does not take it for a rule file.
Rule files import it by its full name (`from mlops_cfn.lint_rules import _common`): cfn-lint
loads them as loose modules, where relative imports do not work.
"""

from __future__ import annotations

from typing import Any, Iterator, Sequence

# Resource Metadata key under which a template records why a rule of this pack does not apply
# to that resource:
#
#   Metadata:
#     mlops-cfn:
#       exceptions:
#         - id: E9002
#           reason: A permissions boundary grants nothing by itself ...
#
# An exception without a reason is no exception: the rule still reports the resource.
METADATA_KEY = "mlops-cfn"

# The end of every message: how to accept a finding on purpose.
HINT = f" (or record why not under the resource's Metadata: {METADATA_KEY}: exceptions)"


class _Missing:
    """A property that is absent, or `Ref: AWS::NoValue` in some branch of an `Fn::If`."""

    def __repr__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()


def exceptions(*pairs: tuple[str, str]) -> dict:
    """Resource Metadata recording documented exceptions, `(rule id, reason)` each."""
    return {METADATA_KEY: {"exceptions": [{"id": rule, "reason": reason}
                                          for rule, reason in pairs]}}


def excepted(resource: Any, rule_id: str) -> bool:
    """Whether the resource's Metadata records an exception to `rule_id` with a reason."""
    if not isinstance(resource, dict):
        return False
    metadata = resource.get("Metadata")
    own = metadata.get(METADATA_KEY) if isinstance(metadata, dict) else None
    listed = own.get("exceptions") if isinstance(own, dict) else None
    if not isinstance(listed, list):
        return False
    return any(isinstance(item, dict) and item.get("id") == rule_id
               and isinstance(item.get("reason"), str) and item["reason"].strip()
               for item in listed)


def branches(node: Any, path: Sequence) -> Iterator[tuple[Any, list]]:
    """Each value `node` may take, with its path: both branches of every `Fn::If`, and MISSING
    for `Ref: AWS::NoValue`."""
    if isinstance(node, dict) and len(node) == 1:
        if "Fn::If" in node and isinstance(node["Fn::If"], list) and len(node["Fn::If"]) == 3:
            for index in (1, 2):
                yield from branches(node["Fn::If"][index], [*path, "Fn::If", index])
            return
        if node.get("Ref") == "AWS::NoValue":
            yield MISSING, list(path)
            return
    yield node, list(path)


def values_at(node: Any, path: Sequence, keys: Sequence[str]) -> Iterator[tuple[Any, list]]:
    """The values at `keys` below `node` (at `path`), through every `Fn::If` branch.

    `"*"` steps into each item of a list. A key starting with `?` is optional: where it is
    absent nothing is yielded (the requirements below it apply only when it is there). Where a
    required key is absent, MISSING is yielded with the path of the mapping that lacks it, so a
    finding points at the deepest part of the template that exists.
    """
    for value, where in branches(node, path):
        if not keys:
            yield value, where
            continue
        key, rest = keys[0], keys[1:]
        optional = key.startswith("?")
        key = key.lstrip("?")
        if value is MISSING:
            if not optional:
                yield MISSING, where
            continue
        if key == "*":
            if isinstance(value, list) and value:
                for index, item in enumerate(value):
                    yield from values_at(item, [*where, index], rest)
            elif isinstance(value, list) and not optional:
                yield MISSING, where
            continue
        if not isinstance(value, dict):
            continue  # an intrinsic function or a parameter: nothing to read
        if key not in value:
            if not optional:
                yield MISSING, where
            continue
        yield from values_at(value[key], [*where, key], rest)


def as_list(value: Any) -> list:
    return value if isinstance(value, list) else [value]


def policy_statements(document: Any, path: Sequence) -> Iterator[tuple[dict, list]]:
    """Each statement of an IAM policy document (a mapping with `Statement`), with its path,
    through `Fn::If`."""
    for doc, where in branches(document, path):
        if not isinstance(doc, dict) or "Statement" not in doc:
            continue
        for statements, at in branches(doc["Statement"], [*where, "Statement"]):
            items = enumerate(statements) if isinstance(statements, list) else [(None, statements)]
            for index, item in items:
                item_path = at if index is None else [*at, index]
                for statement, spot in branches(item, item_path):
                    if isinstance(statement, dict):
                        yield statement, spot


def policy_documents(node: Any, path: Sequence) -> Iterator[tuple[dict, list]]:
    """Every IAM policy document anywhere below `node`: any mapping with a `Statement` whose
    statements carry an `Effect`, wherever a resource type keeps it (Policies, PolicyDocument,
    KeyPolicy, RepositoryPolicyText, ...)."""
    if isinstance(node, dict):
        statements = node.get("Statement")
        if statements is not None and ("Version" in node or any(
                isinstance(s, dict) and ("Effect" in s or "Fn::If" in s)
                for s in as_list(statements))):
            yield node, list(path)
            return
        for key, value in node.items():
            yield from policy_documents(value, [*path, key])
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from policy_documents(value, [*path, index])
