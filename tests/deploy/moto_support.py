"""What moto 5.2 needs to create, update and delete the nested pipeline: the test-support layer.

moto's CloudFormation runs the pipeline's templates in-process, but falls short in a few measured
ways (issue 6). Each shortfall has one patch here, applied only inside `patched()`, and one test
in test_moto_support.py that fails without it:

- `nested_stack_outputs`: `Fn::GetAtt [Child, Outputs.X]`, the root's only wiring, has no
  implementation (moto's Stack has no `get_cfn_attribute`, and its YAML reader splits
  `!GetAtt Child.Outputs.X` at every dot, losing X): a sibling's Parameters answer 500, an Output
  silently disappears. The patch splits at the first dot and reads the child stack's output.
- `cidr`: `Fn::Cidr` (the network stage's subnet ranges) is not implemented: a `!Select` over
  it raises KeyError, a 500. The patch computes it with `ipaddress`.
- `no_value_in_lists`: `AWS::NoValue` in a list (`!If [Cond, item, !Ref AWS::NoValue]` among a
  role's Policies) stays a None item: moto's IAM role then fails with a TypeError, a 500.
  CloudFormation drops the item; so does the patch.
- `attributes`: some modelled types lack attributes (moto's ELBv2 target group has no
  `get_cfn_attribute` at all: an Output silently disappears, a Sub answers 500). The patch
  answers those like a placeholder would.
- `placeholders`: a resource type moto does not model is "created" with no physical id; a Ref or
  GetAtt to it from a modelled resource drops the property or answers 500. The patch gives each
  such type a placeholder with a deterministic physical id (its name property, else
  `<stack>-<logical id>`) and attributes (`Arn` an ARN of the right service, others derived
  from the id), so the wiring around it is exercised. Placeholders create nothing else.
- `change_set_execution`: executing a change set leaves the stack half-updated: one created
  from a CREATE change set keeps the empty output map of its REVIEW_IN_PROGRESS shell (no
  outputs), and one updated keeps its old parameter values, so the next identical deploy is
  never "no changes". The patch gives the stack the change set's template, parameters and
  outputs, as CloudFormation does.
- `nested_stack_update`: moto updates a nested stack by deleting it and creating a new one under
  a new name; resources with fixed physical names then collide with their retained selves.
  CloudFormation updates the nested stack in place; so does the patch.
- `output_propagation`: moto decides what an update touches from the template text and the
  root's parameters only, so a nested stack fed by a sibling's output that changed (a VPC id)
  is never updated. The patch updates, in place, every nested stack whose resolved parameters
  changed, until none does, as CloudFormation does.
- `termination_protection`: UpdateTerminationProtection is not implemented and DeleteStack
  ignores the flag. The patch implements the call and refuses to delete a protected stack.
- `unmodelled_updates`: a modified resource whose type moto can create but not update (a log
  group given a new retention) is dropped from the stack: Refs to it resolve to nothing, an
  Output naming it disappears, and the parent's GetAtt of that output answers 500 from then on.
  The patch keeps the resource as it was, which is all moto can model of the update.

- `key_tags`: an AWS::KMS::Key's Tags (`Key`/`Value`, as CloudFormation spells them) reach
  moto's KMS tagger, which reads `TagKey`/`TagValue`: a KeyError, and the key is missing from
  the stack (a GetAtt of it then fails). The patch renames the fields. Every key carries the
  project's tag (mlops_cfn/boundary.py: the deploy role administers only tagged keys).

Also: a failed create can leave moto answering 500 until `POST /moto-api/reset`; the server
fixture (conftest.py) resets before every test.

Pinned to moto's minor version (`moto[server]>=5.2,<5.3` in pyproject.toml): the patches reach
into moto internals, which a minor release may change. `check_moto_version` says so clearly.
"""

from __future__ import annotations

import contextlib
import ipaddress
import itertools
import re
from typing import Any, Callable, Iterable, Iterator
from unittest import mock

import moto
from moto.kms import models as kms_models
from moto.cloudformation import models as cfn_models
from moto.cloudformation import parsing as cfn_parsing
from moto.cloudformation import responses as cfn_responses
from moto.cloudformation import utils as cfn_utils
from moto.cloudformation.exceptions import ValidationError
from moto.core.responses import ActionResult

