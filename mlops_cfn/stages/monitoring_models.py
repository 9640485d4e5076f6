"""Model quality, bias drift and feature attribution drift monitors beside data quality
(model_monitor.model_quality, .bias_drift and .feature_attribution_drift; all off by default).

Each is a job definition and a MonitoringSchedule on the endpoint, under the same gate as data
quality's (HasEndpoint: CreateMonitoringSchedule needs the endpoint), run by the same role in the
same subnets and security group, encrypted with the data key, with its reports under its own
folder of reports_prefix. Model quality and bias drift merge the endpoint's captured predictions
with the ground-truth labels you write under ground_truth_prefix, over the window the offsets
give; feature attribution needs no labels. Each compares with the baseline the training pipeline
writes (model_monitor_baselines.py).

- ModelQualityJobDefinition / ModelQualitySchedule: the Model Monitor analyzer, with the
  problem type of the model the training stage builds; publishes its metrics to
  aws/sagemaker/Endpoints/model-metrics (dimensions Endpoint, MonitoringSchedule).
- ModelBiasJobDefinition / BiasDriftSchedule: SageMaker Clarify, with its analysis
  configuration shipped as an asset; publishes `bias_metric_<name>` to
  aws/sagemaker/Endpoints/bias-metrics (dimensions Endpoint, MonitoringSchedule, BiasStage,
  Label, LabelValue, Facet, FacetValue).
- ModelExplainabilityJobDefinition / FeatureAttributionSchedule: SageMaker Clarify's Kernel
  SHAP over the captured requests, calling a shadow endpoint of the endpoint's model (its
  analysis configuration shipped as an asset, naming no model: "predictor" gives the shadow
  endpoint's size); a run whose feature ranking moved (nDCG below 0.9) has violations;
  publishes `feature_<name>` to aws/sagemaker/Endpoints/explainability-metrics (dimensions
  Endpoint, MonitoringSchedule, ExplainabilityMethod, Label, ValueType).
The alarms on those metrics are watches (monitoring_metrics.py); runs with violations count
with data quality's (the schedules share the violation and failure rules).
"""

from dataclasses import dataclass
from typing import Any

import awacs.sagemaker
from awacs.aws import Allow, Statement
from troposphere import FindInMap, GetAtt, Ref, Sub, sagemaker

from .. import policies

from .. import naming
from ..config import PipelineConfig
from ..outputs import ARTIFACTS_BUCKET_NAME, ENDPOINT_NAME
from ..assets import Asset
from ..stage import StageBuilder
from . import model_monitor_baselines as baselines
from .image_registries import CLARIFY, account_in_region
from .model_monitor_image import ANALYZER_IMAGE, analyzer_account
from .monitoring_gates import Gate, conditionally
from .monitoring_metrics import (BIAS_NAMESPACE, BIAS_SCHEDULE_NAME,
                                 EXPLAINABILITY_NAMESPACE, EXPLAINABILITY_SCHEDULE_NAME,
                                 QUALITY_NAMESPACE, QUALITY_SCHEDULE_NAME)

__all__ = ["BIAS_NAMESPACE", "EXPLAINABILITY_NAMESPACE", "QUALITY_NAMESPACE", "add_bias_drift",
           "add_feature_attribution", "add_model_quality"]

QUALITY_SCHEDULE = "ModelQualitySchedule"
BIAS_SCHEDULE = "BiasDriftSchedule"
EXPLAINABILITY_SCHEDULE = "FeatureAttributionSchedule"
BIAS_CONFIG_FILE = "bias_analysis_config.json"
EXPLAINABILITY_CONFIG_FILE = "explainability_analysis_config.json"
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


def explainability_config_asset(b: StageBuilder, config: PipelineConfig) -> Asset:
    return b.asset(EXPLAINABILITY_CONFIG_FILE,
                   baselines.as_file(baselines.explainability_monitor_analysis(config)))


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


