"""A small IAM policy evaluator for tests: does a set of statements allow one request?

It follows "Policy evaluation logic" (IAM User Guide) for identity-based policies and
boundaries as far as the tests need: an explicit Deny wins, else an Allow, else an implicit
deny. Actions match case-insensitively with `*` and `?`; resources case-sensitively. Conditions:
the String and Arn operators with their Not forms, and ForAnyValue over them; several values of one key are ORed, keys and
operators ANDed; a key absent from the request makes a positive operator false and a negated one
true. `Fn::Sub` values are resolved with the SAMPLE account, region and partition. Anything else
(NotAction, NotResource, other operators) is an error, never a silent pass.
"""

import fnmatch
import re

SAMPLE = {"${AWS::Partition}": "aws", "${AWS::Region}": "eu-west-1",
          "${AWS::AccountId}": "123456789012"}

ALLOW, DENY, IMPLICIT_DENY = "Allow", "Deny", "ImplicitDeny"


def resolve(value):
    if isinstance(value, dict) and set(value) == {"Fn::Sub"} and isinstance(value["Fn::Sub"], str):
        value = value["Fn::Sub"]
    if not isinstance(value, str):
        raise ValueError(f"cannot resolve {value!r}")
    for token, sample in SAMPLE.items():
        value = value.replace(token, sample)
    if "${" in value:
        raise ValueError(f"unresolved reference in {value!r}")
    return value


def _list(value):
    return value if isinstance(value, list) else [value]


def _like(pattern: str, text: str, case: bool = True) -> bool:
    if not case:
        pattern, text = pattern.lower(), text.lower()
    return re.fullmatch(fnmatch.translate(pattern), text) is not None


def _arn_like(pattern: str, arn: str) -> bool:
    # ArnLike compares each of the six colon-separated parts with wildcards.
    wanted, given = pattern.split(":", 5), arn.split(":", 5)
    return len(wanted) == len(given) == 6 and all(
        _like(w, g) for w, g in zip(wanted, given))


_OPERATORS = {
    "StringEquals": (lambda p, v: p == v, False),
    "StringNotEquals": (lambda p, v: p == v, True),
    "StringLike": (_like, False),
    "StringNotLike": (_like, True),
    "ArnEquals": (lambda p, v: p == v, False),
    "ArnNotEquals": (lambda p, v: p == v, True),
    "ArnLike": (_arn_like, False),
    "ArnNotLike": (_arn_like, True),
}


def _condition_holds(condition: dict, context: dict) -> bool:
    for operator, tests in condition.items():
        if operator.startswith("ForAnyValue:"):
            # True when some value of the (multivalued) key satisfies the operator; false for
            # an absent or empty key.
            base = operator.removeprefix("ForAnyValue:")
            for key, values in tests.items():
                given = next((v for k, v in context.items() if k.lower() == key.lower()), [])
                if not any(_condition_holds({base: {key: values}}, {key: value})
                           for value in given):
                    return False
            continue
        if operator not in _OPERATORS:
            raise ValueError(f"operator {operator} is not supported by this evaluator")
        match, negated = _OPERATORS[operator]
        for key, values in tests.items():
            patterns = [resolve(v) for v in _list(values)]
            given = next((v for k, v in context.items() if k.lower() == key.lower()), None)
            if given is None:
                if not negated:
                    return False
                continue
            matched = any(match(p, given) for p in patterns)
            if matched == negated:
                return False
    return True


def _applies(statement: dict, action: str, resource: str, context: dict) -> bool:
    for unsupported in ("NotAction", "NotResource", "NotPrincipal"):
        if unsupported in statement:
            raise ValueError(f"{unsupported} is not supported by this evaluator")
    if not any(_like(a, action, case=False) for a in _list(statement["Action"])):
        return False
    if not any(_like(resolve(r), resource) for r in _list(statement["Resource"])):
        return False
    return _condition_holds(statement.get("Condition", {}), context)


def decide(statements, action: str, resource: str, context: dict | None = None) -> str:
    """ALLOW, DENY (an explicit Deny applies) or IMPLICIT_DENY."""
    context = context or {}
    applying = [s for s in statements if _applies(s, action, resource, context)]
    if any(s["Effect"] == "Deny" for s in applying):
        return DENY
    return ALLOW if applying else IMPLICIT_DENY


def allowed(statements, action: str, resource: str, context: dict | None = None,
            boundary=None) -> bool:
    """Whether the role's statements allow the request, within `boundary`'s statements when
    given (the intersection: "Permissions boundaries for IAM entities")."""
    if decide(statements, action, resource, context) != ALLOW:
        return False
    return boundary is None or decide(boundary, action, resource, context) == ALLOW