MOTO_MINOR = "5.2"


def check_moto_version() -> None:
    if not moto.__version__.startswith(MOTO_MINOR + "."):
        raise RuntimeError(f"tests/deploy/moto_support.py patches moto {MOTO_MINOR}.x "
                           f"internals; moto {moto.__version__} is installed: re-measure and "
                           f"adapt the patches")


# --- nested stack outputs --------------------------------------------------------------------

def _stack_attribute(stack: cfn_models.Stack, attribute: str) -> Any:
    """`Fn::GetAtt [Child, Outputs.X]` as CloudFormation resolves it: the child's output X."""
    if not attribute.startswith("Outputs."):
        raise ValidationError(message=f"Template error: AWS::CloudFormation::Stack has no "
                                      f"attribute {attribute}")
    key = attribute[len("Outputs."):]
    output = stack.output_map.get(key) if key in stack.output_map.outputs else None
    if output is None:
        raise ValidationError(message=f"Template error: stack {stack.name} has no output {key}")
    return output.value


_yaml_tag_constructor = cfn_utils.yaml_tag_constructor


def _yaml_tag_constructor_splitting_once(loader: Any, tag: str, node: Any) -> Any:
    """`!GetAtt Child.Outputs.X` is `[Child, Outputs.X]`: split at the first dot only.

    moto splits at every dot and then reads only the second part, losing the output's name.
    """
    if tag == "!GetAtt" and isinstance(node.value, str):
        return {"Fn::GetAtt": node.value.split(".", 1)}
    return _yaml_tag_constructor(loader, tag, node)


@contextlib.contextmanager
def nested_stack_outputs() -> Iterator[None]:
    with mock.patch.object(cfn_models.Stack, "get_cfn_attribute", _stack_attribute, create=True), \
            mock.patch.object(cfn_models, "yaml_tag_constructor",
                              _yaml_tag_constructor_splitting_once), \
            mock.patch.object(cfn_responses, "yaml_tag_constructor",
                              _yaml_tag_constructor_splitting_once):
        yield


# --- intrinsic functions ---------------------------------------------------------------------

@contextlib.contextmanager
def _wrapping_clean_json(wrapper: Callable[[Callable, Any, Any], Any]) -> Iterator[None]:
    """Patch moto's clean_json with `wrapper(inner, value, resources)`. clean_json calls itself
    through the module global, so nested values see every patch, and patches stack."""
    inner = cfn_parsing.clean_json

    def clean_json(resource_json: Any, resources_map: Any) -> Any:
        return wrapper(inner, resource_json, resources_map)

    with mock.patch.object(cfn_parsing, "clean_json", clean_json):
        yield


def _cidr(inner: Callable, resource_json: Any, resources_map: Any) -> Any:
    """moto's intrinsic functions plus `Fn::Cidr [block, count, host bits]`."""
    if isinstance(resource_json, dict) and "Fn::Cidr" in resource_json:
        block, count, host_bits = (cfn_parsing.clean_json(v, resources_map)
                                   for v in resource_json["Fn::Cidr"])
        network = ipaddress.ip_network(block, strict=False)
        prefix = network.max_prefixlen - int(host_bits)
        subnets = itertools.islice(network.subnets(new_prefix=prefix), int(count))
        return [str(subnet) for subnet in subnets]
    return inner(resource_json, resources_map)


@contextlib.contextmanager
def cidr() -> Iterator[None]:
    with _wrapping_clean_json(_cidr):
        yield


def _no_value_in_lists(inner: Callable, resource_json: Any, resources_map: Any) -> Any:
    """A list without the items that resolved to AWS::NoValue (None)."""
    if isinstance(resource_json, list):
        cleaned = (cfn_parsing.clean_json(item, resources_map) for item in resource_json)
        return [item for item in cleaned if item is not None]
    return inner(resource_json, resources_map)


@contextlib.contextmanager
def no_value_in_lists() -> Iterator[None]:
    with _wrapping_clean_json(_no_value_in_lists):
        yield


