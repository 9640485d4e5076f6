"""Reading a rendered template the way CloudFormation would, for tests that check what a deployed
stack would do: intrinsic functions resolved with given parameter values, IAM statements
evaluated for one action on one resource.

`Resolver` resolves Ref, Fn::Sub, Fn::GetAtt, Fn::Join, Fn::Select, Fn::Split, Fn::If,
Fn::FindInMap and conditions in a fake account (ACCOUNT, REGION). A resource's physical id is
its name property when it has one, else `<stack>-<logical id>`; an ARN from GetAtt follows the
resource type's documented form. Whatever it cannot know (a wire from another stack nobody
gave) stays visibly unresolved (`<unresolved ...>`), so it can never match an ARN by accident.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Iterable, Iterator

from mlops_cfn.rules import pseudo_parameters

ACCOUNT = "123456789012"
REGION = "us-east-1"
PARTITION = "aws"
PSEUDO = {"AWS::AccountId": ACCOUNT, "AWS::Region": REGION, "AWS::Partition": PARTITION,
          "AWS::URLSuffix": "amazonaws.com", "AWS::NoValue": None}
NO_VALUE = object()

# The name property of the types the checks meet, for their physical ids.
NAME_PROPERTIES = {
    "AWS::S3::Bucket": "BucketName",
    "AWS::IAM::Role": "RoleName",
    "AWS::Glue::Job": "Name",
    "AWS::SageMaker::Pipeline": "PipelineName",
    "AWS::CodeBuild::Project": "Name",
    "AWS::Lambda::Function": "FunctionName",
}


@dataclass
class Resolver:
    template: dict
    parameters: dict[str, Any]
    stack: str = "stack"
    # The region the stack is deployed to (the partition follows from it).
    region: str = REGION

    def __post_init__(self):
        self.resources = self.template.get("Resources") or {}
        self.conditions = self.template.get("Conditions") or {}
        self.mappings = self.template.get("Mappings") or {}
        # Declared defaults, overridden by the values given.
        declared = self.template.get("Parameters") or {}
        self.values = {name: spec["Default"] for name, spec in declared.items()
                       if "Default" in spec}
        self.values.update(self.parameters)

    # --- values ------------------------------------------------------------------------------

    def value(self, node: Any) -> Any:
        """`node` with every intrinsic function resolved; AWS::NoValue drops the item."""
        if isinstance(node, list):
            items = [self.value(item) for item in node]
            return [item for item in items if item is not NO_VALUE]
        if not isinstance(node, dict):
            return node
        if len(node) == 1:
            (name, argument), = node.items()
            function = FUNCTIONS.get(name)
            if function is not None:
                return function(self, argument)
        resolved = {key: self.value(item) for key, item in node.items()}
        return {key: item for key, item in resolved.items() if item is not NO_VALUE}

    def ref(self, name: str) -> Any:
        if name in ("AWS::Region", "AWS::Partition", "AWS::URLSuffix"):
            return pseudo_parameters(self.region)[name]
        if name in PSEUDO:
            return NO_VALUE if PSEUDO[name] is None else PSEUDO[name]
        if name in self.values:
            value = self.values[name]
            return ",".join(value) if isinstance(value, list) else str(value)
        if name in self.resources:
            return self.physical_id(name)
        return f"<unresolved Ref {name}>"

    def physical_id(self, logical_id: str) -> str:
        resource = self.resources[logical_id]
        name_property = NAME_PROPERTIES.get(resource.get("Type"))
        name = (resource.get("Properties") or {}).get(name_property) if name_property else None
        return str(self.value(name)) if name is not None else f"{self.stack}-{logical_id}"

    def get_att(self, logical_id: str, attribute: str) -> str:
        resource = self.resources.get(logical_id)
        if resource is None:
            return f"<unresolved GetAtt {logical_id}.{attribute}>"
        if attribute == "Arn":
            return arn_of(resource["Type"], self.physical_id(logical_id))
        return f"<unresolved GetAtt {logical_id}.{attribute}>"

    def sub(self, argument: Any) -> str:
        text, variables = (argument, {}) if isinstance(argument, str) else argument
        values = {name: self.value(value) for name, value in variables.items()}

        def replace(match: re.Match) -> str:
            name = match.group(1)
            if name.startswith("!"):
                return "${" + name[1:] + "}"
            if name in values:
                return str(values[name])
            if "." in name and name.split(".", 1)[0] in self.resources:
                return self.get_att(*name.split(".", 1))
            return str(self.ref(name))

        return re.sub(r"\$\{([^}]+)\}", replace, text)

    def condition(self, name: str) -> bool:
        return bool(self.value(self.conditions[name]))

    # --- resources ---------------------------------------------------------------------------

    def live_resources(self) -> dict[str, dict]:
        """The resources created with these parameter values (their Condition holds)."""
        return {name: resource for name, resource in self.resources.items()
                if "Condition" not in resource or self.condition(resource["Condition"])}

    def logical_id_of_arn(self, arn: str) -> str | None:
        """Which resource of this template an ARN (as GetAtt resolves it) names."""
        for logical_id, resource in self.live_resources().items():
            if arn_of(resource["Type"], self.physical_id(logical_id)) == arn:
                return logical_id
        return None


def arn_of(resource_type: str, physical_id: str) -> str:
    """The ARN GetAtt gives, in the forms the checks need."""
    forms = {
        "AWS::S3::Bucket": f"arn:{PARTITION}:s3:::{physical_id}",
        "AWS::IAM::Role": f"arn:{PARTITION}:iam::{ACCOUNT}:role/{physical_id}",
        "AWS::IAM::ManagedPolicy": f"arn:{PARTITION}:iam::{ACCOUNT}:policy/{physical_id}",
        "AWS::KMS::Key": f"arn:{PARTITION}:kms:{REGION}:{ACCOUNT}:key/{physical_id}",
        "AWS::CodeBuild::Project":
            f"arn:{PARTITION}:codebuild:{REGION}:{ACCOUNT}:project/{physical_id}",
    }
    return forms.get(resource_type, f"<unresolved Arn of {resource_type} {physical_id}>")


def _if(resolver: Resolver, argument: list) -> Any:
    condition, when_true, when_false = argument
    return resolver.value(when_true if resolver.condition(condition) else when_false)


def _join(resolver: Resolver, argument: list) -> str:
    separator, items = argument
    resolved = resolver.value(items)
    return separator.join(str(item) for item in (
        resolved if isinstance(resolved, list) else [resolved]))


def _select(resolver: Resolver, argument: list) -> Any:
    index, items = resolver.value(argument)
    if not isinstance(items, list) or not 0 <= int(index) < len(items):
        return f"<unresolved Select {index} of {items}>"
    return items[int(index)]


def _split(resolver: Resolver, argument: list) -> list:
    separator, text = argument
    return str(resolver.value(text)).split(separator)


def _find_in_map(resolver: Resolver, argument: list) -> Any:
    name, top, second = (resolver.value(item) for item in argument)
    return resolver.mappings[name][top][second]


def _get_att(resolver: Resolver, argument: Any) -> str:
    logical_id, attribute = argument.split(".", 1) if isinstance(argument, str) else argument
    return resolver.get_att(logical_id, attribute)


FUNCTIONS = {
    "Ref": lambda r, name: r.ref(name),
    "Fn::Sub": lambda r, argument: r.sub(argument),
    "Fn::GetAtt": _get_att,
    "Fn::Join": _join,
    "Fn::Select": _select,
    "Fn::Split": _split,
    "Fn::If": _if,
    "Fn::FindInMap": _find_in_map,
    "Fn::Equals": lambda r, pair: r.value(pair[0]) == r.value(pair[1]),
    "Fn::Not": lambda r, items: not r.value(items[0]),
    "Fn::And": lambda r, items: all(r.value(item) for item in items),
    "Fn::Or": lambda r, items: any(r.value(item) for item in items),
    "Condition": lambda r, name: r.condition(name),
}


def strings(node: Any) -> Iterator[str]:
    """Every string in a resolved value, however deeply nested."""
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for item in node.values():
            yield from strings(item)
    elif isinstance(node, list):
        for item in node:
            yield from strings(item)


# --- IAM ----------------------------------------------------------------------------------------

def role_statements(resolver: Resolver, role: str) -> list[dict]:
    """Every identity-policy statement of the role `role` (logical id), resolved: its inline
    policies, policy resources attached to it, and the managed policies of this template it
    names."""
    live = resolver.live_resources()
    properties = resolver.value(live[role].get("Properties") or {})
    documents = [p["PolicyDocument"] for p in properties.get("Policies", [])]
    role_name = resolver.physical_id(role)
    for logical_id, resource in live.items():
        if resource["Type"] not in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"):
            continue
        attached = resolver.value((resource.get("Properties") or {}).get("Roles", []))
        managed_arn = arn_of(resource["Type"], resolver.physical_id(logical_id))
        if role_name in attached or managed_arn in properties.get("ManagedPolicyArns", []):
            documents.append(resolver.value(resource["Properties"]["PolicyDocument"]))
    return [statement for document in documents for statement in _listed(document["Statement"])]


def key_policy_statements(resolver: Resolver, key: str) -> list[dict]:
    properties = resolver.value(resolver.resources[key]["Properties"])
    return _listed(properties["KeyPolicy"]["Statement"])


@dataclass(frozen=True)
class Request:
    """One API call as IAM evaluates it: the action, the resource, the request's context."""

    action: str
    resource: str
    context: tuple[tuple[str, str], ...] = ()

    def allowed_by(self, statements: Iterable[dict], principal: str | None = None) -> bool:
        """Allowed by an Allow statement and denied by none (conditions must hold in the
        request's context; a condition on a key the context lacks does not hold)."""
        matching = [s for s in statements if self._matches(s, principal)]
        return (any(s["Effect"] == "Allow" for s in matching)
                and not any(s["Effect"] == "Deny" for s in matching))

    def _matches(self, statement: dict, principal: str | None) -> bool:
        if principal is not None and not _principal_matches(statement.get("Principal"),
                                                             principal):
            return False
        if "Action" in statement:
            if not any(_glob(pattern, self.action, ignore_case=True)
                       for pattern in _listed(statement["Action"])):
                return False
        elif any(_glob(pattern, self.action, ignore_case=True)
                 for pattern in _listed(statement.get("NotAction", []))):
            return False
        if "Resource" in statement:
            if not any(_glob(pattern, self.resource) for pattern in _listed(
                    statement["Resource"])):
                return False
        return _conditions_hold(statement.get("Condition") or {}, dict(self.context))


def _principal_matches(declared: Any, principal: str) -> bool:
    if declared == "*" or declared is None:
        return declared == "*"
    return principal in _listed(declared.get("AWS", [])) if isinstance(declared, dict) else False


def _conditions_hold(conditions: dict, context: dict[str, str]) -> bool:
    for operator, tests in conditions.items():
        for key, expected in tests.items():
            actual = context.get(key)
            if actual is None:
                return False
            patterns = [str(e) for e in _listed(expected)]
            if operator in ("StringEquals", "ArnEquals"):
                ok = actual in patterns
            elif operator in ("StringLike", "ArnLike"):
                ok = any(_glob(p, actual) for p in patterns)
            elif operator == "Bool":
                ok = actual.lower() in [p.lower() for p in patterns]
            else:
                return False  # an operator these checks do not evaluate never counts as met
            if not ok:
                return False
    return True


def _glob(pattern: str, text: str, ignore_case: bool = False) -> bool:
    """IAM's wildcards: `*` any run of characters, `?` one character; nothing else special."""
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, text, re.IGNORECASE if ignore_case else 0) is not None


def _listed(value: Any) -> list:
    return value if isinstance(value, list) else [value]

