"""What the monitoring stage watches: the one list both the alarms and the dashboard come from.

Each `Watch` is one CloudWatch metric of one stage. The stage draws a dashboard widget for every
watch that applies to the config (`watches`), and creates an alarm for every watch with a
threshold. So an alarm never exists without its graph, a graph never without the stage it shows,
and adding a metric is one entry here.

Dimension values come from the producing stage's outputs (`Wire`) or from a resource of the
monitoring stack itself (`Local`, e.g. an EventBridge rule whose matches are counted).
"""

from dataclasses import dataclass

from .. import naming
from ..config import PipelineConfig
from ..config.model_monitors import QUALITY_ERRORS
from ..config.monitoring import FARGATE, SAGEMAKER, serves_with
from ..outputs import (CONSUMER_FAILURE_QUEUE_NAME, CONSUMER_FUNCTION_NAME, DELIVERY_STREAM_NAME,
                       EC2_CONSUMER_GROUP_NAME, ECS_CLUSTER_NAME, ECS_SERVICE_NAME, ENDPOINT_NAME,
                       LOAD_BALANCER_FULL_NAME,
                       STREAM_NAME, TARGET_GROUP_FULL_NAME, Wire)


# Logical ids of monitoring resources that watches refer to.
ETL_FAILURE_RULE = "EtlFailureRule"
EMR_CONSUMER_FAILURE_RULE = "EmrConsumerFailureRule"
MONITOR_VIOLATION_RULE = "MonitorViolationRule"
MONITOR_FAILURE_RULE = "MonitorFailureRule"
RETRAIN_FUNCTION = "RetrainFunction"

PERIOD_SECONDS = 300

# Model quality and bias drift schedules (monitoring_models.py): their names' purpose, and the
# namespaces their runs publish to for a real-time endpoint ("Model Quality CloudWatch Metrics",
# "CloudWatch Metrics for Bias Drift Analysis", SageMaker Developer Guide).
QUALITY_SCHEDULE_NAME = "model-quality"
BIAS_SCHEDULE_NAME = "bias-drift"
QUALITY_NAMESPACE = "aws/sagemaker/Endpoints/model-metrics"
BIAS_NAMESPACE = "aws/sagemaker/Endpoints/bias-metrics"
# Clarify's bias metrics carry these dimensions beside Endpoint and MonitoringSchedule, with
# values from the analysis configuration; the alarm takes the worst over all of them.
BIAS_DIMENSIONS = ("BiasStage", "Label", "LabelValue", "Facet", "FacetValue")
# Feature attribution drift ("CloudWatch Metrics for Feature Attribution Drift Analysis"):
# `feature_<name>`, the global SHAP value of each feature, beside ExpectedValue, with these
# dimensions beside Endpoint and MonitoringSchedule. ValueType tells the two apart, and the
# Label is Clarify's placeholder (label0) without label_headers.
EXPLAINABILITY_SCHEDULE_NAME = "feature-attribution"
EXPLAINABILITY_NAMESPACE = "aws/sagemaker/Endpoints/explainability-metrics"
EXPLAINABILITY_DIMENSIONS = ("ExplainabilityMethod", "Label", "ValueType")


@dataclass(frozen=True)
class Local:
    """A resource of the monitoring stack; its Ref is the dimension value."""

    logical_id: str


@dataclass(frozen=True)
class Named:
    """A fixed physical name of this stack's, as Fn::Sub text: a dimension value no Ref gives
    (a monitoring schedule's Ref is its ARN; its metrics name it by name)."""

    text: str


Source = Wire | Local | Named


