"""Deploy a packaged pipeline through a change set: preview, guard, execute, follow.

`preview` creates a change set for the packaged root (CREATE for a new stack, UPDATE otherwise,
nested change sets included) and reads every change of every nested stack (changeset.py).
`discard` deletes it again (and the empty shell CloudFormation makes for a new stack), which is
all `diff` does after printing. `execute` runs it, follows the events of every stack (events.py)
and turns termination protection on for protected environments. rollout.py decides between
them (for api.deploy_pipeline): nothing is executed with a data-guard change unless replacement
is allowed, and nothing the caller's `confirm` declines.

The model and image the config leaves empty (settings.left_to_run_time) are passed with the
live stack's values (`live_values`), so a deployment never resets what serves.

Credentials and region come from boto3's own chain; `connect` only adds --profile, --region and
--endpoint-url (boto3 reads AWS_ENDPOINT_URL itself when no URL is given).
"""

from __future__ import annotations

import contextlib
import os
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Iterable, Iterator, Sequence

from . import __version__
from .assets import PACKAGING_PARAMETERS
from .changeset import Change, collect_changes, guarded, is_no_changes
from .errors import UserError
from .events import Outcome, existing_event_ids, watch

CAPABILITIES = ["CAPABILITY_IAM", "CAPABILITY_NAMED_IAM"]
# A stack in one of these cannot take a change set: it is busy, or a failed create that
# CloudFormation will only delete.
_FAILED_CREATE = {"ROLLBACK_COMPLETE", "ROLLBACK_FAILED", "CREATE_FAILED"}


class DeployFailed(Exception):
    """AWS refused or the deployment failed: exit status 1, one line per problem."""

    def __init__(self, *problems: str):
        self.problems = tuple(problems)
        super().__init__("\n".join(problems))


# --- AWS connection --------------------------------------------------------------------------

@dataclass(frozen=True)
class Aws:
    session: Any
    endpoint_url: str | None = None

    @property
    def region(self) -> str:
        return self.session.region_name

    def client(self, service: str):
        return self.session.client(service, endpoint_url=self.endpoint_url)

    def regional_client(self, service: str):
        """A factory of `service` clients for a region named later (a bucket's own)."""
        return lambda region: self.session.client(service, region_name=region,
                                                  endpoint_url=self.endpoint_url)


def connect(profile: str | None = None, region: str | None = None,
            endpoint_url: str | None = None, require_region: bool = True) -> Aws:
    import boto3
    from botocore.exceptions import InvalidRegionError, ProfileNotFound
    from botocore.utils import (is_valid_endpoint_url, is_valid_ipv6_endpoint_url,
                                validate_region_name)

    try:
        session = boto3.session.Session(profile_name=profile, region_name=region)
    except ProfileNotFound as error:
        raise UserError(f"--profile: {error}") from None
    if require_region and not session.region_name:
        raise UserError("no AWS region: pass --region, or set AWS_REGION (or a region in the "
                        "profile)")
    # botocore would only refuse these at the first call, as a traceback or a failed deployment;
    # they are the user's to fix, so say so first, with botocore's own rules.
    source = "--region" if region else "the region from boto3's chain"
    try:
        if session.region_name:
            validate_region_name(session.region_name)
    except InvalidRegionError:
        raise UserError(f"{source}: {session.region_name!r} is not a region name "
                        "(letters, digits and hyphens, e.g. us-east-1)") from None
    endpoint = endpoint_url or os.environ.get("AWS_ENDPOINT_URL")
    if endpoint and not (is_valid_endpoint_url(endpoint) or is_valid_ipv6_endpoint_url(endpoint)):
        source = "--endpoint-url" if endpoint_url else "AWS_ENDPOINT_URL"
        raise UserError(f"{source}: {endpoint!r} is not a URL; give the scheme and host, e.g. "
                        "http://127.0.0.1:5000")
    return Aws(session, endpoint_url)


def default_bucket(aws: Aws) -> str:
    """The bucket deploy packages into when none is named: one per account and region."""
    account = call(aws.client("sts").get_caller_identity, "finding the account")["Account"]
    return f"mlops-cfn-{account}-{aws.region}"


def call(operation, doing: str, **kwargs: Any) -> Any:
    """One AWS call whose failure says what was being done."""
    with aws_errors(doing):
        return operation(**kwargs)


