"""Each resource of a rendered environment as CloudFormation would hand it to a hook.

Control Tower's proactive controls run as CloudFormation hooks on every resource a stack
creates or updates, and a hook sees a resource's properties after CloudFormation has resolved
them: parameters substituted, conditions evaluated, `Fn::If` branches chosen, resources whose
condition is false never created ("Proactive controls" in the AWS Control Tower Controls
Reference Guide; "Hook invocation" in the CloudFormation Hooks User Guide). A raw template
read by a linter shows `!Ref LogRetentionDays` where the hook sees `30`; this module produces
what the hook sees, from the files `mlops-cfn render` writes (root.yaml, one template per stage,
parameters.json).

How far resolution goes: every intrinsic function the templates use (`Ref`, `Fn::Sub`,
`Fn::GetAtt`, `Fn::If` and the condition functions, `Fn::Join`, `Fn::Select`, `Fn::Split`,
`Fn::FindInMap`, `Fn::GetAZs`, `Fn::Cidr`, `Fn::Base64`), nested stack parameters passed down
from the root, and nested stack outputs read back through `!GetAtt Stack.Outputs.Name`. What only
a deployment knows (a resource's physical id or ARN, the account, the zones of the region) comes
out as a stand-in of the right form (`arn:aws:kms:us-east-1:111122223333:...`): the controls
check what a property is set to, never which account's key it names. A function this module
does not know is an error, never a silent guess.

Parameter values arrive typed as their declaration says (a `Number` parameter as a number), as
in a template that writes the value literally: the controls compare numbers (`RetentionInDays
>= 365`), and CloudFormation converts a parameter's string to the property's type before the
resource's handler runs.
"""

from __future__ import annotations

import base64
import ipaddress
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..assets import ASSETS_BUCKET, ASSETS_KEY_ARN, TOOL_WHEEL_KEY
from ..errors import UserError

ACCOUNT_ID = "111122223333"  # the documentation's example account: a stand-in, never a real one
DEFAULT_REGION = "us-east-1"
NESTED_STACK = "AWS::CloudFormation::Stack"
# What `mlops-cfn package` sets the packaging parameters to (assets.PACKAGING_PARAMETERS): its
# bucket, the key the bucket encrypts with (the delivery pipeline's packaging always has one, so
# the statements that exist only then are checked), and the wheel it uploads. AssetsPrefix keeps
# its default.
PACKAGED_STAND_INS = {
    ASSETS_BUCKET: "example-packaging-bucket",
    ASSETS_KEY_ARN: f"arn:aws:kms:{DEFAULT_REGION}:{ACCOUNT_ID}:key/"
                    "1234abcd-12ab-34cd-56ef-1234567890ab",
    TOOL_WHEEL_KEY: "assets/0123456789abcdef/mlops_cfn-0.0.0-py3-none-any.whl",
}


class _NoValue:
    """`AWS::NoValue`: the property (or list element) it stands for is left out."""

    def __repr__(self) -> str:
        return "AWS::NoValue"


NO_VALUE = _NoValue()


@dataclass(frozen=True)
class DeployedResource:
    """One resource as a hook on it sees it: type and fully resolved properties."""

    template: str  # the template file the resource is declared in, e.g. "serving.yaml"
    logical_id: str
    type: str
    properties: dict
    metadata: dict = field(default_factory=dict)

    @property
    def where(self) -> str:
        return f"{self.template} {self.logical_id}"


def deployed_resources(templates: Path, parameters: Mapping[str, Any] | None = None,
                       region: str = DEFAULT_REGION) -> list[DeployedResource]:
    """Every resource that deploying `templates` (one rendered environment: the folder holding
    root.yaml and parameters.json) creates, resolved as a hook sees it.

    The environment's parameters.json gives the root's parameter values; `parameters` overrides
    some of them, as `mlops-cfn deploy --parameter` does (for example a model package, to see
    the resources that exist only once a model is served). Nested stacks are followed through
    their relative `TemplateURL`. Raises `UserError` for files that cannot be read.
    """
    values = dict(PACKAGED_STAND_INS)
    values.update(_read_parameters(templates / "parameters.json"))
    values.update({k: str(v) for k, v in (parameters or {}).items()})
    root = _Stack(templates, "root.yaml", values, region, stack_name="root")
    return root.deployed()


