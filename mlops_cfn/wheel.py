"""The running mlops-cfn as a wheel: what the delivery pipeline's build installs.

mlops-cfn is not on a package index, so the build cannot `pip install mlops-cfn`. Instead
`mlops-cfn package` uploads the very tool that packages (this installed copy, whether installed
from a wheel, a checkout or in editable mode) beside the templates, and the build installs that
object (stages.cicd: MLOPS_CFN_WHEEL). The bootstrap deployment of the home environment ships
the user's tool; from then on each build ships the tool it runs itself, so the build always runs
the version that last deployed the home environment.

The wheel is built from the installed files (the `mlops_cfn` package directory, without
bytecode) and the distribution's own metadata (METADATA, or an egg-info's PKG-INFO, and
entry_points.txt), with a RECORD as the wheel format requires (PyPA, "Binary distribution
format"). Entries are sorted and time-stamped alike, so the same installed tool always gives the
same bytes and so the same content-addressed key: an unchanged tool is not uploaded again.
"""

import base64
import hashlib
import importlib.metadata
import re
from pathlib import Path

from .assets import Asset, zip_files
from .errors import UserError

DISTRIBUTION = "mlops-cfn"
PACKAGE = "mlops_cfn"
WHEEL_METADATA = ("Wheel-Version: 1.0\nGenerator: mlops-cfn\nRoot-Is-Purelib: true\n"
                  "Tag: py3-none-any\n")


def tool_wheel() -> Asset:
    """This mlops-cfn as a wheel (file name and bytes); see the module docstring."""
    try:
        distribution = importlib.metadata.distribution(DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        raise UserError("mlops-cfn is not installed as a distribution, so packaging cannot ship "
                        "it to the delivery build: install it (pip install -e . in a "
                        "checkout)") from None
    metadata = distribution.read_text("METADATA") or distribution.read_text("PKG-INFO")
    if not metadata:
        raise UserError(f"the installed {DISTRIBUTION} has no metadata (METADATA or PKG-INFO): "
                        "reinstall it")
    version = distribution.version
    name = PACKAGE
    dist_info = f"{name}-{version}.dist-info"
    files: dict[str, bytes] = {}
    root = Path(__file__).resolve().parent
    for path in sorted(root.rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc":
            files[f"{PACKAGE}/{path.relative_to(root).as_posix()}"] = path.read_bytes()
    files[f"{dist_info}/METADATA"] = metadata.encode("utf-8")
    entry_points = distribution.read_text("entry_points.txt")
    if entry_points:
        files[f"{dist_info}/entry_points.txt"] = entry_points.encode("utf-8")
    files[f"{dist_info}/WHEEL"] = WHEEL_METADATA.encode("utf-8")
    record = f"{dist_info}/RECORD"
    files[record] = "".join(f"{path},{_record_hash(content)},{len(content)}\n"
                            for path, content in sorted(files.items())).encode("utf-8") \
        + f"{record},,\n".encode("utf-8")
    file_name = f"{name}-{_wheel_version(version)}-py3-none-any.whl"
    return Asset(file_name, zip_files(files))


def _record_hash(content: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(content).digest()).rstrip(b"=")
    return "sha256=" + digest.decode("ascii")


def _wheel_version(version: str) -> str:
    """A version as a wheel's file name spells it (a hyphen would end the field)."""
    return re.sub(r"[^\w\d.]+", "_", version, flags=re.UNICODE)
