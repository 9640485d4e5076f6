"""The SageMaker Pipelines definition of the training pipeline, built as data.

`definition(config, refs)` returns the pipeline as a dict in SageMaker's pipeline definition
format (Version 2020-12-01: Parameters, and Steps whose Arguments are the request bodies of
CreateProcessingJob, CreateTrainingJob and CreateModelPackage, with `Get` / `Std:Join` /
`Std:JsonGet` expressions for values known only while the pipeline runs). `sub_body(...)` turns
it into the `Fn::Sub` text of the template's PipelineDefinitionBody.

Steps
- PrepareData (Processing, optional): prepare.py splits the input location into train,
  validation and test CSV under the artifacts bucket, of the record schema's label and features.
- TrainModel (Training): the image on the train and validation channels; model to the artifacts
  bucket; volumes and output encrypted with the data key. With spot training, on spot capacity
  with checkpoints under the execution's folder, waiting at most the configured time.
- TuneModel (Tuning), in place of TrainModel with tuning on: up to max_jobs training jobs of the
  same definition over the configured ranges, optimizing the XGBoost validation metric; the
  best job's model (TrainingJobSummaries[0], as the SageMaker SDK's get_top_model_s3_uri reads
  it) goes on to evaluation and registration exactly as a single job's does.
- EvaluateModel (Processing): evaluate.py scores the model on the test rows and writes
  evaluation.json, read back as the property file EvaluationReport.
- CheckMetric (Condition): the configured metric against the MetricThreshold parameter;
  passing registers the model (RegisterModel) into the model package group, failing ends the
  execution as failed (MetricBelowThreshold), so a worse model never reaches the registry.
- BaselineData (Processing, with Model Monitor): beside RegisterModel, the Model Monitor
  analyzer computes statistics.json and constraints.json of the training rows' features (what
  the endpoint receives: PrepareData's `baseline` output, or `baseline/` under the input
  location) into the baseline prefix the monitoring schedule compares captured requests with.
- BaselineModelQuality (Processing, with model quality monitoring): the analyzer's model
  quality baseline of EvaluateModel's predictions on the test rows (its `predictions` output)
  into `model-quality/` of the baseline prefix.
- BaselineBias (Processing, with bias drift monitoring): SageMaker Clarify's post-training bias
  analysis of the same predictions into `model-bias/` (model_monitor_baselines.py).
- CreateShadowModel (Model) and BaselineExplainability (ClarifyCheck, with feature attribution
  drift monitoring): a SageMaker model of the new model archive, in the private subnets, and
  SageMaker Clarify's SHAP analysis of the test rows against a shadow endpoint Clarify creates
  from it (the step names the model; Pipelines hands its name to Clarify) into
  `model-explainability/` of the baseline prefix. The check against a previous baseline is
  skipped: the step computes the baseline, the monitor checks.

Values CloudFormation fills in (bucket names, the role, the settings) are `Cfn` placeholders:
`Cfn("s3://${ArtifactsBucketName}/")` stands for a JSON string, `Cfn("${X}", raw=True)` for raw
JSON (a number, a list). Every other string is literal: a `${` in it is escaped for Fn::Sub.
"""

import json
from dataclasses import dataclass
from typing import Any

from ..config.training import LOWER_IS_BETTER, TrainingConfig, metric_kind
from . import model_monitor_baselines as baselines

VERSION = "2020-12-01"

PREPARE = "PrepareData"
TRAIN = "TrainModel"
TUNE = "TuneModel"
EVALUATE = "EvaluateModel"
CHECK = "CheckMetric"
REGISTER = "RegisterModel"
FAIL = "MetricBelowThreshold"
BASELINE = "BaselineData"
QUALITY_BASELINE = "BaselineModelQuality"
BIAS_BASELINE = "BaselineBias"
SHADOW_MODEL = "CreateShadowModel"
EXPLAINABILITY_BASELINE = "BaselineExplainability"
# PrepareData's output of the training rows without their label: the endpoint's input.
BASELINE_DATA = "baseline"