@dataclass(frozen=True)
class Watch:
    key: str  # CamelCase; the alarm is `<key>Alarm`
    stage: str  # the stage watched: the dashboard row
    title: str
    namespace: str
    metric: str
    statistic: str  # Average, Maximum, Minimum or Sum
    dimensions: tuple[tuple[str, Source], ...]
    # AlarmThresholds field the alarm compares with; None draws the metric without an alarm
    # (an EventBridge rule already notifies for each match).
    threshold: str | None = None
    comparison: str = "GreaterThanThreshold"
    # A level (latency, age, utilisation) alarms over the configured evaluation periods; a count
    # of failures alarms on the last period alone, since any burst of errors matters.
    level: bool = False
    # Dimensions aggregated over with a Metrics Insights query, for values no stage offers
    # (an endpoint's variant names).
    across: tuple[str, ...] = ()
    # Part of the composite "serving degraded" alarm, which notifies in its place.
    serving: bool = False
    # An alarm that starts the training pipeline (see data/retrain.py).
    retrain: bool = False

    @property
    def alarm_id(self) -> str:
        return f"{self.key}Alarm"

    @property
    def has_alarm(self) -> bool:
        return self.threshold is not None


def _events_matched(key: str, stage: str, title: str, rule: str, threshold: str | None = None,
                    retrain: bool = False) -> Watch:
    """Matches of one of this stack's EventBridge rules, as EventBridge counts them."""
    return Watch(key, stage, title, "AWS/Events", "TriggeredRules", "Sum",
                 (("RuleName", Local(rule)),), threshold, retrain=retrain)


STREAM = (
    Watch("StreamIteratorAge", "ingestion", "Ingest stream: age of the oldest unread record (ms)",
          "AWS/Kinesis", "GetRecords.IteratorAgeMilliseconds", "Maximum",
          (("StreamName", STREAM_NAME),), "stream_iterator_age_ms", level=True),
    Watch("StreamWriteThrottles", "ingestion", "Ingest stream: throttled writes",
          "AWS/Kinesis", "WriteProvisionedThroughputExceeded", "Sum",
          (("StreamName", STREAM_NAME),), "stream_write_throttles"),
    Watch("DeliveryFreshness", "ingestion", "Firehose: age of the oldest record not in S3 (s)",
          "AWS/Firehose", "DeliveryToS3.DataFreshness", "Maximum",
          (("DeliveryStreamName", DELIVERY_STREAM_NAME),), "delivery_freshness_seconds",
          level=True),
    Watch("DeliverySuccess", "ingestion", "Firehose: share of successful S3 deliveries",
          "AWS/Firehose", "DeliveryToS3.Success", "Average",
          (("DeliveryStreamName", DELIVERY_STREAM_NAME),), "delivery_success_ratio",
          comparison="LessThanThreshold", level=True),
)
CONSUMER = (
    Watch("ConsumerErrors", "ingestion", "Consumer Lambda: errors",
          "AWS/Lambda", "Errors", "Sum",
          (("FunctionName", CONSUMER_FUNCTION_NAME),), "function_errors"),
    Watch("ConsumerFailures", "ingestion", "Consumer: batches given up on (failure queue)",
          "AWS/SQS", "ApproximateNumberOfMessagesVisible", "Maximum",
          (("QueueName", CONSUMER_FAILURE_QUEUE_NAME),), "failure_queue_messages"),
)
# The EMR consumer's health: its failed job runs, as the rule that notifies of each counts them.
# How far it lags behind the stream is the stream's iterator age (STREAM), which covers every
# consumer reading with GetRecords, as its connector does.
EMR_CONSUMER = (
    _events_matched("EmrConsumerFailedRuns", "ingestion", "EMR consumer: job runs failed",
                    EMR_CONSUMER_FAILURE_RULE),
)

