"""Where each environment deploys: pipeline.yaml's `account` and `region`.

An environment that names neither deploys where the delivery pipeline runs, the home account and
region, as every environment did before these keys existed: nothing about it changes, its
templates included (config.structure_of leaves the two keys out, so the stages of environments
in other accounts are the very same objects as the home environment's).

An environment in another account or region is a *target*: before the pipeline can deploy it,
`mlops-cfn bootstrap --env <env>` creates there the roles the home pipeline assumes and deploys
with (bootstrap.py). Same account and region as the home environment: no target.

Which regions the templates support is decided where they are built (`region_problems`): a
region cfn-lint's registry schemas know (the resource types are checked against those), and one
whose Rules the root template passes (stages/image_registries.py: the built-in images the
pipeline runs have an account there; stages/cicd_partition.py). Both are said as one line per
problem naming the file and the key, before anything is written.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .config import LoadedConfig


@dataclass(frozen=True)
class Placement:
    """An environment's account and region; None is the home account or region."""

    environment: str
    account: str | None
    region: str | None


def placement_of(loaded: LoadedConfig, environment: str | None = None) -> Placement:
    name = environment or loaded.environment
    config = loaded.merged[name]
    return Placement(name, config.account, config.region)


def home_of(loaded: LoadedConfig) -> Placement:
    """The home environment's placement (stages.cicd.home_environment, else the first)."""
    from .stages.cicd import home_environment

    return placement_of(loaded, home_environment(loaded.config))


def is_target(loaded: LoadedConfig, environment: str | None = None) -> bool:
    """Whether the environment deploys outside the home account and region: an account or a
    region of its own that differs from the home environment's."""
    placement, home = placement_of(loaded, environment), home_of(loaded)
    if placement.environment == home.environment:
        return False
    return ((placement.account is not None and placement.account != home.account)
            or (placement.region is not None and placement.region != home.region))


def targets(loaded: LoadedConfig) -> list[Placement]:
    """Every environment that deploys outside the home account and region, in file order."""
    return [placement_of(loaded, name) for name in loaded.merged if is_target(loaded, name)]


@lru_cache(maxsize=None)
def known_regions() -> frozenset[str]:
    """The regions cfn-lint ships registry schemas for (its schemas/providers/<region>.json):
    the regions whose resource types the templates can be checked against."""
    from .permissions import _cfnlint_data

    return frozenset(path.stem for path in (_cfnlint_data() / "schemas" / "providers").glob(
        "*.json") if path.stem != "sam")


def key_path(loaded: LoadedConfig, key: str) -> str:
    """Where the environment's value of `key` is set: its own override, else the base."""
    overrides = loaded.base.environments.get(loaded.environment) or {}
    return f"environments.{loaded.environment}.{key}" if key in overrides else key


def region_problems(loaded: LoadedConfig, root, values: dict[str, str]) -> list[str]:
    """What keeps the environment's templates (`root`, its troposphere root template, and the
    root's parameter values) out of its region; none without a region."""
    region = loaded.config.region
    if region is None:
        return []
    where = f"{loaded.source}: {key_path(loaded, 'region')}: {region}"
    if region not in known_regions():
        return [f"{where}: not a region cfn-lint knows, so the templates cannot be checked for "
                f"it (known: {', '.join(sorted(known_regions()))})"]
    home = home_of(loaded).region
    from .rules import partition_of

    if home is not None and partition_of(home) != partition_of(region):
        return [f"{where}: in partition {partition_of(region)}, but the home region {home} is in "
                f"{partition_of(home)}: roles cannot be assumed across partitions, so the "
                "delivery pipeline cannot deploy there"]
    from .preflight import region_problems as refused

    return [f"{where}: {problem.split(': ', 1)[1]}" for problem in refused(root.to_dict(), values, region)]
