"""The composer: enabled stages wired by output name under one root template.

Every stage is built from the environment's config; the root template holds one
AWS::CloudFormation::Stack per enabled stage, whose parameters are fed either by another stage's
output (`!GetAtt StorageStack.Outputs.RawBucketName`) or by a root parameter (settings and the
environment name). Order follows from the wires, so a stage list never has to be kept sorted by
hand, and a wire nobody provides, an output two stages provide, or a cycle is a build-time error.

So is a consumer that uses a conditional wire (outputs.py) where what it names may not exist:
every resource or output of the consumer that mentions the wire's parameter (Ref, `${Name}` in a
Sub, inside any other function) must carry the wire's condition, or a condition that is an
Fn::And holding it, or the mention must sit in the true branch of an Fn::If on such a condition.

Stages are built in three steps per environment: every stage that needs nothing of the others,
then the stage that `holds_key` (storage: its data key's policy grants what the others ask of it
through their builders, stage.KeyUse), then the stages that `deploys` the others.

A stage that deploys the others (cicd: its delivery pipeline deploys every environment) gets what
their templates require of the role that deploys them, resource types and dynamic references
over every environment of the file (`deployed_requirements`, permissions.py), instead of reading
another stage's template: so its deploy role follows the templates, an extension stage's
resources included, and environments that differ only in values still share identical templates.
"""

import graphlib
import importlib
import re
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator, Sequence

from troposphere import GetAtt, Join, Output, Ref, Template
from troposphere.cloudformation import Stack

from . import boundary, permissions, placement, sharing
from . import overrides as hatch  # pipeline.yaml's overrides (the escape hatch)
from .config import LoadedConfig, PipelineConfig, StagesConfig, setting_values, structure_of
from .config.extensions import ExtensionStage, enabled_section
from .errors import UserError
from .settings import ENVIRONMENT_NAME, parameter_value
from .stage import Stage


@dataclass(frozen=True)
class StageSpec:
    name: str
    # From the loaded file: stages build from its environment's config, but a stage that acts
    # on every environment (cicd deploys each) may read them all. A `deploys` stage's build
    # also takes the requirements of the other stages' templates (`deployed_requirements`).
    build: Callable[..., Stage]
    enabled: Callable[[PipelineConfig], bool]
    # Where the user switches the stage, for error messages.
    toggle: str
    deploys: bool = False
    # Built after the stages that need nothing of others, taking their KeyUse (storage).
    holds_key: bool = False


def _module(name: str):
    """The stage's module, `mlops_cfn.stages.<name>`, imported when the stage is built."""
    return importlib.import_module(f"{__package__}.stages.{name}")


def _stage(name: str) -> StageSpec:
    """A stage switched by `stages.<name>.enabled`, built from its environment's config."""
    return StageSpec(name, lambda loaded: _module(name).build(loaded.config),
                     lambda c: getattr(c.stages, name).enabled, f"stages.{name}.enabled")


def _deploying(name: str) -> StageSpec:
    """A stage that deploys every environment (cicd): built from the loaded file, its targets
    and what their templates require."""
    def build(loaded: LoadedConfig, requirements: frozenset[str]) -> Stage:
        module = _module(name)
        return module.build(loaded.config, targets=module.targets_of(loaded),
                            requirements=requirements, sharing=sharing.of(loaded))

    return StageSpec(name, build, lambda c: getattr(c.stages, name).enabled,
                     f"stages.{name}.enabled", deploys=True)


def _key_holder(name: str) -> StageSpec:
    """The stage whose key's policy grants what the other stages ask (storage)."""
    return StageSpec(name, lambda loaded, key_uses: _module(name).build(loaded.config, key_uses),
                     lambda c: getattr(c.stages, name).enabled, f"stages.{name}.enabled",
                     holds_key=True)


def _sharing(name: str) -> StageSpec:
    """A stage whose resources the delivery pipeline reaches in the environments of other
    accounts (training's registry group, serving's API repository): told the file's targets
    (sharing.of; None without, so those templates stay as they were)."""
    return StageSpec(name, lambda loaded: _module(name).build(loaded.config,
                                                             sharing.of(loaded)),
                     lambda c: getattr(c.stages, name).enabled, f"stages.{name}.enabled")


