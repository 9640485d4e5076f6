"""What the training pipeline's baselining steps write and the monitoring schedules read.

Model quality, bias drift and feature attribution drift compare what the endpoint answers with a baseline the training
pipeline computes from the model's predictions on its test rows (evaluate.py writes them). Both
stages derive the locations, the column names and Clarify's analysis configuration from the
config through this module, so the URIs a schedule reads are the ones a step writes (the stages
never read each other's templates).

Sources: "Create a Model Quality Baseline" and "Schedule Model Quality Monitoring Jobs" (the
analyzer's environment, as the SageMaker Python SDK's ModelQualityMonitor.suggest_baseline sets
it), "Configure Parameters to Monitor Bias Drift" and "Configure the Analysis" (Clarify's
analysis configuration; `predicted_label` names a dataset column of predictions, so the baseline
needs no shadow endpoint), SageMaker Developer Guide. Feature attribution: "Configure Parameters
to Monitor Attribution Drift" (the monitor's `shap` and `predictor` sections) and "Create a SHAP
Baseline for Models in Production"; Kernel SHAP needs a model to call, so its baseline is a
ClarifyCheck step naming the model the pipeline creates (Pipelines hands Clarify the model name,
as the SageMaker Python SDK's ClarifyCheckStep does: neither configuration file names a model).
"""

import json
from typing import Any

# Under model_monitor.baseline_prefix (data quality's statistics and constraints sit at its top).
QUALITY_FOLDER = "model-quality/"
BIAS_FOLDER = "model-bias/"
EXPLAINABILITY_FOLDER = "model-explainability/"
# The analyzer's model quality baseline writes constraints.json (and statistics.json); Clarify's
# writes its analysis, which the bias monitor takes as constraints (the SDK's
# ClarifyBaseliningJob.suggested_constraints reads analysis.json).
QUALITY_CONSTRAINTS = "constraints.json"
BIAS_CONSTRAINTS = "analysis.json"
# Clarify's SHAP baseline writes analysis.json too: the explainability monitor's constraints
# (its global SHAP values, whose ranking each run is compared with).
EXPLAINABILITY_CONSTRAINTS = "analysis.json"
# Under model_monitor.reports_prefix: each monitor's reports apart.
QUALITY_REPORTS = "model-quality/"
BIAS_REPORTS = "model-bias/"
EXPLAINABILITY_REPORTS = "model-explainability/"

# evaluate.py's predictions output: quality/ a CSV with a header row (label, prediction and,
# for a classifier, probability), bias/ header-less rows of the label, the features and the
# prediction (Clarify takes the names from the analysis configuration).
PREDICTIONS_OUTPUT = "predictions"
QUALITY_DATA = "quality/"
BIAS_DATA = "bias/"
LABEL_COLUMN = "label"
PREDICTION_COLUMN = "prediction"
PROBABILITY_COLUMN = "probability"
# XGBoost's binary:logistic answers a probability; at or above this it predicts the positive
# class (evaluate.py's DECISION_THRESHOLD).
PROBABILITY_THRESHOLD = 0.5

# SageMaker Clarify's processing image (image_registries.CLARIFY), as Fn::Sub text.
CLARIFY_IMAGE = ("${Account}.dkr.ecr.${AWS::Region}.${AWS::URLSuffix}"
                 "/sagemaker-clarify-processing:1.0")
# Where a Clarify processing job reads its configuration and data and writes its analysis
# (the SageMaker Python SDK's SageMakerClarifyProcessor).
CLARIFY_CONFIG_PATH = "/opt/ml/processing/input/config"
CLARIFY_DATA_PATH = "/opt/ml/processing/input/data"
CLARIFY_OUTPUT_PATH = "/opt/ml/processing/output"
CLARIFY_CONFIG_FILE = "analysis_config.json"


def classifies(problem_type: str) -> bool:
    return problem_type == "BinaryClassification"


def _facets(bias: Any) -> list[dict]:
    return [{"name_or_index": facet.name,
             **({"value_or_threshold": list(facet.values)} if facet.values else {})}
            for facet in bias.facets]


def _bias_common(config: Any) -> dict:
    bias = config.stages.monitoring.model_monitor.bias_drift
    common: dict[str, Any] = {
        "label": config.record_schema.label,
        "label_values_or_threshold": list(bias.label_values),
        "facet": _facets(bias),
    }
    if bias.group_variable is not None:
        common["group_variable"] = bias.group_variable
    return common


def bias_monitor_analysis(config: Any) -> dict:
    """The bias monitor's analysis configuration (its ConfigUri): the captured request's
    feature columns, then the ground-truth label the merge appends."""
    schema = config.record_schema
    return {"headers": [*schema.feature_columns(), schema.label], **_bias_common(config)}


def bias_baseline_analysis(config: Any) -> dict:
    """The bias baseline's analysis configuration: evaluate.py's bias/ rows (label, features,
    prediction), post-training bias metrics of the predictions in the file."""
    schema = config.record_schema
    return {
        "dataset_type": "text/csv",
        "headers": [schema.label, *schema.feature_columns(), PREDICTION_COLUMN],
        "predicted_label": PREDICTION_COLUMN,
        **_bias_common(config),
        "methods": {"post_training_bias": {"methods": "all"}},
    }


def _shap(config: Any) -> dict:
    """The `shap` method both configurations share, so baseline and runs compute alike. No
    `baseline` rows: Clarify summarises each dataset into its own background set."""
    attribution = config.stages.monitoring.model_monitor.feature_attribution_drift
    return {"num_samples": attribution.num_samples, "agg_method": attribution.agg_method,
            "use_logit": False, "save_local_shap_values": False}


def _predictor(config: Any) -> dict:
    """The shadow endpoint Clarify creates from the model and calls with CSV rows of the
    features; the model answers one score in CSV (XGBoost's probability or value)."""
    attribution = config.stages.monitoring.model_monitor.feature_attribution_drift
    return {"instance_type": attribution.shadow_instance_type, "initial_instance_count": 1,
            "content_type": "text/csv", "accept_type": "text/csv"}


def explainability_monitor_analysis(config: Any) -> dict:
    """The feature attribution monitor's analysis configuration (its ConfigUri): the captured
    requests' feature columns, no label ("Explainability analysis does not require labels")."""
    return {"headers": list(config.record_schema.feature_columns()),
            "methods": {"shap": _shap(config)},
            "predictor": _predictor(config)}


def explainability_baseline_analysis(config: Any) -> dict:
    """The SHAP baseline's analysis configuration: evaluate.py's bias/ rows (label, features,
    prediction); the label is no input of the model and the prediction column is excluded from
    what is sent to it, so the shadow endpoint receives the features alone."""
    schema = config.record_schema
    return {
        "dataset_type": "text/csv",
        "headers": [schema.label, *schema.feature_columns(), PREDICTION_COLUMN],
        "label": schema.label,
        "excluded_columns": [PREDICTION_COLUMN],
        "methods": {"shap": _shap(config)},
        "predictor": _predictor(config),
    }


def as_file(analysis: dict) -> bytes:
    """An analysis configuration as the file both stages ship (deterministic text)."""
    return (json.dumps(analysis, indent=1, sort_keys=True) + "\n").encode("utf-8")