def _attributes(inner: Callable, resource_json: Any, resources_map: Any) -> Any:
    """`Fn::GetAtt` on a modelled resource that lacks the attribute: a placeholder value."""
    if isinstance(resource_json, dict) and "Fn::GetAtt" in resource_json:
        name, attribute = resource_json["Fn::GetAtt"][:2]
        resource = resources_map.get(name) if isinstance(name, str) else None
        if resource is not None and isinstance(attribute, str) \
                and not isinstance(resource, (Placeholder, cfn_models.Stack)):
            try:
                return resource.get_cfn_attribute(attribute)
            except (AttributeError, NotImplementedError):
                resource_type = getattr(resource, "cf_resource_type", "AWS::Unknown::Resource")
                MISSING_ATTRIBUTES.add((resource_type, attribute))
                return placeholder_attribute(resource_type, resource.physical_resource_id,
                                             attribute, resources_map["AWS::Region"],
                                             resources_map["AWS::AccountId"])
    return inner(resource_json, resources_map)


# (type, attribute) pairs answered by `attributes`, for tests to report.
MISSING_ATTRIBUTES: set[tuple[str, str]] = set()


@contextlib.contextmanager
def attributes() -> Iterator[None]:
    MISSING_ATTRIBUTES.clear()
    with _wrapping_clean_json(_attributes):
        yield


# --- placeholders for resource types moto does not model -------------------------------------

# Where an ARN's service differs from the lowercased type namespace.
_ARN_SERVICES = {"KinesisFirehose": "firehose", "RedshiftServerless": "redshift-serverless",
                 "ApplicationAutoScaling": "application-autoscaling", "CloudWatch": "cloudwatch"}


def placeholder_attribute(resource_type: str, physical_id: str, attribute: str, region: str,
                          account_id: str) -> str:
    """A deterministic stand-in for an attribute moto cannot give.

    `Arn` (also nested, `Workgroup.WorkgroupArn`): an ARN of the type's service, which modelled
    resources that check ARNs accept; `...Id`, `...Name`: the physical id; anything else:
    derived from the physical id.
    """
    if attribute.endswith("Arn"):
        _, service, kind = resource_type.split("::")
        service = _ARN_SERVICES.get(service, service.lower())
        return f"arn:aws:{service}:{region}:{account_id}:{kind.lower()}/{physical_id}"
    if attribute.endswith(("Id", "Name")):
        return physical_id
    return f"{physical_id}.{attribute}"


class Placeholder:
    """Stands in for one resource of a type moto does not model; creates nothing."""

    resource_type = ""  # set per type by placeholder_model
    created: list[Placeholder] = []  # every placeholder made inside `placeholders()`

    def __init__(self, logical_id: str, stack_name: str, properties: dict, account_id: str,
                 region_name: str):
        self.logical_resource_id = logical_id
        self.cf_resource_type = self.resource_type
        self.stack_name = stack_name
        self.properties = properties
        self.account_id = account_id
        self.region_name = region_name
        self.physical_resource_id = self._name() or f"{stack_name}-{logical_id}"

    def _name(self) -> str | None:
        """The resource's own name property, when the template sets one (`<Kind>Name`, `Name`)."""
        kind = self.resource_type.rsplit("::", 1)[-1]
        for key in (f"{kind}Name", "Name"):
            value = self.properties.get(key)
            if isinstance(value, str):
                return value
        return None

    # The class-level interface moto's parsing.py calls on a resource model.
    @classmethod
    def cloudformation_type(cls) -> str:
        return cls.resource_type

    @staticmethod
    def cloudformation_name_type() -> str:
        return ""

    @classmethod
    def has_cfn_attr(cls, attribute: str) -> bool:
        return True

    @classmethod
    def create_from_cloudformation_json(cls, resource_name: str, cloudformation_json: dict,
                                        account_id: str, region_name: str,
                                        **kwargs: Any) -> Placeholder:
        stack_name = kwargs["StackId"].split(":stack/", 1)[1].split("/", 1)[0]
        resource = cls(kwargs["LogicalId"], stack_name,
                       cloudformation_json.get("Properties") or {}, account_id, region_name)
        Placeholder.created.append(resource)
        return resource

    @classmethod
    def update_from_cloudformation_json(cls, original_resource: Placeholder,
                                        new_resource_name: str, cloudformation_json: dict,
                                        account_id: str, region_name: str) -> Placeholder:
        original_resource.properties = cloudformation_json.get("Properties") or {}
        return original_resource

    @classmethod
    def delete_from_cloudformation_json(cls, *args: Any) -> None:
        return None

    # The instance interface.
    def get_cfn_attribute(self, attribute: str) -> str:
        return placeholder_attribute(self.resource_type, self.physical_resource_id, attribute,
                                     self.region_name, self.account_id)

    def is_created(self) -> bool:
        return True

    def delete(self, account_id: str, region_name: str) -> None:
        return None


