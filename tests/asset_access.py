"""Who reads which packaged object, and whether their policies let them: the asset-access check.

Every object a deployed stack reads from the packages bucket is read by someone in particular,
with that principal's own permissions (Amazon S3 User Guide, "Using server-side encryption with
AWS KMS keys": a download of an SSE-KMS object also needs kms:Decrypt on its key):

- a Glue job's script: the job's role (AWS Glue Developer Guide, "Step 2: Create an IAM role
  for AWS Glue": the role reads the script location);
- a SageMaker pipeline step's code: the role the step's processing job runs as;
- a CodeBuild project's input named in an environment variable (the mlops-cfn wheel the
  delivery build installs): the project's service role;
- a Lambda function's zip and every nested template: the principal that deploys the stack
  (CloudFormation reads TemplateURL, and Lambda the code, with the deploying principal's
  credentials): the delivery pipeline's DeployRole, or whoever runs `mlops-cfn deploy`.

`check` builds every environment of a config file, resolves each stage template with the values
packaging gives it (tests/template_eval.py), finds every asset reference of every resource and
evaluates the reader's identity policies for s3:GetObject on the object and kms:Decrypt on the
bucket's key through S3, and the key's own policy for delegating that to IAM. A reference whose
reader it cannot tell is a problem too, so a new kind of consumer cannot slip past it.

Two ways the packages arrive:
- `delivered`: the pipeline packages every environment into the home environment's artifact
  bucket under `delivery/`, encrypted with its DeliveryKey;
- `bootstrapped`: the home environment deployed by hand with `mlops-cfn deploy` into a bucket of
  the user's, encrypted with a key of the user's (its nested templates and Lambda zips are then
  read by the user, outside the templates: not checked).
"""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass, field
from typing import Iterator

from mlops_cfn import pipeline
from mlops_cfn.assets import (ASSETS_BUCKET, ASSETS_KEY_ARN, ASSETS_PREFIX, PACKAGING_PARAMETERS,
                              TOOL_WHEEL_KEY)
from mlops_cfn.stages import cicd
from mlops_cfn.stages import cicd_buildspec as spec
from mlops_cfn.wheel import tool_wheel

from .template_eval import (ACCOUNT, PARTITION, REGION, Request, Resolver, arn_of,
                            key_policy_statements, role_statements, strings)

# An asset key with the key characters before it (a prefix, or the bucket after `//` or `:::`).
ASSET_REFERENCE = re.compile(r"[0-9A-Za-z!_.*'()/-]*assets/[0-9a-f]{16}/[0-9A-Za-z_.+-]+")
USER_BUCKET = f"mlops-cfn-{ACCOUNT}-{REGION}"
USER_KEY = f"arn:{PARTITION}:kms:{REGION}:{ACCOUNT}:key/bootstrap-bucket-key"
THROUGH_S3 = (("kms:ViaService", f"s3.{REGION}.amazonaws.com"), ("kms:CallerAccount", ACCOUNT))
# A nested template's key as package writes it (package.template_key), for the deployer's read.
TEMPLATE_KEY = "templates/0123456789abcdef/{name}"
# Resource types whose asset references grant access rather than read.
GRANTS = ("AWS::IAM::Role", "AWS::IAM::Policy", "AWS::IAM::ManagedPolicy")


@dataclass(frozen=True)
class Place:
    """Where the packages are: bucket, prefix, and the key the bucket encrypts with."""

    bucket: str
    prefix: str
    key_arn: str | None
    # The key's own template and logical id, when a stack of the pipeline creates it.
    key_owner: tuple[Resolver, str] | None = None

    def parameters(self) -> dict[str, str]:
        return {ASSETS_BUCKET: self.bucket, ASSETS_PREFIX: self.prefix,
                ASSETS_KEY_ARN: self.key_arn or "", TOOL_WHEEL_KEY: wheel_key()}


@functools.cache
def wheel_key() -> str:
    """Where package puts this mlops-cfn's wheel, under the prefix (wheel.py)."""
    return tool_wheel().key


@dataclass(frozen=True)
class Read:
    environment: str
    what: str  # e.g. "EtlStack EtlJob script"
    reader: str  # e.g. "EtlStack JobRole"
    object_arn: str
    key_arn: str | None


@dataclass
class Report:
    reads: list[Read] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def kinds(self) -> set[str]:
        return {read.what.split(" ", 1)[1] for read in self.reads}


