"""The permissions boundary: the most any role of the project may ever do, and no way past it.

Why a boundary: the delivery pipeline's deploy role and the Service Catalog launch role create
and change IAM roles. Whoever controls what they deploy (a push to the source, a template)
could otherwise give a role of the project any permission of the account, or remove its limits.
IAM's permissions boundaries ("Permissions boundaries for IAM entities", IAM User Guide) cap a
role's effective permissions at the intersection of its policies and its boundary; the deploy
and launch roles may create and change a role only with `iam:PermissionsBoundary` equal to this
policy (permissions.py), so every role the templates make stays under it.

What it holds (`document`):
- the ceiling: `<service>:*` for each service the project's roles use, read from the rendered
  stage templates (the role policies and the managed policies they attach), and the exact IAM
  actions they use. A boundary grants nothing by itself, so this is the one place a service
  wildcard appears: each role's own policy stays least privilege;
- the guards against privilege escalation (`escalation_guards`): no role created or changed
  unless it carries a project boundary, no boundary removed, no boundary policy created,
  rewritten or deleted, no boundary attached as a permissions policy. Actions outside the
  ceiling (Organizations, Account, IAM users and access keys) are not allowed at all.

Where it lives: a stage of its own, `boundary` (boundary.yaml, the policy `PermissionsBoundary`
named `<project>-<environment>-permissions-boundary`), which the composer adds to every
environment with roles, since its policy is derived from all the other stages' templates; it
offers the wire PermissionsBoundaryArn. `bound_roles` sets that wire on every AWS::IAM::Role of a
stage when the stage is built (pipeline.py), so no stage names it. (Not a resource of the root:
the root's body is near CloudFormation's 51,200-byte limit for a template passed in a request.) Because the deploy role may not create or change a
boundary policy, an environment's first deployment, and any deployment that changes its
boundary (a new service among the roles' policies), is made by hand with administrator
credentials (`mlops-cfn deploy`), as the home environment's bootstrap already is.
"""

import re
from dataclasses import replace
from typing import Any, Iterable

from awacs.aws import (Action, Allow, ArnLike, Condition, Deny, PolicyDocument, Statement,
                       StringNotLike)
from troposphere import Parameter, Ref, Sub, Template, iam, kms

from . import naming
from .lint_rules import exceptions as lint_exceptions
from .outputs import Wire
from .policies import POLICY_VERSION
from .stage import Stage, StageBuilder
from .stages.common import control_tower_exceptions

NAME = "boundary"
RESOURCE = "PermissionsBoundary"
WIRE = Wire("PermissionsBoundaryArn",
            "ARN of the project's permissions boundary: every role of the stack is created "
            "under it")
PURPOSE = "permissions-boundary"
IAM_POLICY = naming.NameRule("IAM policy", 128)

# IAM actions the iam:PermissionsBoundary condition key applies to for roles ("Permissions
# boundaries for IAM entities" and "IAM condition context keys", IAM User Guide): each is
# allowed only for a role whose boundary is a project boundary.
ROLE_WRITES = ("iam:AttachRolePolicy", "iam:CreateRole", "iam:DeleteRolePolicy",
               "iam:DetachRolePolicy", "iam:PutRolePermissionsBoundary", "iam:PutRolePolicy")
# Removing a role's boundary is never allowed.
REMOVE_BOUNDARY = "iam:DeleteRolePermissionsBoundary"
# What would change what a boundary policy allows.
POLICY_WRITES = ("iam:CreatePolicy", "iam:CreatePolicyVersion", "iam:DeletePolicy",
                 "iam:DeletePolicyVersion", "iam:SetDefaultPolicyVersion")

_ACTION = re.compile(r"^([a-z0-9-]+):([A-Za-z0-9*]+)$")


def arn_pattern(project: str) -> str:
    """A Sub pattern matching the boundary policy of every environment of `project`."""
    name = naming.physical_name(IAM_POLICY, project, PURPOSE).replace(naming.ENVIRONMENT, "*")
    return "arn:${AWS::Partition}:iam::${AWS::AccountId}:policy/" + name


def bound_roles(stage: Stage) -> Stage:
    """`stage` with every AWS::IAM::Role of its template under the boundary (the wire
    PermissionsBoundaryArn, which the boundary stage offers); a stage without roles as it is."""
    roles = [r for r in stage.template.resources.values() if isinstance(r, iam.Role)]
    if not roles:
        return stage
    if WIRE.name not in stage.template.parameters:
        stage.template.add_parameter(Parameter(WIRE.name, Type=WIRE.type,
                                               Description=WIRE.description))
    for role in roles:
        role.PermissionsBoundary = Ref(WIRE.name)
    if WIRE in stage.inputs:
        return stage
    return replace(stage, inputs=(*stage.inputs, WIRE))


# The tag that marks a KMS key as the project's: the deploy and launch roles may administer only
# keys that carry it (aws:ResourceTag, "ABAC for AWS KMS", AWS KMS Developer Guide).
PROJECT_TAG = "mlops-cfn:project"


def tag_keys(template: Template, project: str) -> Template:
    """Tag every AWS::KMS::Key of `template` with PROJECT_TAG (the key's own tags, not only the
    stack's, which Service Catalog does not set)."""
    for key in template.resources.values():
        if isinstance(key, kms.Key):
            tags = [t for t in (key.properties.get("Tags") or []) if t.get("Key") != PROJECT_TAG]
            key.Tags = [*tags, {"Key": PROJECT_TAG, "Value": project}]
    return template