def placeholder_model(resource_type: str) -> type[Placeholder]:
    name = re.sub(r"\W", "", resource_type.replace("AWS::", "")) + "Placeholder"
    return type(name, (Placeholder,), {"resource_type": resource_type})


def unmodelled_types(resource_types: Iterable[str]) -> list[str]:
    """The types among `resource_types` moto's CloudFormation does not model."""
    modelled = cfn_parsing.get_model_map()
    return sorted({t for t in resource_types
                   if t.startswith("AWS::") and t not in modelled
                   and t not in cfn_parsing.NULL_MODELS})


_resource_class_from_type = cfn_parsing.resource_class_from_type


@contextlib.contextmanager
def placeholders() -> Iterator[list[Placeholder]]:
    """A placeholder model for every AWS:: type moto lacks, made when a template first uses it.

    Yields the list of placeholders created (`.resource_type`, `.physical_resource_id`), which
    tells a test exactly what moto did not really create.
    """
    models: dict[str, type[Placeholder]] = {}

    def resource_class_from_type(resource_type: str):
        model = _resource_class_from_type(resource_type)
        if model is None and resource_type.startswith("AWS::") \
                and resource_type not in cfn_parsing.NULL_MODELS:
            model = models.setdefault(resource_type, placeholder_model(resource_type))
        return model

    created: list[Placeholder] = []
    Placeholder.created = created
    with mock.patch.object(cfn_parsing, "resource_class_from_type", resource_class_from_type):
        yield created


# --- the stack after a change set executes ---------------------------------------------------

_execute_change_set = cfn_models.CloudFormationBackend.execute_change_set


def _execute_change_set_completely(self, change_set_name: str,
                                   stack_name: str | None = None) -> None:
    _execute_change_set(self, change_set_name, stack_name)
    change_set = self.describe_change_set(change_set_name)
    stack = self.stacks[change_set.stack_id]
    stack.template = change_set.template
    stack._parse_template()
    stack.description = stack.template_dict.get("Description")
    stack.parameters = change_set.parameters
    stack.output_map = stack._create_output_map()


@contextlib.contextmanager
def change_set_execution() -> Iterator[None]:
    with mock.patch.object(cfn_models.CloudFormationBackend, "execute_change_set",
                           _execute_change_set_completely):
        yield


# --- nested stacks updated in place ----------------------------------------------------------

def _update_nested_stack_in_place(cls, original_resource: cfn_models.Stack,
                                  new_resource_name: str, cloudformation_json: dict,
                                  account_id: str, region_name: str) -> cfn_models.Stack:
    properties = cloudformation_json["Properties"]
    template = cfn_models.get_stack_from_s3_url(
        properties["TemplateURL"], account_id=account_id,
        partition=cfn_models.get_partition(region_name))
    # Values as moto's own create passes them (already resolved by the parent).
    original_resource.update(template, parameters=properties.get("Parameters") or {})
    return original_resource


@contextlib.contextmanager
def nested_stack_update() -> Iterator[None]:
    with mock.patch.object(cfn_models.Stack, "update_from_cloudformation_json",
                           classmethod(_update_nested_stack_in_place)):
        yield


# --- changed outputs reach the stacks that take them -----------------------------------------

_resource_map_update = cfn_parsing.ResourceMap.update


def _update_and_propagate(self, template: dict, parameters: dict | None = None) -> None:
    """moto's update, then every nested stack whose resolved Parameters changed (a sibling's
    output, a root parameter) is updated in place, until nothing changes any more."""
    _resource_map_update(self, template, parameters)
    for _ in range(len(self._resource_json_map) + 1):
        changed = False
        for name, resource_json in self._resource_json_map.items():
            child = self._parsed_resources.get(name)
            if resource_json.get("Type") != "AWS::CloudFormation::Stack" \
                    or not isinstance(child, cfn_models.Stack):
                continue
            wanted = cfn_parsing.clean_json(
                (resource_json.get("Properties") or {}).get("Parameters") or {}, self)
            if wanted != child.parameters:
                child.update(child.template, parameters=wanted)
                changed = True
        if not changed:
            return


