"""What deploying a set of templates takes in IAM: the deploy and launch roles' permissions.

A role that deploys the pipeline's templates (the CI/CD stage's DeployRole, the Service Catalog
launch role) must create, update and delete every resource the templates hold, and nothing else.
What that takes is published by AWS, per resource type, in the CloudFormation registry schemas:
each schema's `handlers.create/read/update/delete/list.permissions` lists the calls
CloudFormation makes for the type. cfn-lint ships those schemas
(`cfnlint/data/schemas/providers/<region>.json` maps each type to a file under
`schemas/resources/`) and the IAM service reference (which actions exist, and on which resource
ARNs: `cfnlint/data/AdditionalSpecs/Policies.json`); both are read from the installed cfn-lint's
own paths (the bundled files, so one cfn-lint release renders the same roles everywhere). This
module derives the grants from those two, for the *requirements* of the rendered templates
(`template_requirements`): their resource types, the dynamic references they resolve and the SSM
parameter types they declare. So a new resource type, in a stage of ours or an extension stage,
is covered with no list to update.

What the handler lists do not say is the short, documented SUPPLEMENT below, each entry with the
AWS page that requires it: the services `iam:PassRole` reaches (granted only with
`iam:PassedToService`), the reads that dynamic references and SSM parameter types make, the
nested-stack rollback call, the calls of types without handlers (CodeBuild projects, custom
resources), and calls AWS documents but a handler list omits (sagemaker:DescribeModelPackage for a
model built from a model package). HANDLER_ERRATA maps the few names in handler lists that are no
IAM action (typos such as `s3:PutBucketReplication`) to the action meant, and WILDCARD_EXPANSIONS
spells out the one wildcard a handler list uses (`ec2:Describe*`): nothing granted here is `*`, a
`<service>:*` or any other wildcard.

Scope: every action AWS can scope to a resource is granted on its service's ARNs in this account
and region, in the shapes IAM's reference gives for the resource types the action touches
(`arn:${AWS::Partition}:cloudwatch::${AWS::AccountId}:*` for dashboards, which name no region;
`arn:${AWS::Partition}:s3:::*` for buckets, which name neither, with an `aws:ResourceAccount`
condition). IAM actions reach only the project's roles and policies (`iam_names`), stack actions
only the project's stacks (`stacks`). Actions AWS cannot scope share one statement on `*`.

API (the cicd stage, servicecatalog.py and the composer use it):

- `template_requirements(template) -> set[str]`: what deploying one template (as data) needs.
- `actions_for(requirements) -> list[str]`: every action granted, sorted.
- `deployment_statements(requirements, iam_names=, stacks=, service_role=) -> list[Statement]`.
- `policy_documents(statements, limit)`: the statements packed into managed-policy-sized documents.

A requirement nothing here covers (a type with neither handler permissions nor a supplement) is a
`UserError` naming it: a role that silently lacked a permission would fail halfway through a
deployment.
"""

import importlib.util
import json
import os
import re
from collections import Counter
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable, Sequence

from awacs.aws import (Action, Allow, ArnLike, Condition, Deny, ForAnyValueStringNotLike,
                       PolicyDocument, Statement, StringEquals, StringLike)
from troposphere import Sub, encode_to_dict

from . import boundary, naming
from .config import ENVIRONMENT_MAX_LENGTH
from .errors import UserError
from .policies import POLICY_VERSION

# A managed policy holds at most 6,144 characters (whitespace excluded); a role has at most 10
# managed policies attached by default (IAM and AWS STS quotas, IAM User Guide).
MANAGED_POLICY_LIMIT = 6144
MAX_MANAGED_POLICIES = 10

# Whose registry schemas to read: handler permissions do not differ by region, and us-east-1's
# provider list holds every type (cfnlint/data/schemas/providers/us-east-1.json).
REGISTRY_REGION = "us-east-1"

PASS_ROLE = "iam:PassRole"

# Requirements that are not resource types (see `template_requirements`).
RESOLVE_SECRETSMANAGER = "{{resolve:secretsmanager}}"
RESOLVE_SSM = "{{resolve:ssm}}"
RESOLVE_SSM_SECURE = "{{resolve:ssm-secure}}"
SSM_PARAMETER_TYPE = "AWS::SSM::Parameter::Value"
CUSTOM_RESOURCE = "AWS::CloudFormation::CustomResource"
# A managed policy a role of the templates attaches by ARN (`attached_policy_arns`).
ATTACH_POLICY = "{{attach-policy}}"
NESTED_STACK = "AWS::CloudFormation::Stack"

_RESOLVE = re.compile(r"\{\{resolve:(secretsmanager|ssm-secure|ssm):")


@dataclass(frozen=True)
class Supplement:
    """Actions a requirement needs beyond its handler lists, and the AWS page that says so."""

    actions: tuple[str, ...]
    source: str
    # Extra resource patterns per service prefix, for resources outside this account.
    resources: tuple[tuple[str, str], ...] = ()
    # Services the requirement hands a role to (`iam:PassRole` with `iam:PassedToService`).
    passes_role_to: tuple[str, ...] = ()
    # Resources outside the project's names that the actions act on (a role AWS creates): a
    # statement of their own grants exactly these actions on exactly these resources.
    on_resources: tuple[str, ...] = ()


_VPC_ENDPOINT_SERVICES = (
    "ec2", "arn:${AWS::Partition}:ec2:${AWS::Region}:*:vpc-endpoint-service/*")

