"""The bundled real-time consumer (mlops_cfn/data/consumer.py), run as Lambda would run it.

Lambda gets the file as inline code, so it is loaded here from its path, not as a package module.
"""

import base64
import importlib.util
import json

import pytest

from mlops_cfn.stages.ingestion import CONSUMER_SOURCE, INLINE_CODE_LIMIT


@pytest.fixture
def consumer(monkeypatch):
    monkeypatch.setenv("METRICS_NAMESPACE", "MLOps/test")
    monkeypatch.setenv("STREAM_NAME", "test-stream")
    spec = importlib.util.spec_from_file_location("index", CONSUMER_SOURCE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def record(data: bytes | str, sequence: str) -> dict:
    """One record of a Kinesis event as Lambda delivers it (data base64-encoded)."""
    raw = data.encode() if isinstance(data, str) else data
    return {
        "eventSource": "aws:kinesis",
        "eventID": f"shardId-000000000000:{sequence}",
        "kinesis": {
            "kinesisSchemaVersion": "1.0",
            "partitionKey": "key",
            "sequenceNumber": sequence,
            "data": base64.b64encode(raw).decode(),
            "approximateArrivalTimestamp": 1700000000.0,
        },
    }


def event(*records: dict) -> dict:
    return {"Records": list(records)}


def printed(capsys) -> list[dict]:
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()]


def metrics(capsys) -> dict:
    """The Embedded Metric Format line the handler printed last."""
    return printed(capsys)[-1]


def test_source_fits_cloudformations_inline_code_limit():
    assert len(CONSUMER_SOURCE.read_bytes()) <= INLINE_CODE_LIMIT


def test_valid_records_are_counted_and_none_is_reported_failed(consumer, capsys):
    result = consumer.handler(event(record('{"id": 1}', "1"), record('{"id": 2}', "2")), None)
    assert result == {"batchItemFailures": []}
    emitted = metrics(capsys)
    assert (emitted["ValidRecords"], emitted["InvalidRecords"], emitted["FailedRecords"]) == (2, 0, 0)


@pytest.mark.parametrize("data", [
    b"not json",
    b'{"unterminated": ',
    b"[1, 2, 3]",            # JSON, but not an object
    b'"a string"',
    b"\xff\xfe binary",      # not UTF-8
])
def test_invalid_records_are_counted_and_logged_but_not_retried(consumer, capsys, data):
    result = consumer.handler(event(record(data, "7"), record('{"ok": true}', "8")), None)
    assert result == {"batchItemFailures": []}
    lines = printed(capsys)
    assert {"message": "invalid record", "sequenceNumber": "7"}.items() <= lines[0].items()
    assert (lines[-1]["ValidRecords"], lines[-1]["InvalidRecords"]) == (1, 1)


def test_data_that_is_not_base64_is_invalid(consumer, capsys):
    broken = record("{}", "3")
    broken["kinesis"]["data"] = "%%% not base64 %%%"
    assert consumer.handler(event(broken), None) == {"batchItemFailures": []}
    assert metrics(capsys)["InvalidRecords"] == 1


def test_a_record_whose_processing_raises_is_reported_for_retry(consumer, capsys, monkeypatch):
    def process(payload):
        if payload.get("poison"):
            raise RuntimeError("downstream unavailable")

    monkeypatch.setattr(consumer, "process", process)
    result = consumer.handler(event(
        record('{"id": 1}', "10"),
        record('{"poison": true}', "11"),
        record('{"id": 3}', "12"),
        record("garbage", "13"),
    ), None)
    # Only the unexpected failure: retrying cannot fix the garbage record.
    assert result == {"batchItemFailures": [{"itemIdentifier": "11"}]}
    lines = printed(capsys)
    assert any(line.get("message") == "record failed" and line["sequenceNumber"] == "11"
               and "downstream unavailable" in line["error"] for line in lines)
    emitted = lines[-1]
    assert (emitted["ValidRecords"], emitted["InvalidRecords"], emitted["FailedRecords"]) == (2, 1, 1)


def test_a_malformed_record_fails_without_stopping_the_batch(consumer, capsys):
    result = consumer.handler(event({"kinesis": {"sequenceNumber": "20"}},
                                    record('{"id": 1}', "21")), None)
    assert result == {"batchItemFailures": [{"itemIdentifier": "20"}]}
    assert metrics(capsys)["ValidRecords"] == 1


def test_counts_are_emitted_in_embedded_metric_format(consumer, capsys):
    consumer.handler(event(record('{"id": 1}', "1")), None)
    emitted = metrics(capsys)
    directive = emitted["_aws"]
    assert isinstance(directive["Timestamp"], int)
    [metric_set] = directive["CloudWatchMetrics"]
    assert metric_set["Namespace"] == "MLOps/test"
    assert metric_set["Dimensions"] == [["StreamName"]]
    assert {m["Name"] for m in metric_set["Metrics"]} == {
        "ValidRecords", "InvalidRecords", "FailedRecords"}
    assert all(m["Unit"] == "Count" for m in metric_set["Metrics"])
    # Every metric and dimension named in the directive is a member of the same object.
    assert emitted["StreamName"] == "test-stream"
    assert all(isinstance(emitted[m["Name"]], int) for m in metric_set["Metrics"])


def test_an_empty_batch_emits_zero_counts(consumer, capsys):
    assert consumer.handler({"Records": []}, None) == {"batchItemFailures": []}
    emitted = metrics(capsys)
    assert (emitted["ValidRecords"], emitted["InvalidRecords"], emitted["FailedRecords"]) == (0, 0, 0)