_NETWORK = StageSpec("network", lambda loaded: _module("network").build(loaded.config),
                     lambda c: True, "network")
_SPECIAL = {"storage": _key_holder, "cicd": _deploying, "training": _sharing,
            "serving": _sharing}

# The one list of mlops-cfn's stages: the network, then the sections of `stages` in the order
# the config model declares them. Order here is only the tie-break for stages no wire orders.
REGISTRY: tuple[StageSpec, ...] = (_NETWORK, *(
    _SPECIAL.get(name, _stage)(name) for name in StagesConfig.model_fields))


def extension_spec(name: str, extension: ExtensionStage) -> StageSpec:
    """An extension stage (config/extensions.py), on where its `extensions.<name>` section is."""
    def build(loaded: LoadedConfig) -> Stage:
        stage = extension.build(loaded.config, getattr(loaded.config.extensions, name))
        if not isinstance(stage, Stage) or stage.name != name:
            got = (f"a stage named {stage.name!r}" if isinstance(stage, Stage)
                   else type(stage).__name__)
            raise UserError(f"extensions.{name}: the extension built {got}, not a stage named "
                            f"{name!r} (StageBuilder({name!r}, ...).finish())")
        return stage

    return StageSpec(name, build, lambda c: enabled_section(c, name) is not None,
                     f"extensions.{name}.enabled")


def registry_of(loaded: LoadedConfig) -> tuple[StageSpec, ...]:
    """mlops-cfn's stages and the extension stages the file names."""
    return REGISTRY + tuple(extension_spec(name, extension)
                            for name, extension in loaded.extensions.items())


@dataclass(frozen=True)
class Pipeline:
    environment: str
    protected: bool
    root: Template
    stages: tuple[Stage, ...]
    # This environment's value of every root parameter, as parameters.json holds them.
    parameters: dict[str, str]
    tags: dict[str, str]
    # pipeline.yaml's overrides (overrides.py) applied to this environment's templates.
    overrides: tuple[hatch.Override, ...] = ()


def build(loaded: LoadedConfig, file_suffix: str = ".yaml",
          registry: Sequence[StageSpec] | None = None) -> Pipeline:
    """One environment's pipeline; `registry` defaults to `registry_of(loaded)`."""
    return _build(loaded, file_suffix, registry or registry_of(loaded), memo={})


def build_all(loaded: LoadedConfig, environments: Iterable[str], file_suffix: str = ".yaml",
              registry: Sequence[StageSpec] | None = None) -> list[Pipeline]:
    """`build` for several environments of one loaded file, each stage built once per distinct
    structure (config.structure_of): environments that differ only in values share the very
    same Stage objects, so fifty environments cost little more than one to build and render.

    The sharing is limited to one file's environments because a stage may read all of them
    (cicd deploys each).
    """
    memo: dict[tuple[str, str], Any] = {}
    registry = registry or registry_of(loaded)
    return [_build(loaded.for_environment(name), file_suffix, registry, memo)
            for name in environments]


def _build(loaded: LoadedConfig, file_suffix: str, registry: Sequence[StageSpec],
           memo: dict[tuple[str, str], Any]) -> Pipeline:
    config = loaded.config
    specs = {spec.name: spec for spec in registry}
    structure = structure_of(config)
    _check_override_stages(loaded, registry)
    # In the order of the registry, whatever order they were built in.
    enabled = [_stage_of(loaded, spec, registry, memo)
               for spec in registry if spec.enabled(config)]
    applied = _check_overrides_apply(loaded, registry, memo)
    if any(boundary.WIRE in stage.inputs for stage in enabled):
        # Derived from every enabled stage's roles (boundary.py): built after them, placed
        # first, where it is deployed (and the order stays the same from one run to the next:
        # ties are broken by the order stages are listed in).
        key = (boundary.NAME, structure)
        if key not in memo:
            memo[key] = boundary.build(config.project, enabled)
        enabled.insert(0, memo[key])
    toggles = {name: spec.toggle for name, spec in specs.items()}
    try:
        try:
            ordered = order_stages(enabled)
        except UserError:
            # Built only now, to name the switch that would provide what is missing.
            disabled = [_alone(spec, loaded) for spec in registry if not spec.enabled(config)]
            ordered = order_stages(enabled, disabled, toggles)
    except UserError as error:
        raise UserError(*(f"{loaded.source}: {p}" for p in error.problems)) from None

    defaults = {name: parameter_value(v) for name, v in setting_values(loaded.base).items()
                if v is not None}
    root = compose(ordered, config.description, defaults, file_suffix)
    values = {name: parameter_value(v) for name, v in setting_values(config).items()
              if v is not None}
    values[ENVIRONMENT_NAME] = loaded.environment
    # Left to run time: packaging sets it, a deployment by hand keeps the stack's (sharing.py).
    values[sharing.DELIVERY_ACCOUNT] = ""
    # AssetsBucket has no value before packaging; `mlops-cfn package` sets it.
    parameters = {name: values[name] for name in root.parameters if name in values}
    if problems := placement.region_problems(loaded, root, parameters):
        raise UserError(*problems)
    tags = {"mlops-cfn:project": config.project, "mlops-cfn:environment": loaded.environment,
            **config.tags}
    return Pipeline(loaded.environment, config.protected, root, tuple(ordered), parameters, tags,
                    applied)