EVALUATION_REPORT = "EvaluationReport"
EVALUATION_OUTPUT = "evaluation"
EVALUATION_FILE = "evaluation.json"

# Pipeline parameters: what a person may change for one execution when starting it by hand.
INPUT_DATA_URI = "InputDataUri"
TRAINING_INSTANCE_TYPE = "TrainingInstanceType"
TRAINING_INSTANCE_COUNT = "TrainingInstanceCount"
PROCESSING_INSTANCE_TYPE = "ProcessingInstanceType"
METRIC_THRESHOLD = "MetricThreshold"
MODEL_APPROVAL_STATUS = "ModelApprovalStatus"

PROCESSING_ROOT = "/opt/ml/processing"
# Where a training container writes checkpoints (SageMaker's default LocalPath).
CHECKPOINT_DIR = "/opt/ml/checkpoints"
CODE_DIR = f"{PROCESSING_ROOT}/input/code"
PREDICTIONS_DIR = f"{PROCESSING_ROOT}/predictions"
# The format every step after PrepareData reads: header-less CSV, label first.
CONTENT_TYPE = "text/csv"


@dataclass(frozen=True)
class Cfn:
    """A value CloudFormation substitutes: a `${...}` pattern of the definition's Fn::Sub."""

    pattern: str
    # False: the pattern is the text of a JSON string; True: it is raw JSON (number, list).
    raw: bool = False


@dataclass(frozen=True)
class Refs:
    """The definition's view of the stack: each a Cfn pattern."""

    role_arn: Cfn
    key_arn: Cfn
    input_uri: Cfn           # s3://processed-bucket/prefix/ (ends in /)
    artifacts_uri: Cfn       # s3://artifacts-bucket/prefix/ (ends in /)
    model_package_group: Cfn
    training_image: Cfn
    processing_image: Cfn
    security_group_id: Cfn
    subnet_ids: Cfn          # raw: a JSON list of subnet ids
    prepare_script_uri: Cfn | None
    evaluate_script_uri: Cfn
    training_instance_type: Cfn
    training_instance_count: Cfn  # raw
    training_volume_size: Cfn     # raw
    training_max_runtime: Cfn     # raw
    processing_instance_type: Cfn
    processing_volume_size: Cfn   # raw
    processing_max_runtime: Cfn   # raw
    metric_threshold: Cfn         # raw
    approval_status: Cfn
    # With Model Monitor: where its baseline goes (s3://.../, ends in /), and the analyzer.
    baseline_uri: Cfn | None = None
    analyzer_image: Cfn | None = None
    # With spot training: the longest wait for capacity and run together (raw).
    training_max_wait: Cfn | None = None
    # With model quality monitoring: Model Monitor's problem type of the model.
    quality_problem_type: str | None = None
    # With bias drift monitoring: Clarify's image and the baseline's analysis configuration.
    clarify_image: Cfn | None = None
    bias_config_uri: Cfn | None = None
    # With feature attribution drift monitoring: the SHAP baseline's analysis configuration
    # (Clarify's image is clarify_image).
    explainability_config_uri: Cfn | None = None

    @property
    def predictions(self) -> bool:
        """Whether evaluation writes its predictions for a model baseline."""
        return (self.quality_problem_type is not None or self.bias_config_uri is not None
                or self.explainability_config_uri is not None)


# --- expressions -----------------------------------------------------------------------------

def get(path: str) -> dict:
    """A value known while the pipeline runs: `Parameters.X`, `Steps.Y.Z`, `Execution.X`."""
    return {"Get": path}


def parameter(name: str) -> dict:
    return get(f"Parameters.{name}")


def join(on: str, *values: Any) -> dict:
    return {"Std:Join": {"On": on, "Values": list(values)}}


def json_get(step: str, property_file: str, path: str) -> dict:
    return {"Std:JsonGet": {"PropertyFile": get(f"Steps.{step}.PropertyFiles.{property_file}"),
                            "Path": path}}


