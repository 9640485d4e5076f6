"""scripts/bench.py runs end to end and prints every figure it promises (timings are its output,
never asserted: they depend on the machine)."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_the_benchmark_prints_every_figure_for_one_environment():
    done = subprocess.run([sys.executable, str(REPO / "scripts" / "bench.py"), "--envs", "1"],
                          capture_output=True, text=True, timeout=600, check=True)
    for figure in ("render", "validate cold", "validate warm", "one stage edit"):
        assert re.search(rf"^  {figure} +[0-9.]+ s  \( *[0-9.]+ s\) +[0-9.]+ MiB$", done.stdout,
                         re.MULTILINE), figure
    assert re.search(r"^  cfn-lint CLI +[0-9.]+ s", done.stdout, re.MULTILINE)
    assert "render + validate cold" in done.stdout
    assert re.search(r"^  cfn-lint floor +[0-9.]+ s import and rules \+ [0-9.]+ s CPU linting",
                     done.stdout, re.MULTILINE)
    assert re.search(r"YAML for the default templates: cfn-flip [0-9.]+ s", done.stdout)
