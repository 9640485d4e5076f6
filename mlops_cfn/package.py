"""Upload a rendered tree to S3 so CloudFormation can create it: `mlops-cfn package`.

A rendered tree (`render_files`) holds the root template, one template per stage named by the
root's relative `TemplateURL`s, and the stages' assets under `assets/`. `package` uploads:

- every file under `assets/` to the key it already has in the templates (`assets/<sha>/<file>`,
  see assets.py), under `prefix` when one is given (the templates' references are rewritten to
  match);
- every nested template, to `templates/<sha>/<file>` (the digest is of the bytes uploaded), with
  each `TemplateURL` rewritten to that object's virtual-hosted https URL;
- the root, with its `AssetsBucket` parameter defaulting to `bucket`, written beside the tree's
  root as `packaged-root.<ext>` and uploaded like the nested templates.

Keys are content-addressed: the same content always lands on the same key, so an object already
in the bucket with the same SHA-256 checksum is not uploaded again, and uploading a new version
never changes what a running stack points at. The bucket may be in any region: URLs name the
bucket's own regional endpoint (GetBucketLocation). A missing bucket is a UserError, never created.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from .assets import ASSETS_BUCKET, ASSETS_DIR, BUCKET_NAME
from .errors import UserError
from .render import PACKAGED_ROOT_NAME, ROOT_NAME

TEMPLATES_DIR = "templates"
NESTED_STACK_TYPES = ("AWS::CloudFormation::Stack",)
_DIGEST_LENGTH = 16  # the same length asset keys use (assets.py)


@dataclass(frozen=True)
class Packaged:
    root_url: str  # https URL (virtual-hosted style) of the packaged root template in S3
    root_path: Path  # the packaged root written beside the tree's root template
    uploaded: list[str] = field(default_factory=list)  # keys uploaded by this call
    skipped: list[str] = field(default_factory=list)  # keys already present with the same content


def package(tree: Path, bucket: str, *, prefix: str = "", s3=None) -> Packaged:
    """Upload `tree` (a rendered environment directory) to `bucket`; see the module docstring.

    `s3` is a boto3 S3 client; None creates one from the default credential chain.
    """
    tree = Path(tree)
    root = find_root(tree)
    if s3 is None:
        import boto3

        s3 = boto3.client("s3")
    prefix = normal_prefix(prefix)
    region = bucket_region(s3, bucket)
    store = _Store(s3, bucket, region)

    asset_keys = []
    for path in _asset_files(tree):
        relative = path.relative_to(tree).as_posix()
        store.put(prefix + relative, path.read_bytes())
        asset_keys.append(relative)

    packager = _Packager(store, prefix, asset_keys)
    data, fmt = packager.packaged(root, stack=())
    parameters = data.get("Parameters") or {}
    if ASSETS_BUCKET in parameters:
        parameters[ASSETS_BUCKET]["Default"] = bucket
    text = dump_template(data, fmt)
    root_path = tree / (PACKAGED_ROOT_NAME + root.suffix)
    root_path.write_text(text, encoding="utf-8")
    root_key = store.put(template_key(prefix, ROOT_NAME + root.suffix, text.encode("utf-8")),
                         text.encode("utf-8"))
    return Packaged(root_url=store.url(root_key), root_path=root_path,
                    uploaded=store.uploaded, skipped=store.skipped)


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
    """`a/b`, `/a/b/` -> `a/b/`; empty stays empty. Keys never start with a slash."""
    parts = [part for part in prefix.split("/") if part]
    if any(part in (".", "..") for part in parts):
        raise UserError(f"--prefix {prefix!r}: may not contain '.' or '..' segments")
    return "".join(part + "/" for part in parts)


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
    """Text in the style render writes: cfn-flip's YAML (short forms) or 2-space JSON."""
    import cfn_flip
    from cfn_clean import cfn_literal_parser

    if fmt == "json":
        return json.dumps(data, indent=2, sort_keys=True) + "\n"
    return cfn_flip.dump_yaml(cfn_literal_parser(data))


class _Packager:
    def __init__(self, store: _Store, prefix: str, asset_keys: list[str]):
        self.store = store
        self.prefix = prefix
        # What templates say (`${AssetsBucket}/assets/...`) -> where the asset now is.
        self.asset_references = {f"${{{ASSETS_BUCKET}}}/{key}":
                                 f"${{{ASSETS_BUCKET}}}/{prefix}{key}"
                                 for key in asset_keys} if prefix else {}

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
        data = self._rewrite_asset_references(data)
        return data, fmt

    def upload(self, path: Path, stack: tuple[Path, ...]) -> str:
        original = path.read_bytes()
        if self._needs_rewriting(original):
            data, fmt = self.packaged(path, stack)
            content = dump_template(data, fmt).encode("utf-8")
        else:
            # Uploaded byte for byte: the key then follows from the rendered file alone.
            content = original
        return self.store.put(template_key(self.prefix, path.name, content), content)

    def _needs_rewriting(self, text: bytes) -> bool:
        """Whether a template names nested templates or (with a prefix) assets. A plain text
        test: parsing every template would cost more than all the uploads."""
        if any(kind.encode() in text for kind in NESTED_STACK_TYPES):
            return True
        return bool(self.asset_references) and f"${{{ASSETS_BUCKET}}}/".encode() in text

    def _rewrite_asset_references(self, value: Any) -> Any:
        if not self.asset_references:
            return value
        if isinstance(value, str):
            for old, new in self.asset_references.items():
                value = value.replace(old, new)
            return value
        if isinstance(value, dict):
            for key in list(value):
                value[key] = self._rewrite_asset_references(value[key])
            return value
        if isinstance(value, list):
            return [self._rewrite_asset_references(item) for item in value]
        return value


def _asset_files(tree: Path) -> list[Path]:
    assets = tree / ASSETS_DIR
    return sorted(p for p in assets.rglob("*") if p.is_file()) if assets.is_dir() else []


# --- S3 --------------------------------------------------------------------------------------

class _Store:
    """Puts content on a key unless an object with the same SHA-256 checksum is there."""

    def __init__(self, s3, bucket: str, region: str):
        self.s3 = s3
        self.bucket = bucket
        self.region = region
        self.uploaded: list[str] = []
        self.skipped: list[str] = []

    def url(self, key: str) -> str:
        return object_url(self.bucket, self.region, key)

    def put(self, key: str, content: bytes) -> str:
        if key in self.uploaded or key in self.skipped:
            return key
        checksum = base64.b64encode(hashlib.sha256(content).digest()).decode("ascii")
        if self._stored_checksum(key) == checksum:
            self.skipped.append(key)
            return key
        # boto3 sends the body's SHA-256, S3 checks the body against it and keeps it for the
        # next run's HeadObject.
        self.s3.put_object(Bucket=self.bucket, Key=key, Body=content, ChecksumAlgorithm="SHA256",
                           ContentType=_content_type(key))
        self.uploaded.append(key)
        return key

    def _stored_checksum(self, key: str) -> str | None:
        from botocore.exceptions import ClientError

        try:
            head = self.s3.head_object(Bucket=self.bucket, Key=key, ChecksumMode="ENABLED")
        except ClientError as error:
            code = error.response.get("Error", {}).get("Code")
            if code in ("404", "NoSuchKey", "NotFound"):
                return None
            if code in ("403", "AccessDenied"):
                raise UserError(f"s3://{self.bucket}/{key}: access denied (packaging needs "
                                f"s3:GetObject and s3:PutObject on the bucket)") from None
            raise
        return head.get("ChecksumSHA256")


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