def processing_output_uri(step: str, output: str) -> dict:
    return get(f"Steps.{step}.ProcessingOutputConfig.Outputs['{output}'].S3Output.S3Uri")


def execution_folder(refs: Refs, folder: str, *below: str) -> dict:
    """s3://<artifacts>/<prefix><folder>/<execution id>[/below...]: one folder per run."""
    root = Cfn(refs.artifacts_uri.pattern + folder)
    return join("/", root, get("Execution.PipelineExecutionId"), *below)


# --- the definition --------------------------------------------------------------------------

@dataclass(frozen=True)
class Columns:
    """What the model learns: the record schema's label and features (record_schema.py)."""

    label: str
    features: tuple[str, ...]


def definition(config: TrainingConfig, refs: Refs, columns: Columns,
               input_format: str = "parquet") -> dict:
    """The pipeline; `input_format` is what the prepare step reads (TrainingConfig.input_format
    resolves it against the etl stage)."""
    steps = []
    if config.prepare.enabled:
        steps.append(prepare_step(config, refs, columns, input_format))
    steps += [tuning_step(config, refs) if config.tuning.enabled else training_step(config, refs),
              evaluation_step(config, refs), condition_step(config, refs)]
    return {
        "Version": VERSION,
        "Metadata": {},
        "Parameters": parameters(refs),
        "Steps": steps,
    }


def parameters(refs: Refs) -> list[dict]:
    return [
        {"Name": INPUT_DATA_URI, "Type": "String", "DefaultValue": refs.input_uri},
        {"Name": TRAINING_INSTANCE_TYPE, "Type": "String",
         "DefaultValue": refs.training_instance_type},
        {"Name": TRAINING_INSTANCE_COUNT, "Type": "Integer",
         "DefaultValue": refs.training_instance_count},
        {"Name": PROCESSING_INSTANCE_TYPE, "Type": "String",
         "DefaultValue": refs.processing_instance_type},
        {"Name": METRIC_THRESHOLD, "Type": "Float", "DefaultValue": refs.metric_threshold},
        {"Name": MODEL_APPROVAL_STATUS, "Type": "String", "DefaultValue": refs.approval_status},
    ]


def prepare_step(config: TrainingConfig, refs: Refs, columns: Columns, input_format: str) -> dict:
    prepare = config.prepare
    arguments = ["--input-format", input_format,
                 "--label-column", columns.label,
                 "--feature-columns", ",".join(columns.features),
                 "--validation-fraction", repr(prepare.validation_fraction),
                 "--test-fraction", repr(prepare.test_fraction)]
    assert refs.prepare_script_uri is not None
    return {
        "Name": PREPARE,
        "Type": "Processing",
        "Arguments": processing_job(
            config, refs, "prepare.py", arguments,
            inputs=[processing_input("data", parameter(INPUT_DATA_URI),
                                     f"{PROCESSING_ROOT}/input/data"),
                    processing_input("code", refs.prepare_script_uri, CODE_DIR)],
            outputs=[processing_output(split, execution_folder(refs, "data", split),
                                       f"{PROCESSING_ROOT}/output/{split}")
                     for split in ("train", "validation", "test")
                     + ((BASELINE_DATA,) if refs.baseline_uri else ())]),
    }


def training_job(config: TrainingConfig, refs: Refs) -> dict:
    """What a training job runs, for the single TrainModel job and every job a tuning job
    starts alike (CreateTrainingJob, and HyperParameterTrainingJobDefinition, share these)."""
    return {
        "AlgorithmSpecification": {"TrainingImage": refs.training_image,
                                   "TrainingInputMode": "File"},
        "InputDataConfig": [channel(name, data_location(config, refs, name))
                            for name in ("train", "validation")],
        "OutputDataConfig": {"S3OutputPath": models_uri(refs), "KmsKeyId": refs.key_arn},
        "ResourceConfig": {
            "InstanceType": parameter(TRAINING_INSTANCE_TYPE),
            "InstanceCount": parameter(TRAINING_INSTANCE_COUNT),
            "VolumeSizeInGB": refs.training_volume_size,
            "VolumeKmsKeyId": refs.key_arn,
        },
        "RoleArn": refs.role_arn,
        "StoppingCondition": stopping_condition(config, refs),
        "VpcConfig": vpc_config(refs),
        "EnableNetworkIsolation": config.network_isolation,
        "EnableInterContainerTrafficEncryption": config.inter_container_encryption,
    }


