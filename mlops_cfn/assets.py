"""Files a stack needs in S3 before it is created: Glue scripts, Lambda code too large to inline.

An asset's key is derived from its content (`assets/<sha256 prefix>/<file name>`), so the key is
known when the templates are rendered, the same content always lands on the same key, and
`mlops-cfn package` uploads only what S3 does not have yet. Where the assets live is known only
when packaging, so templates name it through root parameters that `package` sets:

- `AssetsBucket`: the bucket it uploaded to;
- `AssetsPrefix`: the key prefix it uploaded under (`--prefix`, empty by default), so every
  reference is `${AssetsPrefix}assets/...`: an S3 URI, an object ARN, a bare key (a Lambda
  S3Key, an `s3:prefix` condition) all come from `Asset` and follow the prefix without any
  rewriting of the templates;
- `AssetsKeyArn`: the customer-managed KMS key the bucket encrypts new objects with (its default
  encryption), empty for SSE-S3 or the AWS managed key, whose policy already lets every
  principal of the account decrypt through S3.

The role that reads an asset gets `read_statement` (s3:GetObject on the objects) and
`key_policies` (kms:Decrypt on AssetsKeyArn through S3, only when there is one): with both, it
reads the asset from whichever bucket it was packaged into, the home environment's delivery
bucket included. Rendering writes each asset beside the templates under `assets/`.
"""

import hashlib
import io
import zipfile
from dataclasses import dataclass
from typing import Any, Sequence

import awacs.s3
from awacs.aws import Allow, Statement
from troposphere import Equals, If, Not, NoValue, Parameter, Ref, Sub, iam

from . import policies

ASSETS_BUCKET = "AssetsBucket"
ASSETS_PREFIX = "AssetsPrefix"
ASSETS_KEY_ARN = "AssetsKeyArn"
# Whether AssetsKeyArn names a key the readers must be allowed to decrypt with.
ASSETS_KEY_CONDITION = "AssetsEncryptedWithCustomerKey"
ASSETS_DIR = "assets"
# S3's rule for the names of new buckets (no dots next to each other is left to S3 to say).
BUCKET_NAME = r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]"
# A key prefix of S3's "safe characters", each segment ending in a slash (package.normal_prefix
# writes it so): it goes into templates as the value of ${AssetsPrefix}.
KEY_PREFIX = r"([0-9A-Za-z!_.*'()-]+/)*"
KMS_KEY_ARN = r"arn:aws[a-z-]*:kms:[a-z0-9-]+:[0-9]{12}:key/[0-9A-Za-z-]+"
# A fixed timestamp for zip entries: the same files always zip to the same bytes.
_ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)


@dataclass(frozen=True)
class Asset:
    file_name: str
    content: bytes

    @property
    def key(self) -> str:
        """The key relative to the assets prefix: where render writes it beside the templates."""
        return asset_key(self.file_name, self.content)

    @property
    def s3_key(self) -> Sub:
        """The object's key in the bucket, `${AssetsPrefix}assets/...`: a Lambda S3Key, the
        value of an `s3:prefix` condition."""
        return Sub(f"${{{ASSETS_PREFIX}}}{self.key}")

    @property
    def s3_uri(self) -> Sub:
        """`s3://<assets bucket>/<prefix><key>`, e.g. a Glue job's ScriptLocation."""
        return Sub(f"s3://${{{ASSETS_BUCKET}}}/${{{ASSETS_PREFIX}}}{self.key}")

    @property
    def object_arn(self) -> Sub:
        """The asset's object ARN, for the one s3:GetObject the consuming role needs."""
        return policies.arn("s3", f"${{{ASSETS_BUCKET}}}/${{{ASSETS_PREFIX}}}{self.key}",
                            regional=False, in_account=False)


def asset_key(file_name: str, content: bytes) -> str:
    """`assets/<first 16 hex digits of the SHA-256>/<file name>`: the one place keys come from."""
    digest = hashlib.sha256(content).hexdigest()[:16]
    return f"{ASSETS_DIR}/{digest}/{file_name}"