def _stage_of(loaded: LoadedConfig, spec: StageSpec, registry: Sequence[StageSpec],
              memo: dict[tuple[str, str], Any]) -> Stage:
    """The stage `spec` builds for `loaded`'s environment, overridden as the file says, built
    once per structure (`memo`): a `holds_key` stage after the stages whose KeyUse it takes, a
    `deploys` stage with what the others' templates require. The overrides that have nothing
    to act on in it are kept in the memo too (`_check_overrides_apply`)."""
    key = (spec.name, structure_of(loaded.config))
    if key not in memo:
        if spec.deploys:
            args: tuple[Any, ...] = (deployed_requirements(loaded, registry, memo),)
        elif spec.holds_key:
            others = _environment_stages(loaded, registry, memo, keyless=True)
            args = (tuple(stage.key_use for stage in others.values()),)
        else:
            args = ()
        stage = _built(loaded, spec.build, *args)
        memo[(_MISSED, *key)] = _override(loaded, stage)
        memo[key] = stage
    return memo[key]


_MISSED = "overrides not applied"


def _override(loaded: LoadedConfig, stage: Stage) -> dict[str, str]:
    """Apply the file's overrides of `stage` to its template (overrides.py); returns the fields
    of those with nothing to act on there, with the reason."""
    mine = [o for o in hatch.overrides_of(loaded.config.overrides) if o.stage == stage.name]
    try:
        return hatch.apply(stage.template, mine)
    except UserError as error:
        raise UserError(*(f"{loaded.source}: {p}" for p in error.problems)) from None


def _check_override_stages(loaded: LoadedConfig, registry: Sequence[StageSpec]) -> None:
    """Every overridden stage is one of the pipeline's, enabled in some environment."""
    wanted = hatch.overrides_of(loaded.config.overrides)
    if not wanted:
        return
    known = [spec.name for spec in registry]
    enabled = {spec.name for spec in registry for config in loaded.merged.values()
               if spec.enabled(config)}
    problems = hatch.known_stage_problems(
        [o for o in wanted if o.stage != boundary.NAME], loaded.source, known, enabled)
    if any(o.stage == boundary.NAME for o in wanted):
        problems.append(f"{loaded.source}: {hatch.FIELD}.{boundary.NAME}: the permissions "
                        f"boundary is derived from the roles of the other stages; override "
                        f"those roles (stages: {', '.join(known)})")
    if problems:
        raise UserError(*problems)


def _check_overrides_apply(loaded: LoadedConfig, registry: Sequence[StageSpec],
                           memo: dict[tuple[str, str], Any]) -> tuple[hatch.Override, ...]:
    """The overrides applied to this environment's templates.

    One that has nothing to act on in this environment's template must act in another
    environment's (a structural key differs between them): an override that applies nowhere
    is an error, with the reason this environment gives."""
    problems = []
    missed: dict[str, str] = {}
    enabled = {spec.name for spec in registry if spec.enabled(loaded.config)}
    for spec in registry:
        if spec.name not in enabled:
            continue
        here = memo[(_MISSED, spec.name, structure_of(loaded.config))]
        missed |= here
        for field, reason in here.items():
            elsewhere = [loaded.for_environment(name) for name, config in loaded.merged.items()
                         if spec.enabled(config)]
            if all(field in _missed_in(other, spec, registry, memo) for other in elsewhere):
                problems.append(f"{loaded.source}: {field}: {reason}")
    if problems:
        raise UserError(*problems)
    return tuple(o for o in hatch.overrides_of(loaded.config.overrides)
                 if o.stage in enabled and o.field not in missed)