def _read_parameters(path: Path) -> dict[str, str]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise UserError(f"{path}: cannot be read as the environment's parameters ({error})")
    given = data.get("Parameters", data) if isinstance(data, dict) else None
    if isinstance(given, list):  # the CLI's [{"ParameterKey": ..., "ParameterValue": ...}]
        given = {p["ParameterKey"]: p["ParameterValue"] for p in given}
    if not isinstance(given, dict):
        raise UserError(f"{path}: Parameters: expected a mapping of parameter names to values")
    return {str(k): str(v) for k, v in given.items()}


def _read_template(path: Path) -> dict:
    from cfnlint.decode import decode

    if not path.is_file():
        raise UserError(f"{path}: no such template")
    data, matches = decode(str(path))
    if matches or not isinstance(data, dict) or "Resources" not in data:
        raise UserError(f"{path}: not a readable CloudFormation template")
    return _plain(data)


def _plain(node: Any) -> Any:
    """cfn-lint's decoded nodes as plain dicts, lists, strings and numbers."""
    if isinstance(node, dict):
        return {str(k): _plain(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_plain(v) for v in node]
    if isinstance(node, str):
        return str(node)
    return node


class _Stack:
    """One template deployed with given parameter values: resolves what is written in it."""

    def __init__(self, folder: Path, file: str, given: Mapping[str, str], region: str,
                 stack_name: str):
        self.folder, self.file, self.region = folder, file, region
        self.stack_name = stack_name
        self.template = _read_template(folder / file)
        self.parameters = self._parameter_values(given)
        self._conditions: dict[str, bool] = {}
        self._children: dict[str, _Stack] = {}
        self.resources: dict = self.template.get("Resources", {})

    # --- parameters and conditions ------------------------------------------------------

    def _parameter_values(self, given: Mapping[str, str]) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for name, declaration in self.template.get("Parameters", {}).items():
            if name in given:
                raw = given[name]
            elif "Default" in declaration:
                raw = declaration["Default"]
            else:
                raise UserError(f"{self.folder / self.file}: parameter {name} has no value "
                                "and no default")
            values[name] = _typed(str(raw) if not isinstance(raw, list) else raw,
                                  declaration.get("Type", "String"))
        return values

    def condition(self, name: str) -> bool:
        if name not in self._conditions:
            conditions = self.template.get("Conditions", {})
            if name not in conditions:
                raise UserError(f"{self.folder / self.file}: unknown condition {name}")
            self._conditions[name] = bool(self._condition_value(conditions[name]))
        return self._conditions[name]

    def _condition_value(self, node: Any) -> bool:
        if isinstance(node, dict) and len(node) == 1:
            (function, argument), = node.items()
            if function == "Fn::Equals":
                left, right = (self.resolve(a) for a in argument)
                return _scalar_text(left) == _scalar_text(right)
            if function == "Fn::Not":
                return not self._condition_value(argument[0])
            if function == "Fn::And":
                return all(self._condition_value(a) for a in argument)
            if function == "Fn::Or":
                return any(self._condition_value(a) for a in argument)
            if function == "Condition":
                return self.condition(argument)
        raise UserError(f"{self.folder / self.file}: cannot evaluate the condition {node!r}")

    def exists(self, logical_id: str) -> bool:
        resource = self.resources.get(logical_id)
        return resource is not None and (
            "Condition" not in resource or self.condition(resource["Condition"]))

    # --- resources ------------------------------------------------------------------------

    def deployed(self) -> list[DeployedResource]:
        found: list[DeployedResource] = []
        for logical_id, resource in self.resources.items():
            if not self.exists(logical_id):
                continue
            if resource["Type"] == NESTED_STACK:
                found += self.child(logical_id).deployed()
                continue
            properties = self.resolve(resource.get("Properties", {}))
            found.append(DeployedResource(self.file, logical_id, resource["Type"],
                                          properties if isinstance(properties, dict) else {},
                                          resource.get("Metadata", {})))
        return found

    def child(self, logical_id: str) -> _Stack:
        if logical_id not in self._children:
            properties = self.resources[logical_id].get("Properties", {})
            url = self.resolve(properties.get("TemplateURL"))
            if not isinstance(url, str) or "://" in url:
                raise UserError(f"{self.folder / self.file}: {logical_id}: TemplateURL {url!r} "
                                "is not a path relative to the template (a rendered, unpackaged "
                                "environment)")
            given = {name: _parameter_text(self.resolve(value)) for name, value in
                     properties.get("Parameters", {}).items()}
            self._children[logical_id] = _Stack(self.folder, url, given, self.region,
                                                stack_name=f"{self.stack_name}-{logical_id}")
        return self._children[logical_id]

    def output(self, name: str) -> Any:
        outputs = self.template.get("Outputs", {})
        if name not in outputs:
            raise UserError(f"{self.folder / self.file}: no output {name}")
        return self.resolve(outputs[name]["Value"])

    # --- intrinsic functions ----------------------------------------------------------------

    def resolve(self, node: Any) -> Any:
        if isinstance(node, list):
            return [v for v in (self.resolve(item) for item in node) if v is not NO_VALUE]
        if not isinstance(node, dict):
            return node
        if len(node) == 1:
            (key, argument), = node.items()
            function = _FUNCTIONS.get(key)
            if function:
                return function(self, argument)
            if key.startswith("Fn::"):
                raise UserError(f"{self.folder / self.file}: {key} is not resolved by the "
                                "Control Tower check")
        return {k: v for k, v in ((k, self.resolve(v)) for k, v in node.items())
                if v is not NO_VALUE}

    def ref(self, name: str) -> Any:
        if name in self.parameters:
            return self.parameters[name]
        pseudo = {"AWS::Region": self.region, "AWS::AccountId": ACCOUNT_ID,
                  "AWS::Partition": "aws", "AWS::URLSuffix": "amazonaws.com",
                  "AWS::StackName": self.stack_name, "AWS::NoValue": NO_VALUE,
                  "AWS::NotificationARNs": [],
                  "AWS::StackId": (f"arn:aws:cloudformation:{self.region}:{ACCOUNT_ID}:"
                                   f"stack/{self.stack_name}/example")}
        if name in pseudo:
            return pseudo[name]
        if name in self.resources:
            return self.physical_name(name)
        raise UserError(f"{self.folder / self.file}: Ref to unknown name {name}")

    def get_att(self, logical_id: str, attribute: str) -> Any:
        resource = self.resources.get(logical_id)
        if resource is None:
            raise UserError(f"{self.folder / self.file}: GetAtt of unknown resource {logical_id}")
        if resource["Type"] == NESTED_STACK and attribute.startswith("Outputs."):
            return self.child(logical_id).output(attribute[len("Outputs."):])
        physical = self.physical_name(logical_id)
        if attribute == "Arn" or attribute.endswith("Arn"):
            return _arn(resource["Type"], physical, self.region)
        return f"{physical}.{attribute}"

    def physical_name(self, logical_id: str) -> str:
        """The name the resource is given (its `<Kind>Name` or `Name` property), else one of the
        form CloudFormation generates: stack name, logical id, a random suffix."""
        resource = self.resources[logical_id]
        kind = resource["Type"].split("::")[-1]
        properties = resource.get("Properties", {})
        for key in (f"{kind}Name", "Name"):
            if key in properties:
                name = self.resolve(properties[key])
                if isinstance(name, str) and name:
                    return name
        return f"{self.stack_name}-{logical_id}-example".lower()

    def sub(self, argument: Any) -> str:
        text, variables = (argument, {}) if isinstance(argument, str) else argument
        variables = {k: self.resolve(v) for k, v in variables.items()}

        def replace(match: re.Match) -> str:
            name = match.group(1)
            if name.startswith("!"):
                return "${" + name[1:] + "}"
            if name in variables:
                return _scalar_text(variables[name])
            if "." in name and name.split(".", 1)[0] in self.resources:
                return _scalar_text(self.get_att(*name.split(".", 1)))
            return _scalar_text(self.ref(name))

        return re.sub(r"\$\{([^}]+)\}", replace, text)


def _fn_if(stack: _Stack, argument: list) -> Any:
    name, when_true, when_false = argument
    return stack.resolve(when_true if stack.condition(name) else when_false)


def _fn_get_att(stack: _Stack, argument: Any) -> Any:
    logical_id, attribute = (argument.split(".", 1) if isinstance(argument, str)
                             else (argument[0], stack.resolve(argument[1])))
    return stack.get_att(logical_id, attribute)


def _fn_find_in_map(stack: _Stack, argument: list) -> Any:
    name, first, second = (stack.resolve(a) for a in argument[:3])
    try:
        return stack.template["Mappings"][name][_scalar_text(first)][_scalar_text(second)]
    except KeyError:
        raise UserError(f"{stack.folder / stack.file}: Fn::FindInMap finds no "
                        f"{name}/{first}/{second}") from None


def _fn_cidr(stack: _Stack, argument: list) -> list[str]:
    block, count, bits = (stack.resolve(a) for a in argument)
    network = ipaddress.ip_network(str(block))
    prefix = network.max_prefixlen - int(bits)
    return [str(subnet) for subnet in list(network.subnets(new_prefix=prefix))[:int(count)]]


_FUNCTIONS = {
    "Ref": lambda stack, name: stack.ref(name),
    "Fn::Sub": lambda stack, argument: stack.sub(argument),
    "Fn::GetAtt": _fn_get_att,
    "Fn::If": _fn_if,
    "Fn::Join": lambda stack, argument: stack.resolve(argument[0]).join(
        _scalar_text(v) for v in stack.resolve(argument[1])),
    "Fn::Select": lambda stack, argument: stack.resolve(argument[1])[
        int(stack.resolve(argument[0]))],
    "Fn::Split": lambda stack, argument: stack.resolve(argument[1]).split(
        stack.resolve(argument[0])),
    "Fn::FindInMap": _fn_find_in_map,
    "Fn::GetAZs": lambda stack, argument: [f"{stack.region}{zone}" for zone in "abcdef"],
    "Fn::Cidr": _fn_cidr,
    "Fn::Base64": lambda stack, argument: base64.b64encode(
        _scalar_text(stack.resolve(argument)).encode()).decode(),
    "Condition": lambda stack, name: stack.condition(name),
}


# ARN forms that differ from arn:aws:<service>:<region>:<account>:<kind>/<name> ("Amazon
# Resource Names (ARNs)" in the IAM User Guide, and each service's "Actions, resources, and
# condition keys" page).
_ARN_FORMS = {
    "AWS::S3::Bucket": "arn:aws:s3:::{name}",
    "AWS::IAM::Role": "arn:aws:iam::{account}:role/{name}",
    "AWS::IAM::ManagedPolicy": "arn:aws:iam::{account}:policy/{name}",
    "AWS::SQS::Queue": "arn:aws:sqs:{region}:{account}:{name}",
    "AWS::SNS::Topic": "arn:aws:sns:{region}:{account}:{name}",
    "AWS::Lambda::Function": "arn:aws:lambda:{region}:{account}:function:{name}",
    "AWS::Logs::LogGroup": "arn:aws:logs:{region}:{account}:log-group:{name}:*",
    "AWS::StepFunctions::StateMachine": "arn:aws:states:{region}:{account}:stateMachine:{name}",
}


def _arn(resource_type: str, name: str, region: str) -> str:
    _, service, kind = resource_type.split("::")
    generic = f"arn:aws:{service.lower()}:{{region}}:{{account}}:{kind.lower()}/{{name}}"
    return _ARN_FORMS.get(resource_type, generic).format(name=name, region=region,
                                                          account=ACCOUNT_ID)


def _typed(raw: Any, declared: str) -> Any:
    if isinstance(raw, list):
        return [str(v) for v in raw]
    if declared == "Number":
        number = float(raw)
        return int(number) if number.is_integer() and "." not in raw else number
    if declared.startswith("List<") or declared == "CommaDelimitedList":
        return [part.strip() for part in raw.split(",")] if raw else []
    return raw


def _scalar_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return ",".join(_scalar_text(v) for v in value)
    return str(value)


def _parameter_text(value: Any) -> str:
    """A nested stack's parameter value as CloudFormation passes it: a string, lists joined."""
    return _scalar_text(value)
