"""The `stages.training` section: SageMaker model registry and the training pipeline."""

from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator

from .base import SCHEDULE_PATTERN, Model, Setting, StageToggle

# What the evaluation step computes, by the kind of model, and which way is better. The report
# follows SageMaker's model quality format (`<kind>_metrics.<metric>.value`).
BINARY_CLASSIFICATION_METRICS = ("auc", "accuracy", "f1", "precision", "recall")
REGRESSION_METRICS = ("rmse", "mse", "mae", "r2")
LOWER_IS_BETTER = frozenset({"rmse", "mse", "mae"})
Metric = Literal[BINARY_CLASSIFICATION_METRICS + REGRESSION_METRICS]  # type: ignore[valid-type]

# Versions of the SageMaker XGBoost container the templates know the registries of.
XGBOOST_VERSIONS = ("1.7-1", "1.5-1", "1.3-1")

# A key prefix: lowercase path segments, each ending in `/`.
PREFIX_PATTERN = r"^[a-z0-9][a-z0-9_\-/]{0,62}/$"
# An image in Amazon ECR: <account>.dkr.ecr.<region>.<domain>/<repository>[:tag|@digest].
ECR_IMAGE_PATTERN = (r"^[0-9]{12}\.dkr\.ecr\.[a-z0-9-]+\.amazonaws\.com(\.cn)?/"
                     r"[a-z0-9][a-z0-9._/-]{0,254}(:[A-Za-z0-9._-]{1,128}|@sha256:[a-f0-9]{64})$")
INSTANCE_TYPE_PATTERN = r"^ml\.[a-z0-9]+\.[a-z0-9]+$"

Trigger = Literal["etl_success", "new_data", "schedule"]
Engine = Literal["sagemaker", "codebuild"]

# The keys of this section that shape SageMaker jobs only: with engine codebuild, one set
# explicitly cannot be honoured (TrainingConfig._codebuild_trains_in_one_build).
SAGEMAKER_ONLY = ("instance_type", "volume_size_gb", "max_runtime_seconds",
                  "processing_instance_type", "processing_volume_size_gb",
                  "processing_max_runtime_seconds", "network_isolation",
                  "inter_container_encryption")
# CodeBuild's compute types for Linux containers (AWS: "Build environment compute modes and
# types", CodeBuild User Guide).
BUILD_COMPUTE_TYPES = ("BUILD_GENERAL1_SMALL", "BUILD_GENERAL1_MEDIUM", "BUILD_GENERAL1_LARGE",
                       "BUILD_GENERAL1_XLARGE", "BUILD_GENERAL1_2XLARGE")

# AWS: "XGBoost algorithm with Amazon SageMaker AI", section "EC2 instance recommendation for
# the XGBoost algorithm": the GPU instance families SageMaker XGBoost 1.2-2 or later trains on
# (P2, P3, G4dn, G5), and 1.7-1 or later, which "does not support the P2 instance family".
XGBOOST_GPU_FAMILIES = ("p2", "p3", "p3dn", "g4dn", "g5")
XGBOOST_WITHOUT_P2 = ("1.7-1",)
# Same section: distributed GPU training with Dask "starting with version 1.5-1".
XGBOOST_WITH_DASK = ("1.7-1", "1.5-1")

# SageMaker's limits on hyperparameters (CreateTrainingJob).
MAX_HYPERPARAMETERS = 100
MAX_HYPERPARAMETER_KEY = 256
MAX_HYPERPARAMETER_VALUE = 2500


def metric_kind(metric: str) -> str:
    """`binary_classification` or `regression`: the section of the evaluation report."""
    return "regression" if metric in REGRESSION_METRICS else "binary_classification"


