"""examples/extension/ (the DynamoDB extension stage), installed for a test as pip would.

`install(tmp_path, monkeypatch)` puts the example's package on sys.path and, beside it, a
`.dist-info` directory holding the entry points its pyproject.toml declares: importlib.metadata
then finds them exactly as it finds an installed distribution's, so the loader under test reads
the example through the same call as a user's installed extension, without a `pip install` in
every test run (and with nothing left behind: monkeypatch restores sys.path).
"""

import tomllib
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "extension"
DISTRIBUTION = "mlops_cfn_dynamodb-0.1.0.dist-info"


def declared_entry_points() -> dict[str, dict[str, str]]:
    """`[project.entry-points]` of the example's pyproject.toml: group -> name -> object."""
    pyproject = tomllib.loads((EXAMPLE / "pyproject.toml").read_text())
    return pyproject["project"]["entry-points"]


def install(tmp_path: Path, monkeypatch) -> None:
    site = tmp_path / "site-packages"
    info = site / DISTRIBUTION
    info.mkdir(parents=True)
    (info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: mlops-cfn-dynamodb\nVersion: 0.1.0\n")
    lines = []
    for group, points in declared_entry_points().items():
        lines += [f"[{group}]", *(f"{name} = {value}" for name, value in points.items()), ""]
    (info / "entry_points.txt").write_text("\n".join(lines))
    monkeypatch.syspath_prepend(str(EXAMPLE))
    monkeypatch.syspath_prepend(str(site))
