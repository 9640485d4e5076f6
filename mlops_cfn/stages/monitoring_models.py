"""Model quality and bias drift monitors beside data quality (model_monitor.model_quality and
model_monitor.bias_drift; both off by default).

Each is a job definition and a MonitoringSchedule on the endpoint, under the same gate as data
quality's (HasEndpoint: CreateMonitoringSchedule needs the endpoint), run by the same role in the
same subnets and security group, encrypted with the data key, with its reports under its own
folder of reports_prefix. Both merge the endpoint's captured predictions with the ground-truth
labels you write under ground_truth_prefix, over the window the offsets give, and compare the
result with the baseline the training pipeline writes (model_monitor_baselines.py).

- ModelQualityJobDefinition / ModelQualitySchedule: the Model Monitor analyzer, with the
  problem type of the model the training stage builds; publishes its metrics to
  aws/sagemaker/Endpoints/model-metrics (dimensions Endpoint, MonitoringSchedule).
- ModelBiasJobDefinition / BiasDriftSchedule: SageMaker Clarify, with its analysis
  configuration shipped as an asset; publishes `bias_metric_<name>` to
  aws/sagemaker/Endpoints/bias-metrics (dimensions Endpoint, MonitoringSchedule, BiasStage,
  Label, LabelValue, Facet, FacetValue).
The alarms on those metrics are watches (monitoring_metrics.py); runs with violations count
with data quality's (the schedules share the violation and failure rules).
"""

from dataclasses import dataclass
from typing import Any

from troposphere import FindInMap, GetAtt, Ref, Sub, sagemaker

from .. import naming
from ..config import PipelineConfig
from ..outputs import ARTIFACTS_BUCKET_NAME, ENDPOINT_NAME
from ..assets import Asset
from ..stage import StageBuilder
from . import model_monitor_baselines as baselines
from .image_registries import CLARIFY, account_in_region
from .model_monitor_image import ANALYZER_IMAGE, analyzer_account
from .monitoring_gates import Gate, conditionally
from .monitoring_metrics import (BIAS_NAMESPACE, BIAS_SCHEDULE_NAME, QUALITY_NAMESPACE,
                                 QUALITY_SCHEDULE_NAME)

__all__ = ["BIAS_NAMESPACE", "QUALITY_NAMESPACE", "add_bias_drift", "add_model_quality"]

QUALITY_SCHEDULE = "ModelQualitySchedule"
BIAS_SCHEDULE = "BiasDriftSchedule"
BIAS_CONFIG_FILE = "bias_analysis_config.json"
INPUT_PATH = "/opt/ml/processing/input/endpoint"
OUTPUT_PATH = "/opt/ml/processing/output"


@dataclass(frozen=True)
class Shared:
    """What every monitoring job definition of the stack has alike (monitoring.py builds it)."""

    role: Any
    resources: sagemaker.MonitoringResources
    network: sagemaker.NetworkConfig
    key: Ref
    schedules_mapping: str


def artifacts_uri(path: str) -> Sub:
    return Sub(f"s3://${{{ARTIFACTS_BUCKET_NAME.name}}}/{path}")


def bias_config_asset(b: StageBuilder, config: PipelineConfig) -> Asset:
    return b.asset(BIAS_CONFIG_FILE,
                   baselines.as_file(baselines.bias_monitor_analysis(config)))


def output_config(shared: Shared, reports: str) -> sagemaker.MonitoringOutputConfig:
    return sagemaker.MonitoringOutputConfig(
        KmsKeyId=shared.key,
        MonitoringOutputs=[sagemaker.MonitoringOutput(S3Output=sagemaker.S3Output(
            LocalPath=OUTPUT_PATH, S3Uri=artifacts_uri(reports), S3UploadMode="EndOfJob"))],
    )


def prediction_attributes(problem_type: str) -> dict:
    """Where the answer is in the endpoint's CSV output: XGBoost's binary:logistic answers one
    probability (a class above the threshold), a regression one value."""
    if baselines.classifies(problem_type):
        return {"ProbabilityAttribute": "0",
                "ProbabilityThresholdAttribute": baselines.PROBABILITY_THRESHOLD}
    return {"InferenceAttribute": "0"}


def window(b: StageBuilder, monitor: Any) -> dict:
    return {"StartTimeOffset": b.setting(monitor, "start_time_offset"),
            "EndTimeOffset": b.setting(monitor, "end_time_offset")}


def schedule(b: StageBuilder, shared: Shared, monitor: Any, title: str, name: str,
             kind: str, definition: Any, gate: Gate) -> sagemaker.MonitoringSchedule:
    return b.add(conditionally(b, sagemaker.MonitoringSchedule(
        title,
        MonitoringScheduleName=b.physical_name(naming.SAGEMAKER, name),
        EndpointName=Ref(ENDPOINT_NAME.name),
        MonitoringScheduleConfig=sagemaker.MonitoringScheduleConfig(
            MonitoringJobDefinitionName=GetAtt(definition, "JobDefinitionName"),
            MonitoringType=kind,
            ScheduleConfig=sagemaker.ScheduleConfig(ScheduleExpression=FindInMap(
                shared.schedules_mapping, b.setting(monitor, "schedule"), "Expression")),
        ),
    ), gate))


