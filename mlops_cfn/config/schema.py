"""The JSON Schema of pipeline.yaml (`mlops-cfn schema`), held to what the loader accepts.

pydantic derives most of it from the model: types, bounds, patterns, allowed values, unknown keys.
What pydantic cannot see is added here, rule by rule, next to the validator it mirrors:

- values the loader converts before checking (numeric and boolean hyperparameters);
- checks of one field written as validators (a reserved tag prefix, a range with host bits set,
  a list naming an item twice, a prefix that collides with another, a path leaving the
  repository);
- mapping keys pydantic only describes (`patternProperties` admits every other key too): they
  become `propertyNames`, so a key the loader refuses is refused here;
- `environments.<env>`: overrides of any key but `project` and `environments`, each checked as
  the section it overrides (typos included), every section optional, list items complete (lists
  replace, mappings merge).

Rules across several fields (a minimum above a maximum, a mode that needs another key, what the
enabled stages need of each other, what an environment's merge produces) are the loader's
alone: JSON Schema cannot compare two values or merge a file. `LOADER_ONLY` names each of them;
tests/test_schema.py checks that every validator of the model is mirrored here or named there,
and that over every example and the fuzz corpus the schema accepts exactly what the loader
accepts, but for those rules.
"""

import copy
import re
from typing import Any, Callable, Iterator, Mapping

from pydantic import BaseModel

from . import ENVIRONMENT_PATTERN, PipelineConfig, config_model
from .extensions import ExtensionStage, load_all
from .analytics import RESERVED_USER_NAMES, AnalyticsConfig, ProvisionedConfig, QuickSightConfig
from .cicd import BuildConfig, RetrainConfig, SourceConfig
from .etl import RAW_TABLE_PREFIX, EtlConfig
from .ingestion import FIREHOSE_ERROR_ROOT, FirehoseConfig
from .ingestion_ec2 import Ec2ConsumerConfig
from .monitoring import AlarmThresholds, ModelMonitorConfig
from .record_schema import RecordColumn, RecordSchemaConfig
from .network import VPC_PREFIX_MAX, VPC_PREFIX_MIN, NetworkConfig, network_address_pattern
from .servicecatalog import ShareConfig, StackSetConfig
from .serving import (MODEL_API_VARIABLES, AsyncEndpointConfig, DeploymentConfig,
                      FargateServingConfig, SageMakerServingConfig, ServerlessEndpointConfig,
                      ServingConfig)
from .training import ParameterRange, PrepareConfig, TrainingConfig, TuningConfig

DIALECT = "https://json-schema.org/draft/2020-12/schema"
OVERRIDES = "EnvironmentOverrides"
# The keys an environment may not override (config/__init__.py, _BASE_ONLY).
BASE_ONLY = ("project", "environments", "record_schema", "overrides", "servicecatalog")

# Validators JSON Schema cannot mirror: (model, validator or field) -> why.
LOADER_ONLY: dict[tuple[type[BaseModel], str], str] = {
    (PipelineConfig, "_fits_a_template_description"):
        "a length in UTF-8 bytes (JSON Schema counts characters)",
    (PipelineConfig, "_account_quoted"):
        "(its message only: an account id given as a number is refused as any non-string is)",
    (NetworkConfig, "_mode_fits_fields"):
        "what each network mode needs of the other keys, and the subnets fitting the range",
    (RecordSchemaConfig, "_names_unique"): "column names unique across list items",
    (RecordSchemaConfig, "_label_and_features_are_numeric_columns"):
        "a label and features naming numeric columns of the record schema, none twice",
    (RecordColumn, "_length_only_for_strings"): "a length for string columns only",
    (AnalyticsConfig, "_managed_secret_name_resolvable"):
        "an admin user name of other than 6 characters with Redshift Serverless",
    (ProvisionedConfig, "_node_count_fits_type"): "the node count a node type needs",
    (QuickSightConfig, "_owner_when_enabled"):
        "an owner once QuickSight is enabled",
    (TrainingConfig, "_objective_fits_metric"): "the objective the metric judges",
    (TrainingConfig, "_tuning_fits_the_algorithm"):
        "a tuning objective the built-in XGBoost reports, without spot or an own image",
    (TuningConfig, "_parallel_within_total"): "parallel tuning jobs within the total",
    (ParameterRange, "_a_range_or_values"): "a tuned range with min below max, or values",
    (TrainingConfig, "_codebuild_trains_in_one_build"):
        "no tuning, spot, second instance, own image or SageMaker job keys with engine codebuild",
    (TrainingConfig, "_instances_fit_the_algorithm"):
        "the instance type, count and XGBoost version AWS documents for the built-in XGBoost",
    (TrainingConfig, "_spot_waits_at_least_the_runtime"):
        "a spot wait at least the training runtime",
    (PrepareConfig, "_training_rows_remain"): "two fractions leaving rows for training",
    (ServingConfig, "_api_fits_target"): "the API type the serving target allows",
    (ServingConfig, "_one_model_source"): "the keys the model source and target need",
    (SageMakerServingConfig, "_consistent"): "instance counts in order",
    (SageMakerServingConfig, "_serverless_has_no_vpc_isolation_or_capture"):
        "network isolation and data capture off by default for a serverless endpoint",
    (SageMakerServingConfig, "_fits_the_kind"): "the settings each endpoint kind can use",
    (ServerlessEndpointConfig, "_provisioned_within_max"):
        "provisioned concurrency within the maximum",
    (AsyncEndpointConfig, "_separate_prefixes"): "three prefixes apart",
    (DeploymentConfig, "_fits_in_the_timeout"): "waits within the timeout",
    (FargateServingConfig, "_consistent"): "task counts in order, memory for the cpu, a "
                                            "variable in environment and secrets both",
    (AlarmThresholds, "_datapoints_fit"): "datapoints within the evaluation periods",
    (Ec2ConsumerConfig, "_consistent"): "sizes in order, scaling thresholds in order, instance "
                                        "types of the AMI's architecture",
    (ModelMonitorConfig, "_not_inside_the_baseline"): "two prefixes apart",
    (SourceConfig, "_provider_fits_fields"): "the keys each source provider needs",
    (ShareConfig, "_accounts_quoted"):
        "(its message only: an account id given as a number is refused as any non-string is)",
    (StackSetConfig, "_targets_when_enabled"):
        "organizational units and regions for an enabled StackSet, and "
        "retain_stacks_on_account_removal only with auto_deployment",
}


