"""A built pipeline read the way CloudFormation reads it when it creates the stacks.

`create(pipeline, parameters)` takes the root's parameter values (parameters.json's, then the
root's defaults, then `parameters`), feeds each nested stack in wiring order (a root parameter or
a sibling's output), resolves the stack's Conditions from those values, drops every resource and
output whose condition is false, and takes the chosen branch of every Fn::If (AWS::NoValue
removes the property or list item). What is left is what CloudFormation would create.

Only the functions the rendered templates use are resolved: Ref of a parameter or pseudo
parameter, Fn::If, Fn::Sub, Fn::Join, Fn::Select, Fn::Split, Fn::FindInMap and the condition
functions. Values that exist only once a resource does (Ref of a resource, Fn::GetAtt, a Sub
naming one) stay as they are, so a test can still see what refers to what.

`taint` replaces chosen stack parameters by marker text, to follow where a value flows.
"""

import re
from dataclasses import dataclass
from typing import Any

from mlops_cfn.pipeline import Pipeline

NO_VALUE = object()
PSEUDO = {"AWS::Region": "eu-west-1", "AWS::AccountId": "111122223333", "AWS::Partition": "aws",
          "AWS::URLSuffix": "amazonaws.com", "AWS::StackName": "stack",
          "AWS::StackId": "arn:aws:cloudformation:eu-west-1:111122223333:stack/stack/id"}


@dataclass
class CreatedStack:
    name: str
    parameters: dict[str, str]
    conditions: dict[str, bool]
    # Logical id -> resource as created (Condition gone, Fn::If resolved).
    resources: dict[str, dict]
    # Output name -> value.
    outputs: dict[str, Any]
    # Logical ids of resources whose condition is false.
    dropped: set[str]


def create(pipeline: Pipeline, parameters: dict[str, str] | None = None,
           taint: dict[str, str] | None = None,
           pseudo: dict[str, str] | None = None) -> dict[str, CreatedStack]:
    """Every stack of the pipeline as created, by stage name; `pseudo` overrides pseudo
    parameters (another partition or region)."""
    if pseudo:
        saved = dict(PSEUDO)
        PSEUDO.update(pseudo)
        try:
            return create(pipeline, parameters, taint)
        finally:
            PSEUDO.clear()
            PSEUDO.update(saved)
    root = pipeline.root.to_dict()
    values = {name: str(spec["Default"]) for name, spec in root.get("Parameters", {}).items()
              if "Default" in spec}
    values.update(pipeline.parameters)
    values.setdefault("AssetsBucket", "assets-bucket")
    values.update(parameters or {})
    created: dict[str, CreatedStack] = {}
    outputs: dict[str, dict[str, Any]] = {}
    stacks = root["Resources"]
    for stage in pipeline.stages:
        passed = stacks[stage.logical_id]["Properties"].get("Parameters", {})
        given = {}
        for name, value in passed.items():
            if isinstance(value, dict) and "Fn::GetAtt" in value:
                producer, attribute = value["Fn::GetAtt"]
                given[name] = outputs[producer][attribute.removeprefix("Outputs.")]
            else:
                given[name] = _resolve(value, values, {}, {})
        given.update({k: v for k, v in (taint or {}).items() if k in given})
        stack = _create(stage.name, stage.template.to_dict(), given)
        created[stage.name] = stack
        outputs[stage.logical_id] = stack.outputs
    return created


def _create(name: str, template: dict, given: dict[str, Any]) -> CreatedStack:
    parameters = {p: given.get(p, spec.get("Default"))
                  for p, spec in template.get("Parameters", {}).items()}
    missing = [p for p, v in parameters.items() if v is None]
    assert not missing, f"{name}: no value for {missing}"
    parameters = {p: str(v) if isinstance(v, (int, float)) else v for p, v in parameters.items()}
    mappings = template.get("Mappings", {})
    definitions = template.get("Conditions", {})
    conditions: dict[str, bool] = {}
    for condition in definitions:
        _condition(condition, definitions, conditions, parameters, mappings)
    resources, dropped = {}, set()
    for logical_id, body in template.get("Resources", {}).items():
        if "Condition" in body and not conditions[body["Condition"]]:
            dropped.add(logical_id)
            continue
        kept = {k: v for k, v in body.items() if k != "Condition"}
        resources[logical_id] = _resolve(kept, parameters, conditions, mappings)
    outputs = {}
    for output, body in template.get("Outputs", {}).items():
        if "Condition" in body and not conditions[body["Condition"]]:
            continue
        outputs[output] = _resolve(body["Value"], parameters, conditions, mappings)
    return CreatedStack(name, parameters, conditions, resources, outputs, dropped)


