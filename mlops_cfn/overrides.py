"""The escape hatch: pipeline.yaml's `overrides` applied to the stages' rendered resources.

An override names a stage, a logical id in that stage's template and a path under the
resource's Properties (config/overrides.py); the value replaces what is at the path, creating
the mappings on the way as CDK's `addPropertyOverride` does, and null deletes it. It is applied
where the composer builds a stage (pipeline.py), before the stage is shared by the environments
whose structure is the same: the file's environments keep deploying byte-identical templates,
each carrying the override, and the deploy role's requirements, the permissions boundary and
every check after building see the overridden template.

What is checked, each as one line naming the file and the field path:
- the stage must be one the pipeline knows and enabled in at least one environment;
- the override must apply in at least one environment: a resource (or, for a deletion, a
  property) that exists only in some environments' templates (a structural key differs) is
  overridden where it exists;
- a path must not go through a value that is no mapping or list (text, a number), nor into an
  intrinsic function without naming it (`SubnetIds.Fn::If.1`): that would write a template
  CloudFormation refuses;
- a value must be of the kind the resource type's schema gives the property, with well-formed
  intrinsic functions (override_values.py): what reads the built templates relies on it.
What the override does to security is not judged here: the escape hatch applies what it is
given, and `mlops-cfn validate` (cfn-lint, checkov) reports what the result breaks.
"""

import copy
import json
import re
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

from troposphere import Template

from . import override_values
from .errors import UserError

# The field of pipeline.yaml, for messages.
FIELD = "overrides"
_DELETE = None
_INTRINSIC = re.compile(r"^(Ref|Condition|Fn::[A-Za-z0-9]+)$")


@dataclass(frozen=True)
class Override:
    stage: str
    logical_id: str
    path: str
    value: Any

    @property
    def field(self) -> str:
        """Where the file sets it: `overrides.<stage>.<logical id>.<path>`."""
        return f"{FIELD}.{self.stage}.{self.logical_id}.{self.path}"

    @property
    def keys(self) -> tuple[str, ...]:
        """The path's keys, `\\.` read as a dot inside a key."""
        return tuple(key.replace("\\.", ".") for key in re.split(r"(?<!\\)\.", self.path))

    def describe(self) -> str:
        """One line for people reviewing a change (`diff`): what the override does."""
        where = f"{self.stage} {self.logical_id} Properties.{self.path}"
        if self.value is _DELETE:
            return f"{where} deleted"
        value = json.dumps(self.value, sort_keys=True, ensure_ascii=False)
        return f"{where} = {value if len(value) <= 80 else value[:77] + '...'}"


class NotApplicable(Exception):
    """The override has nothing to act on in this template (it may in another environment's)."""


def overrides_of(config_overrides: Mapping[str, Mapping[str, Mapping[str, Any]]]) \
        -> tuple[Override, ...]:
    """The config's `overrides` section, flattened, in the file's order."""
    return tuple(Override(stage, logical_id, path, value)
                 for stage, resources in config_overrides.items()
                 for logical_id, paths in resources.items()
                 for path, value in paths.items())


def known_stage_problems(overrides: Iterable[Override], source: str, known: Iterable[str],
                         enabled_somewhere: Iterable[str]) -> list[str]:
    """An override of a stage the pipeline does not have, or that no environment enables."""
    known, enabled_somewhere = list(known), set(enabled_somewhere)
    problems = {}
    for override in overrides:
        where = f"{source}: {FIELD}.{override.stage}"
        if override.stage not in known:
            problems[where] = (f"{where}: no stage {override.stage!r} "
                               f"(stages: {', '.join(known)})")
        elif override.stage not in enabled_somewhere:
            problems[where] = (f"{where}: stage {override.stage!r} is enabled in no "
                               f"environment, so there is nothing to override")
    return list(problems.values())


def apply(template: Template, overrides: Iterable[Override]) -> dict[str, str]:
    """Apply `overrides` (all of one stage) to `template`, in place. Returns the fields of
    those that have nothing to act on here, each with the reason. A path that can never be
    right is a UserError (without the file name, which the caller adds)."""
    missed: dict[str, str] = {}
    for override in overrides:
        try:
            _apply_one(template, override)
        except NotApplicable as reason:
            missed[override.field] = str(reason)
    return missed