SUPPLEMENT: dict[str, tuple[Supplement, ...]] = {
    NESTED_STACK: (Supplement(
        ("cloudformation:CancelUpdateStack",),
        # "verify that you have cancel update stack permissions, which is required if an
        # update rolls back".
        "AWS::CloudFormation::Stack, CloudFormation Template Reference; nested stacks run "
        "with their parent's service role, which CloudFormation passes on (AWS CloudFormation "
        "service role, CloudFormation User Guide)",
        passes_role_to=("cloudformation.amazonaws.com",)),),
    # A handle is a placeholder: CloudFormation makes no call for it.
    "AWS::CloudFormation::WaitConditionHandle": (),
    # The registry has no handlers for CodeBuild projects (a legacy, non-registry type).
    "AWS::CodeBuild::Project": (Supplement(
        ("codebuild:CreateProject", "codebuild:UpdateProject", "codebuild:DeleteProject",
         "codebuild:BatchGetProjects"),
        "AWS CodeBuild permissions reference (CreateProject and UpdateProject also need "
        "iam:PassRole)",
        passes_role_to=("codebuild.amazonaws.com",)),),
    # CloudFormation invokes a custom resource's function with the deploying principal.
    CUSTOM_RESOURCE: (Supplement(
        ("lambda:InvokeFunction",),
        "Lambda-backed custom resources, CloudFormation User Guide"),),
    # CreateModel from a registered model version (ContainerDefinition.ModelPackageName) reads
    # the package: the model group's policy for cross-account deployment grants exactly
    # sagemaker:DescribeModelPackage beside sagemaker:CreateModel on the model packages.
    "AWS::SageMaker::Model": (Supplement(
        ("sagemaker:DescribeModelPackage",),
        "Deploy a Model in the Registry, Amazon SageMaker Developer Guide "
        "(https://docs.aws.amazon.com/sagemaker/latest/dg/model-registry-deploy.html)"),),
    "AWS::SageMaker::Endpoint": (Supplement(
        ("kms:CreateGrant",),
        # "CreateEndpoint: sagemaker:CreateEndpoint, kms:CreateGrant (required only if the
        # associated EndpointConfig has a KmsKeyId specified)".
        "Amazon SageMaker API Permissions: Actions, Permissions, and Resources Reference"),),
    # An interface endpoint to an AWS service names an endpoint service that AWS's own account
    # owns; CreateVpcEndpoint authorizes that vpc-endpoint-service resource too.
    "AWS::EC2::VPCEndpoint": (Supplement(
        (), "Actions, resources, and condition keys for Amazon EC2 (CreateVpcEndpoint), "
            "Service Authorization Reference",
        resources=(_VPC_ENDPOINT_SERVICES,)),),
    # The analytics stage puts an inline policy (AWS::IAM::Policy QuickSightSecretAccess) on
    # the role QuickSight creates for reading Secrets Manager secrets, whose name is not the
    # project's: the IAM::Policy handlers' calls on that one role. The data source is the
    # resource that always comes with it (stages/analytics.py).
    "AWS::QuickSight::DataSource": (Supplement(
        ("iam:PutRolePolicy", "iam:GetRolePolicy", "iam:DeleteRolePolicy"),
        "Using AWS Secrets Manager secrets instead of database credentials in Amazon "
        "QuickSight, Amazon QuickSight User Guide (QuickSight reads secrets as its role "
        "aws-quicksight-secretsmanager-role-v0, path /service-role/); AWS::IAM::Policy handler "
        "permissions for the policy put on it",
        on_resources=("arn:${AWS::Partition}:iam::${AWS::AccountId}:role/service-role/"
                      "aws-quicksight-secretsmanager-role-v0",)),),
    # A pipeline whose source action names a connection passes it (the handlers list
    # codestar-connections:PassConnection). Connections created since the rename have
    # `arn:...:codeconnections:...` ARNs, and "when specifying a resource in the IAM policy, the
    # service prefix needs to match that of the resource": the same call under the new prefix.
    "AWS::CodePipeline::Pipeline": (Supplement(
        ("codeconnections:PassConnection",),
        "Connections rename - Summary of changes, Developer Tools console User Guide "
        "(https://docs.aws.amazon.com/dtconsole/latest/userguide/rename.html)"),),
    # A stage with AccessLogSettings (the serving stage's HTTP API) has API Gateway set up a
    # CloudWatch Logs delivery to the log group, with the deploying principal's permissions.
    "AWS::ApiGatewayV2::Stage": (Supplement(
        ("logs:CreateLogDelivery", "logs:PutResourcePolicy", "logs:UpdateLogDelivery",
         "logs:DeleteLogDelivery", "logs:CreateLogGroup", "logs:DescribeResourcePolicies",
         "logs:GetLogDelivery", "logs:ListLogDeliveries"),
        "Configure logging for HTTP APIs in API Gateway, API Gateway Developer Guide "
        "(permissions to activate logging)"),),
    RESOLVE_SECRETSMANAGER: (Supplement(
        ("secretsmanager:GetSecretValue", "kms:Decrypt"),
        "Get a secret or secret value from Secrets Manager, CloudFormation User Guide (the "
        "deploying principal reads the secret, and decrypts it with its key)"),),
    RESOLVE_SSM: (Supplement(
        ("ssm:GetParameters",),
        "Get a plaintext value from Systems Manager Parameter Store, CloudFormation User "
        "Guide (\"you must have access to call GetParameters for the specified parameter\")"),),
    RESOLVE_SSM_SECURE: (Supplement(
        ("ssm:GetParameters", "kms:Decrypt"),
        "Get a secure string value from Systems Manager Parameter Store, CloudFormation User "
        "Guide"),),
    SSM_PARAMETER_TYPE: (Supplement(
        ("ssm:GetParameters",),
        "Specify existing resources at runtime with CloudFormation-supplied parameter types "
        "(SSM parameter types), CloudFormation User Guide"),),
}