def actions_of(templates: Iterable[dict]) -> set[str]:
    """Every action the role policies and managed policies of `templates` (as data) allow."""
    found: set[str] = set()
    for template in templates:
        for resource in (template.get("Resources") or {}).values():
            kind, props = resource.get("Type"), resource.get("Properties") or {}
            if kind == "AWS::IAM::Role":
                documents = [p.get("PolicyDocument") for p in props.get("Policies") or []]
            elif kind in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"):
                documents = [props.get("PolicyDocument")]
            else:
                continue
            for document in documents:
                for statement in _statements(document):
                    if statement.get("Effect") == "Allow":
                        found.update(_strings(statement.get("Action")))
    return {a for a in found if _ACTION.match(a)}


def _statements(document: Any) -> list[dict]:
    statements = (document or {}).get("Statement", []) if isinstance(document, dict) else []
    statements = statements if isinstance(statements, list) else [statements]
    return [s for s in statements if isinstance(s, dict)]


def _strings(node: Any) -> Iterable[str]:
    """Strings in `node`, through lists and CloudFormation functions (an Fn::If's branches)."""
    if isinstance(node, str):
        yield node
    elif isinstance(node, list):
        for item in node:
            yield from _strings(item)
    elif isinstance(node, dict):
        for value in node.values():
            yield from _strings(value)


def escalation_guards(project: str) -> list[Statement]:
    """Deny statements closing IAM privilege escalation around the project's boundaries; in the
    boundary itself and in the deploy and launch roles' policies (permissions.py)."""
    boundaries = Sub(arn_pattern(project))
    return [
        Statement(
            Sid="RolesOnlyUnderTheProjectBoundary",
            Effect=Deny,
            Action=[Action(*a.split(":")) for a in ROLE_WRITES],
            Resource=["*"],
            # A negated operator is true where the key is absent: a role without a boundary.
            Condition=Condition(StringNotLike("iam:PermissionsBoundary", boundaries)),
        ),
        Statement(
            Sid="NoBoundaryRemoved",
            Effect=Deny,
            Action=[Action(*REMOVE_BOUNDARY.split(":"))],
            Resource=["*"],
        ),
        Statement(
            Sid="BoundariesOnlyByAdministrators",
            Effect=Deny,
            Action=[Action(*a.split(":")) for a in POLICY_WRITES],
            Resource=[boundaries],
        ),
        Statement(
            Sid="NoBoundaryAsPermissions",
            Effect=Deny,
            Action=[Action("iam", "AttachRolePolicy")],
            Resource=["*"],
            Condition=Condition(ArnLike("iam:PolicyARN", boundaries)),
        ),
    ]


def document(project: str, templates: Iterable[dict]) -> PolicyDocument:
    """The boundary policy for the roles of `templates` (module docstring)."""
    actions = actions_of(templates)
    services = sorted({a.split(":")[0] for a in actions} - {"iam"})
    iam_actions = sorted({a for a in actions if a.startswith("iam:")} - {REMOVE_BOUNDARY})
    statements = []
    if services:
        statements.append(Statement(
            Sid="ServicesOfTheProject",
            Effect=Allow,
            Action=[Action(service, "*") for service in services],
            Resource=["*"],
        ))
    if iam_actions:
        statements.append(Statement(
            Sid="IamActionsOfTheProject",
            Effect=Allow,
            Action=[Action(*a.split(":")) for a in iam_actions],
            Resource=["*"],
        ))
    return PolicyDocument(Version=POLICY_VERSION,
                          Statement=[*statements, *escalation_guards(project)])


# checkov reads the boundary as it reads a permissions policy; a boundary grants nothing.
CHECKOV_SKIPS = [
    {"id": check, "comment": "A permissions boundary grants nothing by itself: it caps the "
                             "project's roles, whose own policies are least privilege; its "
                             "Deny statements close IAM privilege escalation"}
    for check in ("CKV_AWS_107", "CKV_AWS_108", "CKV_AWS_109", "CKV_AWS_110", "CKV_AWS_111",
                  "CKV_AWS_289", "CKV_AWS_290", "CKV_AWS_355")]


# Why the boundary may name whole services, for AWS Control Tower's CT.IAM.PR.3 and the rule
# pack's E9002 (no wildcard action) alike.
WILDCARD_REASON = (
    "A permissions boundary is a ceiling, not a grant: it allows each service the project's "
    "roles use (`<service>:*`), every role's own policy names its actions, and one managed "
    "policy could not list every action of the deploy role")


def build(project: str, stages: Iterable[Stage]) -> Stage:
    """The boundary stage for the roles of `stages` (module docstring)."""
    b = StageBuilder(NAME, project, "the permissions boundary of every role the project's "
                                    "stacks create")
    policy = b.add(iam.ManagedPolicy(
        RESOURCE,
        ManagedPolicyName=b.physical_name(IAM_POLICY, PURPOSE),
        Description=f"{project}: permissions boundary of every role the project's stacks create",
        PolicyDocument=document(project, [s.template.to_dict() for s in stages]),
    ))
    policy.Metadata = {"checkov": {"skip": CHECKOV_SKIPS},
                       **control_tower_exceptions(("CT.IAM.PR.3", WILDCARD_REASON)),
                       **lint_exceptions(("E9002", WILDCARD_REASON))}
    b.output(WIRE, Ref(policy))
    return b.finish()


__all__ = ["NAME", "POLICY_WRITES", "PROJECT_TAG", "REMOVE_BOUNDARY", "RESOURCE", "ROLE_WRITES",
           "WIRE", "actions_of", "arn_pattern", "bound_roles", "build", "document",
           "escalation_guards", "tag_keys"]
