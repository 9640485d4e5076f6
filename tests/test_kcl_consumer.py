"""The EC2 consumer's record processor (mlops_cfn/data/kcl_consumer), run as the KCL's
MultiLangDaemon runs it, without the daemon: its methods are called with inputs shaped like
amazon_kclpy's messages (amazon_kclpy.messages: `records` of `Record`s with base64 `data` and a
`sequence_number`, a `checkpointer` whose `checkpoint(sequence_number)` may raise a
CheckpointError carrying the daemon's error name as `value`).

The processor is imported from the asset the stage ships (kcl_consumer.zip), so what is tested
is what the instances run, the consumer Lambda's code beside it included.
"""

import base64
import importlib
import io
import json
import sys
import zipfile

import pytest

from mlops_cfn.stages import ingestion
from tests.helpers import config_with


class Record:
    """amazon_kclpy.messages.Record as the processor reads it."""

    def __init__(self, data: bytes | str, sequence_number: str):
        raw = data.encode() if isinstance(data, str) else data
        self.data = base64.b64encode(raw).decode()
        self.sequence_number = sequence_number
        self.sub_sequence_number = 0
        self.partition_key = "key"


class CheckpointError(Exception):
    """amazon_kclpy.kcl.CheckpointError: the daemon's error name in `value`."""

    def __init__(self, value: str):
        super().__init__(value)
        self.value = value


class Checkpointer:
    def __init__(self, *failures: str):
        self.failures = list(failures)
        self.calls: list[str | None] = []

    def checkpoint(self, sequence_number=None, sub_sequence_number=None):
        self.calls.append(sequence_number)
        if self.failures:
            raise CheckpointError(self.failures.pop(0))


class Input:
    """ProcessRecordsInput, ShardEndedInput, ShutdownRequestedInput, InitializeInput."""

    def __init__(self, records=(), checkpointer=None, shard_id="shardId-000000000001"):
        self.records = list(records)
        self.checkpointer = checkpointer
        self.shard_id = shard_id


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


@pytest.fixture(scope="module")
def shipped(tmp_path_factory):
    """The files of the kcl_consumer.zip asset the ingestion stage renders."""
    stage = ingestion.build(config_with({
        "network": {"internet_gateway": True},
        "stages": {"ingestion": {"ec2_consumer": {"enabled": True}}}}).config)
    [asset] = [a for a in stage.assets if a.file_name == "kcl_consumer.zip"]
    folder = tmp_path_factory.mktemp("kcl_consumer")
    zipfile.ZipFile(io.BytesIO(asset.content)).extractall(folder)
    return folder


@pytest.fixture
def module(shipped, monkeypatch):
    monkeypatch.setenv("METRICS_NAMESPACE", "MLOps/test")
    monkeypatch.setenv("STREAM_NAME", "test-stream")
    monkeypatch.syspath_prepend(str(shipped))
    for name in ("record_processor", "consumer"):
        sys.modules.pop(name, None)
    yield importlib.import_module("record_processor")
    for name in ("record_processor", "consumer"):
        sys.modules.pop(name, None)


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def events():
    return io.StringIO()


@pytest.fixture
def processor(module, events, clock):
    p = module.RecordProcessor(events, clock=clock, sleep=lambda seconds: None)
    p.initialize(Input())
    return p


def lines(events) -> list[dict]:
    return [json.loads(line) for line in events.getvalue().splitlines()]


def test_the_asset_ships_the_lambda_consumers_code_unchanged(shipped):
    from mlops_cfn.stages.ingestion import CONSUMER_SOURCE
    assert (shipped / "consumer.py").read_bytes() == CONSUMER_SOURCE.read_bytes()
    assert sorted(p.name for p in shipped.iterdir()) == ["consumer.py", "record_processor.py"]


def test_it_speaks_the_v3_interface_kclprocess_dispatches_on(module):
    assert module.RecordProcessor.version == 3
    for method in ("initialize", "process_records", "lease_lost", "shard_ended",
                   "shutdown_requested"):
        assert callable(getattr(module.RecordProcessor, method))


