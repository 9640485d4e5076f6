"""Training step of the CodeBuild training build (stages.training.engine: codebuild).

What the built-in XGBoost algorithm does in a SageMaker training job, in one process: read the
train and validation splits (header-less CSV, label first, as prepare.py writes them), train
with the configured hyperparameters (num_round boosting rounds, stopping early when the
validation metric has not improved for early_stopping_rounds), and write model.tar.gz holding
the booster as `xgboost-model`: the archive a SageMaker training job of the built-in algorithm
uploads, which evaluate.py scores and the built-in XGBoost image serves.

    python3 train.py --hyperparameters '{"objective": "binary:logistic", "num_round": "200"}'
        --train-dir splits/train --validation-dir splits/validation --model-dir model

Hyperparameters are text, as SageMaker passes them. Those the algorithm reads itself rather
than passing to XGBoost: num_round (required), early_stopping_rounds, and eval_metric, a
comma-separated list. SageMaker-only ones (csv_weights, use_dask_gpu_training,
save_model_on_termination) are refused rather than ignored.
"""

from __future__ import annotations  # the image's Python may predate list[float] at runtime

import argparse
import csv
import json
import math
import pathlib
import tarfile
from typing import Sequence

MODEL_FILE = "xgboost-model"
ARCHIVE = "model.tar.gz"
# Read by the algorithm, not passed to xgboost.train's params.
ROUNDS = "num_round"
EARLY_STOPPING = "early_stopping_rounds"
EVAL_METRIC = "eval_metric"
# The built-in algorithm's own switches for what a training job offers and a build does not.
UNSUPPORTED = ("csv_weights", "use_dask_gpu_training", "save_model_on_termination")


class TrainingError(Exception):
    """The data or hyperparameters cannot train a model."""


def read_split(directory: pathlib.Path) -> tuple[list[float], list[list[float]]]:
    """Labels and feature rows of every CSV file under `directory` (sorted, so repeatable);
    an empty field is a missing value (NaN), as XGBoost reads it."""
    labels: list[float] = []
    rows: list[list[float]] = []
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
                    raise TrainingError(f"{path.name}:{number}: {error}") from None
                labels.append(values[0])
                rows.append(values[1:])
    if not labels:
        raise TrainingError(f"no rows under {directory}")
    return labels, rows


def training_arguments(hyperparameters: dict[str, str]) -> tuple[dict, int, int | None]:
    """(xgboost params, boosting rounds, early stopping rounds) from the hyperparameters."""
    refused = sorted(set(hyperparameters) & set(UNSUPPORTED))
    if refused:
        raise TrainingError(f"hyperparameters {', '.join(refused)}: SageMaker training jobs "
                            "only; a build trains without them")
    params = dict(hyperparameters)
    try:
        rounds = int(params.pop(ROUNDS))
    except KeyError:
        raise TrainingError(f"hyperparameters.{ROUNDS} is required (the built-in XGBoost's "
                            "number of boosting rounds)") from None
    except ValueError:
        raise TrainingError(f"hyperparameters.{ROUNDS} must be a whole number") from None
    early = params.pop(EARLY_STOPPING, None)
    if EVAL_METRIC in params:
        metrics = [m for m in params.pop(EVAL_METRIC).split(",") if m]
        params[EVAL_METRIC] = metrics
    return params, rounds, int(early) if early else None


def train(hyperparameters: dict[str, str], train_dir: pathlib.Path,
          validation_dir: pathlib.Path, model_dir: pathlib.Path) -> pathlib.Path:
    """Train and write <model_dir>/model.tar.gz; returns its path."""
    import numpy  # only in the image
    import xgboost

    params, rounds, early = training_arguments(hyperparameters)
    labels, rows = read_split(train_dir)
    train_matrix = xgboost.DMatrix(numpy.asarray(rows, dtype=float),
                                   label=numpy.asarray(labels), missing=math.nan)
    watch = [(train_matrix, "train")]
    if validation_dir.is_dir():
        v_labels, v_rows = read_split(validation_dir)
        watch.append((xgboost.DMatrix(numpy.asarray(v_rows, dtype=float),
                                      label=numpy.asarray(v_labels), missing=math.nan),
                      "validation"))
    elif early:
        raise TrainingError(f"{EARLY_STOPPING} needs the validation split ({validation_dir})")
    results: dict = {}
    booster = xgboost.train(params, train_matrix, num_boost_round=rounds, evals=watch,
                            early_stopping_rounds=early, evals_result=results,
                            verbose_eval=False)
    final = {f"{data}:{metric}": values[-1] for data, by_metric in results.items()
             for metric, values in by_metric.items()}
    # The last round's metrics, as the built-in algorithm logs them.
    print(json.dumps({"rounds": booster.num_boosted_rounds(), **final}))
    model_dir.mkdir(parents=True, exist_ok=True)
    booster.save_model(str(model_dir / MODEL_FILE))
    archive = model_dir / ARCHIVE
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(model_dir / MODEL_FILE, arcname=MODEL_FILE)
    return archive


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hyperparameters", required=True, help="a JSON object of text")
    parser.add_argument("--train-dir", required=True)
    parser.add_argument("--validation-dir", required=True)
    parser.add_argument("--model-dir", required=True)
    args = parser.parse_args(argv)
    hyperparameters = json.loads(args.hyperparameters)
    train(hyperparameters, pathlib.Path(args.train_dir), pathlib.Path(args.validation_dir),
          pathlib.Path(args.model_dir))


if __name__ == "__main__":
    main()
