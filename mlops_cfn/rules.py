"""A template's Rules and Conditions, evaluated with known values before anything reaches AWS.

CloudFormation checks a template's `Rules` when a change set is created; `deploy` checks them
first, with the region and the parameter values it is about to send, so that a refusal (a region
without the images the pipeline needs, stages/image_registries.py) costs no upload. Only the
rule functions that need no lookup in the account are evaluated ("Rule functions",
CloudFormation Template Reference: Fn::And, Fn::Contains, Fn::EachMemberEquals,
Fn::EachMemberIn, Fn::Equals, Fn::Not, Fn::Or, Ref); anything else (Fn::ValueOf, Fn::RefAll, a
value not known yet) is UNKNOWN, and an unknown assertion refuses nothing: CloudFormation
still has the last word.
"""

from typing import Any

UNKNOWN = object()


def partition_of(region: str) -> str:
    if region.startswith("cn-"):
        return "aws-cn"
    if region.startswith("us-gov-"):
        return "aws-us-gov"
    return "aws"


def pseudo_parameters(region: str) -> dict[str, str]:
    partition = partition_of(region)
    return {"AWS::Region": region, "AWS::Partition": partition,
            "AWS::URLSuffix": "amazonaws.com.cn" if partition == "aws-cn" else "amazonaws.com"}


def evaluate(node: Any, values: dict[str, Any], conditions: dict | None = None) -> Any:
    """`node` with `values` (parameters and pseudo parameters by name) filled in: a string, a
    list, true or false, or UNKNOWN."""
    if isinstance(node, (str, bool, int, float)):
        return node
    if isinstance(node, list):
        items = [evaluate(item, values, conditions) for item in node]
        return UNKNOWN if any(item is UNKNOWN for item in items) else items
    if not isinstance(node, dict) or len(node) != 1:
        return UNKNOWN
    [(function, argument)] = node.items()
    if function == "Ref":
        return values.get(argument, UNKNOWN)
    if function == "Condition":
        if conditions is None or argument not in conditions:
            return UNKNOWN
        return evaluate(conditions[argument], values, conditions)
    if function == "Fn::Not":
        [inner] = argument
        value = evaluate(inner, values, conditions)
        return UNKNOWN if value is UNKNOWN else not value
    if function in ("Fn::And", "Fn::Or"):
        results = [evaluate(item, values, conditions) for item in argument]
        decisive = function == "Fn::Or"  # the value that settles it whatever the others are
        if any(result is decisive for result in results):
            return decisive
        return UNKNOWN if any(result is UNKNOWN for result in results) else not decisive
    operands = evaluate(argument, values, conditions)
    if operands is UNKNOWN:
        return UNKNOWN
    if function == "Fn::Equals":
        one, two = operands
        return str(one) == str(two)
    if function == "Fn::Contains":
        choices, value = operands
        return value in choices
    if function == "Fn::EachMemberEquals":
        members, value = operands
        return all(member == value for member in members)
    if function == "Fn::EachMemberIn":
        members, allowed = operands
        return all(member in allowed for member in members)
    return UNKNOWN


def failed_assertions(template: dict, values: dict[str, Any]) -> list[str]:
    """The AssertDescription of every assertion of the template's Rules that is false with
    `values` (rules whose RuleCondition is false or unknown do not apply)."""
    failed = []
    for name, rule in (template.get("Rules") or {}).items():
        if "RuleCondition" in rule and evaluate(rule["RuleCondition"], values) is not True:
            continue
        for assertion in rule.get("Assertions", []):
            if evaluate(assertion["Assert"], values) is False:
                failed.append(assertion.get("AssertDescription") or f"rule {name} fails")
    return failed
