"""Check rendered environments against AWS Control Tower's proactive controls.

Platform teams often activate Control Tower's proactive controls in the accounts they hand out:
CloudFormation hooks that evaluate the `CT.<SERVICE>.PR.<n>` Guard rules on every resource a
stack creates or updates, with its properties resolved, and fail the deployment on a violation
("Proactive controls", AWS Control Tower Controls Reference Guide). cfn-lint and checkov do not
see these failures: they read templates, where a log group's retention is `!Ref
LogRetentionDays`, and apply rules of their own.

This package deploys nothing. For each environment of a rendered folder (`templates/<env>/`) it
resolves every resource as the hook would see it (`deployed`), in two states: as rendered, with
the environment's parameters.json, and serving, with the values chosen at run time supplied
(a model package, an API image, an alarm email), so that the resources that exist only then
are checked too. AWS's own rule files are evaluated by AWS's Guard engine (`guard`).

Some controls are owner decisions or cannot apply to a resource (Object Lock on a bucket whose
retention the owner has not chosen, SSE-KMS on the bucket that receives load balancer access
logs, which only SSE-S3 accepts). The resource records each such exception in its Metadata,
with the reason:

    Metadata:
      controltower:
        exceptions:
          - id: CT.S3.PR.9
            reason: Object Lock is a retention decision for the data owner ...

An exception without a reason is not honoured, and one for a control the resource passes in
every state checked is reported as stale, so that the record stays true.

Operating it: `check(Path("templates"))` returns the problems, one line each (empty: every
applicable control passes or has a reasoned exception). Needs cfn-guard and the rules:
scripts/install-cfn-guard.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import UserError
from .deployed import ACCOUNT_ID, DEFAULT_REGION, DeployedResource, deployed_resources
from .guard import Control, Engine, Status, find_engine

METADATA_KEY = "controltower"

# Values chosen at run time, not in parameters.json: while they are empty the resources that
# need them are left out (README "First deployment"). The serving state supplies them.
RUN_TIME_VALUES = {
    "ModelPackageArn": (f"arn:aws:sagemaker:{DEFAULT_REGION}:{ACCOUNT_ID}:"
                        "model-package/example-group/1"),
    "ApiImageTag": "example-image-tag",
    "AlarmEmail": "operations@example.com",
}


@dataclass(frozen=True)
class State:
    """One set of root parameter values an environment is deployed with."""

    environment: str
    name: str  # "as rendered" or "serving"
    folder: Path
    overrides: Mapping[str, str]

    def __str__(self) -> str:
        return f"{self.environment} ({self.name})"


@dataclass(frozen=True)
class Evaluation:
    """What one control says about one resource in one state, and the exception recorded."""

    state: State
    resource: DeployedResource
    control: Control
    status: Status
    exception: RecordedException | None


@dataclass(frozen=True)
class RecordedException:
    control_id: str
    reason: str  # empty when the record gives none: then it is not honoured


def recorded_exceptions(resource: DeployedResource) -> dict[str, RecordedException]:
    """The exceptions the resource's Metadata records, by control id."""
    entries = (resource.metadata.get(METADATA_KEY) or {}).get("exceptions") or []
    found = {}
    for entry in entries:
        if not isinstance(entry, dict) or not isinstance(entry.get("id"), str):
            raise UserError(f"{resource.where}: Metadata.{METADATA_KEY}.exceptions: each entry "
                            f"needs an id (CT.<SERVICE>.PR.<n>) and a reason (got {entry!r})")
        reason = entry.get("reason")
        found[entry["id"]] = RecordedException(entry["id"],
                                               reason.strip() if isinstance(reason, str) else "")
    return found


def environment_states(templates: Path) -> list[State]:
    """Each environment folder under `templates` (or `templates` itself, when it is one), in
    both states."""
    folders = ([templates] if (templates / "root.yaml").is_file() else
               sorted(p.parent for p in templates.glob("*/root.yaml")))
    if not folders:
        raise UserError(f"{templates}: no rendered environment (a folder with root.yaml and "
                        "parameters.json) there")
    states = []
    for folder in folders:
        states.append(State(folder.name, "as rendered", folder, {}))
        states.append(State(folder.name, "serving", folder, RUN_TIME_VALUES))
    return states


def evaluate(states: Sequence[State], engine: Engine | None = None,
             region: str = DEFAULT_REGION) -> list[Evaluation]:
    """Every applicable control on every resource of every state."""
    engine = engine or find_engine()
    resources = [(state, resource) for state in states
                 for resource in deployed_resources(state.folder, state.overrides, region)]
    return evaluate_resources(resources, engine)


def evaluate_resources(resources: Sequence[tuple[State, DeployedResource]],
                       engine: Engine) -> list[Evaluation]:
    # One engine run for all of them; a document that occurs in several states (most do:
    # environments differ only in values) is evaluated once.
    distinct: dict[str, int] = {}
    documents: list[DeployedResource] = []
    index_of = []
    for _, resource in resources:
        key = repr((resource.type, _canonical(resource.properties)))
        if key not in distinct:
            distinct[key] = len(documents)
            documents.append(resource)
        index_of.append(distinct[key])
    statuses = engine.evaluate(documents)
    controls = {c.id: c for c in engine.controls}
    evaluations = []
    for (state, resource), index in zip(resources, index_of):
        exceptions = recorded_exceptions(resource)
        for control_id, status in sorted(statuses[index].items()):
            evaluations.append(Evaluation(state, resource, controls[control_id], status,
                                          exceptions.get(control_id)))
    return evaluations


def problems(evaluations: Iterable[Evaluation]) -> list[str]:
    """One line for each failure without a reasoned exception, each exception without a reason
    and each exception no state needs."""
    evaluations = list(evaluations)
    lines: list[str] = []
    needed: set[tuple[str, str, str]] = set()
    for e in evaluations:
        key = (e.resource.template, e.resource.logical_id, e.control.id)
        if e.status != "fail":
            continue
        needed.add(key)
        if e.exception is None:
            lines.append(f"{e.state}: {e.resource.where} ({e.resource.type}) fails "
                         f"{e.control.id}: {e.control.title}. {e.control.fix} "
                         f"[{e.control.page}]")
        elif not e.exception.reason:
            lines.append(f"{e.state}: {e.resource.where} fails {e.control.id}; its exception "
                         "records no reason, so it is not honoured")
    seen: set[tuple[str, str, str]] = set()
    checked = {(e.resource.template, e.resource.logical_id) for e in evaluations}
    for e in evaluations:
        for control_id in recorded_exceptions(e.resource):
            key = (e.resource.template, e.resource.logical_id, control_id)
            if key in needed or key in seen or (key[0], key[1]) not in checked:
                continue
            seen.add(key)
            lines.append(f"{e.resource.where}: records an exception for {control_id}, which it "
                         "does not fail in any state checked: remove the stale exception")
    return sorted(set(lines), key=lines.index)


def check(templates: Path, engine: Engine | None = None) -> list[str]:
    """The problems of every environment rendered under `templates`."""
    return problems(evaluate(environment_states(templates), engine))


def _canonical(value: Any) -> Any:
    if isinstance(value, dict):
        return tuple(sorted((k, _canonical(v)) for k, v in value.items()))
    if isinstance(value, list):
        return tuple(_canonical(v) for v in value)
    return value
