"""Real-time consumer of the ingest stream: checks each record, reports counts as metrics.

A record should hold one JSON object. An invalid record is counted and logged, not retried:
a retry cannot make it valid, and Firehose keeps every record in the raw bucket anyway. A
record whose processing fails unexpectedly goes to batchItemFailures, so Lambda retries from
it (bisecting the batch) and at last reports it to the failure queue.
Metrics are Embedded Metric Format log lines: no PutMetricData call, no network access.
"""

import base64
import binascii
import json
import os
import time


class InvalidRecord(ValueError):
    """The record's data is not base64-encoded JSON holding an object."""


def decode(record):
    data = record["kinesis"]["data"]
    try:
        payload = json.loads(base64.b64decode(data, validate=True))
    except (binascii.Error, ValueError) as error:  # JSON and UTF-8 errors are ValueErrors
        raise InvalidRecord(str(error)) from None
    if not isinstance(payload, dict):
        raise InvalidRecord(f"expected a JSON object, got {type(payload).__name__}")
    return payload


def process(payload):
    """Real-time work on one valid record; replace with your own (the default only checks)."""


def handler(event, context):
    valid = invalid = 0
    failures = []
    for record in event.get("Records", []):
        sequence = record.get("kinesis", {}).get("sequenceNumber")
        try:
            process(decode(record))
            valid += 1
        except InvalidRecord as error:
            invalid += 1
            log("invalid record", sequence, error)
        except Exception as error:  # noqa: BLE001 - any other failure is retried
            failures.append({"itemIdentifier": sequence})
            log("record failed", sequence, error)
    emit_metrics(valid, invalid, len(failures))
    return {"batchItemFailures": failures}


def log(message, sequence, error):
    print(json.dumps({"message": message, "sequenceNumber": sequence,
                      "error": f"{type(error).__name__}: {error}"}))


def emit_metrics(valid, invalid, failed):
    names = ("ValidRecords", "InvalidRecords", "FailedRecords")
    print(json.dumps({
        "_aws": {
            "Timestamp": int(time.time() * 1000),
            "CloudWatchMetrics": [{
                "Namespace": os.environ.get("METRICS_NAMESPACE", "MLOps/Ingestion"),
                "Dimensions": [["StreamName"]],
                "Metrics": [{"Name": name, "Unit": "Count"} for name in names],
            }],
        },
        "StreamName": os.environ.get("STREAM_NAME", "unknown"),
        **dict(zip(names, (valid, invalid, failed))),
    }))