class PrepareConfig(Model):
    """The optional first step: turn the processed data into train/validation/test CSV."""

    enabled: Annotated[
        bool,
        Field(description="Run the prepare step (mlops_cfn/data/training/prepare.py): read the "
                          "input location, keep the label and feature columns (record_schema's "
                          "label and features), split the rows "
                          "into train, validation and test, write each as header-less CSV with "
                          "the label first (what the built-in XGBoost reads), and the training "
                          "rows without the label as baseline/ (Model Monitor's baseline). Off: "
                          "the input location must already hold train/, validation/ and test/ "
                          "in that form, and baseline/ when Model Monitor runs."),
    ] = True
    input_format: Annotated[
        Literal["parquet", "csv", "csv_headerless"] | None,
        Field(description="Format of the input files: `parquet`, `csv` with a header row, or "
                          "`csv_headerless` with the label in the first column. Unset: what "
                          "the etl stage writes (stages.etl.output_format), parquet without "
                          "it."),
    ] = None
    # Structural rather than settings: the split is part of how the model is built, the same
    # in every environment, so that a model promoted from dev was judged the same way in prod.
    validation_fraction: Annotated[
        float,
        Field(gt=0, lt=0.5, allow_inf_nan=False,
              description="Share of rows held out to validate each boosting round."),
    ] = 0.2
    test_fraction: Annotated[
        float,
        Field(gt=0, lt=0.5, allow_inf_nan=False,
              description="Share of rows held out for the evaluation step."),
    ] = 0.1

    @model_validator(mode="after")
    def _training_rows_remain(self):
        if self.validation_fraction + self.test_fraction >= 0.8:
            raise ValueError("validation_fraction + test_fraction must leave at least 20% of "
                             "the rows for training")
        return self


class SpotTrainingConfig(Model):
    """Managed spot training: the training job runs on spare capacity at a discount and may be
    interrupted; SageMaker resumes it from its last checkpoint, copied to the artifacts bucket
    (AWS: "Managed Spot Training in Amazon SageMaker AI")."""

    enabled: Annotated[
        bool,
        Field(description="Train on spot capacity, checkpointing to "
                          "<artifacts_prefix>checkpoints/<execution id>/ in the artifacts "
                          "bucket (the built-in XGBoost writes checkpoints itself; an image of "
                          "your own must write them to /opt/ml/checkpoints to resume)."),
    ] = False
    max_wait_seconds: Annotated[
        int,
        Field(ge=60, le=2419200,
              description="Longest the job may take, waiting for spot capacity included "
                          "(MaxWaitTimeInSeconds); at least max_runtime_seconds."),
        Setting("TrainingMaxWaitSeconds"),
    ] = 28800


# The built-in XGBoost's objective metrics for tuning ("Tune an XGBoost model", SageMaker
# Developer Guide: validation:<eval_metric>), and which way each is better.
XGBOOST_MAXIMIZED = frozenset({"accuracy", "auc", "aucpr", "f1", "map", "ndcg"})
XGBOOST_MINIMIZED = frozenset({"error", "logloss", "mae", "merror", "mlogloss", "mse", "rmse"})
HYPERPARAMETER_NAME = r"^[A-Za-z0-9_.:-]{1,256}$"


class ParameterRange(Model):
    """One tuned hyperparameter: a numeric range (min and max) or categorical values."""

    min: Annotated[float | None, Field(allow_inf_nan=False,
                                       description="Lowest value tried (with max).")] = None
    max: Annotated[float | None, Field(allow_inf_nan=False,
                                       description="Highest value tried (with min).")] = None
    integer: Annotated[bool, Field(description="Whole numbers only (IntegerParameterRanges).")
                       ] = False
    scaling: Annotated[
        Literal["Auto", "Linear", "Logarithmic", "ReverseLogarithmic"],
        Field(description="How the range is searched (ScalingType)."),
    ] = "Auto"
    values: Annotated[
        list[Annotated[str, Field(min_length=1, max_length=256)]] | None,
        Field(min_length=1, max_length=30,
              description="Categorical values tried, instead of min and max."),
    ] = None

    @model_validator(mode="after")
    def _a_range_or_values(self):
        numeric = self.min is not None or self.max is not None
        if self.values is not None:
            if numeric or self.integer or self.scaling != "Auto":
                raise ValueError("values (categorical) take no min, max, integer or scaling")
            return self
        if self.min is None or self.max is None:
            raise ValueError("needs min and max, or values")
        if self.min >= self.max:
            raise ValueError(f"min ({self.min:g}) must be below max ({self.max:g})")
        if self.integer and not (self.min.is_integer() and self.max.is_integer()):
            raise ValueError("integer ranges need whole-number min and max")
        if self.scaling in ("Logarithmic", "ReverseLogarithmic") and self.min <= 0:
            raise ValueError(f"{self.scaling} scaling needs min above 0")
        if self.scaling == "ReverseLogarithmic" and (self.integer or self.max >= 1):
            raise ValueError("ReverseLogarithmic scaling is for continuous ranges within [0, 1)")
        return self