@contextlib.contextmanager
def output_propagation() -> Iterator[None]:
    with mock.patch.object(cfn_parsing.ResourceMap, "update", _update_and_propagate):
        yield


# --- termination protection ------------------------------------------------------------------

def _update_termination_protection(self) -> ActionResult:
    stack = self.cloudformation_backend.get_stack(self._get_param("StackName"))
    stack.enable_termination_protection = self._get_bool_param("EnableTerminationProtection")
    return ActionResult({"StackId": stack.stack_id})


_delete_stack = cfn_models.CloudFormationBackend.delete_stack


def _delete_unprotected_stack(self, name_or_stack_id: str) -> None:
    for stack in list(self.stacks.values()):
        if name_or_stack_id in (stack.name, stack.stack_id) and stack.enable_termination_protection:
            raise ValidationError(message=f"Stack [{stack.name}] cannot be deleted while "
                                          f"TerminationProtection is enabled")
    _delete_stack(self, name_or_stack_id)


@contextlib.contextmanager
def termination_protection() -> Iterator[None]:
    with mock.patch.object(cfn_responses.CloudFormationResponse, "update_termination_protection",
                           _update_termination_protection, create=True), \
            mock.patch.object(cfn_models.CloudFormationBackend, "delete_stack",
                              _delete_unprotected_stack):
        yield


# --- updates moto does not model --------------------------------------------------------------

_parse_and_update_resource = cfn_parsing.parse_and_update_resource


def _update_or_keep(logical_id: str, resource_json: dict, resources_map: Any,
                    account_id: str, region_name: str) -> Any:
    resource_class = cfn_parsing.resource_class_from_type(resource_json.get("Type", ""))
    updater = getattr(resource_class, "update_from_cloudformation_json", None)
    if resource_class is not None and hasattr(updater, "__isabstractmethod__"):
        return resources_map[logical_id]
    return _parse_and_update_resource(logical_id, resource_json, resources_map, account_id,
                                      region_name)


@contextlib.contextmanager
def unmodelled_updates() -> Iterator[None]:
    with mock.patch.object(cfn_parsing, "parse_and_update_resource", _update_or_keep):
        yield


# --- key tags ----------------------------------------------------------------------------------

_create_key_from_cloudformation = kms_models.Key.create_from_cloudformation_json.__func__


def _create_tagged_key(cls, resource_name, cloudformation_json, account_id, region_name,
                       **kwargs):
    properties = dict(cloudformation_json.get("Properties") or {})
    properties["Tags"] = [{"TagKey": t["Key"], "TagValue": t["Value"]}
                          for t in properties.get("Tags") or []]
    return _create_key_from_cloudformation(cls, resource_name,
                                           {**cloudformation_json, "Properties": properties},
                                           account_id, region_name, **kwargs)


@contextlib.contextmanager
def key_tags() -> Iterator[None]:
    with mock.patch.object(kms_models.Key, "create_from_cloudformation_json",
                           classmethod(_create_tagged_key)):
        yield


# --- all of them -----------------------------------------------------------------------------

PATCHES: dict[str, Callable[[], contextlib.AbstractContextManager]] = {
    "nested_stack_outputs": nested_stack_outputs,
    "cidr": cidr,
    "no_value_in_lists": no_value_in_lists,
    "attributes": attributes,
    "placeholders": placeholders,
    "change_set_execution": change_set_execution,
    "nested_stack_update": nested_stack_update,
    "output_propagation": output_propagation,
    "termination_protection": termination_protection,
    "unmodelled_updates": unmodelled_updates,
    "key_tags": key_tags,
}


@contextlib.contextmanager
def patched(without: Iterable[str] = ()) -> Iterator[list[Placeholder]]:
    """Every patch but those named in `without`; yields the placeholders created meanwhile."""
    check_moto_version()
    skip = set(without)
    unknown = skip - set(PATCHES)
    if unknown:
        raise ValueError(f"no such patch: {sorted(unknown)}")
    with contextlib.ExitStack() as stack:
        created: list[Placeholder] = []
        for name, patch in PATCHES.items():
            if name not in skip:
                result = stack.enter_context(patch())
                if name == "placeholders":
                    created = result
        yield created