def _apply_one(template: Template, override: Override) -> None:
    resource = template.resources.get(override.logical_id)
    if resource is None:
        raise NotApplicable(f"no resource {override.logical_id} in stage {override.stage!r} "
                            f"(resources: {', '.join(sorted(template.resources))})")
    body = resource.to_dict() if not isinstance(resource, OverriddenResource) else resource.data
    if override.value is not _DELETE:
        wrong = override_values.problems(body.get("Type"), override.keys, override.value)
        if wrong:
            raise UserError(f"{override.field}: {wrong[0]}")
    properties = body.setdefault("Properties", {})
    *parents, last = override.keys
    node: Any = properties
    walked = ["Properties"]
    for key in parents:
        node = _step(node, key, walked, override, create=override.value is not _DELETE)
        walked.append(key)
    if override.value is _DELETE:
        _delete(node, last, walked, override)
        if not properties:
            del body["Properties"]
    else:
        _set(node, last, walked, override)
    if not isinstance(resource, OverriddenResource):
        template.resources[override.logical_id] = OverriddenResource(override.logical_id, body)


def _step(node: Any, key: str, walked: list[str], override: Override, create: bool) -> Any:
    _check_container(node, key, walked, override)
    if isinstance(node, list):
        return node[_index(node, key, walked, override)]
    if key not in node:
        if not create:
            raise NotApplicable(f"{override.logical_id} has no {'.'.join(walked + [key])}")
        node[key] = {}
    return node[key]


def _set(node: Any, key: str, walked: list[str], override: Override) -> None:
    _check_container(node, key, walked, override)
    value = copy.deepcopy(override.value)  # the config's own value stays untouched
    if isinstance(node, list):
        node[_index(node, key, walked, override)] = value
    else:
        node[key] = value


def _delete(node: Any, key: str, walked: list[str], override: Override) -> None:
    _check_container(node, key, walked, override)
    if isinstance(node, list):
        del node[_index(node, key, walked, override)]
    elif key in node:
        del node[key]
    else:
        raise NotApplicable(f"{override.logical_id} has no {'.'.join(walked + [key])} to delete")


def _check_container(node: Any, key: str, walked: list[str], override: Override) -> None:
    """`node` must be a list or a plain mapping, or an intrinsic function the path names."""
    here = ".".join(walked)
    if isinstance(node, dict):
        functions = [name for name in node if _INTRINSIC.match(name)]
        if len(node) == 1 and functions and key != functions[0]:
            raise UserError(f"{override.field}: {override.logical_id} {here} is an intrinsic "
                            f"function ({functions[0]}); name it in the path to go inside it "
                            f"(e.g. {here.removeprefix('Properties.')}.{functions[0]}...)")
        return
    if not isinstance(node, list):
        raise UserError(f"{override.field}: {override.logical_id} {here} is a value "
                        f"({type(node).__name__}), not a mapping or a list")


def _index(node: list, key: str, walked: list[str], override: Override) -> int:
    here = ".".join(walked)
    if not re.fullmatch(r"0|[1-9][0-9]*", key):
        raise UserError(f"{override.field}: {override.logical_id} {here} is a list: the next "
                        f"key must be an index (0 to {len(node) - 1}), not {key!r}")
    if int(key) >= len(node):
        raise NotApplicable(f"{override.logical_id} {here} has {len(node)} items, no index {key}")
    return int(key)


class OverriddenResource:
    """A resource after an override: its CloudFormation form, rendered as it is.

    troposphere would check the value against its own property types; an escape hatch exists
    for what they do not foresee, so the resource leaves troposphere here and cfn-lint judges
    the result when the templates are validated.
    """

    def __init__(self, title: str, data: dict):
        self.title = title
        self.data = data
        self.resource_type = data.get("Type")

    def to_dict(self) -> dict:
        return self.data