# Services a type hands roles to, where it is not the service of the type's own calls (the
# default: a type whose handlers list iam:PassRole passes roles to `<its prefix>.amazonaws.com`).
PASSED_TO: dict[str, tuple[str, ...]] = {
    # Task and execution roles are assumed by ECS tasks (Amazon ECS task IAM role).
    "AWS::ECS::TaskDefinition": ("ecs-tasks.amazonaws.com",),
    # Publishing flow logs to CloudWatch Logs (VPC Flow Logs, IAM role for publishing).
    "AWS::EC2::FlowLog": ("vpc-flow-logs.amazonaws.com",),
    # A namespace's IAM roles are Redshift's (Amazon Redshift Serverless, IAM roles).
    "AWS::RedshiftServerless::Namespace": ("redshift.amazonaws.com",
                                           "redshift-serverless.amazonaws.com"),
    # An instance profile's role is assumed by EC2 instances, which an Auto Scaling group
    # launches with it ("Use an IAM role for applications that run on Amazon EC2 instances",
    # Amazon EC2 Auto Scaling User Guide: the creator needs iam:PassRole for it).
    "AWS::IAM::InstanceProfile": ("ec2.amazonaws.com",),
    "AWS::AutoScaling::AutoScalingGroup": ("ec2.amazonaws.com",),
}

# Names in handler lists that IAM's service reference does not know, and the actions they mean
# (none where the call is authorized otherwise). Granting an unknown name grants nothing, and
# cfn-lint (W3037) rightly flags it.
HANDLER_ERRATA: dict[str, tuple[str, ...]] = {
    # AWS::AutoScaling::AutoScalingGroup's handlers list a "managed-fleets" prefix IAM's service
    # reference does not know; the group's own autoscaling: actions authorize its calls.
    "managed-fleets:Get*": (),
    "managed-fleets:CreateAutoScalingGroup": (),
    "managed-fleets:UpdateAutoScalingGroup": (),
    "managed-fleets:DeleteAutoScalingGroup": (),
    "managed-fleets:RegisterAutoScalingGroup": (),
    "managed-fleets:DeregisterAutoScalingGroup": (),
    # AWS::DynamoDB::Table's handlers list it for importing a table from S3
    # (ImportSourceSpecification), which no stage sets; IAM knows no such action (S3 authorizes
    # HeadObject with s3:GetObject), so nothing is granted for it.
    "s3:GetObjectMetadata": (),
    # S3 authorizes each DeleteBucket<Configuration> call with the configuration's Put action
    # (Amazon S3 API Reference, each Delete page: "you must have the s3:Put... permission").
    "s3:DeleteBucketAnalyticsConfiguration": ("s3:PutAnalyticsConfiguration",),
    "s3:DeleteBucketCors": ("s3:PutBucketCORS",),
    "s3:DeleteBucketEncryption": ("s3:PutEncryptionConfiguration",),
    "s3:DeleteBucketLifecycle": ("s3:PutLifecycleConfiguration",),
    "s3:DeleteBucketMetricsConfiguration": ("s3:PutMetricsConfiguration",),
    "s3:DeleteBucketReplication": ("s3:PutReplicationConfiguration",),
    "s3:PutBucketReplication": ("s3:PutReplicationConfiguration",),
    "s3:PutObjectLockConfiguration": ("s3:PutBucketObjectLockConfiguration",),
    # An S3 server access log operation name, not an IAM action.
    "s3:REST.PUT.OBJECT": (),
    "redshift:DescribeSnapshotCopyGrant": ("redshift:DescribeSnapshotCopyGrants",),
    "redshift:ModifyClusterDbRevisions": ("redshift:ModifyClusterDbRevision",),
    "sagemaker:ListMonitoringSchedule": ("sagemaker:ListMonitoringSchedules",),
    # API Gateway authorizes tagging as PUT and DELETE on /tags, which the handlers also list.
    "apigateway:TagResource": (),
    "apigateway:UntagResource": (),
    "apigateway:unTagResource": (),
    # The schema's placeholder from the resource-provider template (no such service).
    "initech:DeleteReport": (),
    "initech:DescribeReport": (),
    "initech:ListReports": (),
    "initech:UpdateReport": (),
    # Not (yet) in IAM's reference; a Lambda function alias to a managed runtime version and a
    # VPC Lattice association, neither of which a template here configures.
    "lambda:AssociateRuntimeAlias": (),
    "vpc-lattice:DescribeServiceNetworkVpcEndpointAssociation": (),
}

# Handler permissions for a property no template here sets, left out of the roles: they would
# name resources outside the project's account scope. AWS::EMRServerless::Application's
# IAM Identity Center calls serve its IdentityCenterConfiguration (trusted identity
# propagation, an application in the Identity Center instance's account); the EMR consumer
# (stages/ingestion_emr.py) sets none.
UNCONFIGURED: dict[str, frozenset[str]] = {
    "AWS::EMRServerless::Application": frozenset({
        "sso:DescribeInstance", "sso:CreateApplication", "sso:DeleteApplication",
        "sso:PutApplicationAuthenticationMethod", "sso:PutApplicationAssignmentConfiguration",
        "sso:PutApplicationGrant", "sso:PutApplicationAccessScope"}),
}

