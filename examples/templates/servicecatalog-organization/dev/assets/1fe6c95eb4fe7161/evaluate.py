"""Evaluation step of the training pipeline: score the trained model on the held-out test rows.

Run by a SageMaker processing job (python3 evaluate.py --kind KIND) with
- /opt/ml/processing/input/model/model.tar.gz: the training job's artifact, holding an XGBoost
  booster named `xgboost-model` (what the built-in XGBoost algorithm writes);
- /opt/ml/processing/input/test/: header-less CSV files, label in the first column;
and writes /opt/ml/processing/evaluation/evaluation.json in SageMaker's model quality format,
e.g. {"binary_classification_metrics": {"auc": {"value": 0.91}, ...}}, which the pipeline reads
as a property file to decide whether to register the model; with --predictions-dir, also the
test rows' predictions, which model quality and bias drift monitoring take their baselines of.

The metrics are plain Python (no numpy), so they can be tested anywhere; only loading the model
and predicting needs xgboost, which the XGBoost container has.
"""

from __future__ import annotations  # the container's Python may predate list[float] at runtime

import argparse
import csv
import json
import math
import pathlib
import tarfile
from typing import Callable, Iterable, Sequence

KINDS = ("binary_classification", "regression")
# A predicted probability at or above this is the positive class.
DECISION_THRESHOLD = 0.5
MODEL_FILE = "xgboost-model"


class EvaluationError(Exception):
    """The test data cannot be scored (empty, malformed, or a metric is undefined on it)."""


# --- reading ---------------------------------------------------------------------------------

def read_rows(directory: pathlib.Path) -> tuple[list[float], list[list[float]]]:
    """Labels and feature rows of every CSV file under `directory` (sorted, so repeatable).

    An empty field is a missing value (NaN), as XGBoost reads it.
    """
    labels: list[float] = []
    features: list[list[float]] = []
    # Markers (_SUCCESS) and hidden files are not data.
    files = sorted(p for p in directory.rglob("*")
                   if p.is_file() and not p.name.startswith(("_", ".")))
    for path in files:
        with path.open(newline="", encoding="utf-8") as handle:
            for number, row in enumerate(csv.reader(handle), start=1):
                if not row:
                    continue
                try:
                    values = [float(v) if v.strip() else math.nan for v in row]
                except ValueError as error:
                    raise EvaluationError(f"{path.name}:{number}: {error}") from None
                if math.isnan(values[0]):
                    raise EvaluationError(f"{path.name}:{number}: the label is missing")
                labels.append(values[0])
                features.append(values[1:])
    if not labels:
        raise EvaluationError(f"no test rows under {directory}")
    return labels, features


# --- metrics ---------------------------------------------------------------------------------

def binary_classification_metrics(labels: Sequence[float], scores: Sequence[float],
                                  threshold: float = DECISION_THRESHOLD) -> dict[str, float]:
    """AUC, accuracy, precision, recall and F1 of predicted probabilities against 0/1 labels."""
    _check_lengths(labels, scores)
    if any(label not in (0.0, 1.0) for label in labels):
        raise EvaluationError("binary classification labels must be 0 or 1")
    predicted = [1.0 if score >= threshold else 0.0 for score in scores]
    pairs = list(zip(labels, predicted))
    true_positive = sum(1 for y, p in pairs if y == 1.0 and p == 1.0)
    false_positive = sum(1 for y, p in pairs if y == 0.0 and p == 1.0)
    false_negative = sum(1 for y, p in pairs if y == 1.0 and p == 0.0)
    correct = sum(1 for y, p in pairs if y == p)
    precision = _ratio(true_positive, true_positive + false_positive)
    recall = _ratio(true_positive, true_positive + false_negative)
    f1 = _ratio(2 * precision * recall, precision + recall)
    return {
        "auc": auc(labels, scores),
        "accuracy": correct / len(labels),
        "precision": precision,
        "recall": recall,
        "f1": f1,
    }


def auc(labels: Sequence[float], scores: Sequence[float]) -> float:
    """Area under the ROC curve: the chance that a random positive scores above a random
    negative (ties count half), computed from ranks (Mann-Whitney U)."""
    positives = sum(1 for y in labels if y == 1.0)
    negatives = len(labels) - positives
    if positives == 0 or negatives == 0:
        raise EvaluationError("AUC is undefined when the test rows hold only one class")
    ranks = _average_ranks(scores)
    positive_rank_sum = sum(rank for rank, y in zip(ranks, labels) if y == 1.0)
    u = positive_rank_sum - positives * (positives + 1) / 2
    return u / (positives * negatives)


def regression_metrics(labels: Sequence[float], predictions: Sequence[float]) -> dict[str, float]:
    """MSE, RMSE, MAE and R² of predictions."""
    _check_lengths(labels, predictions)
    errors = [p - y for y, p in zip(labels, predictions)]
    mse = sum(e * e for e in errors) / len(errors)
    mean = sum(labels) / len(labels)
    total = sum((y - mean) ** 2 for y in labels)
    if total == 0:
        raise EvaluationError("R² is undefined when every test label is the same")
    return {
        "mse": mse,
        "rmse": math.sqrt(mse),
        "mae": sum(abs(e) for e in errors) / len(errors),
        "r2": 1 - sum(e * e for e in errors) / total,
    }


def report(kind: str, labels: Sequence[float], predictions: Sequence[float]) -> dict:
    """The evaluation report: SageMaker's model quality layout, `<kind>_metrics.<name>.value`."""
    if kind == "binary_classification":
        metrics = binary_classification_metrics(labels, predictions)
    elif kind == "regression":
        metrics = regression_metrics(labels, predictions)
    else:
        raise EvaluationError(f"unknown kind {kind!r} (expected one of {', '.join(KINDS)})")
    for name, value in metrics.items():
        if not math.isfinite(value):
            raise EvaluationError(f"{name} is not a finite number ({value})")
    return {f"{kind}_metrics": {name: {"value": value} for name, value in sorted(metrics.items())},
            "test_rows": len(labels)}


