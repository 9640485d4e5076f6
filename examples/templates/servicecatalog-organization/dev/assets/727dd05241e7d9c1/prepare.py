"""Prepare step of the training pipeline: processed data in, train/validation/test CSV out.

Run by a SageMaker processing job with the input location under /opt/ml/processing/input/data
and three outputs, /opt/ml/processing/output/{train,validation,test}/. Every row becomes one
header-less CSV line with the label first and the feature columns after it, in one fixed order:
what the built-in XGBoost algorithm reads. A fourth output, baseline/, holds the training rows
without their label: what the endpoint receives, and what Model Monitor's baseline describes.

A row's split follows from a hash of its content, not from chance or position: the same row
lands in the same split on every run, so a model is never tested on rows an earlier model was
trained on, and identical rows cannot straddle two splits.

Reading CSV needs only the standard library; Parquet needs pandas (with pyarrow), which the
XGBoost container has.
"""

from __future__ import annotations  # the container's Python may predate list[str] at runtime

import argparse
import csv
import hashlib
import itertools
import math
import pathlib
from typing import Iterator, Sequence

FORMATS = ("parquet", "csv", "csv_headerless")
SPLITS = ("train", "validation", "test")
BASELINE = "baseline"
# Part of every row's hash: change it to draw a different (still repeatable) split.
SPLIT_SEED = "mlops-cfn"
# Rows read to tell numeric columns from text ones when no feature columns are configured.
SAMPLE_ROWS = 1000


class PrepareError(Exception):
    """The input cannot be turned into training data (missing columns, text features, ...)."""


def assign_split(row: Sequence[str], validation_fraction: float, test_fraction: float) -> str:
    """`train`, `validation` or `test` for a row (its label and features as text)."""
    digest = hashlib.sha256("\x1f".join([SPLIT_SEED, *row]).encode("utf-8")).digest()
    position = int.from_bytes(digest[:8], "big") / 2 ** 64  # uniform in [0, 1)
    if position < test_fraction:
        return "test"
    if position < test_fraction + validation_fraction:
        return "validation"
    return "train"