def _condition(name: str, definitions: dict, conditions: dict, parameters: dict,
               mappings: dict) -> bool:
    if name not in conditions:
        conditions[name] = _truth(definitions[name], definitions, conditions, parameters,
                                  mappings)
    return conditions[name]


def _truth(node: Any, definitions: dict, conditions: dict, parameters: dict,
           mappings: dict) -> bool:
    (function, argument), = node.items()
    if function == "Condition":
        return _condition(argument, definitions, conditions, parameters, mappings)
    parts = [_truth(a, definitions, conditions, parameters, mappings)
             for a in argument] if function != "Fn::Equals" else []
    if function == "Fn::Equals":
        left, right = (_resolve(a, parameters, conditions, mappings) for a in argument)
        assert isinstance(left, str) and isinstance(right, str), (left, right)
        return left == right
    if function == "Fn::Not":
        return not parts[0]
    if function == "Fn::And":
        return all(parts)
    if function == "Fn::Or":
        return any(parts)
    raise AssertionError(f"condition function {function} not modelled")


def _resolve(node: Any, parameters: dict, conditions: dict, mappings: dict) -> Any:
    if isinstance(node, list):
        items = [_resolve(item, parameters, conditions, mappings) for item in node]
        return [item for item in items if item is not NO_VALUE]
    if not isinstance(node, dict):
        return node
    if len(node) == 1:
        (function, argument), = node.items()
        again = lambda value: _resolve(value, parameters, conditions, mappings)  # noqa: E731
        if function == "Ref":
            if argument == "AWS::NoValue":
                return NO_VALUE
            if argument in parameters:
                return parameters[argument]
            if argument in PSEUDO:
                return PSEUDO[argument]
            return node  # a resource: its id exists once it does
        if function == "Fn::If":
            condition, when_true, when_false = argument
            return again(when_true if conditions[condition] else when_false)
        if function == "Fn::Sub":
            text, variables = (argument, {}) if isinstance(argument, str) else argument
            known = {**PSEUDO, **parameters, **{k: again(v) for k, v in variables.items()}}
            return _substitute(text, known)
        if function == "Fn::Join":
            delimiter, items = argument
            items = again(items)
            if isinstance(items, str):  # a list parameter, comma-joined
                return items
            if all(isinstance(i, str) for i in items):
                return delimiter.join(items)
            return {"Fn::Join": [delimiter, items]}
        if function == "Fn::Split":
            delimiter, text = argument
            text = again(text)
            return text.split(delimiter) if isinstance(text, str) else {"Fn::Split": [
                delimiter, text]}
        if function == "Fn::Select":
            index, items = again(argument[0]), again(argument[1])
            if isinstance(items, str):
                items = items.split(",")
            return items[int(index)] if isinstance(items, list) else {"Fn::Select": [
                index, items]}
        if function == "Fn::FindInMap":
            mapping, key, attribute = (again(a) for a in argument)
            return mappings[mapping][key][attribute]
    resolved = {k: _resolve(v, parameters, conditions, mappings) for k, v in node.items()}
    return {k: v for k, v in resolved.items() if v is not NO_VALUE}


_REFERENCE = re.compile(r"\$\{([A-Za-z0-9:]+)\}")


def _substitute(text: str, known: dict[str, Any]) -> str | dict:
    """Sub's text with what is known filled in; a reference to a resource stays a Sub."""
    def fill(match: re.Match) -> str:
        value = known.get(match.group(1))
        return value if isinstance(value, str) else match.group(0)
    filled = _REFERENCE.sub(fill, text)
    return {"Fn::Sub": filled} if re.search(r"\$\{[A-Za-z0-9.:]+\}", filled) else filled


def references(node: Any) -> set[str]:
    """Logical ids a created value still refers to (Ref, Fn::GetAtt, Sub text, DependsOn)."""
    found: set[str] = set()
    if isinstance(node, list):
        for item in node:
            found |= references(item)
    elif isinstance(node, dict):
        for key, value in node.items():
            if key == "Ref" and isinstance(value, str):
                found.add(value)
            elif key == "Fn::GetAtt":
                found.add(value[0] if isinstance(value, list) else value.split(".")[0])
            elif key == "Fn::Sub" and isinstance(value, str):
                found |= {m.split(".")[0] for m in re.findall(r"\$\{([A-Za-z0-9.]+)\}", value)}
            elif key == "DependsOn":
                found |= set([value] if isinstance(value, str) else value)
            else:
                found |= references(value)
    return found


def strings(node: Any, path: tuple = ()) -> list[tuple[tuple, str]]:
    """Every text in a created value with where it sits (a path of keys and indexes)."""
    if isinstance(node, str):
        return [(path, node)]
    if isinstance(node, list):
        return [found for i, item in enumerate(node) for found in strings(item, path + (i,))]
    if isinstance(node, dict):
        return [found for key, value in node.items() for found in strings(value, path + (key,))]
    return []
