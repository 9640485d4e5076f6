"""The model of pipeline.yaml and the loader that turns a file into a validated config.

A file holds a base config and per-environment overrides. `load(path, env)` validates the base
and every environment (so a typo in `prod` fails a `dev` render too) and returns the base and the
selected environment's merged config: the base gives the root template's parameter defaults, the
merged config the structure and the values written to parameters.json.
"""

import json
import dataclasses
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Annotated, Any, Iterator, Mapping

from pydantic import Field, ValidationError, field_validator

from ..errors import UserError
from .base import LogRetentionDays, Model, Setting, StageToggle, described_pattern
from .errors import format_validation_error
from .analytics import AnalyticsConfig
from .cicd import CicdConfig
from .etl import EtlConfig
from .extensions import (ExtensionStage, ExtensionsConfig, extension_names, load_extensions,
                         sections_model)
from .ingestion import IngestionConfig
from .monitoring import MonitoringConfig
from .network import NetworkConfig
from .overrides import DESCRIPTION as OVERRIDES_DESCRIPTION, Overrides
from .record_schema import RecordSchemaConfig
from .servicecatalog import ServiceCatalogConfig
from .serving import ServingConfig
from .storage import StorageConfig
from .switches import unhonoured_switches
from .training import TrainingConfig
from .yaml_source import read_yaml

__all__ = [
    "DEFAULT_CONFIG", "ENVIRONMENT_PATTERN", "ENVIRONMENT_MAX_LENGTH", "LoadedConfig",
    "PipelineConfig", "Setting", "StageToggle", "StagesConfig", "config_model", "load",
    "load_data", "setting_values", "structure_of",
]

# A template Description's limit (CloudFormation quotas).
DESCRIPTION_MAX_BYTES = 1024
DEFAULT_CONFIG = Path(__file__).resolve().parent.parent / "data" / "pipeline.yaml"

# Environment names become part of physical names (S3 buckets, Glue databases with `_`,
# SageMaker's 63 characters), so they are short, lowercase and without separators.
ENVIRONMENT_MAX_LENGTH = 10
ENVIRONMENT_PATTERN = described_pattern(
    rf"^[a-z][a-z0-9]{{0,{ENVIRONMENT_MAX_LENGTH - 1}}}$",
    f"1-{ENVIRONMENT_MAX_LENGTH} characters: a lowercase letter, then lowercase letters or "
    "digits (no hyphens: environment names go into every physical name)")
PROJECT_PATTERN = described_pattern(
    r"^[a-z][a-z0-9-]{0,30}[a-z0-9]$",
    "2-32 characters: a lowercase letter, then lowercase letters, digits or hyphens, not "
    "ending in a hyphen")
# AWS's tag rule (CloudFormation's Tag: letters, separators and numbers of any script, and
# _.:/=+-@; keys up to 128 characters, values up to 256, the field's max_length). Unicode
# classes, not `\w`, which ECMAScript (the schema's patterns) reads as ASCII only.
_TAG_CHARACTERS = r"[\p{L}\p{Z}\p{N}_.:/=+\-@]"
TAG_KEY_PATTERN = described_pattern(
    rf"^{_TAG_CHARACTERS}{{1,128}}$",
    "1-128 characters: letters, digits, spaces and _.:/=+-@")
TAG_VALUE_PATTERN = described_pattern(
    rf"^{_TAG_CHARACTERS}*$", "letters, digits, spaces and _.:/=+-@")

# Where an environment deploys (placement.py): an account id, and a region name as AWS spells
# them; which regions the templates support is decided when they are built (a region cfn-lint's
# schemas know whose Rules the root template passes).
ACCOUNT_PATTERN = described_pattern(
    r"^[0-9]{12}$", "twelve digits, quoted (e.g. '210987654321')")
REGION_PATTERN = described_pattern(
    r"^[a-z]{2}(-[a-z]+)+-[0-9]{1,2}$", "a region name, e.g. eu-west-1")

# The keys that say where an environment deploys.
PLACEMENT_KEYS = ("account", "region")

# Environments guarded unless the file says otherwise.
PROTECTED_BY_NAME = ("prod", "production")

