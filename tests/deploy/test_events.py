"""Following a stack operation: every nested stack's events once, history left out, the end found
at the root's own final event, and the failing resource that explains a failure."""

from datetime import datetime, timedelta, timezone

from rich.console import Console

from mlops_cfn.events import Event, first_failure, watch

ROOT = "arn:aws:cloudformation:us-east-1:123456789012:stack/demo/1"
STORAGE = "arn:aws:cloudformation:us-east-1:123456789012:stack/demo-StorageStack-A/2"
START = datetime(2026, 1, 1, 12, 0, tzinfo=timezone.utc)


def raw(stack_id, logical_id, status, seconds, resource_type="AWS::S3::Bucket",
        physical_id="", reason=""):
    return {"StackId": stack_id, "EventId": f"{stack_id}-{logical_id}-{status}-{seconds}",
            "StackName": stack_id.split("/")[1], "LogicalResourceId": logical_id,
            "PhysicalResourceId": physical_id, "ResourceType": resource_type,
            "Timestamp": START + timedelta(seconds=seconds), "ResourceStatus": status,
            "ResourceStatusReason": reason}


def stack_event(stack_id, status, seconds, reason=""):
    return raw(stack_id, stack_id.split("/")[1], status, seconds,
               "AWS::CloudFormation::Stack", stack_id, reason)


class FakeCloudFormation:
    """Events appear at the poll they are listed under; each sleep moves to the next poll."""

    def __init__(self, polls: list[dict[str, list[dict]]], nested: dict[str, str]):
        self.polls = polls
        self.nested = nested  # logical id -> stack id of the root's nested stacks
        self.poll = 0

    def sleep(self, _seconds):
        self.poll += 1

    def visible(self, stack_id):
        events = [e for poll in self.polls[:self.poll + 1] for e in poll.get(stack_id, [])]
        return sorted(events, key=lambda e: e["Timestamp"], reverse=True)

    def get_paginator(self, operation):
        fake = self

        class Paginator:
            def paginate(self, StackName):
                if operation == "describe_stack_events":
                    yield {"StackEvents": fake.visible(StackName)}
                else:
                    yield {"StackResourceSummaries": [
                        {"LogicalResourceId": name, "PhysicalResourceId": stack_id,
                         "ResourceType": "AWS::CloudFormation::Stack"}
                        for name, stack_id in fake.nested.items()] if StackName == ROOT else []}

        return Paginator()


def follow(fake, seen=()):
    console = Console(width=200, record=True)
    outcome = watch(fake, ROOT, "demo", seen=set(seen), console=console, interval=0,
                    sleep=fake.sleep)
    return outcome, console.export_text()


def test_events_of_every_stack_are_shown_once_until_the_root_completes():
    history = [stack_event(ROOT, "CREATE_COMPLETE", -600),
               stack_event(STORAGE, "CREATE_COMPLETE", -610)]
    fake = FakeCloudFormation(nested={"StorageStack": STORAGE}, polls=[
        {ROOT: history[:1] + [stack_event(ROOT, "UPDATE_IN_PROGRESS", 0, "User Initiated")],
         STORAGE: history[1:]},
        {ROOT: [raw(ROOT, "StorageStack", "UPDATE_IN_PROGRESS", 1,
                    "AWS::CloudFormation::Stack", STORAGE)],
         STORAGE: [stack_event(STORAGE, "UPDATE_IN_PROGRESS", 2),
                   raw(STORAGE, "RawBucket", "UPDATE_IN_PROGRESS", 3),
                   raw(STORAGE, "RawBucket", "UPDATE_COMPLETE", 4)]},
        {STORAGE: [stack_event(STORAGE, "UPDATE_COMPLETE", 5)],
         ROOT: [raw(ROOT, "StorageStack", "UPDATE_COMPLETE", 6, "AWS::CloudFormation::Stack",
                    STORAGE),
                stack_event(ROOT, "UPDATE_COMPLETE_CLEANUP_IN_PROGRESS", 7),
                stack_event(ROOT, "UPDATE_COMPLETE", 8)]},
        {ROOT: [stack_event(ROOT, "SHOULD_NOT_BE_READ", 9)]},
    ])

    outcome, text = follow(fake, seen={history[0]["EventId"]})

    assert outcome.ok and outcome.status == "UPDATE_COMPLETE"
    assert fake.poll == 2, "stops at the root's own final event"
    shown = [(e.stack, e.logical_id, e.status) for e in outcome.events]
    assert shown == [
        ("demo", "demo", "UPDATE_IN_PROGRESS"),
        ("demo", "StorageStack", "UPDATE_IN_PROGRESS"),
        ("StorageStack", "demo-StorageStack-A", "UPDATE_IN_PROGRESS"),
        ("StorageStack", "RawBucket", "UPDATE_IN_PROGRESS"),
        ("StorageStack", "RawBucket", "UPDATE_COMPLETE"),
        ("StorageStack", "demo-StorageStack-A", "UPDATE_COMPLETE"),
        ("demo", "StorageStack", "UPDATE_COMPLETE"),
        ("demo", "demo", "UPDATE_COMPLETE_CLEANUP_IN_PROGRESS"),
        ("demo", "demo", "UPDATE_COMPLETE"),
    ], "no history from earlier operations, nothing twice"
    assert "RawBucket (AWS::S3::Bucket)" in text
    assert text.count("UPDATE_COMPLETE ") >= 3