def check(loaded, way: str) -> Report:
    """The asset-access check for every environment of `loaded` (config.LoadedConfig)."""
    built = pipeline.build_all(loaded, list(loaded.merged))
    by_env = {p.environment: p for p in built}
    config = loaded.config
    report = Report()
    if not config.stages.cicd.enabled:
        raise ValueError("the check models the delivery pipeline: enable stages.cicd")
    home = cicd.home_environment(config)
    home_cicd = stage_resolver(by_env[home], "cicd", {})
    deployer = (home_cicd, "DeployRole")
    if way == "delivered":
        delivery_key = arn_of("AWS::KMS::Key", home_cicd.physical_id("DeliveryKey"))
        place = Place(home_cicd.physical_id("ArtifactBucket"), spec.PACKAGE_PREFIX,
                      delivery_key, (home_cicd, "DeliveryKey"))
        environments = list(by_env)
    elif way == "bootstrapped":
        place, deployer, environments = Place(USER_BUCKET, "", USER_KEY), None, [home]
    else:
        raise ValueError(way)
    for env in environments:
        built_env = by_env[env]
        for stage in built_env.stages:
            resolver = stage_resolver(built_env, stage.name, place.parameters())
            for read in reads_of(env, stage, resolver, place, deployer):
                report.reads.append(read[0])
                report.problems += evaluate(*read, place)
            if deployer is not None:
                # The nested template, fetched by CloudFormation with the deployer.
                key = place.prefix + TEMPLATE_KEY.format(name=f"{stage.name}.yaml")
                read = Read(env, f"{stage.logical_id} template", "DeployRole",
                            object_arn(place.bucket, key), place.key_arn)
                report.reads.append(read)
                report.problems += evaluate(read, *deployer, place)
        if deployer is not None:
            key = place.prefix + TEMPLATE_KEY.format(name="root.yaml")
            read = Read(env, "root template", "DeployRole", object_arn(place.bucket, key),
                        place.key_arn)
            report.reads.append(read)
            report.problems += evaluate(read, *deployer, place)
    return report


def stage_resolver(built: pipeline.Pipeline, stage_name: str,
                   packaged: dict[str, str]) -> Resolver:
    (stage,) = [s for s in built.stages if s.name == stage_name]
    template = stage.template.to_dict()
    values = {**built.parameters, **packaged}
    given = {name: value for name, value in values.items()
             if name in (template.get("Parameters") or {})}
    missing = [name for name in PACKAGING_PARAMETERS
               if name in (template.get("Parameters") or {}) and name not in given
               and "Default" not in template["Parameters"][name] and packaged]
    if missing:
        raise AssertionError(f"{stage_name}: packaging gives no value for {missing}")
    return Resolver(template, given, stack=f"{built.environment}-{stage.logical_id}")


def object_arn(bucket: str, key: str) -> str:
    return f"arn:{PARTITION}:s3:::{bucket}/{key}"


def named_keys(text: str, bucket: str) -> list[str]:
    keys = []
    for match in ASSET_REFERENCE.finditer(text):
        key = match.group(0).lstrip("/")
        keys.append(key[len(bucket) + 1:] if key.startswith(bucket + "/") else key)
    return keys


def reads_of(env: str, stage, resolver: Resolver, place: Place,
             deployer) -> Iterator[tuple[Read, Resolver, str]]:
    """(read, the reader's template, the reader's logical id) for every asset reference."""
    for logical_id, resource in resolver.live_resources().items():
        kind = resource["Type"]
        if kind in GRANTS:
            continue
        properties = resolver.value(resource.get("Properties") or {})
        what = f"{stage.logical_id} {logical_id}"
        found = list(_consumers(kind, properties, resolver, place.bucket))
        seen = {key for _, _, keys in found for key in keys}
        for text in strings(properties):
            for key in named_keys(text, place.bucket):
                if key not in seen:
                    yield _unknown(env, what, key, place), resolver, ""
                    seen.add(key)
        for label, reader, keys in found:
            for key in keys:
                read = Read(env, f"{stage.logical_id} {label}", reader,
                            object_arn(place.bucket, key), place.key_arn)
                if reader == "<deployer>":
                    if deployer is None:
                        continue  # the user who runs mlops-cfn deploy: outside the templates
                    yield Read(env, read.what, "DeployRole", read.object_arn, read.key_arn), \
                        deployer[0], deployer[1]
                else:
                    yield read, resolver, reader


def _unknown(env: str, what: str, key: str, place: Place) -> Read:
    return Read(env, f"{what} (no known reader)", "", object_arn(place.bucket, key),
                place.key_arn)