def _average_ranks(values: Sequence[float]) -> list[float]:
    """1-based ranks of `values`, tied values sharing the average of their ranks."""
    order = sorted(range(len(values)), key=lambda i: values[i])
    ranks = [0.0] * len(values)
    start = 0
    while start < len(order):
        end = start
        while end + 1 < len(order) and values[order[end + 1]] == values[order[start]]:
            end += 1
        shared = (start + end) / 2 + 1
        for position in range(start, end + 1):
            ranks[order[position]] = shared
        start = end + 1
    return ranks


def _ratio(numerator: float, denominator: float) -> float:
    # Precision with no positive prediction (or recall with no positive label) is 0 by the
    # usual convention, rather than undefined.
    return numerator / denominator if denominator else 0.0


def _check_lengths(labels: Sequence[float], predictions: Sequence[float]) -> None:
    if len(labels) != len(predictions):
        raise EvaluationError(f"{len(labels)} labels but {len(predictions)} predictions")
    if not labels:
        raise EvaluationError("no test rows")


# --- the model -------------------------------------------------------------------------------

def load_predictor(model_dir: pathlib.Path) -> Callable[[list[list[float]]], Iterable[float]]:
    """A function from feature rows to predictions, from the training job's model.tar.gz."""
    import numpy  # only in the container
    import xgboost

    archive = model_dir / "model.tar.gz"
    extracted = model_dir / "extracted"
    extract(archive, extracted)
    booster = xgboost.Booster()
    model_file = extracted / MODEL_FILE
    try:
        booster.load_model(str(model_file))
    except xgboost.core.XGBoostError:
        # Older containers pickle the booster instead of saving it in XGBoost's format.
        import pickle

        with model_file.open("rb") as handle:
            booster = pickle.load(handle)  # noqa: S301 - our own training job's artifact

    def predict(rows: list[list[float]]) -> Iterable[float]:
        matrix = xgboost.DMatrix(numpy.asarray(rows, dtype=float), missing=math.nan)
        return [float(p) for p in booster.predict(matrix)]

    return predict


def extract(archive: pathlib.Path, target: pathlib.Path) -> None:
    """Unpack `archive` into `target`, refusing members that would land outside it (the
    container's Python may predate tarfile's extraction filters)."""
    root = target.resolve()
    with tarfile.open(archive) as tar:
        for member in tar.getmembers():
            destination = (root / member.name).resolve()
            inside = root == destination or root in destination.parents
            if not (member.isfile() or member.isdir()) or not inside:
                raise EvaluationError(f"refusing archive member {member.name!r}")
        tar.extractall(root)  # noqa: S202 - every member was checked above


def write_predictions(kind: str, directory: pathlib.Path, labels: Sequence[float],
                      features: Sequence[Sequence[float]], scores: Sequence[float]) -> None:
    """The test rows with the model's answers, for Model Monitor's model baselines:
    quality/predictions.csv with a header row (label, prediction and, for a classifier, the
    probability: what the model quality baseline reads by name) and bias/predictions.csv,
    header-less rows of label, features and prediction (Clarify's analysis configuration names
    the columns; see mlops_cfn/stages/model_monitor_baselines.py)."""
    classifies = kind == "binary_classification"
    predicted = ([1.0 if score >= DECISION_THRESHOLD else 0.0 for score in scores]
                 if classifies else list(scores))
    quality = directory / "quality"
    bias = directory / "bias"
    quality.mkdir(parents=True, exist_ok=True)
    bias.mkdir(parents=True, exist_ok=True)
    with (quality / "predictions.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["label", "prediction"] + (["probability"] if classifies else []))
        for label, prediction, score in zip(labels, predicted, scores):
            writer.writerow([_number(label), _number(prediction)]
                            + ([repr(float(score))] if classifies else []))
    with (bias / "predictions.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        for label, row, prediction in zip(labels, features, predicted):
            writer.writerow([_number(label), *(_number(v) for v in row), _number(prediction)])


def _number(value: float) -> str:
    """A value as CSV text: whole numbers without a fraction (labels 0 and 1 stay 0 and 1),
    missing values empty."""
    if math.isnan(value):
        return ""
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def evaluate(kind: str, test_dir: pathlib.Path,
             predict: Callable[[list[list[float]]], Iterable[float]],
             predictions_dir: pathlib.Path | None = None) -> dict:
    labels, features = read_rows(test_dir)
    scores = list(predict(features))
    result = report(kind, labels, scores)
    if predictions_dir is not None:
        write_predictions(kind, predictions_dir, labels, features, scores)
    return result


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kind", choices=KINDS, required=True)
    parser.add_argument("--model-dir", default="/opt/ml/processing/input/model")
    parser.add_argument("--test-dir", default="/opt/ml/processing/input/test")
    parser.add_argument("--output-dir", default="/opt/ml/processing/evaluation")
    parser.add_argument("--predictions-dir", default=None,
                        help="also write the test rows' predictions here (model baselines)")
    args = parser.parse_args(argv)
    result = evaluate(args.kind, pathlib.Path(args.test_dir),
                      load_predictor(pathlib.Path(args.model_dir)),
                      pathlib.Path(args.predictions_dir) if args.predictions_dir else None)
    output = pathlib.Path(args.output_dir)
    output.mkdir(parents=True, exist_ok=True)
    (output / "evaluation.json").write_text(json.dumps(result, indent=2), encoding="utf-8")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