def read_statement(object_arns: Sequence[Any]) -> Statement:
    """s3:GetObject on the given asset objects (Asset.object_arn)."""
    return Statement(Effect=Allow, Action=[awacs.s3.GetObject], Resource=list(object_arns))


def key_policies() -> list:
    """The inline role policy that lets a reader of assets decrypt them: kms:Decrypt on the
    assets bucket's key, only in S3's requests (Amazon S3 User Guide, "Using server-side
    encryption with AWS KMS keys (SSE-KMS)": downloading an SSE-KMS object needs kms:Decrypt
    on its key). Present only when AssetsKeyArn names a key; add it to the role's Policies."""
    return [If(ASSETS_KEY_CONDITION, iam.Policy(
        PolicyName="assets-key",
        PolicyDocument=policies.document(policies.use_key(
            Ref(ASSETS_KEY_ARN), policies.KEY_READ, via_services=["s3"])),
    ), NoValue)]


def assets_bucket_parameter() -> Parameter:
    return Parameter(
        ASSETS_BUCKET,
        Type="String",
        Description="Bucket holding the pipeline's packaged assets (set by mlops-cfn package)",
        AllowedPattern=f"^{BUCKET_NAME}$",
        ConstraintDescription="an S3 bucket name",
    )


def assets_prefix_parameter() -> Parameter:
    return Parameter(
        ASSETS_PREFIX,
        Type="String",
        Default="",
        Description="Key prefix of the packaged assets in AssetsBucket, ending in a slash, or "
                    "empty (set by mlops-cfn package)",
        AllowedPattern=f"^{KEY_PREFIX}$",
        ConstraintDescription="empty, or key segments each ending in a slash",
    )


def assets_key_parameter() -> Parameter:
    return Parameter(
        ASSETS_KEY_ARN,
        Type="String",
        Default="",
        Description="ARN of the customer-managed KMS key AssetsBucket encrypts with, or empty "
                    "(set by mlops-cfn package from the bucket's default encryption)",
        AllowedPattern=f"^({KMS_KEY_ARN})?$",
        ConstraintDescription="empty, or a KMS key ARN",
    )


def assets_key_condition():
    return Not(Equals(Ref(ASSETS_KEY_ARN), ""))


# The key (under AssetsPrefix) of the mlops-cfn wheel package uploads (wheel.py): an asset not
# known when rendering, for the stage that declares this parameter (the delivery build).
TOOL_WHEEL_KEY = "ToolWheelKey"


def tool_wheel_parameter() -> Parameter:
    return Parameter(
        TOOL_WHEEL_KEY,
        Type="String",
        Description="Key, under AssetsPrefix, of the mlops-cfn wheel the delivery build "
                    "installs (set by mlops-cfn package)",
        AllowedPattern=rf"^{ASSETS_DIR}/[0-9a-f]{{16}}/[A-Za-z0-9_.+-]+\.whl$",
        ConstraintDescription="assets/<digest>/<wheel file>",
    )


def tool_wheel_uri() -> Sub:
    return Sub(f"s3://${{{ASSETS_BUCKET}}}/${{{ASSETS_PREFIX}}}${{{TOOL_WHEEL_KEY}}}")


def tool_wheel_arn() -> Sub:
    return policies.arn("s3", f"${{{ASSETS_BUCKET}}}/${{{ASSETS_PREFIX}}}${{{TOOL_WHEEL_KEY}}}",
                        regional=False, in_account=False)


# Root parameters whose value packaging decides (package.py sets them as the packaged root's
# defaults); nobody passes them by hand.
PACKAGING_PARAMETERS = (ASSETS_BUCKET, ASSETS_PREFIX, ASSETS_KEY_ARN, TOOL_WHEEL_KEY)


def zip_files(files: dict[str, bytes]) -> bytes:
    """A deterministic zip of `files` (name -> content): same input, same bytes."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name in sorted(files):
            info = zipfile.ZipInfo(name, date_time=_ZIP_EPOCH)
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, files[name])
    return buffer.getvalue()
