"""Switches turned on explicitly that the rest of the file cannot honour.

A feature whose prerequisite is off would otherwise be dropped in silence: the templates render
without it and the user learns at the first drift, load or deployment that it is not there. So
an explicit `true` (written in the base of the file or in `environments.<env>`) whose
prerequisite is off is an error naming both keys. A default that does not apply stays silent
(Model Monitor is on by default and simply absent with Fargate-only serving), and so does a
switch inside a stage that is itself disabled: the stage's own switch already says "none of
this". What was written is told apart from a default by pydantic's `model_fields_set`, which the
merged config of an environment carries for the base and the environment's overrides alike.

A switch here makes something exist. A protection of something that does not exist (the
SageMaker model's network isolation with Fargate-only serving, the load balancer's deletion
protection with SageMaker-only serving, as the bundled prod sets it) leaves nothing unprotected
and is not refused.
"""

from dataclasses import dataclass
from typing import Any, Callable

from .errors import describe_value
from .monitoring import BOTH, SAGEMAKER


@dataclass(frozen=True)
class Requirement:
    """A setting a switch needs, at `path`, and the values that satisfy it."""

    path: str
    allowed: tuple[Any, ...]
    # The value in effect when it is not the field itself (the API type derived from the
    # serving target when unset).
    value: Callable[[Any], Any] | None = None

    def current(self, config: Any) -> Any:
        return self.value(config) if self.value is not None else value_at(config, self.path)

    def wanted(self) -> str:
        return " or ".join(describe_value(v) for v in self.allowed)


@dataclass(frozen=True)
class Switch:
    """`path` set to true explicitly needs every requirement, in order (the first unmet one is
    named). Moot while the stage at `stage` is disabled; `applies` narrows it further."""

    path: str
    stage: str
    requires: tuple[Requirement, ...]
    because: str
    applies: Callable[[Any, str], bool] = lambda config, environment: True


def _home_environment(config: Any, environment: str) -> bool:
    # Outside its home environment the cicd stage creates nothing (stages/cicd.py).
    return environment == (config.stages.cicd.home_environment or next(iter(config.environments)))


TRAINING_ON = Requirement("stages.training.enabled", (True,))
ETL_ON = Requirement("stages.etl.enabled", (True,))
SERVING_ON = Requirement("stages.serving.enabled", (True,))
SAGEMAKER_SERVES = Requirement("stages.serving.target", (SAGEMAKER, BOTH))
CAPTURE_ON = Requirement("stages.serving.sagemaker.data_capture.enabled", (True,))
MODEL_MONITOR_ON = Requirement("stages.monitoring.model_monitor.enabled", (True,))

SWITCHES: tuple[Switch, ...] = (
    Switch("stages.monitoring.model_monitor.enabled", "stages.monitoring",
           (SERVING_ON, SAGEMAKER_SERVES, CAPTURE_ON),
           "Model Monitor checks the requests the SageMaker endpoint captures"),
    Switch("stages.monitoring.retrain.enabled", "stages.monitoring",
           (TRAINING_ON, MODEL_MONITOR_ON, SERVING_ON, SAGEMAKER_SERVES, CAPTURE_ON),
           "retraining on drift starts the training pipeline when Model Monitor's violation "
           "alarm fires"),
    Switch("stages.analytics.load.enabled", "stages.analytics", (ETL_ON,),
           "the warehouse is loaded when the ETL job succeeds, from what it writes"),
    Switch("stages.analytics.spectrum.enabled", "stages.analytics", (ETL_ON,),
           "the external schema reads the ETL stage's Glue database"),
    Switch("stages.cicd.retrain.enabled", "stages.cicd", (TRAINING_ON,),
           "continuous training starts the home environment's training pipeline",
           applies=_home_environment),
    Switch("stages.cicd.deploy_approved_models", "stages.cicd",
           (TRAINING_ON, SERVING_ON, Requirement("stages.serving.model_source",
                                                 ("model_package",))),
           "the pipeline serves the packages the training stage registers and someone approves",
           applies=_home_environment),
    Switch("stages.cicd.build_model_api_image", "stages.cicd",
           (SERVING_ON, Requirement("stages.serving.target", ("fargate", BOTH))),
           "the pipeline builds the image the Fargate API runs", applies=_home_environment),
    Switch("stages.cicd.smoke_test", "stages.cicd", (SERVING_ON,),
           "the smoke test sends a record to what serves", applies=_home_environment),
    Switch("stages.serving.sagemaker.batch_transform.enabled", "stages.serving",
           (SAGEMAKER_SERVES,), "batch transform runs the SageMaker model"),
    Switch("stages.serving.sagemaker.data_capture.enabled", "stages.serving",
           (SAGEMAKER_SERVES,), "data capture records the SageMaker endpoint's requests"),
    Switch("stages.serving.api_gateway.set_account_logging_role", "stages.serving",
           (Requirement("stages.serving.api_gateway.enabled", (True,)),
            Requirement("stages.serving.api_gateway.type", ("rest",),
                        value=lambda config: config.stages.serving.api_type)),
           "the account's logging role is set for a REST API's access logs"),
    Switch("stages.ingestion.ec2_consumer.enabled", "stages.ingestion",
           # An existing VPC's routes to the internet are its owner's to provide.
           (Requirement("network.internet_gateway", (True,),
                        value=lambda config: config.network.internet_gateway
                        or config.network.mode == "existing"),),
           "the consumer instances install Java, the CloudWatch agent and amazon_kclpy (which "
           "fetches the KCL's jars from Maven Central) from the internet when they start"),
    Switch("network.internet_gateway", "network",
           (Requirement("network.mode", ("create",)),),
           "an existing VPC's routes are its owner's"),
)


def value_at(config: Any, path: str) -> Any:
    for part in path.split("."):
        config = getattr(config, part)
    return config


def written(config: Any, path: str) -> bool:
    """Whether `path` was given in the file (base or overrides) rather than defaulted."""
    *parents, name = path.split(".")
    model = config
    for part in parents:
        if part not in model.model_fields_set:
            return False
        model = getattr(model, part)
    return name in model.model_fields_set


def _in_overrides(overrides: dict, path: str) -> bool:
    data: Any = overrides
    for part in path.split("."):
        if not isinstance(data, dict) or part not in data:
            return False
        data = data[part]
    return True


def _enabled(config: Any, stage: str) -> bool:
    section = value_at(config, stage)
    return getattr(section, "enabled", True)


def unhonoured_switches(config: Any, environment: str | None = None,
                        overrides: dict | None = None) -> list[str]:
    """One line per switch set to true that `config` cannot honour, naming the switch and the
    first setting in its way (with `environments.<env>.` where the environment's overrides set
    it); `environment` is None for the base of the file."""
    overrides = overrides or {}

    def where(path: str) -> str:
        return (f"environments.{environment}.{path}"
                if environment is not None and _in_overrides(overrides, path) else path)

    problems = []
    for switch in SWITCHES:
        if not (value_at(config, switch.path) is True and written(config, switch.path)
                and _enabled(config, switch.stage)
                and (environment is None or switch.applies(config, environment))):
            continue
        unmet = next((r for r in switch.requires if r.current(config) not in r.allowed), None)
        if unmet is None:
            continue
        located = [where(switch.path), where(unmet.path)]
        suffix = ("" if environment is None or any(p.startswith("environments.") for p in located)
                  else f" (in environment {environment!r})")
        problems.append(
            f"{located[0]}: is true, but {located[1]} is {describe_value(unmet.current(config))}"
            f" ({switch.because}): set {unmet.path} to {unmet.wanted()}, or "
            f"{switch.path} to false{suffix}")
    return problems