def _consumers(kind: str, properties: dict, resolver: Resolver, bucket: str = ""):
    """(label, reader logical id or "<deployer>", object keys) per consuming property."""
    if kind == "AWS::Glue::Job":
        role = resolver.logical_id_of_arn(str(properties.get("Role")))
        yield "Glue script", role or "?", _keys(properties["Command"]["ScriptLocation"])
    elif kind == "AWS::SageMaker::Pipeline":
        body = properties["PipelineDefinition"]["PipelineDefinitionBody"]
        definition = json.loads(body)
        for step in definition.get("Steps", []):
            keys = [k for text in strings(step.get("Arguments", {})) for k in _keys(text)]
            if keys:
                role = step["Arguments"].get("RoleArn", properties.get("RoleArn"))
                yield ("pipeline step code", resolver.logical_id_of_arn(str(role)) or "?", keys)
    elif kind == "AWS::Lambda::Function" and "S3Key" in (properties.get("Code") or {}):
        yield "Lambda zip", "<deployer>", [properties["Code"]["S3Key"]]
    elif kind == "AWS::Lambda::Function" and "JOB_DRIVER" in _variables(properties):
        # The EMR consumer's supervisor starts job runs: EMR Serverless reads the entry point
        # and --py-files with the job's execution role (AWS: "Job runtime roles for Amazon EMR
        # Serverless").
        variables = _variables(properties)
        role = resolver.logical_id_of_arn(str(variables.get("EXECUTION_ROLE_ARN")))
        yield "EMR Serverless job code", role or "?", named_keys(variables["JOB_DRIVER"], bucket)
    elif kind == "AWS::CloudFormation::CustomResource" and "JobDriver" in properties:
        # The custom resource that starts the EMR consumer's first job run: the run reads its
        # code with the execution role it names.
        role = resolver.logical_id_of_arn(str(properties.get("ExecutionRoleArn")))
        yield "EMR Serverless job code", role or "?", named_keys(properties["JobDriver"], bucket)
    elif kind == "AWS::EC2::LaunchTemplate":
        # The boot script downloads the application with the instance profile's role.
        data = properties.get("LaunchTemplateData") or {}
        profile = resolver.logical_id_of_arn(str((data.get("IamInstanceProfile") or {})
                                                 .get("Arn")))
        roles = ((resolver.live_resources().get(profile) or {}).get("Properties") or {}).get(
            "Roles") or [{}]
        role = roles[0].get("Ref") if isinstance(roles[0], dict) else None
        keys = [k for text in strings(data.get("UserData", "")) for k in named_keys(text, bucket)]
        if keys:
            yield "instance boot download", role or "?", keys
    elif kind == "AWS::CodeBuild::Project":
        role = resolver.logical_id_of_arn(str(properties.get("ServiceRole")))
        source = properties.get("Source") or {}
        if source.get("Type") == "S3":
            yield "build source", role or "?", named_keys(str(source.get("Location", "")), bucket)
        for variable in properties.get("Environment", {}).get("EnvironmentVariables", []):
            keys = _keys(str(variable.get("Value", "")))
            if keys:
                yield f"build input {variable['Name']}", role or "?", keys


def _variables(properties: dict) -> dict:
    return (properties.get("Environment") or {}).get("Variables") or {}


def _keys(text: str) -> list[str]:
    """Object keys in an `s3://bucket/key` URI or a bare key."""
    keys = []
    for match in ASSET_REFERENCE.finditer(text):
        reference = match.group(0)
        if text.startswith("s3://"):
            reference = reference.lstrip("/").split("/", 1)[1]
        keys.append(reference)
    return keys


def evaluate(read: Read, resolver: Resolver, reader: str, place: Place) -> list[str]:
    """Problems with `read`: the reader may not get the object or decrypt it."""
    where = f"{read.environment}: {read.what}"
    if not reader or reader == "?":
        return [f"{where}: {read.object_arn} is read by a principal the check cannot name"]
    if reader not in resolver.live_resources():
        return [f"{where}: the reader {reader} does not exist in that environment"]
    statements = role_statements(resolver, reader)
    problems = []
    if not Request("s3:GetObject", read.object_arn).allowed_by(statements):
        problems.append(f"{where}: {reader} may not s3:GetObject {read.object_arn}")
    if read.key_arn:
        if not Request("kms:Decrypt", read.key_arn, THROUGH_S3).allowed_by(statements):
            problems.append(f"{where}: {reader} may not kms:Decrypt {read.key_arn} through S3")
        if place.key_owner is not None:
            owner, key = place.key_owner
            root = f"arn:{PARTITION}:iam::{ACCOUNT}:root"
            if not Request("kms:Decrypt", read.key_arn, THROUGH_S3).allowed_by(
                    key_policy_statements(owner, key), principal=root):
                problems.append(f"{where}: the policy of {key} does not let IAM policies "
                                "grant kms:Decrypt")
    return problems
