"""Last step of the CodeBuild training build: judge the model, then register it.

What the SageMaker pipeline's CheckMetric and RegisterModel steps do, for a build: read the
evaluation report evaluate.py wrote, compare its deciding metric with the threshold (at least
it, or at most it for error metrics), and when it passes, create a model package in the
registry's group with the same approval status, inference specification (the built-in XGBoost
image, the model archive, CSV in and out) and model quality metrics (the report in S3) as the
pipeline's RegisterModel step. A model below the threshold fails the build, as it fails the
pipeline execution, so it never reaches the registry.

Also the build's S3 transfers (`download`, `upload`): the image has boto3 but no AWS CLI.

    python3 register.py download s3://bucket/prefix/ input
    python3 register.py upload model/model.tar.gz s3://bucket/key --kms-key-id ARN
    python3 register.py register --evaluation evaluation/evaluation.json --metric-path
        binary_classification_metrics.auc.value --threshold 0.75 --group G --image URI
        --model-data s3://... --metrics s3://... --approval-status PendingManualApproval
        --description TEXT --token BUILD-UUID
"""

from __future__ import annotations  # the image's Python may predate list[str] at runtime

import argparse
import json
import pathlib
from typing import Any, Sequence

CONTENT_TYPE = "text/csv"


class BelowThreshold(Exception):
    """The model missed the registration threshold."""


def split_uri(uri: str) -> tuple[str, str]:
    if not uri.startswith("s3://"):
        raise ValueError(f"not an s3:// URI: {uri!r}")
    bucket, _, key = uri[len("s3://"):].partition("/")
    return bucket, key


def download(s3: Any, uri: str, target: pathlib.Path) -> int:
    """Every object under the prefix `uri` into `target`, keeping the key below the prefix;
    returns how many."""
    bucket, prefix = split_uri(uri)
    count = 0
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for item in page.get("Contents", []):
            relative = item["Key"][len(prefix):]
            if not relative or relative.endswith("/"):
                continue
            path = target / relative
            if target.resolve() not in path.resolve().parents:
                raise ValueError(f"refusing key {item['Key']!r}")
            path.parent.mkdir(parents=True, exist_ok=True)
            s3.download_file(bucket, item["Key"], str(path))
            count += 1
    return count


def upload(s3: Any, source: pathlib.Path, uri: str, kms_key_id: str) -> None:
    """`source` to `uri`, encrypted with the data key."""
    bucket, key = split_uri(uri)
    s3.upload_file(str(source), bucket, key, ExtraArgs={
        "ServerSideEncryption": "aws:kms", "SSEKMSKeyId": kms_key_id})


def metric_value(report: dict, path: str) -> float:
    """The value at a dotted path of the report (the pipeline's JsonGet path)."""
    value: Any = report
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            raise KeyError(f"the evaluation report has no {path}")
        value = value[part]
    return float(value)


def passes(value: float, threshold: float, lower_is_better: bool) -> bool:
    return value <= threshold if lower_is_better else value >= threshold


def model_package_request(args: argparse.Namespace) -> dict:
    """CreateModelPackage's request: the pipeline's RegisterModel arguments
    (stages/training_pipeline.py register_step) for a build."""
    return {
        "ModelPackageGroupName": args.group,
        "ModelPackageDescription": args.description[:1024],
        "ModelApprovalStatus": args.approval_status,
        "InferenceSpecification": {
            "Containers": [{"Image": args.image, "ModelDataUrl": args.model_data}],
            "SupportedContentTypes": [CONTENT_TYPE],
            "SupportedResponseMIMETypes": [CONTENT_TYPE],
        },
        "ModelMetrics": {"ModelQuality": {"Statistics": {
            "ContentType": "application/json", "S3Uri": args.metrics}}},
        # A retried build step registers the model once.
        "ClientToken": args.token[:36],
    }


def register(sagemaker: Any, args: argparse.Namespace) -> str:
    report = json.loads(pathlib.Path(args.evaluation).read_text(encoding="utf-8"))
    value = metric_value(report, args.metric_path)
    if not passes(value, args.threshold, args.lower_is_better):
        raise BelowThreshold(f"{args.metric_path} {value} missed the registration threshold "
                             f"{args.threshold}")
    arn = sagemaker.create_model_package(**model_package_request(args))["ModelPackageArn"]
    print(json.dumps({"registered": arn, args.metric_path: value}))
    return arn


def parser() -> argparse.ArgumentParser:
    main_parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = main_parser.add_subparsers(dest="command", required=True)
    down = commands.add_parser("download")
    down.add_argument("uri")
    down.add_argument("target")
    up = commands.add_parser("upload")
    up.add_argument("source")
    up.add_argument("uri")
    up.add_argument("--kms-key-id", required=True)
    reg = commands.add_parser("register")
    reg.add_argument("--evaluation", required=True)
    reg.add_argument("--metric-path", required=True)
    reg.add_argument("--threshold", type=float, required=True)
    reg.add_argument("--lower-is-better", action="store_true")
    for name in ("group", "image", "model-data", "metrics", "approval-status", "description",
                 "token"):
        reg.add_argument(f"--{name}", required=True)
    return main_parser


def main(argv: Sequence[str] | None = None) -> None:
    import boto3  # in the image

    args = parser().parse_args(argv)
    if args.command == "download":
        count = download(boto3.client("s3"), args.uri, pathlib.Path(args.target))
        if not count:
            raise SystemExit(f"no objects under {args.uri}")
        print(f"{count} objects from {args.uri}")
    elif args.command == "upload":
        upload(boto3.client("s3"), pathlib.Path(args.source), args.uri, args.kms_key_id)
    else:
        try:
            register(boto3.client("sagemaker"), args)
        except BelowThreshold as error:
            raise SystemExit(str(error)) from None


if __name__ == "__main__":
    main()
