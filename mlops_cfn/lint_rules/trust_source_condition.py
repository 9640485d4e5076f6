"""E9003: a role that an AWS service assumes admits that service only for this account's
resources, where the service sends the keys that say so."""

from __future__ import annotations

import re

from cfnlint.rules import CloudFormationLintRule, RuleMatch

from mlops_cfn.lint_rules import _common

# Services that send aws:SourceAccount / aws:SourceArn (or, Firehose, an external ID) when they
# assume a role. A condition on a key the service does not send refuses every request (a
# positive operator on a missing key is false), so only services this project's stages already
# guard this way, each at the place named, are listed; a service not listed is not checked.
SERVICES = {
    "apigateway.amazonaws.com",     # stages/serving_api.py (the API's and the logging role)
    "codebuild.amazonaws.com",      # stages/cicd.py, CodeBuild's confused-deputy guard
    "codepipeline.amazonaws.com",   # stages/cicd.py, the pipeline role
    "ecs-tasks.amazonaws.com",      # stages/serving_fargate.py, task and execution roles
    "events.amazonaws.com",         # stages/cicd.py and training.py, the rules' target roles
    "firehose.amazonaws.com",       # stages/ingestion.py, sts:ExternalId = the account
    "quicksight.amazonaws.com",     # stages/analytics.py, the VPC connection role
    # stages/training.py, monitoring.py, serving_sagemaker.py: "Cross-service confused deputy
    # prevention" (Amazon SageMaker Developer Guide)
    "sagemaker.amazonaws.com",
    # stages/serving_batch.py: "Set up the execution role" (EventBridge Scheduler User Guide)
    "scheduler.amazonaws.com",
    "states.amazonaws.com",         # stages/serving_batch.py, the state machine role
    # stages/network.py: "IAM role for publishing flow logs to CloudWatch Logs" (Amazon VPC)
    "vpc-flow-logs.amazonaws.com",
}

SOURCE_KEYS = {"aws:sourceaccount", "aws:sourcearn", "aws:sourceorgid", "aws:sourceorgpaths",
               "sts:externalid"}
# Operators that are false when the key is missing; `...IfExists` and negations would let a
# request without the key through.
POSITIVE = {"StringEquals", "StringLike", "ArnEquals", "ArnLike", "ForAnyValue:StringEquals",
            "ForAnyValue:StringLike"}
_ACCOUNT = re.compile(r"\$\{AWS::AccountId\}|(?<!\d)\d{12}(?!\d)")


def _names_account(value) -> bool:
    """Whether an aws:SourceArn value pins the account (then aws:SourceAccount adds nothing)."""
    if isinstance(value, list):
        return bool(value) and all(_names_account(v) for v in value)
    if isinstance(value, dict):
        if "Fn::Sub" in value:
            sub = value["Fn::Sub"]
            return _names_account(sub[0] if isinstance(sub, list) else sub)
        if "Fn::GetAtt" in value or "Ref" in value:
            return True  # the ARN of a resource of this stack, or a parameter: not read here
        return False
    return isinstance(value, str) and bool(_ACCOUNT.search(value))


def guarded(condition) -> bool:
    """A positive source condition: aws:SourceAccount, or aws:SourceArn naming the account, or
    an organisation or external ID."""
    if not isinstance(condition, dict):
        return False
    for operator, pairs in condition.items():
        if operator not in POSITIVE or not isinstance(pairs, dict):
            continue
        for key, value in pairs.items():
            key = key.lower()
            if key == "aws:sourcearn" and not _names_account(value):
                continue
            if key in SOURCE_KEYS:
                return True
    return False


class ServiceTrustSourceCondition(CloudFormationLintRule):
    """Without the condition a service could be asked, by another account's resource, to act
    with this role (the cross-service confused deputy)."""

    id = "E9003"
    shortdesc = "Service trust policies carry a source condition"
    description = (
        "A role's trust statement for " + ", ".join(sorted(SERVICES))
        + " has aws:SourceAccount (or aws:SourceArn naming the account, or sts:ExternalId for "
          "Firehose) under a positive operator")
    source_url = "https://docs.aws.amazon.com/IAM/latest/UserGuide/confused-deputy.html"
    tags = ["resources", "iam", "confused-deputy", "mlops-cfn"]

    def __init__(self):
        super().__init__()
        self.resource_property_types = ["AWS::IAM::Role"]

    def match_resource_properties(self, properties, resourcetype, path, cfn):
        if _common.excepted(cfn.template.get("Resources", {}).get(path[1]), self.id):
            return []
        matches = []
        for statement, where in _common.policy_statements(
                properties.get("AssumeRolePolicyDocument"), [*path, "AssumeRolePolicyDocument"]):
            if statement.get("Effect") != "Allow":
                continue
            principal = statement.get("Principal")
            named = _common.as_list(principal.get("Service")) if isinstance(principal, dict) else []
            checked = sorted(s for s in named if isinstance(s, str) and s in SERVICES)
            if checked and not guarded(statement.get("Condition")):
                matches.append(RuleMatch(
                    where, f"{path[1]}: the trust statement for {', '.join(checked)} has no "
                           f"aws:SourceAccount or aws:SourceArn condition{_common.HINT}"))
        return matches
