"""Files a stack needs in S3 before it is created: Glue scripts, Lambda code too large to inline.

An asset's key is derived from its content (`assets/<sha256 prefix>/<file name>`), so the key is
known when the templates are rendered, the same content always lands on the same key, and
`mlops-cfn package` uploads only what S3 does not have yet. The bucket is not known until
packaging, so templates name it through the root parameter `AssetsBucket`, which `package` sets
to the bucket it uploaded to. Rendering writes each asset beside the templates under `assets/`.
"""

import hashlib
import io
import zipfile
from dataclasses import dataclass

from troposphere import Parameter, Sub

from . import policies

ASSETS_BUCKET = "AssetsBucket"
ASSETS_DIR = "assets"
# S3's rule for the names of new buckets (no dots next to each other is left to S3 to say).
BUCKET_NAME = r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]"
# A fixed timestamp for zip entries: the same files always zip to the same bytes.
_ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)


@dataclass(frozen=True)
class Asset:
    file_name: str
    content: bytes

    @property
    def key(self) -> str:
        digest = hashlib.sha256(self.content).hexdigest()[:16]
        return f"{ASSETS_DIR}/{digest}/{self.file_name}"

    @property
    def s3_uri(self) -> Sub:
        """`s3://<assets bucket>/<key>`, e.g. a Glue job's ScriptLocation."""
        return Sub(f"s3://${{{ASSETS_BUCKET}}}/{self.key}")

    @property
    def object_arn(self) -> Sub:
        """The asset's object ARN, for the one s3:GetObject the consuming role needs."""
        return policies.arn("s3", f"${{{ASSETS_BUCKET}}}/{self.key}", regional=False,
                            in_account=False)


def assets_bucket_parameter() -> Parameter:
    return Parameter(
        ASSETS_BUCKET,
        Type="String",
        Description="Bucket holding the pipeline's packaged assets (set by mlops-cfn package)",
        AllowedPattern=f"^{BUCKET_NAME}$",
        ConstraintDescription="an S3 bucket name",
    )


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
