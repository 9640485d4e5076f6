"""The `stages.monitoring` section: alarms, dashboard, Model Monitor and automatic retraining."""

from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator

from .base import Model, Setting, StageToggle
from .model_monitors import (DEFAULT_QUALITY_METRIC, OFFSET_PATTERN, PROBLEM_TYPES,
                             QUALITY_METRICS, BiasDriftConfig, FeatureAttributionDriftConfig,
                             ModelQualityConfig)

# Empty (no subscription) or one address; a team list belongs in a mailing list, which keeps
# the address a value (a parameter) instead of a number of subscriptions (the template).
EMAIL_PATTERN = r"^$|^[^@\s]+@[^@\s]+\.[^@\s]+$"
# An S3 key prefix inside the artifacts bucket.
PREFIX_PATTERN = r"^[a-z0-9][a-z0-9_\-/]{0,62}/$"
# Model Monitor runs on these schedules only (one execution per hour at the most).
MONITOR_SCHEDULES = {"hourly": "cron(0 * ? * * *)", "daily": "cron(0 0 ? * * *)"}
# stages.serving.target values
SAGEMAKER, FARGATE, BOTH = "sagemaker", "fargate", "both"


def serves_with(config: Any, target: str) -> bool:
    """Serving is on and uses `target` (`sagemaker` or `fargate`; target `both` uses both)."""
    serving = config.stages.serving
    return serving.enabled and getattr(serving, "target", SAGEMAKER) in (target, BOTH)