# Wildcards in handler lists, spelled out.
WILDCARD_EXPANSIONS: dict[str, tuple[str, ...]] = {
    # AWS::Redshift::Cluster's create handler: the VPC lookups Redshift makes to place a cluster,
    # the set the registry lists for AWS::Redshift::ClusterSubnetGroup (Amazon Redshift
    # Management Guide, "Amazon Redshift API permissions reference", CreateCluster).
    "ec2:Describe*": ("ec2:DescribeAccountAttributes", "ec2:DescribeAddresses",
                      "ec2:DescribeAvailabilityZones", "ec2:DescribeInternetGateways",
                      "ec2:DescribeSecurityGroups", "ec2:DescribeSubnets", "ec2:DescribeVpcs"),
    # AWS::AutoScaling::AutoScalingGroup's handlers read the group back with these (Amazon EC2
    # Auto Scaling API Reference: the Describe actions of a group and what hangs on it).
    "autoscaling:Describe*": ("autoscaling:DescribeAutoScalingGroups",
                              "autoscaling:DescribeScalingActivities",
                              "autoscaling:DescribeLifecycleHooks",
                              "autoscaling:DescribeNotificationConfigurations",
                              "autoscaling:DescribePolicies", "autoscaling:DescribeTags",
                              "autoscaling:DescribeWarmPool",
                              "autoscaling:DescribeTrafficSources",
                              "autoscaling:DescribeLoadBalancerTargetGroups",
                              "autoscaling:DescribeLoadBalancers"),
    # The same handlers: instance types from attribute-based requirements, which the EC2
    # consumer does not use but the handler may check.
    "ec2:Get*": ("ec2:GetInstanceTypesFromInstanceRequirements",),
    # The same handlers check load balancer target groups attached to a group.
    "elasticloadbalancing:Describe*": ("elasticloadbalancing:DescribeLoadBalancers",
                                       "elasticloadbalancing:DescribeTargetGroups"),
    # The same handlers resolve a launch template's `resolve:ssm:` image alias.
    "ssm:Get*": ("ssm:GetParameters",),
}


# Where one type's handlers need more of a wildcard than WILDCARD_EXPANSIONS gives: that type's
# own expansion, a superset, so that no other type's role changes with it.
TYPE_WILDCARD_EXPANSIONS: dict[tuple[str, str], tuple[str, ...]] = {
    # AWS::AutoScaling::AutoScalingGroup's handlers (the ingestion stage's EC2 consumer) beside
    # the VPC lookups: the launch template, its image and instance types, the instances launched
    # ("Amazon EC2 Auto Scaling identity-based policy examples", Amazon EC2 Auto Scaling User
    # Guide: launch template permissions).
    ("AWS::AutoScaling::AutoScalingGroup", "ec2:Describe*"): (
        *WILDCARD_EXPANSIONS["ec2:Describe*"], "ec2:DescribeImages", "ec2:DescribeInstances",
        "ec2:DescribeInstanceTypes", "ec2:DescribeInstanceTypeOfferings",
        "ec2:DescribeLaunchTemplates", "ec2:DescribeLaunchTemplateVersions"),
}


# --- cfn-lint's data --------------------------------------------------------------------------
# Read from the files the installed cfn-lint ships, found by its package path without importing
# it: importing cfnlint costs more than half a second, which every `render` would pay. The
# bundled files, not the cache `cfn-lint --update-specs` may write, so that the same cfn-lint
# release renders the same roles on every machine.

@lru_cache(maxsize=None)
def _cfnlint_data() -> Path:
    spec = importlib.util.find_spec("cfnlint")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("cfn-lint is not installed; it is a dependency of mlops-cfn")
    return Path(spec.submodule_search_locations[0]) / "data"


def _json(*parts: str) -> Any:
    return json.loads(_cfnlint_data().joinpath(*parts).read_text(encoding="utf-8"))


@lru_cache(maxsize=None)
def _iam_reference() -> dict:
    """IAM's service reference: actions, and the ARN formats of the resources they act on."""
    return _json("AdditionalSpecs", "Policies.json")


@lru_cache(maxsize=None)
def _registry_schemas() -> dict[str, str]:
    """Resource type -> the file name of its registry schema under `schemas/resources/`."""
    return _json("schemas", "providers", f"{REGISTRY_REGION}.json")


def iam_action(action: str) -> dict | None:
    """IAM's reference entry for `action` (case as IAM ignores it), or None if it has none."""
    service, _, name = action.partition(":")
    return _iam_reference().get(service.lower(), {}).get("Actions", {}).get(name.lower())


def supports_resource_scope(action: str) -> bool:
    """Whether IAM can scope `action` to a resource (else `*` is the only resource it matches)."""
    entry = iam_action(action)
    return bool(entry and entry.get("Resources"))


@lru_cache(maxsize=None)
def handler_permissions(resource_type: str) -> tuple[str, ...] | None:
    """Every permission the registry schema's handlers list for the type, in order, without
    repeats; None when the registry has no schema for it or the schema no handlers."""
    schema_hash = _registry_schemas().get(resource_type)
    if schema_hash is None:
        return None
    schema = _json("schemas", "resources", f"{schema_hash}.json")
    handlers = schema.get("handlers") or {}
    found = [p for handler in handlers.values() for p in handler.get("permissions", [])]
    return tuple(dict.fromkeys(found)) or None


# --- requirements ---------------------------------------------------------------------------

def template_requirements(template: dict) -> set[str]:
    """What deploying `template` (as data) asks of the deploying principal: its resource types,
    the kinds of dynamic reference it resolves, and SSM parameter types of its parameters."""
    found = {resource["Type"] for resource in (template.get("Resources") or {}).values()}
    for text in _strings(template.get("Resources") or {}):
        for kind in _RESOLVE.findall(text):
            found.add("{{resolve:%s}}" % kind)
    for parameter in (template.get("Parameters") or {}).values():
        if str(parameter.get("Type", "")).startswith(SSM_PARAMETER_TYPE):
            found.add(SSM_PARAMETER_TYPE)
    found.update(ATTACH_POLICY + arn for arn in attached_policy_arns(template))
    return found