def with_hyperparameters(job: dict, key: str, values: dict) -> dict:
    """`job` with the hyperparameters right after the algorithm, where a reader looks."""
    first, *rest = job.items()
    return dict([first, (key, values), *rest])


def models_uri(refs: Refs) -> Cfn:
    """Where training jobs write models: <this>/<training job name>/output/model.tar.gz."""
    return Cfn(refs.artifacts_uri.pattern + "models")


def training_step(config: TrainingConfig, refs: Refs) -> dict:
    return {
        "Name": TRAIN,
        "Type": "Training",
        "Arguments": {
            **with_hyperparameters(training_job(config, refs), "HyperParameters",
                                   dict(config.hyperparameters)),
            # Debugger's profiler would write outside the artifacts prefix; not needed here.
            "ProfilerConfig": {"DisableProfiler": True},
            **spot_training(config, refs),
        },
    }


def tuning_step(config: TrainingConfig, refs: Refs) -> dict:
    """CreateHyperParameterTuningJob's arguments (AWS: "Configure and Launch a Hyperparameter
    Tuning Job"): the ranges, the objective XGBoost reports on the validation channel, the job
    limits, and the training job definition the single job would use, with the tuned
    hyperparameters left out of the fixed ones."""
    tuning = config.tuning
    metric, direction = tuning.objective(config.hyperparameters)
    ranges: dict[str, list] = {"IntegerParameterRanges": [], "ContinuousParameterRanges": [],
                               "CategoricalParameterRanges": []}
    for name, found in sorted(tuning.ranges.items()):
        if found.values is not None:
            ranges["CategoricalParameterRanges"].append({"Name": name,
                                                         "Values": list(found.values)})
        elif found.integer:
            ranges["IntegerParameterRanges"].append({
                "Name": name, "MinValue": str(int(found.min)), "MaxValue": str(int(found.max)),
                "ScalingType": found.scaling})
        else:
            ranges["ContinuousParameterRanges"].append({
                "Name": name, "MinValue": repr(found.min), "MaxValue": repr(found.max),
                "ScalingType": found.scaling})
    return {
        "Name": TUNE,
        "Type": "Tuning",
        "Arguments": {
            "HyperParameterTuningJobConfig": {
                "Strategy": tuning.strategy,
                "HyperParameterTuningJobObjective": {"Type": direction, "MetricName": metric},
                "ResourceLimits": {"MaxNumberOfTrainingJobs": tuning.max_jobs,
                                   "MaxParallelTrainingJobs": tuning.max_parallel_jobs},
                "ParameterRanges": {kind: found for kind, found in ranges.items() if found},
                "TrainingJobEarlyStoppingType": "Auto" if tuning.early_stopping else "Off",
            },
            "TrainingJobDefinition": with_hyperparameters(
                training_job(config, refs), "StaticHyperParameters",
                {k: v for k, v in config.hyperparameters.items() if k not in tuning.ranges}),
        },
    }


def model_artifacts(config: TrainingConfig, refs: Refs) -> Any:
    """The model archive evaluation reads and registration registers: the training job's, or
    the best tuning job's (its S3OutputPath/<job name>/output/model.tar.gz)."""
    if not config.tuning.enabled:
        return get(f"Steps.{TRAIN}.ModelArtifacts.S3ModelArtifacts")
    return join("/", models_uri(refs), get(f"Steps.{TUNE}.TrainingJobSummaries[0].TrainingJobName"),
                "output/model.tar.gz")