def test_a_batch_is_counted_in_the_lambdas_metric_format(processor, events, capsys):
    processor.process_records(Input([Record('{"id": 1}', "1"), Record("not json", "2"),
                                     Record("[1]", "3")], Checkpointer()))
    *logged, metric = lines(events)
    assert metric["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "MLOps/test"
    assert metric["StreamName"] == "test-stream"
    assert (metric["ValidRecords"], metric["InvalidRecords"], metric["FailedRecords"]) == (1, 2, 0)
    assert [(line["message"], line["sequenceNumber"]) for line in logged] == [
        ("invalid record", "2"), ("invalid record", "3")]
    # stdout is the daemon's protocol channel: nothing may reach it
    assert capsys.readouterr().out == ""


def test_a_record_that_keeps_failing_is_tried_again_then_counted_failed(
        module, processor, events, monkeypatch):
    calls = []

    def process(payload):
        calls.append(payload)
        if payload.get("poison"):
            raise RuntimeError("boom")

    monkeypatch.setattr(sys.modules["consumer"], "process", process)
    processor.process_records(Input([Record('{"poison": true}', "5"), Record('{"ok": 1}', "6")],
                                    Checkpointer()))
    assert len(calls) == module.ATTEMPTS + 1
    *logged, metric = lines(events)
    assert (metric["ValidRecords"], metric["FailedRecords"]) == (1, 1)
    assert logged == [{"message": "record failed", "sequenceNumber": "5",
                       "error": "RuntimeError: boom"}]


def test_a_record_that_fails_once_is_valid_on_the_next_attempt(processor, events, monkeypatch):
    attempts = []

    def process(payload):
        attempts.append(payload)
        if len(attempts) == 1:
            raise TimeoutError("slow")

    monkeypatch.setattr(sys.modules["consumer"], "process", process)
    processor.process_records(Input([Record('{"id": 1}', "9")], Checkpointer()))
    assert lines(events)[-1]["ValidRecords"] == 1


def test_it_checkpoints_the_last_record_once_the_interval_has_passed(module, processor, clock):
    checkpointer = Checkpointer()
    processor.process_records(Input([Record('{"a": 1}', "10")], checkpointer))
    assert checkpointer.calls == []  # within the interval: no DynamoDB write per batch
    clock.now += module.CHECKPOINT_SECONDS
    processor.process_records(Input([Record('{"a": 2}', "11"), Record('{"a": 3}', "12")],
                                    checkpointer))
    assert checkpointer.calls == ["12"]


def test_a_throttled_checkpoint_is_tried_again(module, processor, clock):
    checkpointer = Checkpointer("ThrottlingException")
    clock.now += module.CHECKPOINT_SECONDS
    processor.process_records(Input([Record('{"a": 1}', "20")], checkpointer))
    assert checkpointer.calls == ["20", "20"]


def test_a_lost_lease_stops_checkpointing_at_once(module, processor, clock):
    checkpointer = Checkpointer("ShutdownException", "ShutdownException")
    clock.now += module.CHECKPOINT_SECONDS
    processor.process_records(Input([Record('{"a": 1}', "30")], checkpointer))
    assert checkpointer.calls == ["30"]


def test_the_end_of_a_shard_is_checkpointed_so_its_children_start(processor):
    checkpointer = Checkpointer()
    processor.shard_ended(Input(checkpointer=checkpointer))
    assert checkpointer.calls == [None]


def test_shutdown_checkpoints_what_was_processed(processor):
    processor.process_records(Input([Record('{"a": 1}', "40")], Checkpointer()))
    checkpointer = Checkpointer()
    processor.shutdown_requested(Input(checkpointer=checkpointer))
    assert checkpointer.calls == ["40"]


def test_shutdown_before_any_record_does_not_checkpoint(processor):
    checkpointer = Checkpointer()
    processor.shutdown_requested(Input(checkpointer=checkpointer))
    assert checkpointer.calls == []