class TuningConfig(Model):
    """Automatic model tuning in place of the single training job: SageMaker trains up to
    max_jobs models over the ranges and the pipeline evaluates and registers the best one,
    exactly as it would a single job's (AWS: "Automatic model tuning with SageMaker AI")."""

    enabled: Annotated[bool, Field(description="Tune instead of training once.")] = False
    strategy: Annotated[
        Literal["Bayesian", "Random"],
        Field(description="How the next hyperparameters are chosen."),
    ] = "Bayesian"
    objective_metric: Annotated[
        Literal[tuple(f"validation:{m}" for m in sorted(XGBOOST_MAXIMIZED | XGBOOST_MINIMIZED))
                ] | None,  # type: ignore[valid-type]
        Field(description="The built-in XGBoost metric the tuning job optimizes "
                          "(validation:<name>). Unset: validation:<hyperparameters.eval_metric>."),
    ] = None
    max_jobs: Annotated[
        int, Field(ge=1, le=500, description="Training jobs in all (MaxNumberOfTrainingJobs)."),
    ] = 10
    max_parallel_jobs: Annotated[
        int, Field(ge=1, le=100, description="Training jobs at once (MaxParallelTrainingJobs)."),
    ] = 2
    early_stopping: Annotated[
        bool,
        Field(description="Stop training jobs that are unlikely to beat the best so far "
                          "(TrainingJobEarlyStoppingType Auto)."),
    ] = True
    ranges: Annotated[
        dict[Annotated[str, Field(pattern=HYPERPARAMETER_NAME)], ParameterRange],
        Field(min_length=1, max_length=30,
              description="The tuned hyperparameters by name; each is left out of the "
                          "training jobs' fixed hyperparameters."),
    ] = {"eta": ParameterRange(min=0.05, max=0.5),
         "max_depth": ParameterRange(min=3, max=10, integer=True)}

    @model_validator(mode="after")
    def _parallel_within_total(self):
        if self.max_parallel_jobs > self.max_jobs:
            raise ValueError(f"max_parallel_jobs ({self.max_parallel_jobs}) exceeds max_jobs "
                             f"({self.max_jobs})")
        return self

    def objective(self, hyperparameters: dict[str, str]) -> tuple[str, str]:
        """(MetricName, Type) of the tuning objective."""
        metric = self.objective_metric or f"validation:{hyperparameters.get('eval_metric', '')}"
        name = metric.removeprefix("validation:")
        return metric, "Maximize" if name in XGBOOST_MAXIMIZED else "Minimize"


class CodeBuildTrainingConfig(Model):
    """With `engine: codebuild`: the CodeBuild project that prepares, trains, evaluates and
    registers in one build (mlops_cfn/stages/training_codebuild.py)."""

    compute_type: Annotated[
        Literal[BUILD_COMPUTE_TYPES],  # type: ignore[valid-type]
        Field(description="CodeBuild compute type of the training build (memory and vCPUs: "
                          "the training rows must fit in memory)."),
        Setting("TrainingBuildComputeType"),
    ] = "BUILD_GENERAL1_MEDIUM"
    timeout_minutes: Annotated[
        int,
        Field(ge=5, le=2160,
              description="Longest a training build may run before CodeBuild stops it."),
        Setting("TrainingBuildTimeoutMinutes"),
    ] = 60


def instance_family(instance_type: str) -> str:
    """`g4dn` of `ml.g4dn.xlarge`."""
    return instance_type.split(".")[1]


def is_gpu_type(instance_type: str) -> bool:
    """SageMaker's accelerated training types: the P and G families."""
    return instance_family(instance_type)[:1] in ("p", "g")


