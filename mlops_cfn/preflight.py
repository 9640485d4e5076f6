"""What `deploy` checks against the account and region before anything is uploaded.

- The region: the root template's Rules (stages/image_registries.py: the built-in images the
  pipeline runs have an account in this region), evaluated with the region and the parameter
  values about to be sent (rules.py). CloudFormation would refuse the same at change-set
  creation, after packaging.
- Lambda's reserved concurrency. The functions the stack creates reserve concurrency (the
  consumer `stages.ingestion.consumer.reserved_concurrency`, 10 by default and 50 in the bundled
  prod; the retrain function 1), which Lambda grants only while at least 100 of the account's
  concurrency stays unreserved ("Configuring reserved concurrency for a function", AWS Lambda
  Developer Guide). New accounts start with a reduced concurrency quota ("Lambda quotas"), as low
  as 10, where no function may reserve any. `lambda:GetAccountSettings` tells the quota and
  what is unreserved; what the stack's functions already hold (an update) is given back first.
  When the account settings cannot be read (no permission, an emulator), the check is skipped
  and says so.
- Service-linked roles a template names by ARN (the EC2 consumer's volume key policy names
  AWSServiceRoleForAutoScaling: "Required AWS KMS key policy for use with encrypted volumes",
  Amazon EC2 Auto Scaling User Guide). AWS creates such a role on the service's first use, but a
  key policy naming a principal that does not exist yet is refused ("MalformedPolicyDocument
  Exception: ... invalid principals"), so the stack would roll back in an account that never
  used the service. `iam:GetRole` tells; when it cannot be read, the check is skipped and says
  so.
"""

import re
from dataclasses import dataclass
from typing import Any

from .rules import UNKNOWN, evaluate, failed_assertions, pseudo_parameters

# `arn:...:iam::<account>:role/aws-service-role/<service>/<role name>` ("Using service-linked
# roles", IAM User Guide: their path names the service).
SERVICE_LINKED_ROLE = re.compile(
    r"role/aws-service-role/([a-z0-9.-]+\.amazonaws\.com)/([A-Za-z0-9_+=,.@-]+)")

# Lambda keeps this much of the account's concurrency unreserved ("Configuring reserved
# concurrency for a function": reserve up to the unreserved account concurrency minus 100).
MINIMUM_UNRESERVED = 100


@dataclass(frozen=True)
class Reservation:
    """Concurrency a function of the stack reserves, with where its value comes from."""

    stage: str
    logical_id: str
    function_name: str | None
    concurrency: int
    parameter: str | None  # the root parameter that sets it, if any


def root_values(root: dict, values: dict[str, str], region: str) -> dict[str, Any]:
    """Every root parameter's value (given, else its default) and the pseudo parameters."""
    defaults = {name: spec["Default"] for name, spec in (root.get("Parameters") or {}).items()
                if "Default" in spec}
    return {**defaults, **values, **pseudo_parameters(region)}


def region_problems(root: dict, values: dict[str, str], region: str) -> list[str]:
    return [f"region {region}: {description.removeprefix('mlops-cfn: ')}"
            for description in failed_assertions(root, root_values(root, values, region))]


def reservations(stages: Any, values: dict[str, Any]) -> list[Reservation]:
    """The reserved concurrency of every Lambda function the stages create with these values.

    A stage's settings are root parameters of the same name passed straight down (pipeline.py),
    so `values` resolve them; a function under a condition that is false is left out, one whose
    condition is unknown (a value only another stack knows) is counted."""
    found = []
    for stage in stages:
        template = stage.template.to_dict()
        conditions = template.get("Conditions") or {}
        for logical_id, resource in (template.get("Resources") or {}).items():
            if resource.get("Type") != "AWS::Lambda::Function":
                continue
            properties = resource.get("Properties") or {}
            if "ReservedConcurrentExecutions" not in properties:
                continue
            if "Condition" in resource and evaluate(
                    {"Condition": resource["Condition"]}, values, conditions) is False:
                continue
            reserved = properties["ReservedConcurrentExecutions"]
            concurrency = evaluate(reserved, values, conditions)
            if concurrency is UNKNOWN:
                continue
            parameter = reserved.get("Ref") if isinstance(reserved, dict) else None
            found.append(Reservation(stage.name, logical_id,
                                     _substituted(properties.get("FunctionName"), values),
                                     int(concurrency), parameter))
    return found


def _substituted(name: Any, values: dict[str, Any]) -> str | None:
    """A physical name given as Fn::Sub text, with the values it names; None if one is
    unknown."""
    if isinstance(name, str):
        return name
    if not isinstance(name, dict) or not isinstance(name.get("Fn::Sub"), str):
        return None
    missing = []

    def fill(match: re.Match) -> str:
        value = values.get(match.group(1), UNKNOWN)
        if value is UNKNOWN:
            missing.append(match.group(1))
            return ""
        return str(value)

    text = re.sub(r"\$\{([^}!]+)\}", fill, name["Fn::Sub"])
    return None if missing else text


@dataclass(frozen=True)
class Concurrency:
    limit: int
    unreserved: int
    held: int  # reserved now by the functions this deployment sets