def test_a_previous_final_status_does_not_end_the_watch():
    fake = FakeCloudFormation(nested={}, polls=[
        {ROOT: [stack_event(ROOT, "UPDATE_COMPLETE", -60)]},  # the last operation's end
        {ROOT: [stack_event(ROOT, "UPDATE_IN_PROGRESS", 0)]},
        {ROOT: [stack_event(ROOT, "UPDATE_COMPLETE", 10)]},
    ])
    seen = {e["EventId"] for e in fake.visible(ROOT)}
    outcome, _ = follow(fake, seen=seen)
    assert outcome.status == "UPDATE_COMPLETE" and fake.poll == 2


def test_a_failure_is_explained_by_the_first_failing_resource_in_a_nested_stack():
    fake = FakeCloudFormation(nested={"StorageStack": STORAGE}, polls=[
        {ROOT: [stack_event(ROOT, "CREATE_IN_PROGRESS", 0, "User Initiated")],
         STORAGE: [stack_event(STORAGE, "CREATE_IN_PROGRESS", 1),
                   raw(STORAGE, "DataKey", "CREATE_FAILED", 2, "AWS::KMS::Key",
                       reason="Resource creation cancelled"),
                   raw(STORAGE, "RawBucket", "CREATE_FAILED", 2, reason="demo-raw already "
                       "exists")]},
        {STORAGE: [stack_event(STORAGE, "CREATE_FAILED", 3, "The following resource(s) "
                                                             "failed to create: [RawBucket]")],
         ROOT: [raw(ROOT, "StorageStack", "CREATE_FAILED", 4, "AWS::CloudFormation::Stack",
                    STORAGE, "Embedded stack arn:... was not successfully created"),
                stack_event(ROOT, "ROLLBACK_IN_PROGRESS", 5),
                stack_event(ROOT, "ROLLBACK_COMPLETE", 9)]},
    ])
    outcome, text = follow(fake)
    assert not outcome.ok and outcome.status == "ROLLBACK_COMPLETE"
    failure = outcome.failure
    assert (failure.stack, failure.logical_id, failure.reason) == \
        ("StorageStack", "RawBucket", "demo-raw already exists")
    assert "demo-raw already exists" in text


def test_first_failure_falls_back_to_what_there_is():
    def event(logical_id, status, reason, resource_type="AWS::S3::Bucket", seconds=0):
        return Event("s", "id", logical_id, resource_type, status, reason,
                     START + timedelta(seconds=seconds), f"{logical_id}{seconds}")

    assert first_failure([event("A", "CREATE_COMPLETE", "")]) is None
    only_cancelled = [event("B", "CREATE_FAILED", "Resource creation cancelled", seconds=2),
                      event("C", "CREATE_FAILED", "Resource creation cancelled", seconds=1)]
    assert first_failure(only_cancelled).logical_id == "C"
    only_stack = [event("Nested", "CREATE_FAILED", "Embedded stack failed",
                        "AWS::CloudFormation::Stack")]
    assert first_failure(only_stack).logical_id == "Nested"
