"""Model Monitor beyond data quality: model quality, bias drift and feature attribution drift.

Each is a section of `stages.monitoring.model_monitor`, off by default: AWS's Model Monitor pages
now say "Amazon SageMaker Model Monitor is no longer open to new customers", so an account must
already use it; the data quality monitor's schedule, size and network are shared. Rules across
sections (the training stage that writes the baselines, the endpoint kind, the metric fitting
the training objective) are the monitoring section's `problems_with`.
"""

from typing import Annotated, Literal

from pydantic import Field

from .base import Model, Setting

# Model Monitor's problem types ("Model quality": ModelQualityAppSpecification.ProblemType) for
# the model kinds the training pipeline builds (config/training.py metric_kind).
PROBLEM_TYPES = {"binary_classification": "BinaryClassification", "regression": "Regression"}
# Model quality metrics the monitor publishes per problem type ("Model quality metrics and
# Amazon CloudWatch monitoring", SageMaker Developer Guide), and which way is worse.
QUALITY_METRICS = {
    "BinaryClassification": ("accuracy", "precision", "recall", "f0_5", "f1", "f2", "auc",
                             "true_positive_rate", "true_negative_rate", "false_positive_rate",
                             "false_negative_rate"),
    "Regression": ("mae", "mse", "rmse", "r2"),
}
QUALITY_ERRORS = frozenset({"mae", "mse", "rmse", "false_positive_rate", "false_negative_rate"})
DEFAULT_QUALITY_METRIC = {"BinaryClassification": "accuracy", "Regression": "rmse"}
# Post-training bias metrics Clarify computes on predictions ("Post-training Data and Model Bias
# Metrics", SageMaker Developer Guide), published as `bias_metric_<short name>`.
BIAS_METRICS = ("DPPL", "DI", "DCA", "DCR", "RD", "DAR", "DRR", "AD", "CDDPL", "TE", "FT")
# How Clarify aggregates per-row SHAP values into one global value per feature ("Configure
# Parameters to Monitor Attribution Drift": shap.agg_method).
SHAP_AGGREGATIONS = ("mean_abs", "median", "mean_sq")
# ISO 8601 durations back in time, as Model Monitor's offsets take them ("Schedule model quality
# monitoring jobs": -PT#H or -P#D).
OFFSET_PATTERN = r"^-P(T[0-9]{1,3}H|[0-9]{1,2}D)$"
# An hourly run holds the ground truth merge and the analysis; AWS: "for an hourly model quality
# monitoring job, the value of MaxRuntimeInSeconds ... should be no more than 1800".
GROUND_TRUTH_MAX_RUNTIME = 1800


class ModelQualityConfig(Model):
    """Predictions the endpoint captured, merged with the ground-truth labels you write, scored
    against the model quality baseline the training pipeline writes from its test rows. Off by default, and only for an account that already uses Model Monitor: AWS's Model
    Monitor pages now say "Amazon SageMaker Model Monitor is no longer open to new customers.
    Existing customers can continue to use the service as normal" (SageMaker Developer Guide,
    "Amazon SageMaker Model Monitor availability change"); elsewhere the schedule cannot be
    created and the monitoring stack's update fails and rolls back.
    """

    enabled: Annotated[
        bool,
        Field(description="Monitor model quality (off by default: SageMaker Model Monitor is no "
                          "longer open to new customers). Needs stages.training (it writes the "
                          "baseline) and labels under model_monitor.ground_truth_prefix."),
    ] = False
    problem_type: Annotated[
        Literal[tuple(PROBLEM_TYPES.values())] | None,  # type: ignore[valid-type]
        Field(description="Model Monitor's problem type. Unset: the one stages.training.metric "
                          "judges (BinaryClassification for binary:logistic, Regression for "
                          "reg:*); set, it must be that one."),
    ] = None
    metric: Annotated[
        str | None,
        Field(pattern=r"^[a-z0-9_]{1,32}$",
              description="The published metric the alarm watches: one of accuracy, precision, "
                          "recall, f0_5, f1, f2, auc, true_positive_rate, true_negative_rate, "
                          "false_positive_rate, false_negative_rate (BinaryClassification) or "
                          "mae, mse, rmse, r2 (Regression). Unset: accuracy or rmse. The alarm "
                          "fires below thresholds.model_quality for scores, above it for "
                          "errors and rates of mistakes."),
    ] = None
    max_runtime_seconds: Annotated[
        int,
        Field(ge=60, le=GROUND_TRUTH_MAX_RUNTIME,
              description="Longest a run may take: the ground truth merge and the analysis "
                          "share it, at most 1800 (AWS's limit for an hourly schedule)."),
        Setting("ModelQualityMaxRuntimeSeconds"),
    ] = GROUND_TRUTH_MAX_RUNTIME