def attached_policy_arns(template: dict) -> set[str]:
    """The managed policies the template's roles attach that it does not create itself (an AWS
    managed policy's ARN, as text or a Sub pattern): the only ones besides the project's own
    that the deploy and launch roles may attach (`ATTACH_POLICY` requirements)."""
    found = set()
    for resource in (template.get("Resources") or {}).values():
        if resource.get("Type") != "AWS::IAM::Role":
            continue
        for arn in (resource.get("Properties") or {}).get("ManagedPolicyArns") or []:
            if isinstance(arn, str):
                found.add(arn)
            elif isinstance(arn, dict) and isinstance(arn.get("Fn::Sub"), str):
                found.add(arn["Fn::Sub"])
            elif not (isinstance(arn, dict) and set(arn) == {"Ref"}
                      and arn["Ref"] in (template.get("Resources") or {})):
                raise UserError(f"a role attaches the managed policy {json.dumps(arn)}: "
                                f"name it by its ARN or create it in the template, so that the "
                                f"deploy and launch roles can allow attaching exactly it")
    return found


def attachable_policies(requirements: Iterable[str]) -> list[str]:
    """The ARN patterns of the `ATTACH_POLICY` requirements."""
    return sorted(r[len(ATTACH_POLICY):] for r in requirements if r.startswith(ATTACH_POLICY))