@contextlib.contextmanager
def aws_errors(doing: str = "") -> Iterator[None]:
    """botocore's exceptions as one readable line: missing credentials are the user's to fix
    (UserError), anything AWS refuses is a failed deployment (DeployFailed)."""
    from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError
    from botocore.parsers import ResponseParserError

    context = f"{doing}: " if doing else ""
    try:
        yield
    except NoCredentialsError:
        raise UserError("no AWS credentials found: configure a profile (--profile), "
                        "environment variables or an instance role") from None
    except ClientError as error:
        details = error.response.get("Error", {})
        raise DeployFailed(f"{context}{details.get('Code', 'error')}: "
                           f"{details.get('Message', error)}") from None
    except BotoCoreError as error:
        raise DeployFailed(f"{context}{error}") from None
    except ResponseParserError as error:
        # An endpoint that answers something other than AWS's protocol (a proxy's error page,
        # a local emulator's internal error).
        first_line = str(error).splitlines()[0]
        raise DeployFailed(f"{context}unreadable answer from the endpoint: {first_line}") \
            from None


# --- the request -----------------------------------------------------------------------------

@dataclass(frozen=True)
class Request:
    stack_name: str
    template_url: str
    parameters: dict[str, str]
    tags: dict[str, str]
    protected: bool = False
    description: str = ""
    # A template small enough to travel in the request itself (the bootstrap stack's), sent
    # in place of template_url when set.
    template_body: str = ""


def parse_overrides(pairs: Iterable[str]) -> dict[str, str]:
    """`--parameter KEY=VALUE` options as a mapping (the last of a repeated key wins)."""
    overrides = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise UserError(f"--parameter {pair!r}: expected KEY=VALUE")
        overrides[key.strip()] = value
    return overrides


def stack_parameters(root_parameters: Sequence[str], values: dict[str, str],
                     overrides: dict[str, str]) -> dict[str, str]:
    """Every value the stack gets: the environment's, then --parameter overrides.

    Root parameters with neither keep their template default (the packaging parameters: what
    packaging chose).
    """
    packaging = [name for name in PACKAGING_PARAMETERS if name in overrides]
    if packaging:
        raise UserError(*(f"--parameter {name}: set by packaging; use --bucket and --prefix "
                          "instead" for name in packaging))
    unknown = sorted(set(overrides) - set(root_parameters))
    if unknown:
        known = ", ".join(sorted(p for p in root_parameters if p not in PACKAGING_PARAMETERS))
        raise UserError(*(f"--parameter {name}: the root template has no such parameter "
                          f"(it has: {known})" for name in unknown))
    return {name: value for name, value in {**values, **overrides}.items()
            if name in root_parameters}


def live_values(cfn, stack_name: str, names: Iterable[str]) -> dict[str, str]:
    """The stack's current values of the root parameters `names` (those it has); empty for a
    stack that does not exist yet. What a deployment passes for the run-time parameters the
    config leaves empty, so serving is never reset (settings.left_to_run_time)."""
    stack = describe_stack(cfn, stack_name)
    if not stack or stack.get("StackStatus") == "REVIEW_IN_PROGRESS":
        return {}
    current = {p["ParameterKey"]: p.get("ParameterValue", "")
               for p in stack.get("Parameters") or []}
    return {name: current[name] for name in sorted(names)
            if name in current and current[name] != _HIDDEN_VALUE}


def override_problems(parameters: dict[str, Any], overrides: dict[str, str]) -> list[str]:
    """What CloudFormation would refuse in --parameter values, by the root template's own
    constraints (`parameters`: name -> troposphere Parameter), said before anything is uploaded."""
    import re

    problems = []
    for name, value in overrides.items():
        spec = parameters[name].properties if name in parameters else {}
        where = f"--parameter {name}={value}"
        if spec.get("Type") == "Number":
            try:
                number = float(value)
            except ValueError:
                problems.append(f"{where}: must be a number")
                continue
            if "MinValue" in spec and number < float(spec["MinValue"]):
                problems.append(f"{where}: must be >= {spec['MinValue']}")
            if "MaxValue" in spec and number > float(spec["MaxValue"]):
                problems.append(f"{where}: must be <= {spec['MaxValue']}")
        if "AllowedValues" in spec and value not in [str(v) for v in spec["AllowedValues"]]:
            problems.append(f"{where}: must be one of "
                            f"{', '.join(str(v) for v in spec['AllowedValues'])}")
        if "AllowedPattern" in spec and not re.fullmatch(spec["AllowedPattern"], value):
            problems.append(f"{where}: must match {spec['AllowedPattern']}"
                            + (f" ({spec['ConstraintDescription']})"
                               if "ConstraintDescription" in spec else ""))
        if "MinLength" in spec and len(value) < int(spec["MinLength"]):
            problems.append(f"{where}: must be at least {spec['MinLength']} characters")
        if "MaxLength" in spec and len(value) > int(spec["MaxLength"]):
            problems.append(f"{where}: must be at most {spec['MaxLength']} characters")
    return problems