# The EC2 consumer (KCL on an Auto Scaling group): its lag is the stream's iterator age above,
# which its scaling follows; these show whether it runs. The group's metrics are on
# (MetricsCollection). KCL's own metrics land in a namespace named after the application,
# which includes the environment, so the stream's metric stands for them here.
_GROUP = (("AutoScalingGroupName", EC2_CONSUMER_GROUP_NAME),)
EC2_CONSUMER = (
    Watch("Ec2ConsumerInService", "ingestion", "EC2 consumer: instances in service",
          "AWS/AutoScaling", "GroupInServiceInstances", "Minimum", _GROUP,
          "consumer_in_service_instances", comparison="LessThanThreshold", level=True),
    Watch("Ec2ConsumerDesired", "ingestion", "EC2 consumer: instances its scaling asks for",
          "AWS/AutoScaling", "GroupDesiredCapacity", "Maximum", _GROUP),
)
ETL = (
    _events_matched("EtlJobFailures", "etl", "ETL job runs failed or timed out",
                    ETL_FAILURE_RULE),
)
_ENDPOINT = (("EndpointName", ENDPOINT_NAME),)
ENDPOINT = (
    Watch("EndpointModelLatency", "serving", "Endpoint: model latency (microseconds)",
          "AWS/SageMaker", "ModelLatency", "Average", _ENDPOINT,
          "endpoint_model_latency_us", level=True, across=("VariantName",), serving=True),
    Watch("Endpoint4xxErrors", "serving", "Endpoint: 4XX invocation errors",
          "AWS/SageMaker", "Invocation4XXErrors", "Sum", _ENDPOINT,
          "endpoint_4xx_errors", across=("VariantName",)),
    Watch("Endpoint5xxErrors", "serving", "Endpoint: 5XX invocation errors",
          "AWS/SageMaker", "Invocation5XXErrors", "Sum", _ENDPOINT,
          "endpoint_5xx_errors", across=("VariantName",), serving=True),
)
# Asynchronous Inference's own metrics, per endpoint (AWS: "Monitoring asynchronous endpoint").
ASYNC_ENDPOINT = (
    Watch("EndpointOldestRequest", "serving",
          "Async endpoint: age of the oldest queued request (s)",
          "AWS/SageMaker", "ApproximateAgeOfOldestRequest", "Maximum", _ENDPOINT,
          "endpoint_oldest_request_seconds", level=True, serving=True),
    Watch("EndpointBacklog", "serving", "Async endpoint: queued requests",
          "AWS/SageMaker", "ApproximateBacklogSize", "Maximum", _ENDPOINT),
)
MODEL_MONITOR = (
    _events_matched("MonitorViolations", "serving", "Model Monitor: runs that found violations",
                    MONITOR_VIOLATION_RULE, "violation_runs", retrain=True),
    _events_matched("MonitorFailures", "serving", "Model Monitor: runs that failed",
                    MONITOR_FAILURE_RULE),
)
_SERVICE = (("ClusterName", ECS_CLUSTER_NAME), ("ServiceName", ECS_SERVICE_NAME))
_TARGETS = (("LoadBalancer", LOAD_BALANCER_FULL_NAME), ("TargetGroup", TARGET_GROUP_FULL_NAME))
API = (
    Watch("ServiceCpu", "serving", "API service: CPU use (%)",
          "AWS/ECS", "CPUUtilization", "Average", _SERVICE, "service_cpu_percent", level=True),
    Watch("ServiceMemory", "serving", "API service: memory use (%)",
          "AWS/ECS", "MemoryUtilization", "Average", _SERVICE, "service_memory_percent",
          level=True),
    Watch("Target5xxErrors", "serving", "API containers: 5XX responses",
          "AWS/ApplicationELB", "HTTPCode_Target_5XX_Count", "Sum", _TARGETS,
          "target_5xx_errors", serving=True),
    Watch("LoadBalancer5xxErrors", "serving", "API load balancer: 5XX responses of its own",
          "AWS/ApplicationELB", "HTTPCode_ELB_5XX_Count", "Sum",
          (("LoadBalancer", LOAD_BALANCER_FULL_NAME),), "load_balancer_5xx_errors", serving=True),
    Watch("TargetResponseTime", "serving", "API containers: response time (s)",
          "AWS/ApplicationELB", "TargetResponseTime", "Average", _TARGETS,
          "target_response_seconds", level=True, serving=True),
)
RETRAIN = (
    Watch("RetrainErrors", "monitoring", "Retrain Lambda: errors",
          "AWS/Lambda", "Errors", "Sum",
          (("FunctionName", Local(RETRAIN_FUNCTION)),), "function_errors"),
)


def model_monitor_enabled(config: PipelineConfig) -> bool:
    return config.stages.monitoring.runs_model_monitor(config)