def as_number(value: object, column: str, where: str) -> str:
    """A cell as XGBoost's CSV wants it: a number, or empty when missing."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, bool):
        return "1" if value else "0"
    text = str(value).strip()
    if text == "" or text.lower() in ("nan", "null", "none"):
        return ""
    try:
        number = float(text)
    except ValueError:
        raise PrepareError(f"{where}: column {column!r} holds {text[:40]!r}, not a number; "
                           "XGBoost trains on numbers only (encode it in the ETL job or "
                           "leave the column out of record_schema.features)") from None
    if not math.isfinite(number):
        return ""
    return repr(int(number)) if number.is_integer() and abs(number) < 2 ** 53 else repr(number)


def data_files(directory: pathlib.Path) -> list[pathlib.Path]:
    """Data files under `directory`, sorted; markers (_SUCCESS) and hidden files skipped."""
    return sorted(p for p in directory.rglob("*")
                  if p.is_file() and not p.name.startswith(("_", ".")) and p.stat().st_size)


def records(path: pathlib.Path, input_format: str) -> Iterator[dict[str, object] | list[str]]:
    """The rows of one file: mappings by column name, or plain lists for header-less CSV."""
    if input_format == "parquet":
        import pandas  # only in the container

        frame = pandas.read_parquet(path)
        for row in frame.to_dict(orient="records"):
            yield row
        return
    with path.open(newline="", encoding="utf-8") as handle:
        if input_format == "csv":
            yield from csv.DictReader(handle)
        else:
            for row in csv.reader(handle):
                if row:
                    yield row


def is_number(value: object) -> bool | None:
    """True for a number, False for text that is not one, None for a missing value."""
    try:
        return as_number(value, "", "") != "" or None
    except PrepareError:
        return False


def numeric_columns(sample: Sequence[dict[str, object]], label: str) -> list[str]:
    """Columns (but the label) holding numbers in `sample`, in their order: with no
    features given (--feature-columns), text columns (ids, names, timestamps) are left out."""
    columns = [c for c in sample[0] if c != label] if sample else []
    kept = []
    for column in columns:
        seen = [is_number(record.get(column)) for record in sample]
        if True in seen and False not in seen:
            kept.append(column)
    return kept


def rows(files: Sequence[pathlib.Path], input_format: str, label: str,
         features: Sequence[str] | None) -> Iterator[list[str]]:
    """Each input row as [label, *features] text; rows without a label are skipped."""
    stream = ((f"{path.name}:{number}", record) for path in files
              for number, record in enumerate(records(path, input_format), start=1))
    columns = list(features) if features else None
    if columns is None and input_format != "csv_headerless":
        # Decide the features from the first rows, then hold them: every later row must have
        # them, or the model would see features in different places.
        sample = list(itertools.islice(stream, SAMPLE_ROWS))
        columns = numeric_columns([record for _, record in sample], label)
        if sample and not columns:
            raise PrepareError("no numeric feature column found; set record_schema.features")
        print(f"features: {', '.join(columns)}")
        stream = itertools.chain(sample, stream)
    for where, record in stream:
        if isinstance(record, list):
            values = [as_number(v, f"#{i}", where) for i, v in enumerate(record)]
        else:
            missing = [c for c in [label, *columns] if c not in record]
            if missing:
                raise PrepareError(f"{where}: no column {', '.join(map(repr, missing))}")
            values = [as_number(record[c], c, where) for c in [label, *columns]]
        if values and values[0] != "":
            yield values


def prepare(input_dir: pathlib.Path, output_dir: pathlib.Path, input_format: str, label: str,
            features: Sequence[str] | None, validation_fraction: float,
            test_fraction: float) -> dict[str, int]:
    """Write the three splits (and the training features as `baseline`) under `output_dir`;
    returns the row count of each split."""
    if input_format not in FORMATS:
        raise PrepareError(f"unknown input format {input_format!r}")
    files = data_files(input_dir)
    if not files:
        raise PrepareError(f"no data files under {input_dir}")
    counts = dict.fromkeys(SPLITS, 0)
    handles = {}
    try:
        writers = {}
        for split in (*SPLITS, BASELINE):
            (output_dir / split).mkdir(parents=True, exist_ok=True)
            handles[split] = (output_dir / split / "data.csv").open("w", newline="",
                                                                   encoding="utf-8")
            writers[split] = csv.writer(handles[split], lineterminator="\n")
        for row in rows(files, input_format, label, features):
            split = assign_split(row, validation_fraction, test_fraction)
            writers[split].writerow(row)
            counts[split] += 1
            if split == "train":
                writers[BASELINE].writerow(row[1:])
    finally:
        for handle in handles.values():
            handle.close()
    empty = [split for split, count in counts.items() if count == 0]
    if empty:
        raise PrepareError(f"too few rows ({sum(counts.values())}): no rows for "
                           f"{', '.join(empty)}")
    return counts


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input-format", choices=FORMATS, required=True)
    parser.add_argument("--label-column", default="label")
    parser.add_argument("--feature-columns", default="",
                        help="comma-separated; empty: every numeric column but the label")
    parser.add_argument("--validation-fraction", type=float, required=True)
    parser.add_argument("--test-fraction", type=float, required=True)
    parser.add_argument("--input-dir", default="/opt/ml/processing/input/data")
    parser.add_argument("--output-dir", default="/opt/ml/processing/output")
    args = parser.parse_args(argv)
    features = [c for c in args.feature_columns.split(",") if c] or None
    counts = prepare(pathlib.Path(args.input_dir), pathlib.Path(args.output_dir),
                     args.input_format, args.label_column, features,
                     args.validation_fraction, args.test_fraction)
    print(", ".join(f"{split}: {count} rows" for split, count in counts.items()))


if __name__ == "__main__":
    main()