def add_feature_attribution(b: StageBuilder, config: PipelineConfig, shared: Shared, gate: Gate,
                            analysis: Asset) -> sagemaker.MonitoringSchedule:
    """AWS: "Schedule Feature Attribute Drift Monitoring Jobs" (an endpoint input, CloudWatch
    metrics on) and "Configure Parameters to Monitor Attribution Drift" (the ConfigUri's
    contents; the endpoint input's ProbabilityAttribute or InferenceAttribute picks the score
    out of the model's CSV answer, as for the other monitors)."""
    monitoring = config.stages.monitoring
    monitor = monitoring.model_monitor
    score = prediction_attributes(monitoring.problem_type(config))
    # Kernel SHAP explains the score itself: the probability of a classifier (its threshold is
    # for turning scores into labels, which SHAP does not do), the value of a regression.
    score.pop("ProbabilityThresholdAttribute", None)
    definition = b.add(conditionally(b, sagemaker.ModelExplainabilityJobDefinition(
        "ModelExplainabilityJobDefinition",
        ModelExplainabilityAppSpecification=sagemaker.ModelExplainabilityAppSpecification(
            ConfigUri=analysis.s3_uri,
            ImageUri=Sub(baselines.CLARIFY_IMAGE, Account=account_in_region(b, CLARIFY)),
            Environment={"publish_cloudwatch_metrics": "Enabled"},
        ),
        ModelExplainabilityBaselineConfig=sagemaker.ModelExplainabilityBaselineConfig(
            ConstraintsResource=sagemaker.ConstraintsResource(S3Uri=artifacts_uri(
                monitor.baseline_prefix + baselines.EXPLAINABILITY_FOLDER
                + baselines.EXPLAINABILITY_CONSTRAINTS))),
        ModelExplainabilityJobInput=sagemaker.ModelExplainabilityJobInput(
            EndpointInput=sagemaker.ModelExplainabilityEndpointInput(
                EndpointName=b.input(ENDPOINT_NAME),
                LocalPath=INPUT_PATH,
                S3DataDistributionType="FullyReplicated",
                S3InputMode="File",
                **score,
            ),
        ),
        ModelExplainabilityJobOutputConfig=output_config(
            shared, monitor.reports_prefix + baselines.EXPLAINABILITY_REPORTS),
        JobResources=shared.resources,
        NetworkConfig=shared.network,
        RoleArn=GetAtt(shared.role, "Arn"),
        StoppingCondition=sagemaker.StoppingCondition(MaxRuntimeInSeconds=b.setting(
            monitor.feature_attribution_drift, "max_runtime_seconds")),
    ), gate))
    return schedule(b, shared, monitor, EXPLAINABILITY_SCHEDULE, EXPLAINABILITY_SCHEDULE_NAME,
                    "ModelExplainability", definition, gate)


# The shadow endpoint (and its configuration) a Clarify job creates to call the model: named
# `sagemaker-clarify-endpoint-...` (the error AWS quotes in "Give Amazon SageMaker Clarify Jobs
# Access to Resources in Your Amazon VPC").
SHADOW_ENDPOINT_PREFIX = "sagemaker-clarify-"


def shadow_endpoint_statements() -> list[Statement]:
    """What a Clarify job that computes SHAP values does with its shadow endpoint, scoped to
    the names Clarify gives it."""
    endpoint = policies.arn("sagemaker", f"endpoint/{SHADOW_ENDPOINT_PREFIX}*")
    endpoint_config = policies.arn("sagemaker", f"endpoint-config/{SHADOW_ENDPOINT_PREFIX}*")
    return [
        # AWS: "Give Amazon SageMaker Clarify Jobs Access to Resources in Your Amazon VPC" (the
        # job "needs to call the Amazon SageMaker API service to manipulate the shadow
        # endpoint"): create it from the model, wait for it, delete it; "Amazon SageMaker AI
        # API Permissions: Actions, Permissions, and Resources Reference" scopes each to the
        # endpoint or endpoint configuration (AddTags: tags given on creation).
        Statement(
            Effect=Allow,
            Action=[awacs.sagemaker.CreateEndpointConfig, awacs.sagemaker.CreateEndpoint,
                    awacs.sagemaker.DescribeEndpointConfig, awacs.sagemaker.DescribeEndpoint,
                    awacs.sagemaker.DeleteEndpoint, awacs.sagemaker.DeleteEndpointConfig,
                    awacs.sagemaker.AddTags],
            Resource=[endpoint, endpoint_config],
        ),
        # AWS: same page ("the SageMaker AI runtime service, which routes the invocations to
        # the shadow endpoint").
        Statement(Effect=Allow, Action=[awacs.sagemaker.InvokeEndpoint], Resource=[endpoint]),
    ]