def _unique_items(schema: dict) -> None:
    for branch in _branches(schema):
        if branch.get("type") == "array":
            branch["uniqueItems"] = True


def _not_prefixed(prefix: str) -> Callable[[dict], None]:
    def refine(schema: dict) -> None:
        for branch in _branches(schema):
            if branch.get("type") == "string":
                branch["not"] = {"pattern": "^" + re.escape(prefix)}
    return refine


def _names_not(pattern: str) -> Callable[[dict], None]:
    """Mapping keys that must not match `pattern`."""
    def refine(schema: dict) -> None:
        schema.setdefault("propertyNames", {})["not"] = {"pattern": pattern}
    return refine


def _network_address(first: int, last: int) -> Callable[[dict], None]:
    def refine(schema: dict) -> None:
        for branch in _branches(schema):
            target = branch["items"] if branch.get("type") == "array" else branch
            if target.get("type") == "string":
                target["pattern"] = network_address_pattern(first, last)
    return refine


def _hyperparameter_values(schema: dict) -> None:
    # TrainingConfig._numbers_as_text writes numbers and booleans as text before checking.
    text = schema["additionalProperties"]
    schema["additionalProperties"] = {"anyOf": [text, {"type": "number"}, {"type": "boolean"}]}


def _not_reserved_user(schema: dict) -> None:
    schema["not"] = {"enum": list(RESERVED_USER_NAMES)}


def _inside_repository(schema: dict) -> None:
    # cicd._inside_repository: no `..` path segment.
    for branch in _branches(schema):
        target = branch["items"] if branch.get("type") == "array" else branch
        if target.get("type") == "string":
            target["not"] = {"pattern": r"(^|/)\.\.(/|$)"}


def _case_insensitive(prefix: str) -> str:
    return "^" + "".join(f"[{c.lower()}{c.upper()}]" if c.isalpha() else re.escape(c)
                         for c in prefix)


def _allowed_cidrs(schema: dict) -> None:
    # analytics._private_ranges: network addresses of /8 or narrower, none twice.
    _network_address(8, 32)(schema)
    _unique_items(schema)


def _no_reserved_variables(schema: dict) -> None:
    # FargateServingConfig._no_reserved_names: AWS_ and ECS_ in any case, and the variables the
    # stage sets for the model API.
    schema.setdefault("propertyNames", {})["not"] = {
        "anyOf": [{"pattern": _case_insensitive("aws_")}, {"pattern": _case_insensitive("ecs_")},
                  {"enum": list(MODEL_API_VARIABLES)}]}


