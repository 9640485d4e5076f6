"""scripts/bench.py runs end to end and prints every figure it promises, old beside new, as a
ratio (timings are its output, never asserted: they depend on the machine)."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_the_benchmark_prints_old_and_new_figures_and_their_ratio_for_one_environment():
    done = subprocess.run([sys.executable, str(REPO / "scripts" / "bench.py"), "--envs", "1",
                           "--repeat", "1"],
                          capture_output=True, text=True, timeout=900, check=True)
    assert re.search(r"old = [0-9a-f]+, new = this checkout", done.stdout)
    for figure in ("--help", "render", "validate cold", "validate warm", "one stage edit"):
        assert re.search(rf"^  {re.escape(figure)} +[0-9.]+s +[0-9.]+s +[0-9.]+x +[0-9.]+Mi "
                         rf"+[0-9.]+Mi$", done.stdout, re.MULTILINE), figure
    assert re.search(r"^  cfn-lint floor +[0-9.]+ s import and rules \+ [0-9.]+ s CPU linting",
                     done.stdout, re.MULTILINE)