# Keys an environment may not override: they name the whole file, not one deployment of it.
# The record schema too: every environment loads and trains on the same columns (see
# config/record_schema.py); and the template overrides: every environment deploys the same
# templates (config/overrides.py).
# And the Service Catalog hand-off: one bundle, one portfolio, for every environment of the file.
_BASE_ONLY = ("project", "environments", "record_schema", "overrides", "servicecatalog")
# Why, where the key's name does not say it.
_BASE_ONLY_REASONS = {
    "overrides": "every environment deploys the same templates; a value that differs between "
                 "environments is a setting",
    "servicecatalog": "one hand-off bundle offers every environment; choose the StackSet's "
                      "with servicecatalog.stack_set.environment",
}


class StagesConfig(Model):
    storage: StorageConfig = StorageConfig()
    ingestion: IngestionConfig = IngestionConfig()
    etl: EtlConfig = EtlConfig()
    analytics: AnalyticsConfig = AnalyticsConfig()
    training: TrainingConfig = TrainingConfig()
    serving: ServingConfig = ServingConfig()
    monitoring: MonitoringConfig = MonitoringConfig()
    cicd: CicdConfig = CicdConfig()


class PipelineConfig(Model):
    project: Annotated[
        str,
        Field(pattern=PROJECT_PATTERN,
              description="Short lowercase name, the start of every physical name (2-32 "
                          "characters: a-z, 0-9, -)."),
    ]
    description: Annotated[
        str, Field(max_length=1000, description="What this pipeline is for (root template).")
    ] = "MLOps pipeline generated by mlops-cfn"
    protected: Annotated[
        bool,
        Field(description="Guard this environment: termination protection, manual approval "
                          "before CI/CD deploys it. Unset: true for an environment named prod "
                          "or production, false for the others."),
    ] = False
    tags: Annotated[
        dict[Annotated[str, Field(pattern=TAG_KEY_PATTERN)],
             Annotated[str, Field(pattern=TAG_VALUE_PATTERN, max_length=256)]],
        Field(max_length=40, description="Tags on every stack (and so every resource)."),
    ] = {}
    log_retention_days: Annotated[
        LogRetentionDays,
        Field(description="Retention of every log group the pipeline creates."),
        Setting("LogRetentionDays"),
    ] = 365
    account: Annotated[
        str | None,
        Field(pattern=ACCOUNT_PATTERN,
              description="The AWS account this environment deploys into, twelve digits in "
                          "quotes. Unset: the home account, where the delivery pipeline runs "
                          "and where the environment's stack is deployed today. An environment "
                          "in another account is prepared once with `mlops-cfn bootstrap --env "
                          "<env>` (README, \"Several accounts\")."),
    ] = None
    region: Annotated[
        str | None,
        Field(pattern=REGION_PATTERN,
              description="The AWS region this environment deploys into: one the templates "
                          "support (refused when they are built otherwise). Unset: the home "
                          "region, the delivery pipeline's."),
    ] = None
    network: NetworkConfig = NetworkConfig()
    record_schema: RecordSchemaConfig = RecordSchemaConfig()
    stages: StagesConfig = StagesConfig()
    extensions: Annotated[
        ExtensionsConfig,
        Field(description="Sections of extension stages, one per installed package's stage "
                          "(entry point group mlops_cfn.stages), each checked by that "
                          "package's model; see `mlops-cfn schema` for the installed ones."),
    ] = ExtensionsConfig()
    overrides: Annotated[Overrides, Field(description=OVERRIDES_DESCRIPTION)] = {}
    servicecatalog: Annotated[
        ServiceCatalogConfig,
        Field(description="Organization-wide hand-off with `mlops-cfn servicecatalog`: the "
                          "accounts and organizational units the portfolio is shared with, and "
                          "an optional service-managed StackSet rolling the pipeline out to "
                          "organizational units. No stage's template depends on it."),
    ] = ServiceCatalogConfig()
    environments: Annotated[
        dict[Annotated[str, Field(pattern=ENVIRONMENT_PATTERN)], dict[str, Any] | None],
        Field(min_length=1,
              description="One entry per deployment target, each holding overrides of the "
                          "settings above (any key but project, environments, record_schema, "
                          "overrides and servicecatalog)."),
    ] = {"dev": {}}

    @field_validator("description")
    @classmethod
    def _fits_a_template_description(cls, value):
        # CloudFormation counts a template's Description in bytes, not characters.
        if len(value.encode("utf-8")) > DESCRIPTION_MAX_BYTES:
            raise ValueError(f"is {len(value.encode('utf-8'))} bytes in UTF-8; CloudFormation "
                             f"takes at most {DESCRIPTION_MAX_BYTES}")
        return value

    @field_validator("account", mode="before")
    @classmethod
    def _account_quoted(cls, value):
        # YAML reads unquoted digits as a number, and an account id's leading zeros are lost.
        if isinstance(value, int) and not isinstance(value, bool):
            raise ValueError("must be twelve digits in quotes: YAML reads unquoted digits as "
                             "a number, which loses an account id's leading zeros")
        return value

    @field_validator("tags")
    @classmethod
    def _no_reserved_tag_prefix(cls, value):
        for key in value:
            if key.lower().startswith("aws:"):
                raise ValueError(f"tag key {key!r} uses the reserved prefix 'aws:'")
        return value