def stopping_condition(config: TrainingConfig, refs: Refs) -> dict:
    condition = {"MaxRuntimeInSeconds": refs.training_max_runtime}
    if config.spot.enabled:
        assert refs.training_max_wait is not None
        condition["MaxWaitTimeInSeconds"] = refs.training_max_wait
    return condition


def spot_training(config: TrainingConfig, refs: Refs) -> dict:
    """Managed spot training (AWS: "Managed Spot Training in Amazon SageMaker AI"): spare
    capacity, and checkpoints SageMaker copies between /opt/ml/checkpoints and S3 so an
    interrupted job resumes ("Checkpoints in Amazon SageMaker AI"). One folder per execution,
    so a run never resumes from another run's model."""
    if not config.spot.enabled:
        return {}
    return {
        "EnableManagedSpotTraining": True,
        # The trailing "/" keeps one execution's folder from matching another's as a prefix.
        "CheckpointConfig": {"S3Uri": execution_folder(refs, "checkpoints", ""),
                             "LocalPath": CHECKPOINT_DIR},
    }


def evaluation_step(config: TrainingConfig, refs: Refs) -> dict:
    model = model_artifacts(config, refs)
    arguments = ["--kind", metric_kind(config.metric)]
    outputs = [processing_output(EVALUATION_OUTPUT, execution_folder(refs, "evaluation"),
                                 f"{PROCESSING_ROOT}/evaluation")]
    if refs.predictions:
        # The test rows with the model's predictions: what the model baselines describe.
        arguments += ["--predictions-dir", PREDICTIONS_DIR]
        outputs.append(processing_output(baselines.PREDICTIONS_OUTPUT,
                                         execution_folder(refs, baselines.PREDICTIONS_OUTPUT),
                                         PREDICTIONS_DIR))
    return {
        "Name": EVALUATE,
        "Type": "Processing",
        "Arguments": processing_job(
            config, refs, "evaluate.py", arguments,
            inputs=[processing_input("model", model, f"{PROCESSING_ROOT}/input/model"),
                    processing_input("test", data_location(config, refs, "test"),
                                     f"{PROCESSING_ROOT}/input/test"),
                    processing_input("code", refs.evaluate_script_uri, CODE_DIR)],
            outputs=outputs),
        "PropertyFiles": [{"PropertyFileName": EVALUATION_REPORT,
                           "OutputName": EVALUATION_OUTPUT,
                           "FilePath": EVALUATION_FILE}],
    }


def condition_step(config: TrainingConfig, refs: Refs) -> dict:
    comparison = ("LessThanOrEqualTo" if config.metric in LOWER_IS_BETTER
                  else "GreaterThanOrEqualTo")
    return {
        "Name": CHECK,
        "Type": "Condition",
        "Arguments": {
            "Conditions": [{
                "Type": comparison,
                "LeftValue": json_get(EVALUATE, EVALUATION_REPORT, metric_path(config)),
                "RightValue": parameter(METRIC_THRESHOLD),
            }],
            "IfSteps": [register_step(config, refs)]
                       + ([baseline_step(config, refs)] if refs.baseline_uri else [])
                       + ([quality_baseline_step(config, refs)]
                          if refs.quality_problem_type else [])
                       + ([bias_baseline_step(config, refs)] if refs.bias_config_uri else [])
                       + (explainability_baseline_steps(config, refs)
                          if refs.explainability_config_uri else []),
            "ElseSteps": [{
                "Name": FAIL,
                "Type": "Fail",
                "Arguments": {"ErrorMessage": join(
                    " ", f"{config.metric} missed the registration threshold",
                    parameter(METRIC_THRESHOLD))},
            }],
        },
    }