def _strings(value: Any) -> Iterable[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def _key(requirement: str) -> str:
    return CUSTOM_RESOURCE if requirement.startswith("Custom::") else requirement


def _supplements(requirement: str) -> tuple[Supplement, ...]:
    return SUPPLEMENT.get(_key(requirement), ())


def _raw_permissions(requirement: str) -> tuple[str, ...]:
    """The handler permissions and supplement actions of one requirement; an error when
    neither knows it."""
    if requirement.startswith(ATTACH_POLICY):
        return ()  # attaching is the role's type's call; this only names what may be attached
    key = _key(requirement)
    listed = handler_permissions(key) if "::" in key and not key.startswith("{{") else None
    if listed is None and key not in SUPPLEMENT:
        raise UserError(
            f"resource type {requirement}: CloudFormation's registry schema (as cfn-lint ships "
            f"it) lists no handler permissions for it and mlops_cfn/permissions.py has no "
            f"supplement: the deploy and launch roles could not be derived")
    unset = UNCONFIGURED.get(key, frozenset())
    return (*(a for a in listed or () if a not in unset),
            *(a for s in _supplements(key) for a in s.actions))


def granted_names(permission: str, resource_type: str | None = None) -> tuple[str, ...]:
    """The IAM actions one handler-listed permission (of `resource_type`'s handlers, when
    known) becomes: itself, its errata replacement, or its wildcard's expansion; nothing for a
    name IAM does not know."""
    if permission in HANDLER_ERRATA:
        return HANDLER_ERRATA[permission]
    if (resource_type, permission) in TYPE_WILDCARD_EXPANSIONS:
        return TYPE_WILDCARD_EXPANSIONS[(resource_type, permission)]
    if "*" in permission or "?" in permission:
        if permission not in WILDCARD_EXPANSIONS:
            raise UserError(f"handler permission {permission}: a wildcard with no expansion in "
                            f"mlops_cfn/permissions.py WILDCARD_EXPANSIONS")
        return WILDCARD_EXPANSIONS[permission]
    return (permission,) if iam_action(permission) is not None else ()


def _canonical(action: str) -> str:
    """`action` spelled as IAM's reference spells its service prefix (names keep their case)."""
    service, _, name = action.partition(":")
    return f"{service.lower()}:{name[:1].upper()}{name[1:]}"


def actions_for(requirements: Iterable[str]) -> list[str]:
    """Every IAM action deploying these requirements takes, sorted, without repeats."""
    found: set[str] = set()
    for requirement in requirements:
        for permission in _raw_permissions(requirement):
            found.update(_canonical(a) for a in granted_names(permission, _key(requirement)))
        if _passed_to(requirement):
            found.add(PASS_ROLE)
    return sorted(found)


def _passed_to(requirement: str) -> tuple[str, ...]:
    if requirement.startswith(ATTACH_POLICY):
        return ()
    key = _key(requirement)
    supplemented = tuple(s for sup in _supplements(key) for s in sup.passes_role_to)
    listed = handler_permissions(key) if "::" in key and not key.startswith("{{") else None
    if not listed or PASS_ROLE not in listed:
        return supplemented
    if key in PASSED_TO:
        return (*PASSED_TO[key], *supplemented)
    return (f"{_own_prefix(key, listed)}.amazonaws.com", *supplemented)


def _own_prefix(resource_type: str, listed: Sequence[str]) -> str:
    """The service prefix of a type's own calls: the commonest among its permissions, IAM's
    aside (a Lambda function's are lambda:, a state machine's states:)."""
    prefixes = Counter(p.split(":")[0] for p in listed if not p.startswith("iam:"))
    return prefixes.most_common(1)[0][0]


def passed_to_services(requirements: Iterable[str]) -> list[str]:
    """The services `iam:PassRole` must reach for these requirements."""
    return sorted({service for r in requirements for service in _passed_to(r)})


# --- resource scope -------------------------------------------------------------------------

def _arn_patterns(action: str) -> set[str]:
    """Patterns covering, in this account and region, every ARN shape IAM's reference gives for
    the resource types `action` acts on."""
    service = action.split(":")[0].lower()
    reference = _iam_reference().get(service, {})
    patterns = set()
    for resource_type in (iam_action(action) or {}).get("Resources", []):
        formats = reference.get("Resources", {}).get(resource_type.lower(), {}).get(
            "ARNFormats", [])
        for arn_format in formats:
            _, _, arn_service, region, account, _ = arn_format.split(":", 5)
            if arn_service == "s3" and region:
                # IAM refuses an S3 resource naming a region unless it is an access point
                # ("Resource ... can not contain region information"); the templates use
                # buckets and objects only, whose ARNs name no region.
                continue
            patterns.add("arn:${AWS::Partition}:%s:%s:%s:*" % (
                arn_service, "${AWS::Region}" if region else "",
                "${AWS::AccountId}" if account else ""))
    return patterns


def iam_resources(iam_names: str = "") -> list[str]:
    """Roles and policies whose names start with `iam_names`, and service-linked roles.

    IAM refuses a bare `:*` path ("IAM resource path must either be "*" or start with user/,
    role/, ..."): the stacks create roles and policies (CloudFormation names them after the
    stack, so they start with its name) and service-linked roles.
    """
    base = "arn:${AWS::Partition}:iam::${AWS::AccountId}"
    if not iam_names:
        return [f"{base}:role/*", f"{base}:policy/*"]
    return [f"{base}:role/{iam_names}*", f"{base}:role/aws-service-role/*",
            f"{base}:policy/{iam_names}*"]


def stack_resources(stacks: str) -> list[str]:
    """The stacks whose names start with `stacks`, nested stacks included (CloudFormation names
    a nested stack after its parent)."""
    return ["arn:${AWS::Partition}:cloudformation:${AWS::Region}:${AWS::AccountId}:"
            f"stack/{stacks}*/*"]


# --- statements -----------------------------------------------------------------------------

def deployment_statements(requirements: Iterable[str], iam_names: str = "",
                          stacks: str | None = None,
                          service_role: bool = True, project: str | None = None,
                          creates_boundary: bool = False) -> list[Statement]:
    """Statements allowing `actions_for(requirements)`, scoped as the module docstring says.

    `iam_names`: the prefix of every role and policy the stacks create (the root stack's name,
    which CloudFormation's generated names start with), so that the deploying role can neither
    change nor pass any other role of the account; empty when stack names are not known
    beforehand (Service Catalog names its stacks itself). `stacks`: the prefix of the stacks the
    role deploys, for the nested-stack calls; None leaves them on the account's stacks.
    `service_role`: whether the role is the stacks' service role, which CloudFormation passes on
    to their nested stacks (iam:PassRole to cloudformation.amazonaws.com); a Service Catalog
    launch role is not: Service Catalog runs the stacks with its credentials and no role.

    `project`: the project whose permissions boundary (boundary.py) every role the role creates
    or changes must carry, whose keys (tagged boundary.PROJECT_TAG) alone it may administer and
    use, and whose buckets alone it may give a policy (`project_statements`). With
    `creates_boundary` (the launch role: Service Catalog provisions the product's root, which
    creates the boundary) it may create and change the boundary policy; without (the deploy
    role, which whoever pushes to the source steers) it may not.
    """
    requirements = sorted(set(requirements))
    extra: dict[str, set[str]] = {}
    for requirement in requirements:
        for supplement in _supplements(requirement):
            for service, pattern in supplement.resources:
                extra.setdefault(service, set()).add(pattern)
    by_service: dict[str, list[str]] = {}
    unscoped = []
    for action in actions_for(requirements):
        if action == PASS_ROLE:
            continue
        if supports_resource_scope(action):
            by_service.setdefault(action.split(":")[0], []).append(action)
        else:
            unscoped.append(action)
    statements = []
    for service in sorted(by_service):
        actions = by_service[service]
        if project is not None and service in ("iam", "kms", "s3"):
            statements += project_statements(service, actions, project, iam_names,
                                             attachable_policies(requirements),
                                             creates_boundary)
            actions = [a for a in actions if a not in PROJECT_SCOPED.get(service, ())
                       and not (service in ("iam", "kms"))]
            if not actions:
                continue
        if service == "iam":
            resources = iam_resources(iam_names)
        elif service == "cloudformation" and stacks is not None:
            resources = stack_resources(stacks)
        else:
            resources = sorted(set().union(*(_arn_patterns(a) for a in actions))
                               | extra.get(service, set()))
        statement = Statement(
            Sid="Manage" + "".join(part.capitalize() for part in service.split("-")),
            Effect=Allow,
            Action=[Action(*a.split(":")) for a in actions],
            Resource=[Sub(r) for r in resources],
        )
        if service == "s3":
            # Bucket ARNs name no account: limit them to this account's buckets.
            statement.Condition = Condition(
                StringEquals("aws:ResourceAccount", Sub("${AWS::AccountId}")))
        statements.append(statement)
    if project is not None and {RESOLVE_SECRETSMANAGER, RESOLVE_SSM_SECURE} & set(requirements):
        statements.append(Statement(
            Sid="DecryptDynamicReferences",
            Effect=Allow,
            # A secret's or secure parameter's key need not be the project's: decrypt only
            # through the service that stores the value (kms:ViaService, AWS KMS Developer
            # Guide, "AWS KMS condition keys").
            Action=[Action("kms", "Decrypt")],
            Resource=[Sub("arn:${AWS::Partition}:kms:${AWS::Region}:${AWS::AccountId}:key/*")],
            Condition=Condition(StringEquals("kms:ViaService", [
                Sub("secretsmanager.${AWS::Region}.amazonaws.com"),
                Sub("ssm.${AWS::Region}.amazonaws.com")])),
        ))
    if unscoped:
        statements.append(Statement(
            Sid="ActionsWithoutResourceScope",
            Effect=Allow,
            # AWS supports no resource-level permission for these (describe and list calls,
            # and creations whose resource has no ARN before it exists): `*` is the only
            # resource that matches them (IAM's service reference, as cfn-lint ships it).
            Action=[Action(*a.split(":")) for a in unscoped],
            Resource=["*"],
        ))
    for requirement in requirements:
        for supplement in _supplements(requirement):
            if supplement.on_resources:
                statements.append(Statement(
                    Sid="Outside" + re.sub(r"[^A-Za-z0-9]", "", requirement.split("::", 1)[-1]),
                    Effect=Allow,
                    Action=[Action(*a.split(":")) for a in supplement.actions],
                    Resource=[Sub(r) for r in supplement.on_resources],
                ))
    services = [s for s in passed_to_services(requirements)
                if service_role or s != "cloudformation.amazonaws.com"]
    if services:
        statements.append(Statement(
            Sid="PassRolesToServices",
            Effect=Allow,
            Action=[Action("iam", "PassRole")],
            Resource=[Sub(f"arn:${{AWS::Partition}}:iam::${{AWS::AccountId}}:role/{iam_names}*")],
            # Granting a user permissions to pass a role to an AWS service (IAM User Guide):
            # each role only to the services the templates hand roles to.
            Condition=Condition(StringEquals("iam:PassedToService", services)),
        ))
    return statements


# --- the project's roles, keys and buckets ---------------------------------------------------

# Bucket actions that decide who may reach a bucket: only on the project's buckets.
S3_ACCESS_CONTROL = ("s3:DeleteBucketPolicy", "s3:PutBucketAcl", "s3:PutBucketOwnershipControls",
                     "s3:PutBucketPolicy", "s3:PutBucketPublicAccessBlock")
PROJECT_SCOPED = {"s3": S3_ACCESS_CONTROL}


def name_prefix(rule: naming.NameRule, project: str) -> str:
    """What every name of `project` under `rule` starts with, whatever the environment token's
    length (an environment name, or a SageMaker project's id in a Service Catalog product): a
    long project name is cut shorter the longer the token is (naming.py)."""
    starts = []
    for length in range(1, SCOPE_TOKEN_MAX_LENGTH + 1):
        with naming.environment_token(length):
            starts.append(naming.physical_name(rule, project, "x").split(naming.ENVIRONMENT)[0])
    return os.path.commonprefix(starts)


# The longest environment token names are built for: an environment name (config's
# ENVIRONMENT_MAX_LENGTH) or a SageMaker project's id without its hyphen (13, servicecatalog.py).
SCOPE_TOKEN_MAX_LENGTH = max(ENVIRONMENT_MAX_LENGTH, 13)


def project_statements(service: str, actions: Sequence[str], project: str, iam_names: str,
                       attachable: Sequence[str], creates_boundary: bool) -> list[Statement]:
    """The statements of `service` (iam, kms, s3) that confine the deploying role to the
    project: roles only under the project's boundary, attaching only the project's policies
    and those the templates name; keys only the project's (by tag) and its aliases; bucket
    policies and ACLs only on the project's buckets."""
    if service == "iam":
        return _iam_statements(actions, project, iam_names, attachable, creates_boundary)
    if service == "kms":
        return _kms_statements(actions, project)
    buckets = name_prefix(naming.S3_BUCKET, project)
    scoped = [a for a in actions if a in S3_ACCESS_CONTROL]
    if not scoped:
        return []
    return [Statement(
        Sid="ProjectBucketsAccessControl",
        Effect=Allow,
        Action=[Action(*a.split(":")) for a in scoped],
        Resource=[Sub(f"arn:${{AWS::Partition}}:s3:::{buckets}*")],
        Condition=Condition(StringEquals("aws:ResourceAccount", Sub("${AWS::AccountId}"))),
    )]


def _iam_statements(actions: Sequence[str], project: str, iam_names: str,
                    attachable: Sequence[str], creates_boundary: bool) -> list[Statement]:
    boundaries = Sub(boundary.arn_pattern(project))
    role_writes = [a for a in actions if a in boundary.ROLE_WRITES]
    plain = [a for a in actions if a not in boundary.ROLE_WRITES
             and a != boundary.REMOVE_BOUNDARY]
    resources = [Sub(r) for r in iam_resources(iam_names)]
    if creates_boundary:
        resources.append(boundaries)
    base = "arn:${AWS::Partition}:iam::${AWS::AccountId}"
    roles = [Sub(f"{base}:role/{iam_names}*")]
    statements = [Statement(Sid="ManageIam", Effect=Allow,
                            Action=[Action(*a.split(":")) for a in plain], Resource=resources)]
    under_boundary = StringLike("iam:PermissionsBoundary", boundaries)
    others = [a for a in role_writes if a != "iam:AttachRolePolicy"]
    if others:
        statements.append(Statement(
            Sid="ManageRolesUnderTheBoundary",
            Effect=Allow,
            # "Permissions boundaries for IAM entities" (IAM User Guide): a role may be created
            # or changed only with the project's boundary (iam:PermissionsBoundary).
            Action=[Action(*a.split(":")) for a in others],
            Resource=roles,
            Condition=Condition(under_boundary),
        ))
    if "iam:AttachRolePolicy" in role_writes:
        statements.append(Statement(
            Sid="AttachOnlyProjectPolicies",
            Effect=Allow,
            Action=[Action("iam", "AttachRolePolicy")],
            Resource=roles,
            # iam:PolicyARN: the project's own policies and those the templates attach.
            Condition=Condition([under_boundary, ArnLike("iam:PolicyARN", [
                Sub(f"{base}:policy/{iam_names}*"), *(Sub(a) for a in attachable)])]),
        ))
    guards = boundary.escalation_guards(project)
    if creates_boundary:
        guards = [g for g in guards if g.Sid != "BoundariesOnlyByAdministrators"]
    return [*statements, *guards]


def _kms_statements(actions: Sequence[str], project: str) -> list[Statement]:
    on_keys = [a for a in actions if "key" in (iam_action(a) or {}).get("Resources", [])]
    on_aliases = [a for a in actions if "alias" in (iam_action(a) or {}).get("Resources", [])]
    statements = []
    aliases = name_prefix(naming.KMS_ALIAS, project)
    keys = Sub("arn:${AWS::Partition}:kms:${AWS::Region}:${AWS::AccountId}:key/*")
    if on_keys:
        statements.append(Statement(
            Sid="ManageProjectKeys",
            Effect=Allow,
            # aws:ResourceTag on key operations: "ABAC for AWS KMS", AWS KMS Developer Guide.
            Action=[Action(*a.split(":")) for a in on_keys],
            Resource=[keys],
            Condition=Condition(StringEquals(f"aws:ResourceTag/{boundary.PROJECT_TAG}",
                                             project)),
        ))
    if "kms:TagResource" in on_keys:
        statements += [
            Statement(
                Sid="TagKeysAsTheProjects",
                Effect=Allow,
                # "To add tags while creating a KMS key, the principal must have permission in
                # an IAM policy that isn't restricted to particular KMS keys" (AWS KMS Developer
                # Guide, "Controlling access to tags"): a new key has no tag yet to match.
                Action=[Action("kms", "TagResource")],
                Resource=[keys],
                Condition=Condition(StringEquals(f"aws:RequestTag/{boundary.PROJECT_TAG}",
                                                 project)),
            ),
            Statement(
                Sid="AdoptNoAliasedKeyOfOthers",
                Effect=Deny,
                # The tag decides which keys are the project's: a key another alias names is
                # not to be tagged into it (kms:ResourceAliases, "Use aliases to control access
                # to KMS keys", AWS KMS Developer Guide). A key without any alias can be: the
                # one gap tags leave, see README "Security defaults".
                Action=[Action("kms", "TagResource")],
                Resource=[keys],
                Condition=Condition(ForAnyValueStringNotLike(
                    "kms:ResourceAliases", f"alias/{aliases}*")),
            ),
        ]
    if on_aliases:
        statements.append(Statement(
            Sid="ManageProjectAliases",
            Effect=Allow,
            Action=[Action(*a.split(":")) for a in on_aliases],
            Resource=[Sub("arn:${AWS::Partition}:kms:${AWS::Region}:${AWS::AccountId}:"
                          f"alias/{aliases}*")],
        ))
    return statements


# --- packing into managed policies ----------------------------------------------------------

def policy_size(statements: Sequence[Statement]) -> int:
    """Characters a document of `statements` counts against an IAM policy quota (an upper
    bound: CloudFormation functions count with their syntax, which is longer than the values
    they resolve to, except a region name longer than `${AWS::Region}`)."""
    document = PolicyDocument(Version=POLICY_VERSION, Statement=list(statements))
    return len(json.dumps(encode_to_dict(document), separators=(",", ":")))


def policy_documents(statements: Sequence[Statement],
                     limit: int = MANAGED_POLICY_LIMIT) -> list[PolicyDocument]:
    """`statements` packed in order into as few documents as fit `limit` each.

    A statement too large for one document on its own is split by its actions.
    """
    # Room for a long region name in every Sub, and the document's own braces.
    budget = limit - 200
    pieces: list[Statement] = []
    for statement in statements:
        pieces.extend(_split(statement, budget))
    documents: list[list[Statement]] = []
    sizes: list[int] = []  # policy_size of each document, kept as it grows
    for piece in pieces:
        # Compact JSON: a document one statement longer is longer by that statement and a
        # comma, so no document is encoded again for every candidate (that was most of a build).
        grown = len(json.dumps(encode_to_dict(piece), separators=(",", ":"))) + 1
        for index, document in enumerate(documents):
            if sizes[index] + grown <= budget:
                document.append(piece)
                sizes[index] += grown
                break
        else:
            documents.append([piece])
            sizes.append(policy_size([piece]))
    return [PolicyDocument(Version=POLICY_VERSION, Statement=d) for d in documents]


def _split(statement: Statement, budget: int) -> list[Statement]:
    if policy_size([statement]) <= budget:
        return [statement]
    actions = list(statement.Action)
    if len(actions) < 2:
        raise ValueError("a single-action statement exceeds the policy size limit")
    half = len(actions) // 2
    parts = []
    for index, chunk in enumerate((actions[:half], actions[half:]), start=1):
        props = dict(statement.properties)
        props["Action"] = chunk
        if "Sid" in props:
            props["Sid"] = f"{props['Sid']}{index}"
        parts.extend(_split(Statement(**props), budget))
    return parts


__all__ = [
    "HANDLER_ERRATA", "MANAGED_POLICY_LIMIT", "MAX_MANAGED_POLICIES", "NESTED_STACK", "PASSED_TO",
    "PASS_ROLE", "REGISTRY_REGION", "SUPPLEMENT", "Supplement", "WILDCARD_EXPANSIONS",
    "actions_for", "deployment_statements", "granted_names", "handler_permissions",
    "iam_action", "iam_resources", "passed_to_services", "policy_documents", "policy_size",
    "stack_resources", "supports_resource_scope", "template_requirements",
]