def _missed_in(loaded: LoadedConfig, spec: StageSpec, registry: Sequence[StageSpec],
               memo: dict[tuple[str, str], Any]) -> dict[str, str]:
    _stage_of(loaded, spec, registry, memo)
    return memo[(_MISSED, spec.name, structure_of(loaded.config))]


def _environment_stages(loaded: LoadedConfig, registry: Sequence[StageSpec],
                        memo: dict[tuple[str, str], Any], keyless: bool = False
                        ) -> dict[str, Stage]:
    """The enabled stages of one environment but the deploying ones (and, `keyless`, but the
    key's holder), by name in the registry's order. Shared through `memo` by stage and
    structure (`build_all`)."""
    config = loaded.config
    return {spec.name: _stage_of(loaded, spec, registry, memo) for spec in registry
            if spec.enabled(config) and not spec.deploys and not (keyless and spec.holds_key)}


def _alone(spec: StageSpec, loaded: LoadedConfig) -> Stage:
    """The stage built without what others give it (for its wires only)."""
    if spec.deploys:
        return spec.build(loaded, frozenset())
    if spec.holds_key:
        return spec.build(loaded, ())
    return spec.build(loaded)


def _built(loaded: LoadedConfig, build: Callable[..., Stage], *args: Any) -> Stage:
    """`build(loaded, *args)`, its user errors naming the file, its roles bounded."""
    try:
        stage = build(loaded, *args)
    except UserError as error:
        # A setting only building can judge (a script file that cannot be read).
        raise UserError(*(f"{loaded.source}: {p}" for p in error.problems)) from None
    # Every stage's roles under the project's boundary, its keys tagged as the project's
    # (boundary.py): applied here, to every stage, so that no stage has to remember it.
    boundary.tag_keys(stage.template, loaded.config.project)
    return boundary.bound_roles(stage)


def deployed_requirements(loaded: LoadedConfig, registry: Sequence[StageSpec] | None = None,
                          memo: dict[tuple[str, str], Any] | None = None) -> frozenset[str]:
    """What the templates of every environment of the file require of the role that deploys
    them (permissions.template_requirements): the resource types and dynamic references of each
    enabled stage but the deploying ones (they add their own), and the root's nested stacks.

    Built stages and their requirements are shared through `memo` (by stage and structure),
    as `build_all` shares stages.
    """
    memo = {} if memo is None else memo
    registry = registry or registry_of(loaded)
    found = {permissions.NESTED_STACK}
    for name in loaded.merged:
        environment = loaded.for_environment(name)
        structure = structure_of(environment.config)
        for stage_name, stage in _environment_stages(environment, registry, memo).items():
            needs = ("requirements", stage_name, structure)
            if needs not in memo:
                memo[needs] = permissions.template_requirements(stage.template.to_dict())
            found |= memo[needs]
    return frozenset(found)


def order_stages(enabled: Sequence[Stage], disabled: Iterable[Stage] = (),
                 toggles: dict[str, str] | None = None) -> list[Stage]:
    """Enabled stages, each after the stages whose outputs it takes."""
    providers = _providers(enabled)
    would_provide = {w.name: s.name for s in disabled for w in s.outputs}
    toggles = toggles or {}
    problems = []
    # disabled stage -> the enabled stages that need its outputs -> which outputs
    needed_from_disabled: dict[str, dict[str, list[str]]] = {}
    graph: dict[str, set[str]] = {}
    for stage in enabled:
        graph[stage.name] = set()
        for wire in stage.inputs:
            provider = providers.get(wire.name)
            if provider is not None:
                graph[stage.name].add(provider.name)
            elif wire.name in would_provide:
                needed_from_disabled.setdefault(would_provide[wire.name], {}).setdefault(
                    stage.name, []).append(wire.name)
            else:
                problems.append(f"stage {stage.name!r} needs {wire.name!r}, which no stage offers")
    problems += [_needed_from_disabled(owner, needing, toggles)
                 for owner, needing in needed_from_disabled.items()]
    if problems:
        raise UserError(*problems)
    try:
        names = list(graphlib.TopologicalSorter(graph).static_order())
    except graphlib.CycleError as error:
        cycle = " -> ".join(error.args[1])
        raise UserError(f"stages feed each other in a cycle: {cycle}") from None
    by_name = {stage.name: stage for stage in enabled}
    return [by_name[name] for name in names]