def add_model_quality(b: StageBuilder, config: PipelineConfig, shared: Shared,
                      gate: Gate) -> sagemaker.MonitoringSchedule:
    monitoring = config.stages.monitoring
    monitor = monitoring.model_monitor
    problem_type = monitoring.problem_type(config)
    definition = b.add(conditionally(b, sagemaker.ModelQualityJobDefinition(
        "ModelQualityJobDefinition",
        ModelQualityAppSpecification=sagemaker.ModelQualityAppSpecification(
            ImageUri=Sub(ANALYZER_IMAGE, Account=analyzer_account(b, monitor)),
            ProblemType=problem_type,
            Environment={"publish_cloudwatch_metrics": "Enabled"},
        ),
        ModelQualityBaselineConfig=sagemaker.ModelQualityBaselineConfig(
            ConstraintsResource=sagemaker.ConstraintsResource(S3Uri=artifacts_uri(
                monitor.baseline_prefix + baselines.QUALITY_FOLDER
                + baselines.QUALITY_CONSTRAINTS))),
        ModelQualityJobInput=sagemaker.ModelQualityJobInput(
            EndpointInput=sagemaker.ModelQualityEndpointInput(
                EndpointName=b.input(ENDPOINT_NAME),
                LocalPath=INPUT_PATH,
                S3DataDistributionType="FullyReplicated",
                S3InputMode="File",
                **prediction_attributes(problem_type),
                **window(b, monitor),
            ),
            GroundTruthS3Input=sagemaker.MonitoringGroundTruthS3Input(
                S3Uri=artifacts_uri(monitor.ground_truth_prefix)),
        ),
        ModelQualityJobOutputConfig=output_config(
            shared, monitor.reports_prefix + baselines.QUALITY_REPORTS),
        JobResources=shared.resources,
        NetworkConfig=shared.network,
        RoleArn=GetAtt(shared.role, "Arn"),
        StoppingCondition=sagemaker.StoppingCondition(
            MaxRuntimeInSeconds=b.setting(monitor.model_quality, "max_runtime_seconds")),
    ), gate))
    return schedule(b, shared, monitor, QUALITY_SCHEDULE, QUALITY_SCHEDULE_NAME, "ModelQuality",
                    definition, gate)


def add_bias_drift(b: StageBuilder, config: PipelineConfig, shared: Shared, gate: Gate,
                   analysis: Asset) -> sagemaker.MonitoringSchedule:
    monitoring = config.stages.monitoring
    monitor = monitoring.model_monitor
    definition = b.add(conditionally(b, sagemaker.ModelBiasJobDefinition(
        "ModelBiasJobDefinition",
        ModelBiasAppSpecification=sagemaker.ModelBiasAppSpecification(
            ConfigUri=analysis.s3_uri,
            ImageUri=Sub(baselines.CLARIFY_IMAGE, Account=account_in_region(b, CLARIFY)),
            Environment={"publish_cloudwatch_metrics": "Enabled"},
        ),
        ModelBiasBaselineConfig=sagemaker.ModelBiasBaselineConfig(
            ConstraintsResource=sagemaker.ConstraintsResource(S3Uri=artifacts_uri(
                monitor.baseline_prefix + baselines.BIAS_FOLDER + baselines.BIAS_CONSTRAINTS))),
        ModelBiasJobInput=sagemaker.ModelBiasJobInput(
            EndpointInput=sagemaker.ModelBiasEndpointInput(
                EndpointName=b.input(ENDPOINT_NAME),
                LocalPath=INPUT_PATH,
                S3DataDistributionType="FullyReplicated",
                S3InputMode="File",
                **prediction_attributes(monitoring.problem_type(config)),
                **window(b, monitor),
            ),
            GroundTruthS3Input=sagemaker.MonitoringGroundTruthS3Input(
                S3Uri=artifacts_uri(monitor.ground_truth_prefix)),
        ),
        ModelBiasJobOutputConfig=output_config(
            shared, monitor.reports_prefix + baselines.BIAS_REPORTS),
        JobResources=shared.resources,
        NetworkConfig=shared.network,
        RoleArn=GetAtt(shared.role, "Arn"),
        StoppingCondition=sagemaker.StoppingCondition(
            MaxRuntimeInSeconds=b.setting(monitor.bias_drift, "max_runtime_seconds")),
    ), gate))
    return schedule(b, shared, monitor, BIAS_SCHEDULE, BIAS_SCHEDULE_NAME, "ModelBias",
                    definition, gate)
