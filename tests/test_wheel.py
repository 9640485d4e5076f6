"""The wheel `mlops-cfn package` ships to the delivery build (wheel.py): the installed tool,
complete, in the wheel format, the same bytes every time (so the same key in S3)."""

import base64
import hashlib
import io
import zipfile

from mlops_cfn import __version__
from mlops_cfn.wheel import tool_wheel


def test_the_wheel_is_the_same_bytes_every_time_and_named_as_pip_expects():
    first, second = tool_wheel(), tool_wheel()
    assert first.content == second.content and first.key == second.key
    assert first.file_name == f"mlops_cfn-{__version__}-py3-none-any.whl"
    assert first.key.startswith("assets/") and first.key.endswith(first.file_name)


def test_the_wheel_holds_the_package_its_data_and_a_record_of_every_file():
    archive = zipfile.ZipFile(io.BytesIO(tool_wheel().content))
    names = set(archive.namelist())
    dist_info = f"mlops_cfn-{__version__}.dist-info"
    assert {"mlops_cfn/__init__.py", "mlops_cfn/cli/__init__.py", "mlops_cfn/data/pipeline.yaml",
            "mlops_cfn/data/glue/etl_job.py", f"{dist_info}/METADATA", f"{dist_info}/WHEEL",
            f"{dist_info}/entry_points.txt", f"{dist_info}/RECORD"} <= names
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]
    assert "mlops-cfn = mlops_cfn.cli:main" in archive.read(
        f"{dist_info}/entry_points.txt").decode()
    assert "Requires-Dist: troposphere" in archive.read(f"{dist_info}/METADATA").decode()
    record = archive.read(f"{dist_info}/RECORD").decode().splitlines()
    listed = {}
    for line in record:
        path, digest, size = line.rsplit(",", 2)
        listed[path] = (digest, size)
    assert set(listed) == names
    for path, (digest, size) in listed.items():
        if path.endswith("RECORD"):
            assert (digest, size) == ("", "")
            continue
        content = archive.read(path)
        expected = base64.urlsafe_b64encode(hashlib.sha256(content).digest()).rstrip(b"=")
        assert digest == "sha256=" + expected.decode() and int(size) == len(content), path