class AlarmThresholds(Model):
    """Where each alarm fires. An alarm exists only while the stage it watches is enabled."""

    stream_iterator_age_ms: Annotated[
        int,
        Field(ge=1000, le=604_800_000,
              description="Ingest stream: age of the oldest record not yet read, in ms."),
        Setting("StreamIteratorAgeThresholdMs"),
    ] = 60_000
    stream_write_throttles: Annotated[
        int,
        Field(ge=0, description="Ingest stream: throttled writes in 5 minutes tolerated."),
        Setting("StreamWriteThrottlesThreshold"),
    ] = 0
    delivery_freshness_seconds: Annotated[
        int,
        Field(ge=60, le=86_400,
              description="Firehose: age of the oldest record not yet in S3, in seconds (keep "
                          "it above the buffer interval)."),
        Setting("DeliveryFreshnessThresholdSeconds"),
    ] = 900
    delivery_success_ratio: Annotated[
        float,
        Field(ge=0, le=1, description="Firehose: alarm when the share of successful S3 "
                                      "deliveries falls below this."),
        Setting("DeliverySuccessThresholdRatio"),
    ] = 0.99
    function_errors: Annotated[
        int,
        Field(ge=0, description="Lambda functions (consumer, retrain): errors in 5 minutes "
                                "tolerated."),
        Setting("FunctionErrorsThreshold"),
    ] = 0
    failure_queue_messages: Annotated[
        int,
        Field(ge=0, description="Consumer failure queue: messages waiting tolerated."),
        Setting("FailureQueueMessagesThreshold"),
    ] = 0
    consumer_in_service_instances: Annotated[
        int,
        Field(ge=1, le=100,
              description="EC2 stream consumer: alarm when fewer of its instances are in "
                          "service (GroupInServiceInstances)."),
        Setting("ConsumerInServiceInstancesThreshold"),
    ] = 1
    endpoint_model_latency_us: Annotated[
        int,
        Field(ge=1000, le=3_600_000_000,
              description="SageMaker endpoint: average model latency, in microseconds (the "
                          "unit SageMaker reports)."),
        Setting("EndpointModelLatencyThresholdMicroseconds"),
    ] = 500_000
    endpoint_4xx_errors: Annotated[
        int,
        Field(ge=0,
              description="SageMaker endpoint: 4XX invocation errors in 5 minutes tolerated."),
        Setting("Endpoint4xxErrorsThreshold"),
    ] = 50
    endpoint_5xx_errors: Annotated[
        int,
        Field(ge=0,
              description="SageMaker endpoint: 5XX invocation errors in 5 minutes tolerated."),
        Setting("Endpoint5xxErrorsThreshold"),
    ] = 0
    endpoint_oldest_request_seconds: Annotated[
        int,
        Field(ge=60, le=86_400,
              description="Asynchronous SageMaker endpoint: age of the oldest queued request, "
                          "in seconds (ApproximateAgeOfOldestRequest)."),
        Setting("EndpointOldestRequestThresholdSeconds"),
    ] = 1800
    service_cpu_percent: Annotated[
        int,
        Field(ge=1, le=100, description="Fargate API: average CPU use of the ECS service, in %."),
        Setting("ServiceCpuThresholdPercent"),
    ] = 80
    service_memory_percent: Annotated[
        int,
        Field(ge=1, le=100,
              description="Fargate API: average memory use of the ECS service, in %."),
        Setting("ServiceMemoryThresholdPercent"),
    ] = 80
    target_5xx_errors: Annotated[
        int,
        Field(ge=0, description="Fargate API: 5XX responses of the containers in 5 minutes "
                                "tolerated."),
        Setting("Target5xxErrorsThreshold"),
    ] = 0
    load_balancer_5xx_errors: Annotated[
        int,
        Field(ge=0, description="Fargate API: 5XX responses of the load balancer itself in 5 "
                                "minutes tolerated."),
        Setting("LoadBalancer5xxErrorsThreshold"),
    ] = 0
    target_response_seconds: Annotated[
        float,
        Field(gt=0, le=600, description="Fargate API: average target response time, in seconds."),
        Setting("TargetResponseTimeThresholdSeconds"),
    ] = 1.0
    violation_runs: Annotated[
        int,
        Field(ge=0, description="Model Monitor: runs that found violations in 5 minutes "
                                "tolerated (0: any violation alarms and may start retraining)."),
        Setting("MonitorViolationRunsThreshold"),
    ] = 0
    model_quality: Annotated[
        float,
        Field(description="Model quality (model_monitor.model_quality): where the watched "
                          "metric alarms, below it for scores (accuracy, AUC, R²...), above it "
                          "for errors (MSE, RMSE, MAE) and rates of mistakes; set it with an "
                          "error metric."),
        Setting("ModelQualityThreshold"),
    ] = 0.8
    bias_drift: Annotated[
        float,
        Field(ge=0, description="Bias drift (model_monitor.bias_drift): the watched post-training "
                                "bias metric above this for any facet alarms."),
        Setting("BiasDriftThreshold"),
    ] = 0.1
    feature_attribution: Annotated[
        float,
        Field(ge=0, description="Feature attribution drift (model_monitor."
                                "feature_attribution_drift): the watched feature's global SHAP "
                                "value below this (or above it, with alarm_when: above) "
                                "alarms."),
        Setting("FeatureAttributionThreshold"),
    ] = 0.1
    evaluation_periods: Annotated[
        int,
        Field(ge=1, le=288,
              description="Alarms on levels (latency, age, utilisation): 5-minute periods "
                          "looked at. Alarms on counts of failures look at the last period."),
        Setting("AlarmEvaluationPeriods"),
    ] = 3
    datapoints_to_alarm: Annotated[
        int,
        Field(ge=1, le=288,
              description="Alarms on levels: how many of those periods must breach."),
        Setting("AlarmDatapointsToAlarm"),
    ] = 2

    @model_validator(mode="after")
    def _datapoints_fit(self):
        if self.datapoints_to_alarm > self.evaluation_periods:
            raise ValueError(
                f"datapoints_to_alarm ({self.datapoints_to_alarm}) exceeds evaluation_periods "
                f"({self.evaluation_periods})")
        return self