def _needed_from_disabled(owner: str, needing: dict[str, list[str]],
                          toggles: dict[str, str]) -> str:
    """One line for a disabled stage others need: who takes which of its outputs, and the
    switches that fix it (the network stage has none: it is there whenever others are)."""
    wires = sorted({wire for names in needing.values() for wire in names})
    takers = ", ".join(repr(name) for name in needing)
    fixes = [f"enable it ({toggles.get(owner, owner)})"]
    switchable = [name for name in needing if toggles.get(name, "").endswith(".enabled")]
    if switchable:
        fixes.append(f"disable {', '.join(repr(name) for name in switchable)}")
    return (f"stage {owner!r} is disabled, but {takers} {'takes' if len(needing) == 1 else 'take'} "
            f"its outputs ({', '.join(wires)}): {' or '.join(fixes)}")


def _providers(stages: Iterable[Stage]) -> dict[str, Stage]:
    providers: dict[str, Stage] = {}
    problems = []
    for stage in stages:
        for wire in stage.outputs:
            if wire.name in providers:
                problems.append(f"output {wire.name!r} is offered by both stage "
                                f"{providers[wire.name].name!r} and stage {stage.name!r}")
            providers[wire.name] = stage
    if problems:
        raise UserError(*problems)
    return providers


def compose(stages: Sequence[Stage], description: str, defaults: dict[str, str],
            file_suffix: str = ".yaml") -> Template:
    """The root template over stages already in wiring order."""
    problems = [problem for stage in stages for problem in ungated_uses(stage)]
    if problems:
        raise UserError(*problems)
    root = Template(Description=description)
    providers = _providers(stages)
    for stage in stages:
        for name in stage.settings:
            if name not in root.parameters:
                parameter = stage.template.parameters[name]
                props = {k: v for k, v in parameter.properties.items()}
                if name in defaults:
                    props["Default"] = defaults[name]
                root.add_parameter(type(parameter)(name, **props))
        stack_parameters = {name: _passed_down(root.parameters[name]) for name in stage.settings}
        for wire in stage.inputs:
            producer = providers[wire.name]
            stack_parameters[wire.name] = GetAtt(producer.logical_id, f"Outputs.{wire.name}")
        root.add_resource(Stack(
            stage.logical_id,
            TemplateURL=f"{stage.name}{file_suffix}",
            Parameters=stack_parameters,
        ))
        for wire in stage.outputs:
            root.add_output(Output(wire.name, Description=wire.description,
                                   Value=GetAtt(stage.logical_id, f"Outputs.{wire.name}")))
    _hoist_rules(root, stages)
    root.set_metadata({
        "AWS::CloudFormation::Interface": {"ParameterGroups": _parameter_groups(stages)},
        # W3002 flags a TemplateURL that is a local path. Here that is the point: the rendered
        # tree is packaged by `mlops-cfn package` (or `aws cloudformation package`), which
        # uploads each nested template and rewrites the URL.
        "cfn-lint": {"config": {"ignore_checks": ["W3002"]}},
    })
    return root


# --- conditional wires -----------------------------------------------------------------------

def ungated_uses(stage: Stage) -> list[str]:
    """One line per resource or output of `stage` that uses a conditional wire outside its
    condition (see the module docstring)."""
    gated = [wire for wire in stage.inputs if wire.presence is not None]
    if not gated:
        return []  # and no template encoded: this runs for every environment's stages
    template = stage.template.to_dict()
    conditions = template.get("Conditions", {})
    problems = []
    for wire in gated:
        wanted = wire.presence.condition
        for section in ("Resources", "Outputs"):
            for logical_id, body in template.get(section, {}).items():
                if _implies(body.get("Condition"), wanted, conditions):
                    continue
                uses = {k: v for k, v in body.items() if k != "Condition"}
                if any(_ungated_mentions(uses, wire.name, wanted, conditions)):
                    kind = "output" if section == "Outputs" else "resource"
                    problems.append(
                        f"stage {stage.name!r}: {kind} {logical_id} uses wire {wire.name!r} "
                        f"outside condition {wanted!r} (what {wire.name} names may not exist: "
                        f"give {logical_id} Condition {wanted}, or use the wire only inside "
                        f"Fn::If [{wanted}, ...])")
    return problems