def register_step(config: TrainingConfig, refs: Refs) -> dict:
    return {
        "Name": REGISTER,
        "Type": "RegisterModel",
        "Arguments": {
            "ModelPackageGroupName": refs.model_package_group,
            "ModelPackageDescription": join(
                " ", "Trained by pipeline execution", get("Execution.PipelineExecutionArn")),
            "ModelApprovalStatus": parameter(MODEL_APPROVAL_STATUS),
            "InferenceSpecification": {
                "Containers": [{
                    "Image": refs.training_image,
                    "ModelDataUrl": model_artifacts(config, refs),
                }],
                "SupportedContentTypes": [CONTENT_TYPE],
                "SupportedResponseMIMETypes": [CONTENT_TYPE],
            },
            "ModelMetrics": {"ModelQuality": {"Statistics": {
                "ContentType": "application/json",
                "S3Uri": join("/", processing_output_uri(EVALUATE, EVALUATION_OUTPUT),
                              EVALUATION_FILE),
            }}},
        },
    }


def baseline_step(config: TrainingConfig, refs: Refs) -> dict:
    """Model Monitor's baselining job (what the SageMaker SDK's suggest_baseline starts): the
    analyzer image, told by its environment what to read and where to write."""
    assert refs.baseline_uri is not None and refs.analyzer_image is not None
    dataset = f"{PROCESSING_ROOT}/input/baseline_dataset_input"
    output = f"{PROCESSING_ROOT}/output"
    return {
        "Name": BASELINE,
        "Type": "Processing",
        "Arguments": processing_arguments(
            config, refs,
            {"ImageUri": refs.analyzer_image},
            environment={
                "dataset_format": json.dumps({"csv": {"header": False}}),
                "dataset_source": dataset,
                "output_path": output,
                "publish_cloudwatch_metrics": "Disabled",
            },
            inputs=[processing_input("baseline_dataset_input",
                                     data_location(config, refs, BASELINE_DATA), dataset)],
            outputs=[processing_output("monitoring_output", refs.baseline_uri, output)]),
    }


def predictions(folder: str) -> dict:
    """One folder of EvaluateModel's predictions output (model_monitor_baselines.py)."""
    return join("", processing_output_uri(EVALUATE, baselines.PREDICTIONS_OUTPUT),
                "/" + folder)


def quality_baseline_step(config: TrainingConfig, refs: Refs) -> dict:
    """Model Monitor's model quality baselining job (what the SageMaker SDK's
    ModelQualityMonitor.suggest_baseline starts): the analyzer on the test rows' labels and
    predictions, writing constraints.json where the model quality schedule reads it."""
    assert refs.baseline_uri is not None and refs.analyzer_image is not None
    problem_type = refs.quality_problem_type
    assert problem_type is not None
    dataset = f"{PROCESSING_ROOT}/input/baseline_dataset_input"
    output = f"{PROCESSING_ROOT}/output"
    environment = {
        "analysis_type": "MODEL_QUALITY",
        "dataset_format": json.dumps({"csv": {"header": True}}),
        "dataset_source": dataset,
        "ground_truth_attribute": baselines.LABEL_COLUMN,
        "inference_attribute": baselines.PREDICTION_COLUMN,
        "output_path": output,
        "problem_type": problem_type,
        "publish_cloudwatch_metrics": "Disabled",
    }
    if baselines.classifies(problem_type):
        environment.update(probability_attribute=baselines.PROBABILITY_COLUMN,
                           probability_threshold_attribute=str(baselines.PROBABILITY_THRESHOLD))
    return {
        "Name": QUALITY_BASELINE,
        "Type": "Processing",
        "Arguments": processing_arguments(
            config, refs, {"ImageUri": refs.analyzer_image}, environment=environment,
            inputs=[processing_input("baseline_dataset_input",
                                     predictions(baselines.QUALITY_DATA), dataset)],
            outputs=[processing_output("monitoring_output",
                                       Cfn(refs.baseline_uri.pattern + baselines.QUALITY_FOLDER),
                                       output)]),
    }