def emr_consumer_enabled(config: PipelineConfig) -> bool:
    ingestion = config.stages.ingestion
    return ingestion.enabled and ingestion.emr_consumer.enabled


def retrain_enabled(config: PipelineConfig) -> bool:
    return config.stages.monitoring.runs_retrain(config)


def _schedule(config: PipelineConfig, purpose: str) -> Named:
    return Named(naming.physical_name(naming.SAGEMAKER, config.project, purpose))


def model_watches(config: PipelineConfig) -> tuple[Watch, ...]:
    """The metrics model quality, bias drift and feature attribution drift publish per run, each an alarm that may start
    retraining. Model quality: Endpoint and MonitoringSchedule are the dimensions the SageMaker
    Python SDK's model quality dashboard reads ("{aws/sagemaker/Endpoints/model-metrics,
    Endpoint,MonitoringSchedule}") and "CloudWatch Metrics for Bring Your Own Containers"
    recommends."""
    monitoring = config.stages.monitoring
    found: list[Watch] = []
    if monitoring.runs_model_quality(config):
        metric = monitoring.quality_metric(config)
        found.append(Watch(
            "ModelQuality", "serving", f"Model quality: {metric} of predictions vs ground truth",
            QUALITY_NAMESPACE, metric, "Average",
            (("Endpoint", ENDPOINT_NAME),
             ("MonitoringSchedule", _schedule(config, QUALITY_SCHEDULE_NAME))),
            "model_quality",
            comparison=("GreaterThanThreshold" if metric in QUALITY_ERRORS
                        else "LessThanThreshold"),
            retrain=True))
    if monitoring.runs_bias_drift(config):
        metric = monitoring.model_monitor.bias_drift.metric
        found.append(Watch(
            "BiasDrift", "serving", f"Bias drift: {metric}, the worst facet",
            BIAS_NAMESPACE, f"bias_metric_{metric}", "Maximum",
            (("Endpoint", ENDPOINT_NAME),
             ("MonitoringSchedule", _schedule(config, BIAS_SCHEDULE_NAME))),
            "bias_drift", across=BIAS_DIMENSIONS, retrain=True))
    if monitoring.runs_feature_attribution(config):
        attribution = monitoring.model_monitor.feature_attribution_drift
        found.append(Watch(
            "FeatureAttribution", "serving",
            f"Feature attribution: global SHAP value of {attribution.feature}",
            EXPLAINABILITY_NAMESPACE, f"feature_{attribution.feature}", "Average",
            (("Endpoint", ENDPOINT_NAME),
             ("MonitoringSchedule", _schedule(config, EXPLAINABILITY_SCHEDULE_NAME))),
            "feature_attribution",
            comparison=("LessThanThreshold" if attribution.alarm_when == "below"
                        else "GreaterThanThreshold"),
            across=EXPLAINABILITY_DIMENSIONS, retrain=True))
    return tuple(found)


def _drift_watches(config: PipelineConfig) -> tuple[Watch, ...]:
    return (MODEL_MONITOR + model_watches(config)) if model_monitor_enabled(config) else ()


def watches(config: PipelineConfig) -> tuple[Watch, ...]:
    """Every watch that applies to the config, in dashboard order."""
    stages = config.stages
    found: list[Watch] = []
    if stages.ingestion.enabled:
        found += STREAM
        if stages.ingestion.consumer.enabled:
            found += CONSUMER
        if stages.ingestion.emr_consumer.enabled:
            found += EMR_CONSUMER
        if stages.ingestion.ec2_consumer.enabled:
            found += EC2_CONSUMER
    if stages.etl.enabled:
        found += ETL
    if serves_with(config, SAGEMAKER):
        found += ENDPOINT
        if config.stages.serving.sagemaker.kind == "asynchronous":
            found += ASYNC_ENDPOINT
    if serves_with(config, FARGATE):
        found += API
    found += _drift_watches(config)
    if retrain_enabled(config):
        found += RETRAIN
    return tuple(found)


def alarmed(config: PipelineConfig) -> tuple[Watch, ...]:
    return tuple(w for w in watches(config) if w.has_alarm)