# --- preview ---------------------------------------------------------------------------------

@dataclass
class Preview:
    request: Request
    change_set_id: str
    stack_id: str
    change_set_type: str  # CREATE or UPDATE
    changes: list[Change] = field(default_factory=list)
    empty: bool = False
    # Root parameters the update gives new values: name -> (current, new).
    parameter_changes: dict[str, tuple[str, str]] = field(default_factory=dict)

    @property
    def refused(self) -> list[Change]:
        return guarded(self.changes)

    def expected(self) -> dict[str, int]:
        """Changes per stack label, for the progress bars (nested stacks count in their parent)."""
        counts: dict[str, int] = {}
        for change in self.changes:
            counts[change.stack] = counts.get(change.stack, 0) + 1
        return counts


def stack_status(cfn, stack_name: str) -> str | None:
    """The stack's status, or None when there is no such stack."""
    stack = describe_stack(cfn, stack_name)
    return stack.get("StackStatus") if stack else None


def describe_stack(cfn, stack_name: str) -> dict | None:
    """The stack as DescribeStacks gives it, or None when there is no such stack."""
    from botocore.exceptions import ClientError

    try:
        stacks = cfn.describe_stacks(StackName=stack_name).get("Stacks", [])
    except ClientError as error:
        if "does not exist" in str(error):
            return None
        raise DeployFailed(f"reading stack {stack_name}: "
                           f"{error.response.get('Error', {}).get('Message', error)}") from None
    return stacks[0] if stacks else None


# DescribeStacks shows a NoEcho parameter's value as this.
_HIDDEN_VALUE = "****"


def parameter_changes(stack: dict | None, values: dict[str, str]) -> dict[str, tuple[str, str]]:
    """Root parameters whose value the update changes: name -> (current, new). A NoEcho
    parameter's current value cannot be read, so it is left out."""
    if not stack:
        return {}
    current = {p["ParameterKey"]: p.get("ParameterValue", "")
               for p in stack.get("Parameters") or []}
    return {name: (current.get(name, ""), value) for name, value in sorted(values.items())
            if current.get(name) != value and current.get(name) != _HIDDEN_VALUE}


def change_set_type(status: str | None, stack_name: str) -> str:
    if status is None or status == "REVIEW_IN_PROGRESS":
        return "CREATE"
    if status in _FAILED_CREATE:
        raise UserError(f"stack {stack_name} is {status} after a failed create, which "
                        f"CloudFormation can only delete: delete it (aws cloudformation "
                        f"delete-stack --stack-name {stack_name}) and deploy again")
    if status.endswith("_IN_PROGRESS"):
        raise UserError(f"stack {stack_name} is busy ({status}): wait for it to finish")
    return "UPDATE"


def change_set_name() -> str:
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    return f"mlops-cfn-{stamp}-{uuid.uuid4().hex[:8]}"


def preview(cfn, request: Request) -> Preview:
    """Create the change set, wait for it, and read every change it (and its children) holds."""
    from botocore.exceptions import ClientError, WaiterError

    stack = describe_stack(cfn, request.stack_name)
    kind = change_set_type(stack.get("StackStatus") if stack else None, request.stack_name)
    changed = parameter_changes(stack, request.parameters) if kind == "UPDATE" else {}
    try:
        created = cfn.create_change_set(
            StackName=request.stack_name,
            ChangeSetName=change_set_name(),
            ChangeSetType=kind,
            **({"TemplateBody": request.template_body} if request.template_body
               else {"TemplateURL": request.template_url}),
            Parameters=[{"ParameterKey": k, "ParameterValue": v}
                        for k, v in sorted(request.parameters.items())],
            Capabilities=CAPABILITIES,
            Tags=[{"Key": k, "Value": v} for k, v in sorted(request.tags.items())],
            IncludeNestedStacks=True,
            Description=request.description or f"mlops-cfn {__version__}",
        )
    except ClientError as error:
        message = error.response.get("Error", {}).get("Message", str(error))
        if is_no_changes(message):
            return Preview(request, "", "", kind, empty=True)
        raise DeployFailed(f"creating the change set for {request.stack_name}: {message}") \
            from None
    result = Preview(request, created["Id"], created["StackId"], kind,
                     parameter_changes=changed)
    try:
        cfn.get_waiter("change_set_create_complete").wait(
            ChangeSetName=result.change_set_id, WaiterConfig={"Delay": 5, "MaxAttempts": 360})
    except WaiterError:
        described = cfn.describe_change_set(ChangeSetName=result.change_set_id)
        reason = described.get("StatusReason", "")
        if is_no_changes(reason):
            discard(cfn, result)
            result.empty = True
            return result
        discard(cfn, result)
        raise DeployFailed(f"change set for {request.stack_name} failed: "
                           f"{reason or described.get('Status', 'unknown status')}") from None
    result.changes = collect_changes(cfn, result.change_set_id, request.stack_name)
    return result