def bias_baseline_step(config: TrainingConfig, refs: Refs) -> dict:
    """SageMaker Clarify's post-training bias analysis of the test rows' predictions (what the
    SDK's ModelBiasMonitor.suggest_baseline starts, with the predictions read from the data
    instead of a shadow endpoint): analysis.json, the bias schedule's constraints."""
    assert refs.baseline_uri is not None and refs.clarify_image is not None
    assert refs.bias_config_uri is not None
    return {
        "Name": BIAS_BASELINE,
        "Type": "Processing",
        "Arguments": processing_arguments(
            config, refs, {"ImageUri": refs.clarify_image},
            inputs=[processing_input("analysis_config", refs.bias_config_uri,
                                     baselines.CLARIFY_CONFIG_PATH),
                    processing_input("dataset", predictions(baselines.BIAS_DATA),
                                     baselines.CLARIFY_DATA_PATH)],
            outputs=[processing_output("analysis_result",
                                       Cfn(refs.baseline_uri.pattern + baselines.BIAS_FOLDER),
                                       baselines.CLARIFY_OUTPUT_PATH)]),
    }


def explainability_baseline_steps(config: TrainingConfig, refs: Refs) -> list[dict]:
    """The SHAP baseline (what the SageMaker SDK's ClarifyCheckStep with a
    ModelExplainabilityCheckConfig writes; AWS: "Create a SHAP Baseline for Models in
    Production"): Kernel SHAP calls the model, so a CreateModel step makes a SageMaker model of
    the archive that passed the check, in the jobs' subnets and security group (Clarify applies
    the model's VPC configuration to the shadow endpoint: "Give Amazon SageMaker Clarify Jobs
    Access to Resources in Your Amazon VPC"), and the ClarifyCheck step names it. Clarify's
    output is analysis.json with the global SHAP values: the explainability schedule's
    constraints."""
    assert refs.baseline_uri is not None and refs.clarify_image is not None
    assert refs.explainability_config_uri is not None
    model = {
        "Name": SHADOW_MODEL,
        "Type": "Model",
        # CreateModel's request without its name, which Pipelines chooses.
        "Arguments": {
            "ExecutionRoleArn": refs.role_arn,
            "PrimaryContainer": {"Image": refs.training_image,
                                 "ModelDataUrl": model_artifacts(config, refs)},
            "VpcConfig": vpc_config(refs),
        },
    }
    arguments = processing_arguments(
        config, refs, {"ImageUri": refs.clarify_image},
        inputs=[processing_input("analysis_config", refs.explainability_config_uri,
                                 baselines.CLARIFY_CONFIG_PATH),
                processing_input("dataset", predictions(baselines.BIAS_DATA),
                                 baselines.CLARIFY_DATA_PATH)],
        outputs=[processing_output(
            "analysis_result", Cfn(refs.baseline_uri.pattern + baselines.EXPLAINABILITY_FOLDER),
            baselines.CLARIFY_OUTPUT_PATH)])
    # "The network isolation option of the SageMaker Clarify job must be turned off ... so that
    # the SageMaker Clarify job can communicate with the shadow endpoint" (AWS: "Give Amazon
    # SageMaker Clarify Jobs Access to Resources in Your Amazon VPC"); only this job, which
    # runs AWS's own image on the test rows, in the private subnets like the others.
    arguments["NetworkConfig"]["EnableNetworkIsolation"] = False
    check = {
        "Name": EXPLAINABILITY_BASELINE,
        "Type": "ClarifyCheck",
        "Arguments": arguments,
        "CheckType": "MODEL_EXPLAINABILITY",
        "ModelName": get(f"Steps.{SHADOW_MODEL}.ModelName"),
        # Compute the baseline; comparing with the last one is the monitor's work.
        "SkipCheck": True,
        "RegisterNewBaseline": True,
    }
    return [model, check]


def metric_path(config: TrainingConfig) -> str:
    """Where evaluate.py puts the deciding metric in evaluation.json."""
    return f"{metric_kind(config.metric)}_metrics.{config.metric}.value"


# --- pieces ----------------------------------------------------------------------------------

def data_location(config: TrainingConfig, refs: Refs, split: str) -> Any:
    """Where a split's CSV is: PrepareData's output, or a folder under the input location."""
    if config.prepare.enabled:
        return processing_output_uri(PREPARE, split)
    return join("", parameter(INPUT_DATA_URI), f"{split}/")