def concurrency_problems(planned: list[Reservation], account: Concurrency,
                         region: str) -> list[str]:
    """One line when the reservations would leave the account less unreserved concurrency than
    Lambda keeps."""
    needed = sum(r.concurrency for r in planned)
    if needed <= account.held:
        return []  # nothing more than the stack holds already
    available = account.unreserved + account.held
    if available - needed >= MINIMUM_UNRESERVED:
        return []
    paths = setting_paths()
    parts = ", ".join(
        f"{r.concurrency} for {r.function_name or r.logical_id}"
        + (f" ({paths.get(r.parameter, r.parameter)})" if r.parameter else "") for r in planned)
    settable = sorted({paths.get(r.parameter, r.parameter) for r in planned if r.parameter})
    lower = f"lower {' or '.join(settable)}, or " if settable else ""
    return [f"Lambda reserved concurrency in {region}: the stack reserves {needed} ({parts}), "
            f"but of the account's quota of {account.limit} concurrent executions "
            f"{account.unreserved} are unreserved ({account.held} of the reserved held by these "
            f"functions now) and Lambda keeps {MINIMUM_UNRESERVED} unreserved, so at most "
            f"{max(available - MINIMUM_UNRESERVED, 0)} can be reserved: {lower}ask for a higher "
            f"'Concurrent executions' quota (Service Quotas)"]


def setting_paths() -> dict[str, str]:
    """Root parameter -> the pipeline.yaml key that sets it."""
    from .config import Setting
    from .reference import sections

    return {marker.parameter: f"{path}.{name}" if path else name
            for path, model in sections() for name, field in model.model_fields.items()
            for marker in field.metadata if isinstance(marker, Setting)}


def read_concurrency(client: Any, planned: list[Reservation]) -> Concurrency:
    """The account's Lambda concurrency, and what the planned functions hold today (botocore
    errors propagate: the caller decides what an unreadable account means)."""
    limit = client.get_account_settings()["AccountLimit"]
    held = 0
    for reservation in planned:
        if reservation.function_name is None:
            continue
        try:
            current = client.get_function_concurrency(FunctionName=reservation.function_name)
        except client.exceptions.ResourceNotFoundException:
            continue  # created by this deployment
        held += current.get("ReservedConcurrentExecutions") or 0
    return Concurrency(int(limit["ConcurrentExecutions"]),
                       int(limit["UnreservedConcurrentExecutions"]), held)


def lambda_problems(client: Any, stages: Any, values: dict[str, Any],
                    region: str) -> tuple[list[str], list[str]]:
    """(problems, notes) for the stack's reserved concurrency in this account."""
    from botocore.exceptions import BotoCoreError, ClientError

    planned = reservations(stages, values)
    if not planned:
        return [], []
    try:
        account = read_concurrency(client, planned)
    except ClientError as error:
        code = error.response.get("Error", {}).get("Code", "error")
        return [], [f"Lambda account settings not readable ({code}): reserved concurrency "
                    f"({sum(r.concurrency for r in planned)}) not checked against the quota"]
    except BotoCoreError as error:
        return [], [f"Lambda account settings not readable ({error}): reserved concurrency not "
                    "checked against the quota"]
    return concurrency_problems(planned, account, region), []


@dataclass(frozen=True)
class ServiceLinkedRole:
    """A service-linked role a stage's template names, and where."""

    role_name: str
    service: str
    stage: str
    logical_id: str


def service_linked_roles(stages: Any) -> list[ServiceLinkedRole]:
    """Every service-linked role the stages' resources name (once per role: the first
    resource naming it)."""
    import json

    found: dict[str, ServiceLinkedRole] = {}
    for stage in stages:
        template = stage.template.to_dict()
        for logical_id, resource in (template.get("Resources") or {}).items():
            for service, role in SERVICE_LINKED_ROLE.findall(json.dumps(resource)):
                found.setdefault(role, ServiceLinkedRole(role, service, stage.name, logical_id))
    return list(found.values())


def service_linked_role_problems(client: Any, stages: Any) -> tuple[list[str], list[str]]:
    """(problems, notes): one line per named service-linked role missing from the account,
    saying how to create it."""
    from botocore.exceptions import BotoCoreError, ClientError

    problems, notes = [], []
    for needed in service_linked_roles(stages):
        try:
            client.get_role(RoleName=needed.role_name)
        except ClientError as error:
            code = error.response.get("Error", {}).get("Code", "error")
            if code == "NoSuchEntity":
                problems.append(
                    f"IAM service-linked role {needed.role_name} does not exist in this "
                    f"account, and the {needed.stage} stack's {needed.logical_id} names it: "
                    f"create it once with `aws iam create-service-linked-role "
                    f"--aws-service-name {needed.service}`")
            else:
                notes.append(f"IAM role {needed.role_name} not readable ({code}): whether it "
                             f"exists was not checked")
        except BotoCoreError as error:
            notes.append(f"IAM role {needed.role_name} not readable ({error}): whether it "
                         f"exists was not checked")
    return problems, notes