@dataclass(frozen=True)
class LoadedConfig:
    """One environment of a validated config file, as the composer needs it."""

    source: str
    environment: str
    base: PipelineConfig
    # Every environment's merged config; all are validated when the file is loaded.
    merged: dict[str, PipelineConfig]
    # The extension stages the file names (config/extensions.py), by name.
    extensions: Mapping[str, ExtensionStage] = dataclasses.field(default_factory=dict)

    @property
    def config(self) -> PipelineConfig:
        return self.merged[self.environment]

    def for_environment(self, name: str) -> "LoadedConfig":
        if name not in self.merged:
            raise UserError(
                f"{self.source}: environments: no environment {name!r} "
                f"(defined: {', '.join(self.merged)})")
        return replace(self, environment=name)


def load(path: Path | str | None = None, env: str | None = None) -> LoadedConfig:
    """Read and validate a pipeline file; `None` means the bundled default."""
    path = Path(path) if path is not None else DEFAULT_CONFIG
    source = str(path)
    return load_data(read_yaml(path), source, env)


def load_data(data: Any, source: str, env: str | None = None) -> LoadedConfig:
    if not isinstance(data, dict):
        raise UserError(f"{source}: must be a mapping of settings (got {type(data).__name__})")
    # Only a file naming extensions looks for them (importing an extension is its cost).
    names = extension_names(data)
    extensions = load_extensions(names, source) if names else {}
    model = config_model(extensions)
    base = _validate(data, source, model)
    environment = env if env is not None else next(iter(base.environments))
    merged_by_env = {}
    problems = [
        f"{source}: environments.{name}.{key}: is set once for the whole file, not per environment"
        + (f" ({_BASE_ONLY_REASONS[key]})" if key in _BASE_ONLY_REASONS else "")
        for name, overrides in base.environments.items()
        for key in _BASE_ONLY
        if overrides and key in overrides
    ]
    for name, overrides in base.environments.items():
        overrides = overrides or {}
        if any(key in overrides for key in _BASE_ONLY):
            continue  # said above; validating the merge would only say it again, worse
        merged_data = _deep_merge(data, overrides)
        if name in PROTECTED_BY_NAME and "protected" not in merged_data:
            merged_data["protected"] = True
        try:
            merged_by_env[name] = _validate(merged_data, source, model,
                                            in_environment=(name, overrides))
        except UserError as error:
            problems.extend(error.problems)
            continue
        problems.extend(_inherited_vpc_range(source, name, base, merged_by_env[name],
                                             overrides))
    if problems:
        raise UserError(*problems)
    return LoadedConfig(source, environment, base, merged_by_env,
                        extensions).for_environment(environment)


_MODELS: dict[tuple, type[PipelineConfig]] = {}


def config_model(extensions: Mapping[str, ExtensionStage]) -> type[PipelineConfig]:
    """The model of a file using `extensions`: PipelineConfig with their sections under
    `extensions` (PipelineConfig itself when there are none)."""
    if not extensions:
        return PipelineConfig
    key = tuple((name, extension.config) for name, extension in sorted(extensions.items()))
    if key not in _MODELS:
        from pydantic import create_model

        sections = sections_model(extensions)
        described = PipelineConfig.model_fields["extensions"]
        _MODELS[key] = create_model(
            "PipelineConfig", __base__=PipelineConfig, __doc__=PipelineConfig.__doc__,
            extensions=(sections, Field(sections(), description=described.description)))
    return _MODELS[key]