def channel(name: str, uri: Any) -> dict:
    return {
        "ChannelName": name,
        "ContentType": CONTENT_TYPE,
        "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": uri,
                                        "S3DataDistributionType": "FullyReplicated"}},
    }


def processing_job(config: TrainingConfig, refs: Refs, script: str, arguments: list[str], *,
                   inputs: list[dict], outputs: list[dict]) -> dict:
    """CreateProcessingJob arguments running one of the shipped scripts."""
    return processing_arguments(config, refs, {
        "ImageUri": refs.processing_image,
        "ContainerEntrypoint": ["python3", f"{CODE_DIR}/{script}"],
        "ContainerArguments": arguments,
    }, inputs=inputs, outputs=outputs)


def processing_arguments(config: TrainingConfig, refs: Refs, app: dict, *, inputs: list[dict],
                         outputs: list[dict], environment: dict | None = None) -> dict:
    """CreateProcessingJob arguments: `app` on one instance of the pipeline's size, as the
    pipeline's role, encrypted with the data key, in the pipeline's network."""
    return {
        "ProcessingResources": {"ClusterConfig": {
            "InstanceType": parameter(PROCESSING_INSTANCE_TYPE),
            # The shipped scripts and the analyzer run on one instance; more would only
            # repeat the work.
            "InstanceCount": 1,
            "VolumeSizeInGB": refs.processing_volume_size,
            "VolumeKmsKeyId": refs.key_arn,
        }},
        "AppSpecification": app,
        **({"Environment": environment} if environment else {}),
        "RoleArn": refs.role_arn,
        "ProcessingInputs": inputs,
        "ProcessingOutputConfig": {"Outputs": outputs, "KmsKeyId": refs.key_arn},
        "StoppingCondition": {"MaxRuntimeInSeconds": refs.processing_max_runtime},
        "NetworkConfig": {
            "EnableInterContainerTrafficEncryption": config.inter_container_encryption,
            "EnableNetworkIsolation": config.network_isolation,
            "VpcConfig": vpc_config(refs),
        },
    }


def processing_input(name: str, uri: Any, local_path: str) -> dict:
    return {"InputName": name, "S3Input": {
        "S3Uri": uri, "LocalPath": local_path, "S3DataType": "S3Prefix", "S3InputMode": "File",
        "S3DataDistributionType": "FullyReplicated"}}


def processing_output(name: str, uri: Any, local_path: str) -> dict:
    return {"OutputName": name, "S3Output": {
        "S3Uri": uri, "LocalPath": local_path, "S3UploadMode": "EndOfJob"}}


def vpc_config(refs: Refs) -> dict:
    return {"SecurityGroupIds": [refs.security_group_id], "Subnets": refs.subnet_ids}


# --- rendering -------------------------------------------------------------------------------

_MARK = "\x00cfn{}\x00"


def sub_body(data: Any) -> str:
    """The definition as the text of an Fn::Sub: JSON with each Cfn placeholder's pattern in
    place, and every `${` of literal text escaped as `${!`."""
    placeholders: list[Cfn] = []

    def walk(value: Any) -> Any:
        if isinstance(value, Cfn):
            placeholders.append(value)
            return _MARK.format(len(placeholders) - 1)
        if isinstance(value, dict):
            return {walk(k): walk(v) for k, v in value.items()}
        if isinstance(value, list):
            return [walk(v) for v in value]
        if isinstance(value, str):
            if "\x00" in value:
                raise ValueError(f"{value!r}: NUL is not allowed in a pipeline definition")
            return value.replace("${", "${!")
        return value

    text = json.dumps(walk(data), indent=1)
    for index, placeholder in enumerate(placeholders):
        marker = json.dumps(_MARK.format(index))
        text = text.replace(marker, placeholder.pattern if placeholder.raw
                            else json.dumps(placeholder.pattern))
    return text
