"""Realistic DescribeChangeSet responses, as CloudFormation returns them for a change set created
with IncludeNestedStacks, for driving the data guard where moto reports no replacement.

The shapes follow the CloudFormation API reference (DescribeChangeSet: Changes[].ResourceChange
with Action, Replacement, Scope, Details[].Target.RequiresRecreation, ChangeSetId for a nested
stack's own change set); botocore's Stubber checks every response against the API model.
"""

from datetime import datetime, timezone

ACCOUNT = "123456789012"
REGION = "us-east-1"
CREATED = datetime(2026, 1, 1, tzinfo=timezone.utc)


def stack_arn(name: str) -> str:
    return (f"arn:aws:cloudformation:{REGION}:{ACCOUNT}:stack/{name}/"
            f"0c9a6f40-0000-0000-0000-000000000000")


def change_set_arn(name: str, nested: str = "") -> str:
    suffix = f"-{nested}" if nested else ""
    return (f"arn:aws:cloudformation:{REGION}:{ACCOUNT}:changeSet/{name}{suffix}/"
            f"5d3a8f1e-0000-0000-0000-000000000000")


def detail(name: str, recreation: str, attribute: str = "Properties",
           source: str = "DirectModification", causing: str | None = None) -> dict:
    """One Details entry: which property changes, whether that recreates the resource, and why
    (a parameter's new value: ChangeSource ParameterReference, CausingEntity the parameter)."""
    entry = {"Target": {"Attribute": attribute, "Name": name, "RequiresRecreation": recreation},
             "Evaluation": "Static", "ChangeSource": source}
    if causing:
        entry["CausingEntity"] = causing
    return entry


def resource_change(action: str, logical_id: str, resource_type: str, *,
                    replacement: str | None = None, physical_id: str | None = None,
                    details: list | None = None, nested_change_set: str | None = None) -> dict:
    change: dict = {"Action": action, "LogicalResourceId": logical_id,
                    "ResourceType": resource_type, "Scope": [], "Details": details or []}
    if action == "Modify":
        change["Replacement"] = replacement or "False"
        change["Scope"] = ["Properties"]
    if physical_id:
        change["PhysicalResourceId"] = physical_id
    if nested_change_set:
        change["ChangeSetId"] = nested_change_set
    return {"Type": "Resource", "ResourceChange": change}


def nested_stack_change(logical_id: str, stack_name: str, nested_change_set: str,
                        action: str = "Modify") -> dict:
    """A nested stack's row in its parent: it points at the nested stack's own change set."""
    return resource_change(
        action, logical_id, "AWS::CloudFormation::Stack",
        replacement="False" if action == "Modify" else None,
        physical_id=stack_arn(f"{stack_name}-{logical_id}-1A2B3C4D5E6F"),
        details=[detail("TemplateURL", "Never"),
                 detail("Parameters", "Never", source="ParameterReference")]
        if action == "Modify" else [],
        nested_change_set=nested_change_set)


def describe_response(stack_name: str, change_set_name: str, changes: list, *,
                      nested: str = "", parent: str | None = None,
                      root: str | None = None, token: str | None = None) -> dict:
    """One page of DescribeChangeSet for the root (nested="") or a nested stack's change set."""
    response = {
        "ChangeSetName": f"{change_set_name}-{nested}" if nested else change_set_name,
        "ChangeSetId": change_set_arn(change_set_name, nested),
        "StackId": stack_arn(f"{stack_name}-{nested}" if nested else stack_name),
        "StackName": f"{stack_name}-{nested}" if nested else stack_name,
        "CreationTime": CREATED,
        "ExecutionStatus": "AVAILABLE",
        "Status": "CREATE_COMPLETE",
        "Capabilities": ["CAPABILITY_IAM", "CAPABILITY_NAMED_IAM"],
        "Changes": changes,
        "IncludeNestedStacks": True,
    }
    if parent:
        response["ParentChangeSetId"] = parent
    if root:
        response["RootChangeSetId"] = root
    if token:
        response["NextToken"] = token
    return response
