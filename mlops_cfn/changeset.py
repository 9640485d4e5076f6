"""What a change set would do, as one table for the root and every nested stack, and the data guard.

`collect_changes` walks a change set created with `IncludeNestedStacks`: a nested stack's row
carries the id of its own change set, whose rows are read in turn. `guarded` picks the rows that
would replace or remove something holding data (or rename a live endpoint); `deploy` refuses them
unless told `--allow-replacement`. `changes_table` is the rich table both `deploy` and `diff` print.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Iterable

# Resource types whose replacement or removal loses data, or breaks the clients of a live name.
# CloudFormation's replacement creates a new, empty resource (or fails on a fixed physical name);
# the old one is deleted or, with Retain, orphaned. Either way the pipeline loses what it held.
DATA_STORES: dict[str, str] = {
    "AWS::S3::Bucket": "bucket",
    "AWS::KMS::Key": "encryption key (data encrypted with it becomes unreadable once deleted)",
    "AWS::Kinesis::Stream": "stream",
    "AWS::Glue::Database": "Glue database",
    "AWS::RedshiftServerless::Namespace": "Redshift namespace",
    "AWS::Redshift::Cluster": "Redshift cluster",
    "AWS::SageMaker::Endpoint": "live endpoint (clients call it by name)",
    "AWS::SageMaker::ModelPackageGroup": "model registry",
    "AWS::SageMaker::FeatureGroup": "feature store",
    "AWS::ECR::Repository": "image repository",
    "AWS::DynamoDB::Table": "table",
}
NESTED_STACK = "AWS::CloudFormation::Stack"
# What DescribeChangeSet says when nothing would change (a change set, then an update call).
NO_CHANGES_REASONS = ("didn't contain changes", "No updates are to be performed")


@dataclass(frozen=True)
class Change:
    stack: str  # the root stack's name, or a nested stack's logical id in its parent
    action: str  # Add, Modify, Remove, Import, Dynamic
    logical_id: str
    resource_type: str
    replacement: str = ""  # True, False, Conditional; "" when not reported (Add, Remove)
    physical_id: str = ""
    # A nested stack modified without a change set of its own, or removed without naming the
    # stack: what changes inside is unknown. CloudFormation reports both; an emulator may not.
    unreported: bool = False

    @property
    def danger(self) -> str | None:
        """Why this change is refused without --allow-replacement, or None."""
        what = DATA_STORES.get(self.resource_type)
        if what is None:
            return None
        if self.action == "Remove":
            return f"removes a {what}"
        if self.action == "Modify" and self.replacement == "True":
            return f"replaces a {what}"
        if self.action == "Modify" and self.replacement == "Conditional":
            return f"may replace a {what}"
        return None


def guarded(changes: Iterable[Change]) -> list[Change]:
    return [change for change in changes if change.danger]


def is_no_changes(reason: str | None) -> bool:
    return bool(reason) and any(text in reason for text in NO_CHANGES_REASONS)


def collect_changes(cfn, change_set_id: str, stack: str) -> list[Change]:
    """Every change of a change set and of the nested change sets it names, parents first."""
    changes: list[Change] = []
    for resource in _resource_changes(cfn, change_set_id):
        change = Change(
            stack=stack,
            action=resource.get("Action", ""),
            logical_id=resource.get("LogicalResourceId", ""),
            resource_type=resource.get("ResourceType", ""),
            replacement=resource.get("Replacement", "") or "",
            physical_id=resource.get("PhysicalResourceId", "") or "",
        )
        if change.resource_type != NESTED_STACK:
            changes.append(change)
            continue
        nested = resource.get("ChangeSetId")
        if (change.action == "Modify" and not nested) or \
                (change.action == "Remove" and not change.physical_id):
            change = replace(change, unreported=True)
        changes.append(change)
        if nested:
            changes += collect_changes(cfn, nested, change.logical_id)
        elif change.action == "Remove" and change.physical_id:
            # Removing a nested stack deletes what it holds; CloudFormation makes no nested
            # change set for that, so the stack's live resources say what would go.
            changes += removed_with_stack(cfn, change.physical_id, change.logical_id)
    return changes


def removed_with_stack(cfn, stack_id: str, label: str) -> list[Change]:
    """The data stores a nested stack holds, as removals (the rest goes unremarked)."""
    changes = []
    paginator = cfn.get_paginator("list_stack_resources")
    for page in paginator.paginate(StackName=stack_id):
        for resource in page.get("StackResourceSummaries", []):
            resource_type = resource.get("ResourceType", "")
            if resource_type in DATA_STORES:
                changes.append(Change(label, "Remove", resource.get("LogicalResourceId", ""),
                                      resource_type,
                                      physical_id=resource.get("PhysicalResourceId", "") or ""))
    return changes


def _resource_changes(cfn, change_set_id: str) -> list[dict[str, Any]]:
    resources = []
    token = None
    while True:
        request = {"ChangeSetName": change_set_id}
        if token:
            request["NextToken"] = token
        page = cfn.describe_change_set(**request)
        resources += [c["ResourceChange"] for c in page.get("Changes", [])
                      if c.get("Type", "Resource") == "Resource" and "ResourceChange" in c]
        token = page.get("NextToken")
        if not token:
            return resources


# --- the table -------------------------------------------------------------------------------

_ACTION_STYLE = {"Add": "green", "Modify": "yellow", "Remove": "red", "Import": "cyan"}


def changes_table(changes: list[Change], title: str):
    """One rich table of every change; data-guard rows in red with the reason beside them."""
    from rich.table import Table
    from rich.text import Text

    table = Table(title=title, title_justify="left", show_lines=False, header_style="bold")
    for column in ("Stack", "Action", "Logical ID", "Type", "Replacement"):
        table.add_column(column)
    if any(change.danger for change in changes):
        table.add_column("Data guard")
    for change in changes:
        danger = change.danger
        action = Text(change.action, style="" if danger else
                      _ACTION_STYLE.get(change.action, ""))
        cells = [change.stack, action, change.logical_id, change.resource_type,
                 change.replacement or "-"]
        if table.columns[-1].header == "Data guard":
            cells.append(danger or "")
        table.add_row(*cells, style="bold red" if danger else None)
    return table