class ModelMonitorConfig(Model):
    """SageMaker Model Monitor over the endpoint's captured data (SageMaker serving only)."""

    enabled: Annotated[
        bool, Field(description="Check the captured requests against the baseline on a schedule."),
    ] = True
    baseline_prefix: Annotated[
        str,
        Field(pattern=PREFIX_PATTERN,
              description="Prefix in the artifacts bucket holding the baseline's "
                          "statistics.json and constraints.json. The training pipeline's "
                          "BaselineData step writes them from the training rows' features "
                          "whenever it registers a model; until a model is registered, the "
                          "scheduled runs fail for want of a baseline."),
    ] = "monitoring/baseline/"
    reports_prefix: Annotated[
        str,
        Field(pattern=PREFIX_PATTERN,
              description="Prefix in the artifacts bucket where monitoring reports go."),
    ] = "monitoring/reports/"
    schedule: Annotated[
        Literal[tuple(MONITOR_SCHEDULES)],  # type: ignore[valid-type]
        Field(description="How often the captured data is checked."),
        Setting("ModelMonitorSchedule"),
    ] = "hourly"
    instance_type: Annotated[
        str,
        Field(pattern=r"^ml\.[a-z0-9]+\.[a-z0-9]+$", description="Instance of a monitoring run."),
        Setting("ModelMonitorInstanceType"),
    ] = "ml.m5.xlarge"
    instance_count: Annotated[
        int, Field(ge=1, le=100, description="Instances of a monitoring run."),
        Setting("ModelMonitorInstanceCount"),
    ] = 1
    volume_size_gb: Annotated[
        int, Field(ge=1, le=16384, description="Storage of each monitoring instance, in GB."),
        Setting("ModelMonitorVolumeSizeGb"),
    ] = 20
    max_runtime_seconds: Annotated[
        int,
        Field(ge=60, le=3600,
              description="Longest a monitoring run may take (an hourly schedule allows 3600 "
                          "at the most)."),
        Setting("ModelMonitorMaxRuntimeSeconds"),
    ] = 3600
    image_account: Annotated[
        str | None,
        Field(pattern=r"^[0-9]{12}$",
              description="AWS account publishing the Model Monitor analyzer image in the "
                          "region deployed to. Unset: looked up in a table of the regions "
                          "SageMaker documents ('Docker registry paths'); set it for a region "
                          "the table lacks."),
        Setting("ModelMonitorImageAccount"),
    ] = None

    ground_truth_prefix: Annotated[
        str,
        Field(pattern=PREFIX_PATTERN,
              description="Prefix in the artifacts bucket where you write ground-truth labels "
                          "for model quality and bias drift: JSON lines {\"groundTruthData\": "
                          "{\"data\": \"<label>\", \"encoding\": \"CSV\"}, "
                          "\"eventMetadata\": {\"eventId\": \"<the request's inference or "
                          "event id>\"}, \"eventVersion\": \"0\"} under "
                          "<prefix>yyyy/mm/dd/hh/ (the hour the labels were collected)."),
    ] = "monitoring/ground-truth/"
    start_time_offset: Annotated[
        str,
        Field(pattern=OFFSET_PATTERN,
              description="Model quality and bias drift runs look at requests from this long "
                          "before the run (ISO 8601, -PT#H or -P#D)..."),
        Setting("GroundTruthStartTimeOffset"),
    ] = "-P1D"
    end_time_offset: Annotated[
        str,
        Field(pattern=OFFSET_PATTERN,
              description="...to this long before it: leave the labels time to arrive."),
        Setting("GroundTruthEndTimeOffset"),
    ] = "-PT1H"
    model_quality: ModelQualityConfig = ModelQualityConfig()
    bias_drift: BiasDriftConfig = BiasDriftConfig()
    feature_attribution_drift: FeatureAttributionDriftConfig = FeatureAttributionDriftConfig()

    @field_validator("reports_prefix")
    @classmethod
    def _not_inside_the_baseline(cls, value, info):
        baseline = info.data.get("baseline_prefix")
        if baseline and (value.startswith(baseline) or baseline.startswith(value)):
            raise ValueError("must not overlap baseline_prefix: a monitoring run must never "
                             "be able to overwrite the baseline it is checked against")
        return value


class RetrainOnDriftConfig(Model):
    """A Lambda that starts the training pipeline when drift or quality alarms fire."""

    enabled: Annotated[
        bool,
        Field(description="Start the training pipeline on drift alarms (needs stages.training)."),
    ] = True
    cooldown_hours: Annotated[
        int,
        Field(ge=1, le=720,
              description="After a pipeline run starts, further alarms start none for this "
                          "long: one incident, one run."),
        Setting("RetrainCooldownHours"),
    ] = 24
    memory_mb: Annotated[
        int, Field(ge=128, le=10240, description="Lambda memory."), Setting("RetrainMemoryMiB")
    ] = 256
    timeout_seconds: Annotated[
        int, Field(ge=5, le=900, description="Lambda timeout."), Setting("RetrainTimeoutSeconds")
    ] = 60


