"""Follow a stack operation to its end: events of the root and every nested stack, live.

`watch` polls DescribeStackEvents for the root stack and for each nested stack it discovers (from
the events themselves and from the root's resources), prints every new event once, keeps a
progress row per stack, and returns at the root's own event with a final status. A boto3 waiter
would wait just as well but show nothing; the events are the point.

`first_failure` picks the event that explains a failed operation: the earliest failed resource
that is not itself a nested stack (whose reason only points at its children) and not a
"cancelled" consequence of another failure.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Callable

NESTED_STACK = "AWS::CloudFormation::Stack"
SUCCESS = {"CREATE_COMPLETE", "UPDATE_COMPLETE", "IMPORT_COMPLETE"}
# Final statuses that are not success: the operation failed and was (or could not be) undone.
FAILURE = {"CREATE_FAILED", "ROLLBACK_COMPLETE", "ROLLBACK_FAILED", "UPDATE_FAILED",
           "UPDATE_ROLLBACK_COMPLETE", "UPDATE_ROLLBACK_FAILED", "DELETE_COMPLETE",
           "DELETE_FAILED", "IMPORT_ROLLBACK_COMPLETE", "IMPORT_ROLLBACK_FAILED"}
_FAILED_SUFFIXES = ("_FAILED",)
_CONSEQUENTIAL = ("cancelled", "canceled", "Embedded stack", "The following resource(s) failed")


@dataclass(frozen=True)
class Event:
    stack: str  # label: the root's name or a nested stack's logical id
    stack_id: str
    logical_id: str
    resource_type: str
    status: str
    reason: str
    timestamp: datetime
    event_id: str
    physical_id: str = ""

    @classmethod
    def from_api(cls, stack: str, raw: dict[str, Any]) -> Event:
        return cls(stack=stack, stack_id=raw.get("StackId", ""),
                   logical_id=raw.get("LogicalResourceId", ""),
                   resource_type=raw.get("ResourceType", ""),
                   status=raw.get("ResourceStatus", ""),
                   reason=raw.get("ResourceStatusReason", "") or "",
                   timestamp=raw["Timestamp"], event_id=raw.get("EventId", ""),
                   physical_id=raw.get("PhysicalResourceId", "") or "")

    @property
    def failed(self) -> bool:
        return self.status.endswith(_FAILED_SUFFIXES)

    @property
    def is_stack_event(self) -> bool:
        """An event about a stack as a whole (the stack's own row in its event list)."""
        return self.resource_type == NESTED_STACK and self.physical_id == self.stack_id


@dataclass
class Outcome:
    status: str
    events: list[Event] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.status in SUCCESS

    @property
    def failure(self) -> Event | None:
        return first_failure(self.events)


def first_failure(events: list[Event]) -> Event | None:
    failed = [e for e in events if e.failed]
    causes = [e for e in failed if e.resource_type != NESTED_STACK
              and not any(text in e.reason for text in _CONSEQUENTIAL)]
    for candidates in (causes, [e for e in failed if e.resource_type != NESTED_STACK], failed):
        if candidates:
            return min(candidates, key=lambda e: e.timestamp)
    return None


def existing_event_ids(cfn, stack_id: str) -> set[str]:
    """The newest page of a stack's events: what happened before the operation we follow."""
    try:
        page = cfn.describe_stack_events(StackName=stack_id)
    except Exception:  # noqa: BLE001 - a stack being created may not answer yet
        return set()
    return {e.get("EventId", "") for e in page.get("StackEvents", [])}


class _Display:
    """The live view: printed event lines and one progress row per stack."""

    def __init__(self, console, expected: dict[str, int]):
        from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn

        self.expected = expected
        # Transient: the event lines are the record; the bars only show what is under way.
        self.progress = Progress(SpinnerColumn(), TextColumn("{task.description:<28}"),
                                 BarColumn(bar_width=24), TextColumn("{task.fields[count]:>7}"),
                                 TextColumn("{task.fields[status]}"), console=console,
                                 transient=True)
        self.tasks: dict[str, Any] = {}
        self.done: dict[str, set[str]] = {}

    def __enter__(self) -> _Display:
        self.progress.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.progress.__exit__(*exc)

    def show(self, event: Event) -> None:
        style = "red" if event.failed else "green" if event.status.endswith("_COMPLETE") \
            else "yellow"
        from rich.text import Text

        line = Text(f"{event.timestamp:%H:%M:%S} ")
        line.append(f"{event.status:<28}", style=style)
        line.append(f" {event.stack:<20} {event.logical_id} ({event.resource_type})")
        if event.reason:
            line.append(f"  {event.reason}")
        self.progress.console.print(line, highlight=False, soft_wrap=True)
        task = self._task(event.stack)
        if event.is_stack_event or (event.resource_type == NESTED_STACK
                                    and event.logical_id == event.stack):
            self.progress.update(task, status=event.status)
        elif event.status.endswith("_COMPLETE"):
            self.done[event.stack].add(event.logical_id)
            self.progress.update(task, completed=len(self.done[event.stack]),
                                 count=self._count(event.stack))

    def _task(self, stack: str):
        if stack not in self.tasks:
            self.done[stack] = set()
            self.tasks[stack] = self.progress.add_task(stack, total=self.expected.get(stack),
                                                       status="", count=self._count(stack))
        return self.tasks[stack]

    def _count(self, stack: str) -> str:
        """Resources done, out of the changes the change set listed for the stack if known."""
        total = self.expected.get(stack)
        done = len(self.done.get(stack, ()))
        return f"{done}/{total}" if total is not None else str(done)

    def stack_status(self, stack: str, status: str) -> None:
        self.progress.update(self._task(stack), status=status)

    def finish(self) -> None:
        for stack, task in self.tasks.items():
            total = self.expected.get(stack)
            if total is not None:
                self.progress.update(task, completed=total, count=f"{total}/{total}")


def watch(cfn, stack_id: str, root_label: str, *, seen: set[str], console,
          expected: dict[str, int] | None = None, interval: float = 5.0,
          sleep: Callable[[float], None] = time.sleep) -> Outcome:
    """Stream the events of the operation under way on `stack_id` until it ends.

    `seen` holds the ids of the root's events from before the operation (`existing_event_ids`).
    A nested stack's events older than the operation's first root event are history from an
    earlier operation and are passed over. `expected` is the number of changes per stack label,
    for the progress bars.
    """
    stacks: dict[str, str] = {stack_id: root_label}  # what to poll (id or name) -> label
    seen = set(seen)
    collected: list[Event] = []
    since: datetime | None = None
    final = ""
    with _Display(console, expected or {}) as display:
        display.stack_status(root_label, "")
        while True:
            _discover_nested(cfn, stack_id, stacks)
            fresh = _new_events(cfn, stacks, seen)
            root_times = [event.timestamp for polled, event in fresh if polled == stack_id]
            if root_times:
                since = min([since, *root_times] if since else root_times)
            for polled, event in fresh:
                if polled != stack_id:
                    if since is None:
                        continue  # the operation's start is not known yet: ask again later
                    if event.timestamp < since:
                        seen.add(event.event_id)  # history of an earlier operation
                        continue
                seen.add(event.event_id)
                collected.append(event)
                display.show(event)
                if event.resource_type == NESTED_STACK and event.physical_id \
                        and event.physical_id != event.stack_id:
                    stacks.setdefault(event.physical_id, event.logical_id)
                if polled == stack_id and event.is_stack_event:
                    display.stack_status(root_label, event.status)
                    # The root's own event with a final status ends the operation. (Its status
                    # from DescribeStacks could still be the previous operation's.)
                    if event.status in SUCCESS or event.status in FAILURE:
                        final = event.status
            if final:
                if final in SUCCESS:
                    display.finish()
                return Outcome(final, collected)
            sleep(interval)


def _discover_nested(cfn, stack_id: str, stacks: dict[str, str]) -> None:
    paginator = cfn.get_paginator("list_stack_resources")
    for page in paginator.paginate(StackName=stack_id):
        for resource in page.get("StackResourceSummaries", []):
            physical = resource.get("PhysicalResourceId")
            if resource.get("ResourceType") == NESTED_STACK and physical:
                stacks.setdefault(physical, resource.get("LogicalResourceId", physical))


def _new_events(cfn, stacks: dict[str, str], seen: set[str]) -> list[tuple[str, Event]]:
    """(stack polled, event) for every event not in `seen`, of every known stack, oldest first."""
    new: list[tuple[str, Event]] = []
    for stack, label in list(stacks.items()):
        try:
            for page in cfn.get_paginator("describe_stack_events").paginate(StackName=stack):
                events = page.get("StackEvents", [])
                fresh = [raw for raw in events if raw.get("EventId") not in seen]
                new += [(stack, Event.from_api(label, raw)) for raw in fresh]
                if len(fresh) < len(events):
                    break  # newest first: the rest is older than what was seen
        except Exception as error:  # noqa: BLE001 - botocore's ClientError, imported lazily
            # A nested stack deleted during the operation stops answering by name.
            if "does not exist" not in str(error):
                raise
    return sorted(new, key=lambda item: item[1].timestamp)