class TrainingConfig(StageToggle):
    engine: Annotated[
        Engine,
        Field(description="What trains the model: `sagemaker` (a SageMaker pipeline of "
                          "processing and training jobs) or `codebuild` (one CodeBuild build "
                          "in the private subnets running the same prepare and evaluation "
                          "scripts and the shipped train.py with the built-in XGBoost's "
                          "image, for small models). Both register into the same model "
                          "package group and are started by the same triggers."),
    ] = "sagemaker"
    codebuild: CodeBuildTrainingConfig = CodeBuildTrainingConfig()
    input_prefix: Annotated[
        str,
        Field(pattern=PREFIX_PATTERN,
              description="Key prefix in the processed bucket the pipeline trains on when the "
                          "etl stage is disabled (with etl enabled, the prefix the ETL job "
                          "writes to is used)."),
    ] = "training/"
    artifacts_prefix: Annotated[
        str,
        Field(pattern=PREFIX_PATTERN,
              description="Key prefix in the artifacts bucket for prepared data, models and "
                          "evaluation reports."),
    ] = "training/"
    image_uri: Annotated[
        str | None,
        Field(pattern=ECR_IMAGE_PATTERN,
              description="Training image in this account's Amazon ECR. Unset: the SageMaker "
                          "built-in XGBoost image of `xgboost_version` in the stack's region. "
                          "The same image is registered for inference."),
        Setting("TrainingImageUri"),
    ] = None
    xgboost_version: Annotated[
        Literal[XGBOOST_VERSIONS],  # type: ignore[valid-type]
        Field(description="Version of the built-in XGBoost image (without image_uri)."),
    ] = "1.7-1"
    evaluation_image_uri: Annotated[
        str | None,
        Field(pattern=ECR_IMAGE_PATTERN,
              description="Image running the prepare and evaluation scripts: Python 3 with "
                          "xgboost (and pandas for Parquet). Unset: the training image. With "
                          "engine codebuild the build runs in it and needs boto3 too (the "
                          "built-in XGBoost image has all of them)."),
        Setting("TrainingEvaluationImageUri"),
    ] = None
    # Structural: hyperparameters describe the model, which every environment trains alike.
    hyperparameters: Annotated[
        dict[Annotated[str, Field(min_length=1, max_length=MAX_HYPERPARAMETER_KEY)],
             Annotated[str, Field(max_length=MAX_HYPERPARAMETER_VALUE)]],
        Field(max_length=MAX_HYPERPARAMETERS,
              description="Hyperparameters of the training job. SageMaker takes text; "
                          "numbers and booleans are written as text (200 as \"200\", true as "
                          "\"true\")."),
    ] = {
        "objective": "binary:logistic",
        "eval_metric": "auc",
        "num_round": "200",
        "max_depth": "5",
        "eta": "0.2",
        "subsample": "0.8",
        "early_stopping_rounds": "10",
    }
    instance_type: Annotated[
        str,
        Field(pattern=INSTANCE_TYPE_PATTERN,
              description="Training instance type. Types with local NVMe storage (the `d` "
                          "families) refuse a volume KMS key; use types without."),
        Setting("TrainingInstanceType"),
    ] = "ml.m5.xlarge"
    instance_count: Annotated[
        int,
        Field(ge=1, le=100, description="Training instances (distributed training above 1)."),
        Setting("TrainingInstanceCount"),
    ] = 1
    volume_size_gb: Annotated[
        int,
        Field(ge=1, le=16384, description="Storage volume of each training instance, GiB."),
        Setting("TrainingVolumeSizeGiB"),
    ] = 30
    max_runtime_seconds: Annotated[
        int,
        Field(ge=60, le=2419200, description="Longest a training job may run."),
        Setting("TrainingMaxRuntimeSeconds"),
    ] = 14400
    processing_instance_type: Annotated[
        str,
        Field(pattern=INSTANCE_TYPE_PATTERN,
              description="Instance type of the prepare and evaluation steps."),
        Setting("TrainingProcessingInstanceType"),
    ] = "ml.m5.large"
    processing_volume_size_gb: Annotated[
        int,
        Field(ge=1, le=16384, description="Storage volume of the processing instances, GiB."),
        Setting("TrainingProcessingVolumeSizeGiB"),
    ] = 30
    processing_max_runtime_seconds: Annotated[
        int,
        Field(ge=1, le=432000, description="Longest a prepare or evaluation job may run."),
        Setting("TrainingProcessingMaxRuntimeSeconds"),
    ] = 3600
    metric: Annotated[
        Metric,
        Field(description="Metric of the evaluation report that decides registration: "
                          f"{', '.join(BINARY_CLASSIFICATION_METRICS)} for binary "
                          f"classification, {', '.join(REGRESSION_METRICS)} for regression."),
    ] = "auc"
    metric_threshold: Annotated[
        float,
        Field(allow_inf_nan=False,
              description="A model is registered when its metric reaches this value: at least "
                          "it, or at most it for error metrics (rmse, mse, mae)."),
        Setting("TrainingMetricThreshold"),
    ] = 0.75
    approval_status: Annotated[
        Literal["PendingManualApproval", "Approved"],
        Field(description="Approval status of a newly registered model: `Approved` lets "
                          "serving pick it up at once, `PendingManualApproval` waits for a "
                          "person."),
        Setting("ModelApprovalStatus"),
    ] = "PendingManualApproval"
    network_isolation: Annotated[
        bool,
        Field(description="Run the training and processing containers without network access "
                          "(SageMaker still moves their data). Turn off only for an image that "
                          "must call out, e.g. to download packages."),
    ] = True
    inter_container_encryption: Annotated[
        bool,
        Field(description="Encrypt traffic between the instances of a distributed job."),
    ] = True
    spot: SpotTrainingConfig = SpotTrainingConfig()
    tuning: TuningConfig = TuningConfig()
    prepare: PrepareConfig = PrepareConfig()
    triggers: Annotated[
        list[Trigger] | None,
        Field(description="What starts the pipeline: `etl_success` (an ETL job run wrote new "
                          "records; needs the etl stage), `new_data` (an object ending in "
                          "new_data_marker lands under the input prefix), `schedule`. Unset: "
                          "etl_success with the etl stage, new_data without; [] for none "
                          "(started by hand or by another system)."),
    ] = None
    new_data_marker: Annotated[
        str,
        Field(pattern=r"^[A-Za-z0-9_.\-]{0,64}$",
              description="Key ending that marks a complete batch of new data (a writer "
                          "puts it last, as Spark writes _SUCCESS), so a batch of many files "
                          "starts one run; \"\" starts a run for every new object."),
    ] = "_SUCCESS"
    schedule: Annotated[
        str,
        Field(pattern=SCHEDULE_PATTERN,
              description="EventBridge schedule of the `schedule` trigger: rate(...) or "
                          "cron(...)."),
        Setting("TrainingSchedule"),
    ] = "rate(7 days)"
    trigger_retry_attempts: Annotated[
        int,
        Field(ge=0, le=185,
              description="Times EventBridge retries starting the pipeline before the event "
                          "goes to the dead-letter queue."),
        Setting("TrainingTriggerRetryAttempts"),
    ] = 8
    trigger_max_event_age_seconds: Annotated[
        int,
        Field(ge=60, le=86400,
              description="Longest EventBridge keeps retrying one event."),
        Setting("TrainingTriggerMaxEventAgeSeconds"),
    ] = 3600

    @field_validator("hyperparameters", mode="before")
    @classmethod
    def _numbers_as_text(cls, value):
        # SageMaker takes every value as text; `num_round: 200` means "200". YAML's true and
        # false are written as the lowercase words the algorithms read.
        if not isinstance(value, dict):
            return value
        return {key: (str(item).lower() if isinstance(item, bool)
                      else str(item) if isinstance(item, (int, float)) else item)
                for key, item in value.items()}

    @field_validator("triggers")
    @classmethod
    def _no_repeats(cls, value):
        if value is not None and len(set(value)) != len(value):
            raise ValueError("lists a trigger twice")
        return value

    @model_validator(mode="after")
    def _objective_fits_metric(self):
        objective = self.hyperparameters.get("objective", "")
        kind = metric_kind(self.metric)
        expected = "binary:" if kind == "binary_classification" else "reg:"
        if self.image_uri is None and objective and not objective.startswith(expected):
            raise ValueError(
                f"metric {self.metric!r} judges a {kind.replace('_', ' ')} model, but "
                f"hyperparameters.objective is {objective!r} (expected {expected}...)")
        return self

    @model_validator(mode="after")
    def _spot_waits_at_least_the_runtime(self):
        # AWS: StoppingCondition (SageMaker API Reference): MaxWaitTimeInSeconds "must be
        # equal to or greater than MaxRuntimeInSeconds".
        if self.spot.enabled and self.spot.max_wait_seconds < self.max_runtime_seconds:
            raise ValueError(f"spot.max_wait_seconds ({self.spot.max_wait_seconds}) must be at "
                             f"least max_runtime_seconds ({self.max_runtime_seconds})")
        return self

    @model_validator(mode="after")
    def _tuning_fits_the_algorithm(self):
        tuning = self.tuning
        if not tuning.enabled:
            return self
        if self.image_uri is not None:
            raise ValueError("tuning: an image of your own needs the metric definitions its "
                             "logs follow, which mlops-cfn does not take yet; tune the built-in "
                             "XGBoost (no image_uri) or turn tuning off")
        if self.spot.enabled:
            raise ValueError("tuning with spot: the tuning job's training jobs would share one "
                             "checkpoint folder; turn one of them off")
        metric, _ = tuning.objective(self.hyperparameters)
        name = metric.removeprefix("validation:")
        if name not in XGBOOST_MAXIMIZED | XGBOOST_MINIMIZED:
            raise ValueError(f"tuning.objective_metric: {metric!r} is not a metric the built-in "
                             f"XGBoost reports (validation:<one of "
                             f"{', '.join(sorted(XGBOOST_MAXIMIZED | XGBOOST_MINIMIZED))}>)")
        eval_metric = self.hyperparameters.get("eval_metric")
        if eval_metric != name:
            raise ValueError(f"tuning optimizes {metric}, which XGBoost reports only as "
                             f"hyperparameters.eval_metric {name!r} (it is "
                             f"{eval_metric!r}); make them the same")
        return self

    @model_validator(mode="after")
    def _codebuild_trains_in_one_build(self):
        if self.engine != "codebuild":
            return self
        if self.tuning.enabled:
            raise ValueError("engine codebuild trains once in one build; tuning runs SageMaker "
                             "training jobs: turn tuning off or use engine sagemaker")
        if self.spot.enabled:
            raise ValueError("engine codebuild trains in one build; spot is SageMaker's "
                             "managed spot training: turn spot off or use engine sagemaker")
        if self.instance_count > 1:
            raise ValueError(f"engine codebuild trains in one build on one machine; "
                             f"instance_count is {self.instance_count}: set 1 or use engine "
                             f"sagemaker")
        if self.image_uri is not None:
            raise ValueError("engine codebuild trains with the shipped train.py, whose model "
                             "the built-in XGBoost image serves; image_uri's own training "
                             "would not run: remove image_uri or use engine sagemaker")
        given = [name for name in SAGEMAKER_ONLY if name in self.model_fields_set]
        if given:
            raise ValueError(f"{', '.join(given)} shape SageMaker jobs, which engine codebuild "
                             f"runs none of (its build is sized by codebuild.compute_type and "
                             f"codebuild.timeout_minutes): remove them or use engine sagemaker")
        return self

    @model_validator(mode="after")
    def _instances_fit_the_algorithm(self):
        # AWS: "XGBoost algorithm with Amazon SageMaker AI", "EC2 instance recommendation for
        # the XGBoost algorithm" (GPU training, Distributed CPU training, Distributed GPU
        # training). Only for the built-in XGBoost: an own image's support is its own.
        if self.image_uri is not None:
            return self
        gpu = is_gpu_type(self.instance_type)
        family = instance_family(self.instance_type)
        tree_method = self.hyperparameters.get("tree_method")
        dask = self.hyperparameters.get("use_dask_gpu_training", "false") == "true"
        version = self.xgboost_version
        if family == "p2" and version in XGBOOST_WITHOUT_P2:
            raise ValueError(f"instance_type {self.instance_type}: SageMaker XGBoost {version} "
                             f"does not support the P2 family (AWS: XGBoost algorithm, EC2 "
                             f"instance recommendation); use P3, G4dn or G5")
        if gpu and tree_method != "gpu_hist":
            raise ValueError(f"instance_type {self.instance_type} is a GPU type, on which the "
                             f"built-in XGBoost trains with hyperparameters.tree_method "
                             f"gpu_hist only (it is {tree_method!r}); set it or use a CPU type")
        if dask and not (gpu and version in XGBOOST_WITH_DASK):
            raise ValueError(f"hyperparameters.use_dask_gpu_training needs a GPU instance_type "
                             f"and xgboost_version {' or '.join(XGBOOST_WITH_DASK)} (AWS: "
                             f"XGBoost algorithm, Distributed GPU training)")
        if self.instance_count > 1 and not dask:
            raise ValueError(
                f"instance_count {self.instance_count}: distributed {'GPU' if gpu else 'CPU'} "
                f"training of the built-in XGBoost needs the training data divided between the "
                f"instances (ShardedByS3Key, a file per instance), and the pipeline gives each "
                f"instance all of it; use one larger instance"
                + (", or Dask (hyperparameters.use_dask_gpu_training \"true\", xgboost_version "
                   "1.5-1 or later), which takes the data whole" if gpu else
                   ", or a GPU type with Dask (hyperparameters.use_dask_gpu_training \"true\")")
                + " (AWS: XGBoost algorithm, EC2 instance recommendation)")
        return self

    def input_format(self, config: Any) -> str:
        """The prepare step's input format in effect (see PrepareConfig.input_format)."""
        if self.prepare.input_format is not None:
            return self.prepare.input_format
        etl = config.stages.etl
        return getattr(etl, "output_format", "parquet") if etl.enabled else "parquet"

    def trigger_list(self, etl_enabled: bool) -> list[str]:
        """The triggers in effect: the configured ones, or the default for this pipeline."""
        if self.triggers is not None:
            return list(self.triggers)
        return ["etl_success"] if etl_enabled else ["new_data"]

    def vpc_endpoints(self) -> tuple[str, ...]:
        if self.engine == "codebuild":
            # The build runs in the private subnets: CodeBuild sends its logs from there
            # (`logs`, as the delivery builds do, config/cicd.py), and register.py calls
            # SageMaker (`sagemaker.api`). Whoever starts a training run from the VPC (the
            # delivery pipeline's retrain build) calls CodeBuild (`codebuild`). S3 (data,
            # scripts, models) goes through the gateway endpoint; CodeBuild pulls the image
            # outside the VPC.
            return ("codebuild", "logs", "sagemaker.api")
        # The jobs run in the private subnets. SageMaker pulls their images outside the VPC,
        # and S3 (data, models, scripts) goes through the gateway endpoint. What remains is
        # the SageMaker agent on each instance sending the job's logs and metrics to
        # CloudWatch through the job's network interfaces, also under network isolation.
        # The shipped scripts call no AWS API, so no sts or sagemaker.api endpoint.
        return ("logs", "monitoring")

    def problems_with(self, config: Any) -> list[str]:
        problems = []
        etl_enabled = config.stages.etl.enabled
        if self.triggers is not None and "etl_success" in self.triggers and not etl_enabled:
            problems.append("stages.training.triggers: etl_success needs the etl stage "
                            "(stages.etl.enabled)")
        monitoring = config.stages.monitoring
        if (self.engine == "codebuild" and monitoring.enabled
                and monitoring.runs_model_monitor(config)):
            problems.append("stages.training.engine: codebuild writes no Model Monitor "
                            "baseline (a SageMaker processing job of the training pipeline "
                            "does); turn stages.monitoring.model_monitor off or use engine "
                            "sagemaker")
        schema = config.record_schema
        if schema.label is None:
            problems.append("record_schema.label: the training stage needs the column the model "
                            "learns to predict (or set stages.training.enabled: false)")
        elif not schema.feature_columns():
            problems.append("record_schema.features: the training stage needs at least one "
                            "integer, double or boolean column besides the label")
        return problems
