"""Upload a rendered tree to S3 so CloudFormation can create it: `mlops-cfn package`.

A rendered tree (`render_files`) holds the root template, one template per stage named by the
root's relative `TemplateURL`s, and the stages' assets under `assets/`. `package` uploads:

- every file under `assets/` to `<prefix><the key it has in the tree>` (`assets/<sha>/<file>`,
  see assets.py);
- every nested template, to `<prefix>templates/<sha>/<file>` (the digest is of the bytes
  uploaded), with each `TemplateURL` rewritten to that object's virtual-hosted https URL;
- the root, with the parameters that say where the assets are defaulting to what packaging
  chose (assets.PACKAGING_PARAMETERS: `AssetsBucket` the bucket, `AssetsPrefix` the prefix,
  `AssetsKeyArn` the customer-managed key the bucket encrypts with), written beside the tree's
  root as `packaged-root.<ext>` and uploaded like the nested templates;
- when the root asks for it (`ToolWheelKey`, the delivery build's), this mlops-cfn as a wheel
  (wheel.py), to `<prefix>assets/<sha>/mlops_cfn-<version>-py3-none-any.whl`.

Templates are never rewritten to follow the prefix: every asset reference is built from
`${AssetsPrefix}` (assets.py), so a nested template without nested stacks goes up byte for byte.

Keys are content-addressed: the same content always lands on the same key, so an object already
in the bucket with the same SHA-256 checksum (and encrypted as the bucket now encrypts) is not
uploaded again, and uploading a new version never changes what a running stack points at. The
bucket may be in any region: URLs name the bucket's own regional endpoint (GetBucketLocation). A
missing bucket is a UserError, never created.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable
from urllib.parse import quote

from .assets import (ASSETS_BUCKET, ASSETS_DIR, ASSETS_KEY_ARN, ASSETS_PREFIX, BUCKET_NAME,
                     KEY_PREFIX, KMS_KEY_ARN, TOOL_WHEEL_KEY)
from .errors import UserError
from .render import PACKAGED_PARAMETERS_FILE, PACKAGED_ROOT_NAME, PARAMETERS_FILE, ROOT_NAME
from .wheel import tool_wheel

TEMPLATES_DIR = "templates"
API_IMAGE_PARAMETER = "ApiImageTag"
NESTED_STACK_TYPES = ("AWS::CloudFormation::Stack",)
_DIGEST_LENGTH = 16  # the same length asset keys use (assets.py)


@dataclass(frozen=True)
class Packaged:
    root_url: str  # https URL (virtual-hosted style) of the packaged root template in S3
    root_path: Path  # the packaged root written beside the tree's root template
    uploaded: list[str] = field(default_factory=list)  # keys uploaded by this call
    skipped: list[str] = field(default_factory=list)  # keys already present with the same content


def package(tree: Path, bucket: str, *, prefix: str = "", s3=None,
            kms_for: Callable[[str], Any] | None = None) -> Packaged:
    """Upload `tree` (a rendered environment directory) to `bucket`; see the module docstring.

    `s3` is a boto3 S3 client, `kms_for(region)` a KMS client (used only to resolve a
    default-encryption key given by id or alias); None creates them from the default chain.
    """
    tree = Path(tree)
    root = find_root(tree)
    if s3 is None:
        import boto3

        s3 = boto3.client("s3")
    prefix = normal_prefix(prefix)
    region = bucket_region(s3, bucket)
    key_arn = bucket_key_arn(s3, bucket, region, kms_for)
    store = _Store(s3, bucket, region, key_arn)

    for path in _asset_files(tree):
        store.put(prefix + path.relative_to(tree).as_posix(), path.read_bytes())

    packager = _Packager(store, prefix)
    data, fmt = packager.packaged(root, stack=())
    chosen = {ASSETS_BUCKET: bucket, ASSETS_PREFIX: prefix, ASSETS_KEY_ARN: key_arn or ""}
    parameters = data.get("Parameters") or {}
    if TOOL_WHEEL_KEY in parameters:
        # The delivery build installs the tool that packaged it (wheel.py).
        wheel = tool_wheel()
        store.put(prefix + wheel.key, wheel.content)
        chosen[TOOL_WHEEL_KEY] = wheel.key
    for name, value in chosen.items():
        if name in parameters:
            parameters[name]["Default"] = value
    text = dump_template(data, fmt)
    root_path = tree / (PACKAGED_ROOT_NAME + root.suffix)
    root_path.write_text(text, encoding="utf-8")
    root_key = store.put(template_key(prefix, ROOT_NAME + root.suffix, text.encode("utf-8")),
                         text.encode("utf-8"))
    return Packaged(root_url=store.url(root_key), root_path=root_path,
                    uploaded=store.uploaded, skipped=store.skipped)


def put_template(s3, bucket: str, prefix: str, file_name: str, text: str) -> Packaged:
    """Upload one self-contained template beside the packaged ones (content-addressed, as they
    are): for a template a StackSet reads by URL, such as a Service Catalog launch role."""
    region = bucket_region(s3, bucket)
    store = _Store(s3, bucket, region, bucket_key_arn(s3, bucket, region))
    content = text.encode("utf-8")
    key = store.put(template_key(normal_prefix(prefix), file_name, content), content)
    return Packaged(root_url=store.url(key), root_path=Path(file_name), uploaded=store.uploaded,
                    skipped=store.skipped)


@dataclass(frozen=True)
class Registry:
    """Where an environment's registry group is: an account (None: the caller's) and region."""

    account: str | None
    region: str

    def group(self, name: str) -> str:
        """The group as ListModelPackages takes it: its name in the caller's account, its ARN
        in another ("ListModelPackages", SageMaker API Reference: ModelPackageGroupName is a
        name or an ARN; a group of another account is named by its ARN)."""
        if self.account is None:
            return name
        from .rules import partition_of

        return (f"arn:{partition_of(self.region)}:sagemaker:{self.region}:{self.account}:"
                f"model-package-group/{name}")


@dataclass(frozen=True)
class TemplateConfiguration:
    path: Path
    notes: tuple[str, ...] = ()  # what was chosen for the model, and why


def template_configuration(tree: Path, stack_name: str, cfn, *, sagemaker=None,
                           api_image_tag: str | None = None, registry: Registry | None = None,
                           caller_account: Callable[[], str] | None = None
                           ) -> TemplateConfiguration:
    """Write `packaged-parameters.json` beside the root: the tree's parameters.json plus the
    stack's current values of the run-time parameters (model, image) the file leaves out.

    It is the TemplateConfiguration the delivery pipeline deploys `stack_name` with: a
    parameter missing from it would get the template's default, not its previous value
    (settings.left_to_run_time), and the pipeline would tear serving down on every run.

    With a SageMaker client (`package --latest-approved-model`), a model package the file leaves
    out is the latest approved one of the environment's registry group instead
    (deploy.newest_approved; the group is named from the project and environment render wrote
    into parameters.json); with none approved yet, the stack's current one is kept. With
    `api_image_tag` (`package --model-api-image`), an API image tag the file leaves out is that
    one: the shipped model API's, which the pipeline pushes before deploying. `registry` says
    where the group is when it is in another account or region (its ARN is queried then).

    DeliveryAccountId (a root of a file with environments in other accounts, sharing.py) is the
    account packaging runs in (`caller_account`, by default STS GetCallerIdentity, which needs
    no permission): the
    delivery pipeline's build packages in the home account, and that account is what the
    environment shares its registry group and API repository with.
    """
    source = tree / PARAMETERS_FILE
    try:
        configuration = json.loads(source.read_text(encoding="utf-8"))
        given = configuration["Parameters"]
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise UserError(f"{source}: not a parameters file `mlops-cfn render` wrote "
                        f"({error})") from None
    from .deploy import live_values
    from .settings import run_time_parameters

    root, _ = load_template(find_root(tree))
    declared = set(root.get("Parameters") or {})
    left_out = (run_time_parameters() & declared) - set(given)
    values = live_values(cfn, stack_name, left_out)
    notes = []
    if sagemaker is not None:
        notes.append(_newest_approved_model(configuration, source, left_out, values, sagemaker,
                                            registry))
    from .sharing import DELIVERY_ACCOUNT

    if DELIVERY_ACCOUNT in left_out:
        if caller_account is None:
            def caller_account() -> str:
                import boto3

                return boto3.client("sts").get_caller_identity()["Account"]
        values[DELIVERY_ACCOUNT] = caller_account()
        notes.append(f"{DELIVERY_ACCOUNT}: {values[DELIVERY_ACCOUNT]} (the account packaging "
                     "runs in, the delivery pipeline's)")
    if api_image_tag is not None and API_IMAGE_PARAMETER in left_out:
        values[API_IMAGE_PARAMETER] = api_image_tag
        notes.append(f"{API_IMAGE_PARAMETER}: {api_image_tag} (the model API shipped with "
                     "this mlops-cfn)")
    configuration["Parameters"] = {**given, **values}
    path = tree / PACKAGED_PARAMETERS_FILE
    path.write_text(json.dumps(configuration, indent=2, sort_keys=True, ensure_ascii=False)
                    + "\n", encoding="utf-8")
    return TemplateConfiguration(path, tuple(notes))


def stack_reader(aws, tree: Path, account: str | None, region: str | None):
    """A CloudFormation client that reads the environment's stack where it is: in `region`
    (default the caller's), and in `account` with the credentials of the environment's reader
    role there (bootstrap.stack_reader_role, named from the project and environment render
    wrote into parameters.json; the partition is the caller's). AWS: "AssumeRole" (AWS STS API
    Reference)."""
    import boto3

    from .bootstrap import stack_reader_role_name
    from .render import ENVIRONMENT_TAG, PROJECT_TAG

    region = region or aws.region
    if account is None:
        return aws.regional_client("cloudformation")(region)
    source = tree / PARAMETERS_FILE
    try:
        tags = json.loads(source.read_text(encoding="utf-8")).get("Tags") or {}
    except (OSError, ValueError, AttributeError) as error:
        raise UserError(f"{source}: not a parameters file `mlops-cfn render` wrote "
                        f"({error})") from None
    if not (isinstance(tags, dict) and tags.get(PROJECT_TAG) and tags.get(ENVIRONMENT_TAG)):
        raise UserError(f"{source}: Tags: no {PROJECT_TAG} and {ENVIRONMENT_TAG} to name the "
                        "stack reader role by; render the tree again")
    sts = aws.client("sts")
    partition = sts.get_caller_identity()["Arn"].split(":")[1]
    role = (f"arn:{partition}:iam::{account}:role/"
            f"{stack_reader_role_name(tags[PROJECT_TAG], tags[ENVIRONMENT_TAG])}")
    given = sts.assume_role(RoleArn=role, RoleSessionName="mlops-cfn-package")["Credentials"]
    session = boto3.session.Session(
        aws_access_key_id=given["AccessKeyId"], aws_secret_access_key=given["SecretAccessKey"],
        aws_session_token=given["SessionToken"], region_name=region)
    return session.client("cloudformation", endpoint_url=aws.endpoint_url)


def _newest_approved_model(configuration: dict, source: Path, left_out: set[str],
                           values: dict[str, str], sagemaker,
                           registry: Registry | None = None) -> str:
    """Sets `values`' model package to the latest approved of the environment's group; says
    what it chose."""
    from .deploy import MODEL_PACKAGE_PARAMETER, model_package_group, newest_approved
    from .render import ENVIRONMENT_TAG, PROJECT_TAG

    if MODEL_PACKAGE_PARAMETER not in left_out:
        return (f"{MODEL_PACKAGE_PARAMETER}: set by the config (or not served from a model "
                "package), not chosen from the registry")
    tags = configuration.get("Tags") or {}
    if not (isinstance(tags, dict) and tags.get(PROJECT_TAG) and tags.get(ENVIRONMENT_TAG)):
        raise UserError(f"{source}: Tags: no {PROJECT_TAG} and {ENVIRONMENT_TAG} to name the "
                        "model registry group by; render the tree again")
    group = model_package_group(tags[PROJECT_TAG], tags[ENVIRONMENT_TAG])
    if registry is not None:
        group = registry.group(group)
    chosen = newest_approved(sagemaker, group)
    if chosen is None:
        return (f"{MODEL_PACKAGE_PARAMETER}: no approved package in {group} yet; keeping "
                f"{values.get(MODEL_PACKAGE_PARAMETER) or '(none)'}")
    values[MODEL_PACKAGE_PARAMETER] = chosen
    return f"{MODEL_PACKAGE_PARAMETER}: {chosen} (approved last in {group})"


def find_root(tree: Path) -> Path:
    """The root template of a rendered tree (root.yaml or root.json)."""
    if not tree.is_dir():
        raise UserError(f"{tree}: not a directory; give the directory `mlops-cfn render` wrote")
    found = [tree / (ROOT_NAME + suffix) for suffix in (".yaml", ".json")
             if (tree / (ROOT_NAME + suffix)).is_file()]
    if len(found) != 1:
        what = "no root.yaml or root.json" if not found else "both root.yaml and root.json"
        raise UserError(f"{tree}: {what}; give the directory `mlops-cfn render` wrote")
    return found[0]


def normal_prefix(prefix: str) -> str:
    """`a/b`, `/a/b/` -> `a/b/`; empty stays empty. Keys never start with a slash.

    Only S3's "safe characters" (Amazon S3 User Guide, "Naming Amazon S3 objects"): the prefix
    is the value of the AssetsPrefix parameter, which templates substitute into URIs and ARNs.
    """
    parts = [part for part in prefix.split("/") if part]
    if any(part in (".", "..") for part in parts):
        raise UserError(f"--prefix {prefix!r}: may not contain '.' or '..' segments")
    normal = "".join(part + "/" for part in parts)
    if not re.fullmatch(KEY_PREFIX, normal):
        raise UserError(f"--prefix {prefix!r}: only letters, digits and ! _ . * ' ( ) - in "
                        "each segment, segments separated by /")
    return normal


def template_key(prefix: str, file_name: str, content: bytes) -> str:
    digest = hashlib.sha256(content).hexdigest()[:_DIGEST_LENGTH]
    return f"{prefix}{TEMPLATES_DIR}/{digest}/{file_name}"


def object_url(bucket: str, region: str, key: str) -> str:
    """The virtual-hosted https URL CloudFormation reads a template from."""
    suffix = "amazonaws.com.cn" if region.startswith("cn-") else "amazonaws.com"
    return f"https://{bucket}.s3.{region}.{suffix}/{quote(key)}"


def bucket_region(s3, bucket: str) -> str:
    """The bucket's region; a UserError when the bucket does not exist or cannot be read."""
    from botocore.exceptions import ClientError, ParamValidationError

    if not re.fullmatch(BUCKET_NAME, bucket):
        raise UserError(f"bucket {bucket!r}: not a valid bucket name (3 to 63 lowercase "
                        "letters, digits, dots and hyphens, starting and ending with a letter "
                        "or digit)")
    try:
        location = s3.get_bucket_location(Bucket=bucket).get("LocationConstraint")
    except ParamValidationError as error:
        raise UserError(f"bucket {bucket!r}: not a valid bucket name ({error})") from None
    except ClientError as error:
        code = error.response.get("Error", {}).get("Code", "")
        if code == "NoSuchBucket":
            raise UserError(f"bucket {bucket!r} does not exist: create it first (for example "
                            f"`aws s3 mb s3://{bucket}`) or name another with --bucket") from None
        if code in ("AccessDenied", "AllAccessDisabled", "403"):
            raise UserError(f"bucket {bucket!r}: access denied (the credentials in use may not "
                            f"read the bucket's location)") from None
        raise UserError(f"bucket {bucket!r}: {code}: "
                        f"{error.response.get('Error', {}).get('Message', error)}") from None
    # GetBucketLocation answers None for us-east-1 and "EU" for the oldest eu-west-1 buckets.
    return {None: "us-east-1", "": "us-east-1", "EU": "eu-west-1"}.get(location, location)


def bucket_key_arn(s3, bucket: str, region: str,
                   kms_for: Callable[[str], Any] | None = None) -> str | None:
    """The ARN of the customer-managed KMS key `bucket` encrypts new objects with (its default
    encryption), or None for SSE-S3 and for the AWS managed key aws/s3, whose key policy lets
    every principal of the account decrypt through S3 (AWS KMS Developer Guide, "AWS managed
    keys"). `kms_for(region)` gives a KMS client, asked for only when a key id or alias has to
    be resolved (kms:DescribeKey); None: boto3's default chain."""
    from botocore.exceptions import ClientError

    try:
        rules = s3.get_bucket_encryption(Bucket=bucket)[
            "ServerSideEncryptionConfiguration"]["Rules"]
    except ClientError as error:
        code = error.response.get("Error", {}).get("Code", "")
        if code == "ServerSideEncryptionConfigurationNotFoundError":
            return None
        if code in ("AccessDenied", "403"):
            raise UserError(f"bucket {bucket!r}: access denied reading its default encryption "
                            "(packaging needs s3:GetEncryptionConfiguration: the roles that "
                            "read the assets are granted its KMS key)") from None
        raise
    default = next((rule["ApplyServerSideEncryptionByDefault"] for rule in rules
                    if "ApplyServerSideEncryptionByDefault" in rule), {})
    key = default.get("KMSMasterKeyID")
    if not default.get("SSEAlgorithm", "").startswith("aws:kms") or not key:
        return None
    if re.fullmatch(KMS_KEY_ARN, key):
        return key
    if kms_for is None:
        import boto3

        kms = boto3.client("kms", region_name=region)
    else:
        kms = kms_for(region)
    try:
        metadata = kms.describe_key(KeyId=key)["KeyMetadata"]
    except ClientError as error:
        raise UserError(f"bucket {bucket!r}: its default encryption names KMS key {key!r}, "
                        f"which cannot be described "
                        f"({error.response.get('Error', {}).get('Code', error)}); packaging "
                        "needs kms:DescribeKey on it") from None
    return None if metadata.get("KeyManager") == "AWS" else metadata["Arn"]


def require_bucket_in(s3, bucket: str, region: str, what: str = "the stack deploys to") -> None:
    """Refuse a bucket outside `region`: Lambda reads its code only from a bucket in the
    function's own region."""
    where = bucket_region(s3, bucket)
    if where != region:
        raise UserError(f"--bucket {bucket}: is in {where}, {what} {region}; use a bucket "
                        "there")


# --- templates -------------------------------------------------------------------------------

def load_template(path: Path) -> tuple[Any, str]:
    """A template's data and its format; YAML short forms (!GetAtt, !Sub) read by cfn-flip."""
    import cfn_flip

    text = path.read_text(encoding="utf-8")
    try:
        if path.suffix == ".json":
            return cfn_flip.load_json(text), "json"
        return cfn_flip.load_yaml(text), "yaml"
    except Exception as error:  # yaml and json raise several unrelated types
        raise UserError(f"{path}: not a readable template ({error})") from None


def dump_template(data: Any, fmt: str) -> str:
    """Text in the style render writes (cfn_yaml: short forms), keys in the template's own
    order, or 2-space JSON."""
    from .cfn_yaml import dump

    if fmt == "json":
        return json.dumps(data, indent=2, sort_keys=True) + "\n"
    return dump(data, sort_keys=False)


class _Packager:
    def __init__(self, store: _Store, prefix: str):
        self.store = store
        self.prefix = prefix

    def packaged(self, path: Path, stack: tuple[Path, ...]) -> tuple[Any, str]:
        """`path`'s data with its nested templates uploaded and their URLs rewritten."""
        if path.resolve() in stack:
            chain = " -> ".join(p.name for p in (*stack, path.resolve()))
            raise UserError(f"{path}: nests itself ({chain})")
        data, fmt = load_template(path)
        if not isinstance(data, dict):
            raise UserError(f"{path}: not a CloudFormation template (not a mapping)")
        for name, resource in (data.get("Resources") or {}).items():
            properties = resource.get("Properties") if isinstance(resource, dict) else None
            if resource.get("Type") not in NESTED_STACK_TYPES or not isinstance(properties, dict):
                continue
            url = properties.get("TemplateURL")
            if not isinstance(url, str) or "://" in url:
                continue  # already uploaded, or computed (an intrinsic function)
            child = path.parent / url
            if not child.is_file():
                raise UserError(f"{path}: {name}: TemplateURL {url} names no file beside it")
            properties["TemplateURL"] = self.store.url(self.upload(child, (*stack, path.resolve())))
        return data, fmt

    def upload(self, path: Path, stack: tuple[Path, ...]) -> str:
        original = path.read_bytes()
        if any(kind.encode() in original for kind in NESTED_STACK_TYPES):
            # A plain text test: parsing every template would cost more than all the uploads.
            data, fmt = self.packaged(path, stack)
            content = dump_template(data, fmt).encode("utf-8")
        else:
            # Uploaded byte for byte: the key then follows from the rendered file alone.
            content = original
        return self.store.put(template_key(self.prefix, path.name, content), content)


def _asset_files(tree: Path) -> list[Path]:
    assets = tree / ASSETS_DIR
    return sorted(p for p in assets.rglob("*") if p.is_file()) if assets.is_dir() else []


# --- S3 --------------------------------------------------------------------------------------

class _Store:
    """Puts content on a key unless an object with the same SHA-256 checksum, encrypted with
    the key the bucket encrypts with now, is there (an object under an older key would stay
    unreadable to roles granted only the current one)."""

    def __init__(self, s3, bucket: str, region: str, key_arn: str | None = None):
        self.s3 = s3
        self.bucket = bucket
        self.region = region
        self.key_arn = key_arn
        self.uploaded: list[str] = []
        self.skipped: list[str] = []

    def url(self, key: str) -> str:
        return object_url(self.bucket, self.region, key)

    def put(self, key: str, content: bytes) -> str:
        if key in self.uploaded or key in self.skipped:
            return key
        checksum = base64.b64encode(hashlib.sha256(content).digest()).decode("ascii")
        head = self._head(key)
        if head is not None and head.get("ChecksumSHA256") == checksum \
                and self._encrypted_as_the_bucket_encrypts(head):
            self.skipped.append(key)
            return key
        # boto3 sends the body's SHA-256, S3 checks the body against it and keeps it for the
        # next run's HeadObject. The bucket's default encryption applies.
        self.s3.put_object(Bucket=self.bucket, Key=key, Body=content, ChecksumAlgorithm="SHA256",
                           ContentType=_content_type(key))
        self.uploaded.append(key)
        return key

    def _encrypted_as_the_bucket_encrypts(self, head: dict) -> bool:
        if self.key_arn is None:
            return True
        return _key_id(head.get("SSEKMSKeyId") or "") == _key_id(self.key_arn)

    def _head(self, key: str) -> dict | None:
        from botocore.exceptions import ClientError

        try:
            return self.s3.head_object(Bucket=self.bucket, Key=key, ChecksumMode="ENABLED")
        except ClientError as error:
            code = error.response.get("Error", {}).get("Code")
            if code in ("404", "NoSuchKey", "NotFound"):
                return None
            if code in ("403", "AccessDenied"):
                raise UserError(f"s3://{self.bucket}/{key}: access denied (packaging needs "
                                f"s3:GetObject and s3:PutObject on the bucket)") from None
            raise


def _key_id(key: str) -> str:
    """A KMS key's id, from its ARN or the id itself (HeadObject may answer either)."""
    return key.rsplit("key/", 1)[-1]


def _content_type(key: str) -> str:
    if key.endswith((".yaml", ".yml")):
        return "application/yaml"
    if key.endswith(".json"):
        return "application/json"
    if key.endswith(".zip"):
        return "application/zip"
    if key.endswith(".py"):
        return "text/x-python"
    return "application/octet-stream"
