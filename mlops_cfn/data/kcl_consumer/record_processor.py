"""Record processor of the EC2 stream consumer, run by the KCL MultiLangDaemon (amazon_kclpy).

The daemon leases the stream's shards to the workers of the Auto Scaling group and starts this
file once per leased shard, talking to it over stdin and stdout. So nothing here may print to
stdout: what the consumer Lambda prints (its log lines and its Embedded Metric Format line per
batch) goes to the file EVENTS_LOG names instead, which the CloudWatch agent sends to the
consumer's log group, where CloudWatch turns the metric lines into the same metrics the Lambda
reports.

Each record is checked and worked on by the Lambda consumer's own functions (consumer.py,
shipped beside this file: `decode`, `process`), so both consumers treat a record alike. An
invalid record is counted and logged, not retried (a retry cannot make it valid). A record whose
processing fails unexpectedly is tried again up to ATTEMPTS times, then counted as failed and
logged with its sequence number; the raw bucket holds it anyway (Firehose delivers every
record). The processor checkpoints at most every CHECKPOINT_SECONDS, at the end of a shard and
when the worker shuts down, so a restarted worker resumes after the last batch it finished.

The class follows amazon_kclpy.v3.processor.RecordProcessorBase's interface (KCLProcess reads
its `version`) without importing it, so it is tested without the Java daemon.
"""

import contextlib
import os
import sys
import time

import consumer  # the consumer Lambda's code, shipped beside this file

ATTEMPTS = 3
CHECKPOINT_SECONDS = 60
# Checkpoint errors (amazon_kclpy.kcl.CheckpointError.value) after which a retry is pointless:
# the lease went to another worker, or the daemon rejected the position.
GIVE_UP = ("ShutdownException", "InvalidStateException")
CHECKPOINT_RETRIES = 5
THROTTLE_SLEEP_SECONDS = 2


class RecordProcessor:
    version = 3  # amazon_kclpy's v3 interface: lease_lost, shard_ended, shutdown_requested

    def __init__(self, events, clock=time.monotonic, sleep=time.sleep):
        self._events = events  # where consumer.py's printed lines go (never stdout)
        self._clock = clock
        self._sleep = sleep
        self._shard = None
        self._last_sequence = None
        self._last_checkpoint = None

    def initialize(self, initialize_input):
        self._shard = initialize_input.shard_id
        self._last_checkpoint = self._clock()

    def process_records(self, process_records_input):
        valid = invalid = failed = 0
        for record in process_records_input.records:
            outcome = self._process(record)
            valid += outcome == "valid"
            invalid += outcome == "invalid"
            failed += outcome == "failed"
            self._last_sequence = record.sequence_number
        with contextlib.redirect_stdout(self._events):
            consumer.emit_metrics(valid, invalid, failed)
        if (self._last_sequence is not None
                and self._clock() - self._last_checkpoint >= CHECKPOINT_SECONDS):
            self._checkpoint(process_records_input.checkpointer, self._last_sequence)
            self._last_checkpoint = self._clock()

    def lease_lost(self, lease_lost_input):
        # Another worker holds the shard now; a checkpoint would fail.
        log(f"lease lost on {self._shard}")

    def shard_ended(self, shard_ended_input):
        # KCL starts the child shards only once the parent is checkpointed at its end.
        self._checkpoint(shard_ended_input.checkpointer, None)

    def shutdown_requested(self, shutdown_requested_input):
        if self._last_sequence is not None:
            self._checkpoint(shutdown_requested_input.checkpointer, self._last_sequence)

    def _process(self, record):
        """'valid', 'invalid' or 'failed', as the consumer Lambda counts a record."""
        # consumer.decode reads a record as Lambda delivers it; KCL's carries the same
        # base64-encoded data.
        as_lambda_delivers = {"kinesis": {"data": record.data,
                                          "sequenceNumber": record.sequence_number}}
        for attempt in range(1, ATTEMPTS + 1):
            try:
                with contextlib.redirect_stdout(self._events):
                    consumer.process(consumer.decode(as_lambda_delivers))
                return "valid"
            except consumer.InvalidRecord as error:
                with contextlib.redirect_stdout(self._events):
                    consumer.log("invalid record", record.sequence_number, error)
                return "invalid"
            except Exception as error:  # noqa: BLE001 - tried again, then counted as failed
                if attempt == ATTEMPTS:
                    with contextlib.redirect_stdout(self._events):
                        consumer.log("record failed", record.sequence_number, error)
        return "failed"

    def _checkpoint(self, checkpointer, sequence_number):
        for _ in range(CHECKPOINT_RETRIES):
            try:
                checkpointer.checkpoint(sequence_number)
                return
            except Exception as error:  # amazon_kclpy.kcl.CheckpointError, by its value
                reason = getattr(error, "value", type(error).__name__)
                if reason in GIVE_UP:
                    log(f"checkpoint on {self._shard} given up: {reason}")
                    return
                log(f"checkpoint on {self._shard} failed ({reason}), trying again")
                self._sleep(THROTTLE_SLEEP_SECONDS)
        log(f"checkpoint on {self._shard} failed {CHECKPOINT_RETRIES} times")


def log(message):
    """To stderr, which the daemon copies into its own log."""
    print(message, file=sys.stderr, flush=True)


def main():
    from amazon_kclpy import kcl  # installed on the instances, not needed by the tests

    with open(os.environ["EVENTS_LOG"], "a", buffering=1, encoding="utf-8") as events:
        kcl.KCLProcess(RecordProcessor(events)).run()


if __name__ == "__main__":
    main()