def _implies(condition: str | None, wanted: str, conditions: dict) -> bool:
    """`condition` holds only when `wanted` does: it is `wanted`, or an Fn::And with it."""
    if condition is None:
        return False
    if condition == wanted:
        return True
    parts = conditions.get(condition, {}).get("Fn::And", [])
    return any(isinstance(part, dict) and _implies(part.get("Condition"), wanted, conditions)
               for part in parts)


def _ungated_mentions(node: Any, name: str, wanted: str, conditions: dict,
                      gated: bool = False) -> Iterator[bool]:
    """Yields True for each mention of parameter `name` in `node` outside `wanted`."""
    if isinstance(node, list):
        for item in node:
            yield from _ungated_mentions(item, name, wanted, conditions, gated)
        return
    if not isinstance(node, dict):
        return
    if len(node) == 1:
        (function, argument), = node.items()
        if function == "Fn::If" and isinstance(argument, list) and len(argument) == 3:
            when, then, otherwise = argument
            yield from _ungated_mentions(
                then, name, wanted, conditions, gated or _implies(when, wanted, conditions))
            yield from _ungated_mentions(otherwise, name, wanted, conditions, gated)
            return
        if (function == "Ref" and argument == name) or (
                function == "Fn::GetAtt" and isinstance(argument, list) and argument[:1] == [name]):
            yield not gated
            return
        if function == "Fn::Sub":
            text, variables = (argument, {}) if isinstance(argument, str) else argument
            if name not in variables and _sub_reference(name).search(text):
                yield not gated
            yield from _ungated_mentions(variables, name, wanted, conditions, gated)
            return
    for value in node.values():
        yield from _ungated_mentions(value, name, wanted, conditions, gated)


def _sub_reference(name: str) -> re.Pattern:
    """`${Name}` or `${Name.Attribute}` in Fn::Sub text (`${!Name}` is literal text)."""
    return re.compile(r"\$\{" + re.escape(name) + r"[.}]")


def _hoist_rules(root: Template, stages: Sequence[Stage]) -> None:
    """A stage's Rules (the region its images need, stages/image_registries.py) also go on the
    root, where CloudFormation checks them when the change set is created, before any nested
    stack starts; a nested stack's own would fail the deployment half-way. Only rules the root
    can evaluate: those naming pseudo parameters and root parameters."""
    for stage in stages:
        for name, rule in stage.template.rules.items():
            refs = set(_refs(rule))
            if name not in root.rules and all(r.startswith("AWS::") or r in root.parameters
                                              for r in refs):
                root.add_rule(name, rule)


def _refs(node) -> Iterable[str]:
    if isinstance(node, Ref):
        node = node.to_dict()
    if isinstance(node, dict):
        if set(node) == {"Ref"}:
            yield node["Ref"]
        for value in node.values():
            yield from _refs(value)
    elif isinstance(node, (list, tuple)):
        for item in node:
            yield from _refs(item)


def _passed_down(parameter) -> Ref | Join:
    """A root parameter as a nested stack's parameter value.

    A nested stack's Parameters take strings only: a list parameter travels comma-joined, which
    the child's List<...> parameter reads back as a list.
    """
    kind = parameter.properties["Type"]
    if kind.startswith("List<") or kind == "CommaDelimitedList":
        return Join(",", Ref(parameter.title))
    return Ref(parameter.title)


def _parameter_groups(stages: Sequence[Stage]) -> list[dict]:
    """Parameters grouped by the first stage using them, for the console and Service Catalog."""
    seen: set[str] = set()
    groups = []
    for stage in stages:
        names = [n for n in stage.settings if n not in seen]
        seen.update(names)
        if names:
            groups.append({"Label": {"default": stage.name}, "Parameters": names})
    return groups