def _inherited_vpc_range(source: str, name: str, base: PipelineConfig, merged: PipelineConfig,
                         overrides: dict) -> list[str]:
    """An environment that switches to an existing VPC must give that VPC's range itself.

    Otherwise it would silently inherit the range the base meant for a VPC of our own, and the
    endpoint security group would admit the wrong addresses.
    """
    network_overrides = overrides.get("network") or {}
    if (merged.network.mode == "existing" and base.network.mode != "existing"
            and "cidr" not in network_overrides):
        return [f"{source}: environments.{name}.network.cidr: is required when the environment "
                f"switches to mode 'existing' (the existing VPC's IPv4 range)"]
    return []


def _validate(data: dict, source: str, model: type[PipelineConfig] = PipelineConfig,
              in_environment: tuple[str, dict] | None = None):
    try:
        config = model.model_validate(data)
    except ValidationError as error:
        raise UserError(*format_validation_error(error, source, model, in_environment))
    where = f" (in environment {in_environment[0]!r})" if in_environment else ""
    problems = [f"{source}: {problem}{where}" for problem in _stage_rules(config)]
    environment, overrides = in_environment or (None, {})
    problems += [f"{source}: {problem}"
                 for problem in unhonoured_switches(config, environment, overrides)]
    if problems:
        raise UserError(*problems)
    return config


def _stage_rules(config: PipelineConfig) -> list[str]:
    """What the enabled stages require of the rest of the file (StageToggle.problems_with),
    one problem a line."""
    sections = [getattr(config.stages, name) for name in type(config.stages).model_fields]
    sections += [getattr(config.extensions, name) for name in type(config.extensions).model_fields]
    return [problem
            for section in sections
            if section is not None and section.enabled
            for problem in section.problems_with(config)]


def _deep_merge(base: dict, overrides: dict) -> dict:
    """Mappings merge key by key; anything else (lists included) is replaced whole."""
    merged = dict(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def setting_values(config: Model) -> dict[str, Any]:
    """Every `Setting`-marked value in the config, by parameter name."""
    return dict(_walk_settings(config))


def _walk_settings(model: Model) -> Iterator[tuple[str, Any]]:
    for name, field in type(model).model_fields.items():
        value = getattr(model, name)
        for marker in field.metadata:
            if isinstance(marker, Setting):
                yield marker.parameter, value
        if isinstance(value, Model):
            yield from _walk_settings(value)


def structure_of(config: Model) -> str:
    """The config as far as a stage's template may depend on it, as canonical JSON.

    Every value is there except each `Setting`, which is reduced to its shape: unset or set,
    empty or not, how many items, true or false. A setting reaches a template only as a
    parameter, so what a stage may decide from its value is no more than that shape (a resource
    that exists only when the setting is given, one ingress rule per listed range). Two
    environments with the same structure therefore render the same templates, which lets one
    render build a stage once for all of them (pipeline.build_all).
    """
    dumped = _shaped(config, config.model_dump(mode="json"))
    # Only the hand-off bundle reads the servicecatalog section (config/servicecatalog.py).
    dumped.pop("servicecatalog", None)
    for key in PLACEMENT_KEYS:
        # Where an environment deploys is no template's business: the root template's Rules
        # judge the region against the templates, and each template names its account and
        # region through pseudo parameters (placement.py).
        dumped.pop(key, None)
    return json.dumps(dumped, sort_keys=True)


def _shaped(model: Model, dumped: dict) -> dict:
    for name, field in type(model).model_fields.items():
        value = getattr(model, name)
        if any(isinstance(marker, Setting) for marker in field.metadata):
            dumped[name] = _shape(dumped[name])
        elif isinstance(value, Model):
            _shaped(value, dumped[name])
    return dumped


def _shape(value: Any) -> Any:
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, (list, tuple, dict)):
        return {"items": len(value)}
    if isinstance(value, str):
        return "set" if value else ""
    return "value"