class MonitoringConfig(StageToggle):
    alarm_email: Annotated[
        str,
        Field(pattern=EMAIL_PATTERN, max_length=254,
              description="Address that receives every alarm (confirm the subscription from "
                          "the first message); empty for none."),
        Setting("AlarmEmail"),
    ] = ""
    thresholds: AlarmThresholds = AlarmThresholds()
    model_monitor: ModelMonitorConfig = ModelMonitorConfig()
    retrain: RetrainOnDriftConfig = RetrainOnDriftConfig()

    def runs_model_monitor(self, config: Any) -> bool:
        """Model Monitor needs the SageMaker endpoint and the requests it captures."""
        capture = getattr(getattr(config.stages.serving, "sagemaker", None), "data_capture", None)
        return (self.model_monitor.enabled and serves_with(config, SAGEMAKER)
                and getattr(capture, "enabled", True))

    def _model_monitor_cannot_run(self, config: Any) -> str | None:
        """Why an explicitly enabled Model Monitor would not run (None when it would)."""
        if not ("enabled" in self.model_monitor.model_fields_set and self.model_monitor.enabled
                and serves_with(config, SAGEMAKER)):
            return None
        sagemaker = config.stages.serving.sagemaker
        if sagemaker.kind == "serverless":
            return ("stages.monitoring.model_monitor.enabled: SageMaker Serverless Inference "
                    "supports neither data capture nor Model Monitor; turn it off with "
                    "stages.serving.sagemaker.kind 'serverless'")
        if not sagemaker.data_capture.enabled:
            return ("stages.monitoring.model_monitor.enabled: Model Monitor reads the endpoint's "
                    "captured requests; turn on stages.serving.sagemaker.data_capture.enabled "
                    "or turn Model Monitor off")
        return None

    def runs_model_quality(self, config: Any) -> bool:
        return self.model_monitor.model_quality.enabled and self.runs_model_monitor(config)

    def runs_bias_drift(self, config: Any) -> bool:
        return self.model_monitor.bias_drift.enabled and self.runs_model_monitor(config)

    def runs_feature_attribution(self, config: Any) -> bool:
        return (self.model_monitor.feature_attribution_drift.enabled
                and self.runs_model_monitor(config))

    def problem_type(self, config: Any) -> str:
        """Model Monitor's problem type of the model the training stage builds."""
        from .training import metric_kind
        return PROBLEM_TYPES[metric_kind(config.stages.training.metric)]

    def quality_metric(self, config: Any) -> str:
        quality = self.model_monitor.model_quality
        return quality.metric or DEFAULT_QUALITY_METRIC[self.problem_type(config)]

    def _model_monitors_cannot_run(self, config: Any) -> list[str]:
        """Why an enabled model quality, bias drift or feature attribution drift monitor cannot
        run, one line each."""
        monitor = self.model_monitor
        enabled = [(name, section) for name, section in (
            ("model_quality", monitor.model_quality), ("bias_drift", monitor.bias_drift),
            ("feature_attribution_drift", monitor.feature_attribution_drift)) if section.enabled]
        problems = []
        for name, _ in enabled:
            field = f"stages.monitoring.model_monitor.{name}.enabled"
            if not self.runs_model_monitor(config):
                problems.append(f"{field}: needs Model Monitor on a SageMaker endpoint with data "
                                f"capture (stages.monitoring.model_monitor.enabled, "
                                f"stages.serving.target sagemaker or both)")
            elif config.stages.serving.sagemaker.kind != "real_time":
                problems.append(f"{field}: AWS documents model quality, bias drift and "
                                f"feature attribution drift monitoring for real-time endpoints "
                                f"and batch transform only, "
                                f"not stages.serving.sagemaker.kind "
                                f"{config.stages.serving.sagemaker.kind!r}")
            elif not config.stages.training.enabled:
                problems.append(f"{field}: its baseline is written by the training pipeline; "
                                f"turn on stages.training")
        if problems or not enabled:
            return problems
        quality = monitor.model_quality
        if quality.enabled:
            expected = self.problem_type(config)
            if quality.problem_type is not None and quality.problem_type != expected:
                problems.append(
                    f"stages.monitoring.model_monitor.model_quality.problem_type: "
                    f"{quality.problem_type!r} does not fit stages.training.metric "
                    f"{config.stages.training.metric!r} (the model is {expected})")
            elif quality.metric is not None and quality.metric not in QUALITY_METRICS[expected]:
                problems.append(
                    f"stages.monitoring.model_monitor.model_quality.metric: {quality.metric!r} "
                    f"is not a {expected} metric (one of "
                    f"{', '.join(QUALITY_METRICS[expected])})")
        bias = monitor.bias_drift
        if bias.enabled:
            features = set(config.record_schema.feature_columns())
            if not bias.facets:
                problems.append("stages.monitoring.model_monitor.bias_drift.facets: name at least "
                                "one sensitive feature column")
            for index, facet in enumerate(bias.facets):
                if facet.name not in features:
                    problems.append(
                        f"stages.monitoring.model_monitor.bias_drift.facets[{index}].name: "
                        f"{facet.name!r} is not a feature of record_schema (one of "
                        f"{', '.join(sorted(features))})")
            if bias.group_variable is not None and bias.group_variable not in features:
                problems.append(
                    f"stages.monitoring.model_monitor.bias_drift.group_variable: "
                    f"{bias.group_variable!r} is not a feature of record_schema")
        attribution = monitor.feature_attribution_drift
        if attribution.enabled:
            features = config.record_schema.feature_columns()
            if attribution.feature is None or attribution.feature not in features:
                problems.append(
                    f"stages.monitoring.model_monitor.feature_attribution_drift.feature: name "
                    f"the feature column whose global SHAP value the alarm watches (one of "
                    f"{', '.join(sorted(features))})")
        prefixes = {"baseline_prefix": monitor.baseline_prefix,
                    "reports_prefix": monitor.reports_prefix}
        for name, prefix in prefixes.items():
            truth = monitor.ground_truth_prefix
            if truth.startswith(prefix) or prefix.startswith(truth):
                problems.append(f"stages.monitoring.model_monitor.ground_truth_prefix: must not "
                                f"overlap {name} ({prefix!r})")
        return problems

    def runs_retrain(self, config: Any) -> bool:
        """Retraining needs a pipeline to start and a drift alarm to start it."""
        return (self.retrain.enabled and config.stages.training.enabled
                and self.runs_model_monitor(config))

    def vpc_endpoints(self) -> tuple[str, ...]:
        # The retrain Lambda calls the SageMaker API from the private subnets. Model Monitor
        # runs there too and publishes its per-feature metrics to CloudWatch; it reaches S3
        # through the gateway endpoint every created VPC has. Lambda and SageMaker deliver
        # logs and decrypt environments outside the VPC, so no logs or kms endpoint. (This
        # hook sees only this section: without SageMaker serving or training the endpoints
        # are asked for, though nothing uses them; see _endpoints_in_use.)
        needed = []
        if self.model_monitor.enabled:
            needed.append("monitoring")
        if self.retrain.enabled or self.model_monitor.feature_attribution_drift.enabled:
            needed.append("sagemaker.api")
        if self.model_monitor.feature_attribution_drift.enabled:
            # Clarify creates, calls and deletes a shadow endpoint of the model ("Give Amazon
            # SageMaker Clarify Jobs Access to Resources in Your Amazon VPC": the SageMaker API
            # and SageMaker Runtime interface endpoints).
            needed.append("sagemaker.runtime")
        return tuple(needed)

    def _endpoints_in_use(self, config: Any) -> list[str]:
        attribution = self.runs_feature_attribution(config)
        return ((["monitoring"] if self.runs_model_monitor(config) else [])
                + (["sagemaker.api"] if self.runs_retrain(config) or attribution else [])
                + (["sagemaker.runtime"] if attribution else []))

    def problems_with(self, config: Any) -> list[str]:
        problems = []
        refused = self._model_monitor_cannot_run(config)
        if refused:
            problems.append(refused)
        problems += self._model_monitors_cannot_run(config)
        ingestion = config.stages.ingestion
        freshness = self.thresholds.delivery_freshness_seconds
        interval = ingestion.firehose.buffer_interval_seconds
        if ingestion.enabled and freshness <= interval:
            # Firehose holds records up to the buffer interval on purpose; the alarm would
            # stay in ALARM at every quiet moment.
            problems.append(
                f"stages.monitoring.thresholds.delivery_freshness_seconds ({freshness}) must "
                f"exceed stages.ingestion.firehose.buffer_interval_seconds ({interval})")
        network = config.network
        if network.mode == "create" and network.interface_endpoints is not None:
            missing = [s for s in self._endpoints_in_use(config)
                       if s not in network.interface_endpoints]
            if missing:
                problems.append(
                    f"network.interface_endpoints: Model Monitor (with Clarify's shadow "
                    f"endpoints) and the retrain Lambda in the private subnets need "
                    f"{', '.join(missing)} (or leave interface_endpoints unset to derive them)")
        return problems
