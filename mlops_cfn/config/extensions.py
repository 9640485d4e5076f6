"""Extension stages: stages another package adds, and their `extensions.<name>` sections.

A package registers a stage under the entry point group `mlops_cfn.stages`; the entry point's
name is the stage's name and the key of its section (`extensions.<name>` in pipeline.yaml), its
object an `ExtensionStage`: the section's model (a subclass of `ExtensionConfig`, so that an
unknown key is an error, as everywhere else in the file) and the function that builds the stage.
A section that is present and not `enabled: false` renders the stage, in every environment that
has it (an environment's overrides may add, change or disable it like any other section).

Only the entry points a file names are imported, so that a broken or slow extension costs
nothing to a pipeline that does not use it; `mlops-cfn schema` imports them all to describe
every key an installed extension accepts.
"""

import re
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping

from ..errors import UserError
from .base import Model, StageToggle

if TYPE_CHECKING:
    from ..stage import Stage

GROUP = "mlops_cfn.stages"

# A stage's name becomes its template's file name and, capitalised, the nested stack's logical
# id (stage.Stage.logical_id).
NAME_PATTERN = r"^[a-z][a-z0-9_]{0,30}$"

# The stages of mlops-cfn that have no `stages.<name>` section (boundary.py, the network); an
# extension may not take their names nor a section's (`builtin_names`).
UNSWITCHED_STAGES = ("boundary", "network")


class ExtensionConfig(StageToggle):
    """The base of an extension stage's section: strict (an unknown key is an error), immutable,
    switched by `enabled`. Fields marked with `Setting` become root parameters, as in the
    built-in sections."""


class ExtensionsConfig(Model):
    """Sections of extension stages: `extensions.<name>` configures the stage an installed package
    registers under that name (entry point group `mlops_cfn.stages`), checked by that package's
    own model. A section present and not disabled renders the stage."""


@dataclass(frozen=True)
class ExtensionStage:
    """What an entry point of the group `mlops_cfn.stages` names.

    `build(config, section)` gets the environment's whole config (its `project` names the
    stage's resources) and the stage's own section, and returns the `Stage` a
    `StageBuilder(name, ...)` finishes, `name` being the entry point's name. The stage talks to
    the others only through wires (outputs.py), like every built-in stage.
    """

    config: type[ExtensionConfig]
    build: Callable[[Any, Any], "Stage"]


def extension_names(data: Any) -> list[str]:
    """The extension sections a raw pipeline file names, in its base or any environment."""
    found: list[str] = []
    overrides = data.get("environments") if isinstance(data, dict) else None
    layers = [data] + (list(overrides.values()) if isinstance(overrides, dict) else [])
    for layer in layers:
        sections = layer.get("extensions") if isinstance(layer, dict) else None
        if isinstance(sections, dict):
            found += [name for name in sections if isinstance(name, str) and name not in found]
    return found


def available() -> dict[str, EntryPoint]:
    """The installed entry points of the group, by name (none loaded)."""
    return {point.name: point for point in entry_points(group=GROUP)}


def load_extensions(names: Iterable[str], source: str) -> dict[str, ExtensionStage]:
    """The named extensions, loaded and checked; a name no installed package registers is a
    one-line error naming the file and the key."""
    points = available()
    installed = ", ".join(sorted(points)) or "none"
    problems = []
    found = {}
    for name in names:
        if name not in points:
            problems.append(
                f"{source}: extensions.{name}: no installed extension stage {name!r} "
                f"(installed: {installed}; a package adds one under the entry point group "
                f"{GROUP})")
            continue
        try:
            found[name] = _loaded(points[name])
        except UserError as error:
            problems += [f"{source}: extensions.{name}: {problem}" for problem in error.problems]
    if problems:
        raise UserError(*problems)
    return found


def load_all() -> dict[str, ExtensionStage]:
    """Every installed extension (for the schema and the reference)."""
    points = available()
    problems = []
    found = {}
    for name, point in sorted(points.items()):
        try:
            found[name] = _loaded(point)
        except UserError as error:
            problems += [f"extension stage {name!r}: {problem}" for problem in error.problems]
    if problems:
        raise UserError(*problems)
    return found


def _loaded(point: EntryPoint) -> ExtensionStage:
    """The entry point's object, checked against the contract above."""
    where = f"entry point {point.name} = {point.value} in group {GROUP}"
    builtin = builtin_names()
    if not re.match(NAME_PATTERN, point.name) or point.name in builtin:
        raise UserError(f"{where}: the name must match {NAME_PATTERN} and not be one of "
                        f"mlops-cfn's own stages ({', '.join(builtin)})")
    try:
        extension = point.load()
    except Exception as error:  # an extension's import may fail in any way: say where
        raise UserError(f"{where}: cannot be loaded ({type(error).__name__}: {error})") from None
    if not isinstance(extension, ExtensionStage):
        raise UserError(f"{where}: names {type(extension).__name__}, not an "
                        f"mlops_cfn.extension.ExtensionStage")
    model = extension.config
    if not (isinstance(model, type) and issubclass(model, ExtensionConfig)
            and model.model_config.get("extra") == "forbid"):
        raise UserError(f"{where}: its config model must be a subclass of "
                        f"mlops_cfn.extension.ExtensionConfig that refuses unknown keys")
    return extension


def builtin_names() -> tuple[str, ...]:
    """mlops-cfn's own stages: the unswitched ones and every section of `stages`."""
    from . import StagesConfig

    return (*UNSWITCHED_STAGES, *StagesConfig.model_fields)


def sections_model(extensions: Mapping[str, ExtensionStage]) -> type[ExtensionsConfig]:
    """`ExtensionsConfig` with one optional section per extension (absent: the stage is off)."""
    from pydantic import Field, create_model

    fields: dict[str, Any] = {
        name: (extension.config | None,
               Field(None, description=_first_line(extension.config.__doc__)))
        for name, extension in extensions.items()}
    return create_model("ExtensionsConfig", __base__=ExtensionsConfig,
                        __doc__=ExtensionsConfig.__doc__, **fields)


def enabled_section(config: Any, name: str) -> Any:
    """The extension's section in `config` when it renders the stage, else None."""
    section = getattr(config.extensions, name, None)
    return section if section is not None and section.enabled else None


def _first_line(doc: str | None) -> str:
    return " ".join((doc or "").strip().split("\n\n")[0].split())