class FacetConfig(Model):
    """A sensitive attribute Clarify compares groups of (analysis configuration `facet`)."""

    name: Annotated[
        str, Field(min_length=1, max_length=64,
                   description="A feature column of record_schema."),
    ]
    values: Annotated[
        list[float | int | str] | None,
        Field(min_length=1, max_length=20,
              description="The sensitive group: these values (or, one number on a numeric "
                          "column, values above it). Unset: every value is its own group."),
    ] = None


class BiasDriftConfig(Model):
    """SageMaker Clarify's post-training bias metrics of the endpoint's predictions, merged with
    the ground-truth labels, against the bias baseline the training pipeline writes. Off by default, and only for an account that already uses Model Monitor: AWS's Model
    Monitor pages now say "Amazon SageMaker Model Monitor is no longer open to new customers.
    Existing customers can continue to use the service as normal" (SageMaker Developer Guide,
    "Amazon SageMaker Model Monitor availability change"); elsewhere the schedule cannot be
    created and the monitoring stack's update fails and rolls back.
    """

    enabled: Annotated[
        bool,
        Field(description="Monitor bias drift (off by default: SageMaker Model Monitor is no "
                          "longer open to new customers). Needs stages.training and labels "
                          "under model_monitor.ground_truth_prefix."),
    ] = False
    label_values: Annotated[
        list[float | int | str],
        Field(min_length=1, max_length=20,
              description="The positive outcome: label values (or one threshold) "
                          "(`label_values_or_threshold`)."),
    ] = [1]
    facets: Annotated[
        list[FacetConfig],
        Field(max_length=10, description="Sensitive attributes; at least one when enabled."),
    ] = []
    group_variable: Annotated[
        str | None,
        Field(min_length=1, max_length=64,
              description="A feature column for the conditional demographic disparity metric "
                          "(CDDPL)."),
    ] = None
    metric: Annotated[
        Literal[BIAS_METRICS],  # type: ignore[valid-type]
        Field(description="The post-training bias metric the alarm watches "
                          "(`bias_metric_<metric>`); it fires when the metric exceeds "
                          "thresholds.bias_drift for any facet."),
    ] = "DPPL"
    max_runtime_seconds: Annotated[
        int,
        Field(ge=60, le=GROUND_TRUTH_MAX_RUNTIME,
              description="Longest a run may take (merge and analysis), at most 1800."),
        Setting("BiasDriftMaxRuntimeSeconds"),
    ] = GROUND_TRUTH_MAX_RUNTIME


class FeatureAttributionDriftConfig(Model):
    """SageMaker Clarify's SHAP feature attributions of the requests the endpoint captured,
    against the SHAP baseline the training pipeline computes on its test rows: a run whose
    ranking of the features has moved (nDCG below 0.9, "Model Feature Attribution Drift
    Violations") has violations, and the alarm watches one feature's global SHAP value. Needs no
    ground truth. Off by default, and only for an account that already uses Model Monitor: AWS's
    Model Monitor pages now say "Amazon SageMaker Model Monitor is no longer open to new
    customers. Existing customers can continue to use the service as normal" (SageMaker
    Developer Guide, "Amazon SageMaker Model Monitor availability change").
    """

    enabled: Annotated[
        bool,
        Field(description="Monitor feature attribution drift (off by default: SageMaker Model "
                          "Monitor is no longer open to new customers). Needs stages.training "
                          "(its SageMaker pipeline writes the SHAP baseline; that one Clarify "
                          "job runs without network isolation, to call a shadow endpoint of "
                          "the model)."),
    ] = False
    feature: Annotated[
        str | None,
        Field(min_length=1, max_length=64,
              description="The feature column of record_schema whose global SHAP value "
                          "(`feature_<name>`) the alarm watches; required when enabled."),
    ] = None
    alarm_when: Annotated[
        Literal["below", "above"],
        Field(description="The alarm fires when that value falls below "
                          "thresholds.feature_attribution (the model stopped leaning on the "
                          "feature) or rises above it (a feature it should not lean on)."),
    ] = "below"
    num_samples: Annotated[
        int,
        Field(ge=1, le=10000,
              description="Kernel SHAP's synthetic samples per row (`shap.num_samples`): more "
                          "is steadier and costs more calls to the shadow endpoint."),
    ] = 100
    agg_method: Annotated[
        Literal[SHAP_AGGREGATIONS],  # type: ignore[valid-type]
        Field(description="How the rows' SHAP values become one global value per feature "
                          "(`shap.agg_method`)."),
    ] = "mean_abs"
    shadow_instance_type: Annotated[
        str,
        Field(pattern=r"^ml\.[a-z0-9]+\.[a-z0-9]+$",
              description="Instance of the shadow endpoint Clarify creates from the model for "
                          "the SHAP baseline and each run (`predictor.instance_type`)."),
    ] = "ml.m5.xlarge"
    max_runtime_seconds: Annotated[
        int,
        Field(ge=60, le=3600,
              description="Longest a run may take (an hourly schedule allows 3600 at the "
                          "most)."),
        Setting("FeatureAttributionMaxRuntimeSeconds"),
    ] = 3600