# Validators of one field, mirrored: (model, field) -> (the validator, its change to the field's
# schema).
MIRRORED: dict[tuple[type[BaseModel], str], tuple[str, Callable[[dict], None]]] = {
    (PipelineConfig, "tags"): ("_no_reserved_tag_prefix", _names_not(_case_insensitive("aws:"))),
    (NetworkConfig, "cidr"): ("_a_network_address",
                              _network_address(VPC_PREFIX_MIN, VPC_PREFIX_MAX)),
    (NetworkConfig, "interface_endpoints"): ("_no_repeats", _unique_items),
    (FirehoseConfig, "prefix"): ("_apart_from_errors", _not_prefixed(FIREHOSE_ERROR_ROOT)),
    (Ec2ConsumerConfig, "instance_types"): ("_no_repeats", _unique_items),
    (EtlConfig, "partition_keys"): ("_no_repeats", _unique_items),
    (EtlConfig, "processed_prefix"): ("_apart_from_raw_tables", _not_prefixed(RAW_TABLE_PREFIX)),
    (AnalyticsConfig, "admin_username"): ("_not_reserved", _not_reserved_user),
    (AnalyticsConfig, "allowed_cidrs"): ("_private_ranges", _allowed_cidrs),
    (TrainingConfig, "hyperparameters"): ("_numbers_as_text", _hyperparameter_values),
    (TrainingConfig, "triggers"): ("_no_repeats", _unique_items),
    (FargateServingConfig, "environment"): ("_no_reserved_names", _no_reserved_variables),
    (BuildConfig, "config_file"): ("_inside_repository", _inside_repository),
    (BuildConfig, "templates_dir"): ("_inside_repository", _inside_repository),
    (RetrainConfig, "code_paths"): ("_inside_repository", _inside_repository),
    (ShareConfig, "accounts"): ("_no_repeats", _unique_items),
    (ShareConfig, "organizational_units"): ("_no_repeats", _unique_items),
    (StackSetConfig, "organizational_units"): ("_no_repeats", _unique_items),
    (StackSetConfig, "regions"): ("_no_repeats", _unique_items),
}


def pipeline_schema(extensions: Mapping[str, ExtensionStage] | None = None) -> dict:
    """The schema of a pipeline file, for editors and CI checks, with the sections of
    `extensions` (default: every installed extension stage, config/extensions.py)."""
    schema = config_model(load_all() if extensions is None else extensions).model_json_schema()
    defs = schema["$defs"]
    for node in _walk(schema):
        _keys_as_property_names(node)
    for (model, field), (_, refine) in MIRRORED.items():
        refine(_properties(schema, model)[field])
    defs[OVERRIDES] = _overrides_of(schema)
    environments = schema["properties"]["environments"]
    value = {"anyOf": [{"$ref": f"#/$defs/{OVERRIDES}"}, {"type": "null"}]}
    environments.pop("patternProperties", None)
    environments.update(propertyNames={"pattern": ENVIRONMENT_PATTERN},
                        additionalProperties=value)
    schema["description"] = (
        "mlops-cfn pipeline file. Rules across several fields are checked by `mlops-cfn` "
        "itself: " + "; ".join(sorted(set(LOADER_ONLY.values()))) + ".")
    return {"$schema": DIALECT, **schema}


def _properties(schema: dict, model: type[BaseModel]) -> dict:
    if model is PipelineConfig:
        return schema["properties"]
    return schema["$defs"][model.__name__]["properties"]


def _keys_as_property_names(node: dict) -> None:
    """pydantic writes `dict[<constrained str>, V]` as patternProperties, which leaves every
    other key allowed; the loader refuses them."""
    patterns = node.get("patternProperties")
    if node.get("type") != "object" or not patterns or "additionalProperties" in node:
        return
    [(pattern, value)] = patterns.items()
    del node["patternProperties"]
    node.setdefault("propertyNames", {})["pattern"] = pattern
    node["additionalProperties"] = value


def _overrides_of(schema: dict) -> dict:
    """`environments.<env>`: the file's keys but the base-only ones, every key optional; the
    sections it names checked the same way (they merge key by key), the items of lists in
    full (a list replaces the base's)."""
    defs = schema["$defs"]
    optional = {name: _optional_refs(copy.deepcopy(body), defs) for name, body in defs.items()}
    for name, body in optional.items():
        body.pop("required", None)
        defs[f"{name}{OVERRIDES}"] = body
    root = _optional_refs({k: copy.deepcopy(v) for k, v in schema.items() if k != "$defs"},
                          defs)
    root.pop("required", None)
    for key in BASE_ONLY:
        root["properties"].pop(key)
    root["title"] = "Environment overrides"
    return root


def _optional_refs(schema: Any, defs: dict) -> Any:
    """References to sections become references to their optional form, except inside list
    items; defaults go (a key left out of an override keeps the base's value, not the
    default)."""
    if isinstance(schema, list):
        return [_optional_refs(item, defs) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out = {}
    for key, value in schema.items():
        if key in ("items", "prefixItems") or key == "default":
            if key != "default":
                out[key] = value
        elif key in ("properties", "$defs", "patternProperties"):
            out[key] = {name: _optional_refs(sub, defs) for name, sub in value.items()}
        elif key == "$ref" and value.startswith("#/$defs/"):
            out[key] = f"{value}{OVERRIDES}"
        else:
            out[key] = _optional_refs(value, defs)
    return out


def _walk(node: Any) -> Iterator[dict]:
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from _walk(value)
    elif isinstance(node, list):
        for item in node:
            yield from _walk(item)


def _branches(schema: dict) -> Iterator[dict]:
    yield schema
    for branch in schema.get("anyOf", ()):
        yield from _branches(branch)