def discard(cfn, preview: Preview) -> None:
    """Delete the change set; for a new stack also the empty shell it created."""
    if not preview.change_set_id:
        return
    cfn.delete_change_set(ChangeSetName=preview.change_set_id)
    if preview.change_set_type != "CREATE" or \
            stack_status(cfn, preview.stack_id) != "REVIEW_IN_PROGRESS":
        return
    # The shell holds nothing; delete it unless someone else's change set waits on it.
    others = [summary for page in cfn.get_paginator("list_change_sets").paginate(
                  StackName=preview.stack_id)
              for summary in page.get("Summaries", [])
              if summary.get("StackId") == preview.stack_id]
    if not others:
        cfn.delete_stack(StackName=preview.stack_id)


# --- execute ---------------------------------------------------------------------------------

def execute(cfn, preview: Preview, console, interval: float = 5.0) -> Outcome:
    """Run the change set and follow it to the end; protect the stack if the config says so."""
    seen = existing_event_ids(cfn, preview.stack_id)
    call(cfn.execute_change_set, f"executing the change set for {preview.request.stack_name}",
         ChangeSetName=preview.change_set_id)
    outcome = watch(cfn, preview.stack_id, preview.request.stack_name, seen=seen,
                    console=console, expected=preview.expected(), interval=interval)
    if outcome.ok and preview.request.protected:
        call(cfn.update_termination_protection, "turning termination protection on",
             StackName=preview.stack_id, EnableTerminationProtection=True)
    return outcome


def failure_message(outcome: Outcome) -> str:
    failure = outcome.failure
    if failure is None:
        return f"deployment failed: the stack is {outcome.status}"
    where = f"{failure.stack}/{failure.logical_id}" if failure.logical_id != failure.stack \
        else failure.stack
    return (f"deployment failed at {where} ({failure.resource_type}): "
            f"{failure.reason or failure.status}; the stack is {outcome.status}")


MODEL_PACKAGE_PARAMETER = "ModelPackageArn"


def model_package_group(project: str, environment: str) -> str:
    """The registry group the training stage creates for this project and environment."""
    from . import naming

    pattern = naming.physical_name(naming.SAGEMAKER, project, "models")
    return pattern.replace(naming.ENVIRONMENT, environment)


# How many approved versions, newest first, are compared for the latest approval.
APPROVED_VERSIONS_COMPARED = 20


def newest_approved(sagemaker, group: str) -> str | None:
    """The model package of `group` approved last (None when none is approved yet): what
    serving should run once a person (or the training pipeline's threshold) approved it.

    "Approved last" is the Approved version whose record changed last (DescribeModelPackage's
    LastModifiedTime; an approval is an update of the package), among the newest
    APPROVED_VERSIONS_COMPARED approved versions. So a new approval serves the new version,
    approving an earlier version again rolls back to it, and rejecting the serving version
    brings back the one approved before it.
    """
    with aws_errors(f"listing the approved model packages of {group}"):
        found = sagemaker.list_model_packages(
            ModelPackageGroupName=group, ModelApprovalStatus="Approved", SortBy="CreationTime",
            SortOrder="Descending", MaxResults=APPROVED_VERSIONS_COMPARED)[
            "ModelPackageSummaryList"]
        if not found:
            return None
        described = [sagemaker.describe_model_package(ModelPackageName=p["ModelPackageArn"])
                     for p in found]
    latest = max(described, key=lambda p: (p.get("LastModifiedTime") or p["CreationTime"],
                                           p["CreationTime"]))
    return latest["ModelPackageArn"]


def latest_approved(aws: "Aws", group: str) -> str:
    """`newest_approved`, required: none yet is the user's to resolve."""
    found = newest_approved(aws.client("sagemaker"), group)
    if found is None:
        raise UserError(f"--latest-approved-model: no approved model package in {group} yet; "
                        f"approve one in the model registry, or pass "
                        f"--parameter {MODEL_PACKAGE_PARAMETER}=<arn>")
    return found
