"""E9002: an Allow statement names its actions; no `*`, no `<service>:*`, no `<service>:Put*`,
no NotAction, beyond a documented list of action families."""

from __future__ import annotations

from cfnlint.rules import CloudFormationLintRule, RuleMatch

from mlops_cfn.lint_rules import _common

# Action families AWS itself writes in the policies it documents, each a small closed set of
# actions that belong together. Nothing else with a wildcard passes.
ALLOWED_FAMILIES = frozenset({
    # AWS: "Default key policy" (AWS KMS Developer Guide): key users get "kms:ReEncrypt*"
    # (ReEncryptFrom, ReEncryptTo) and "kms:GenerateDataKey*" (the data key variants).
    "kms:ReEncrypt*",
    "kms:GenerateDataKey*",
    # AWS: "Encrypt log data in CloudWatch Logs using AWS Key Management Service": the key
    # policy statement for logs.<region>.amazonaws.com.
    "kms:Encrypt*",
    "kms:Decrypt*",
    "kms:Describe*",
})


def wildcard(action: str) -> bool:
    """IAM matches `*` and `?` in an action name."""
    return "*" in action or "?" in action


class NoWildcardActions(CloudFormationLintRule):
    """A wildcard grants actions AWS adds later, and a family such as `ecr:Put*` grants
    writes (PutImage, PutLifecyclePolicy, PutRegistryPolicy, ...) nobody reviewed."""

    id = "E9002"
    shortdesc = "Allow statements name their actions"
    description = (
        "An Allow statement in any policy (role, managed, inline or resource policy) lists its "
        "actions: no '*', no '<service>:*' or other wildcard family except "
        + ", ".join(sorted(ALLOWED_FAMILIES)) + ", and no NotAction")
    source_url = ("https://docs.aws.amazon.com/IAM/latest/UserGuide/"
                  "best-practices.html#grant-least-privilege")
    tags = ["resources", "iam", "least-privilege", "mlops-cfn"]

    def match(self, cfn):
        matches = []
        for name, resource in cfn.template.get("Resources", {}).items():
            if not isinstance(resource, dict) or _common.excepted(resource, self.id):
                continue
            properties = resource.get("Properties")
            for document, at in _common.policy_documents(
                    properties, ["Resources", name, "Properties"]):
                for statement, where in _common.policy_statements(document, at):
                    matches.extend(self._statement(name, statement, where))
        return matches

    def _statement(self, name, statement, where):
        if statement.get("Effect") != "Allow":
            return []
        if "NotAction" in statement:
            return [RuleMatch([*where, "NotAction"],
                              f"{name}: an Allow statement with NotAction grants every other "
                              f"action{_common.HINT}")]
        found = []
        for actions, at in _common.branches(statement.get("Action"), [*where, "Action"]):
            items = enumerate(actions) if isinstance(actions, list) else [(None, actions)]
            for index, action in items:
                if (isinstance(action, str) and wildcard(action)
                        and action not in ALLOWED_FAMILIES):
                    found.append(RuleMatch(at if index is None else [*at, index],
                                           f"{name}: Allow of '{action}' (name the actions; "
                                           f"allowed families: "
                                           f"{', '.join(sorted(ALLOWED_FAMILIES))}){_common.HINT}"))
        return found
