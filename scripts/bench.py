#!/usr/bin/env python3
"""Render and validate timings of this checkout against an older revision, as ratios, in one run.

Each figure is one fresh `python -m mlops_cfn` process, timed by wall clock from start to exit
(interpreter start and imports included, as a user or pre-commit meets them), with its peak
resident memory (its forked workers included). Both revisions run in this Python with the same
libraries; the old one is `git archive`d into a temporary directory, so the repository is not
touched. Every figure is the fastest of --repeat runs, old and new taking turns, so load from
other processes on the machine weighs on both alike.

  --help          the command's help (imports only)
  render          mlops-cfn render --all-envs into an empty directory
  validate cold   mlops-cfn validate --no-security, empty cache
  validate warm   the same again: nothing changed, every result from the cache
  one stage edit  after editing one stage template in every environment
  checkov cold    (--security) mlops-cfn validate with checkov, empty cache
  cfn-lint CLI    (--cfn-lint) the plain `cfn-lint` command over the same files, once

and, once, cfn-lint's own floor for one environment (importing it and loading its rules, then the
CPU time of linting each template in one process): what no caching or scheduling of ours can
remove from a cold run.

Usage: scripts/bench.py [--old REF] [--envs 1,10,50] [--repeat 3] [--security] [--cfn-lint]
       [--jobs N]
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
# The last revision before render wrote through libyaml and the CLI imported lazily: render went
# through cfn-flip, and every verb imported every stage, model and library.
OLD_REF = "a843d4f"


def config_with_environments(count: int, target: Path) -> Path:
    """The bundled config with `count` environments differing only in values."""
    data = yaml.safe_load((REPO / "mlops_cfn" / "data" / "pipeline.yaml").read_text())
    data["environments"] = {
        f"env{i}": {"log_retention_days": 30 if i % 2 else 90,
                    "stages": {"ingestion": {"retention_hours": 24 + i}}}
        for i in range(count)}
    target.write_text(yaml.safe_dump(data))
    return target


def environment(tree: Path) -> dict[str, str]:
    """Runs `tree`'s code (ahead of the installed one) with bytecode kept, as installed tools
    run: without it, every run would compile the project's modules afresh."""
    env = {name: value for name, value in os.environ.items()
           if name != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPATH"] = str(tree)
    return env


def run(tree: Path, args: list[str], cwd: Path) -> tuple[float, float]:
    """(wall seconds of one whole `python -m mlops_cfn` process, its peak MiB)."""
    started = time.perf_counter()
    process = subprocess.Popen([sys.executable, "-m", "mlops_cfn", *args], cwd=cwd,
                               env=environment(tree), stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT)
    output = process.stdout.read()
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise SystemExit(f"{tree}: mlops-cfn {' '.join(args)} exited {process.returncode}:\n"
                         f"{output.decode(errors='replace')}")
    return wall, usage.ru_maxrss / 1024


class Series:
    """The fastest (wall, peak MiB) of each measure for one revision."""

    def __init__(self):
        self.best: dict[str, tuple[float, float]] = {}

    def add(self, measure: str, figures: tuple[float, float]) -> None:
        if measure not in self.best or figures[0] < self.best[measure][0]:
            self.best[measure] = figures


def bench(count: int, trees: dict[str, Path], work: Path, args) -> dict[str, Series]:
    work.mkdir()
    config = config_with_environments(count, work / "pipeline.yaml")
    series = {name: Series() for name in trees}
    for name, tree in trees.items():  # bytecode written before anything is timed
        run(tree, ["--help"], cwd=work)
    for attempt in range(args.repeat):
        for name, tree in (trees.items() if attempt % 2 == 0 else reversed(trees.items())):
            here = work / f"{name}-{attempt}"
            here.mkdir()
            out, cache = here / "templates", here / "cache"
            validate = ["validate", str(out), "--cache-dir", str(cache), "--jobs",
                        str(args.jobs)]
            measure = series[name].add
            measure("--help", run(tree, ["--help"], cwd=here))
            measure("render", run(tree, ["render", "--config", str(config), "--all-envs",
                                         "--out", str(out)], cwd=here))
            measure("validate cold", run(tree, [*validate, "--no-security"], cwd=here))
            measure("validate warm", run(tree, [*validate, "--no-security"], cwd=here))
            for env_dir in (d for d in out.iterdir() if d.is_dir()):
                stage = env_dir / "storage.yaml"
                stage.write_text(stage.read_text() + "# edited\n")
            measure("one stage edit", run(tree, [*validate, "--no-security"], cwd=here))
            if args.security:
                shutil.rmtree(cache)
                measure("checkov cold", run(tree, validate, cwd=here))
    return series


def cfn_lint_cli(files: list[str], cwd: Path) -> float:
    command = shutil.which("cfn-lint") or str(Path(sys.executable).parent / "cfn-lint")
    started = time.perf_counter()
    subprocess.run([command, *files], cwd=cwd, capture_output=True, check=False)
    return time.perf_counter() - started


# cfn-lint alone over the templates named, with the new tree's configuration of it.
FLOOR_PROBE = """
import sys, time
from pathlib import Path
start = time.perf_counter()
from mlops_cfn.validate import CfnLint, TemplateFile
from cfnlint.decode import decode
linter = CfnLint()
ready = time.perf_counter()
lint = 0.0
for name in sys.argv[1:]:
    data, _ = decode(name)
    began = time.process_time()
    linter.lint(TemplateFile(Path(name), data))
    lint += time.process_time() - began
print(f"FLOOR {ready - start:.4f} {lint:.4f}")
"""


def cfn_lint_floor(tree: Path, files: list[str], cwd: Path) -> tuple[float, float]:
    """(seconds to import cfn-lint and load its rules, CPU seconds to lint `files`)."""
    done = subprocess.run([sys.executable, "-c", FLOOR_PROBE, *files], cwd=cwd,
                          env=environment(tree), capture_output=True, text=True, check=True)
    line = next(l for l in done.stdout.splitlines() if l.startswith("FLOOR "))
    _, ready, lint = line.split()
    return float(ready), float(lint)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--old", default=OLD_REF, metavar="REF",
                        help=f"the revision to compare with (default: {OLD_REF})")
    parser.add_argument("--envs", default="1,10,50")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each, the fastest kept")
    parser.add_argument("--security", action="store_true", help="also time a checkov run")
    parser.add_argument("--cfn-lint", action="store_true",
                        help="also time the plain cfn-lint command (minutes for 50 environments)")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="mlops-cfn-bench-") as tmp:
        old = Path(tmp) / "old"
        old.mkdir()
        archive = subprocess.run(["git", "-C", str(REPO), "archive", args.old],
                                 capture_output=True, check=True).stdout
        subprocess.run(["tar", "-x", "-C", str(old)], input=archive, check=True)
        trees = {"old": old, "new": REPO}
        print(f"{os.cpu_count()} CPUs, --jobs {args.jobs}, fastest of {args.repeat}; whole "
              f"process seconds and peak MiB; old = {args.old}, new = this checkout")
        rows = []
        for count in (int(n) for n in args.envs.split(",")):
            work = Path(tmp) / f"envs-{count}"
            series = bench(count, trees, work, args)
            out = work / "new-0" / "templates"
            files = sorted(str(p) for p in out.rglob("*.yaml") if "assets" not in p.parts)
            print(f"\n{count} environment(s), {len(files)} template files")
            print(f"  {'':<15} {'old':>8} {'new':>8}  {'old/new':>7}  {'peak old':>8} "
                  f"{'peak new':>8}")
            row = {"environments": count, "files": len(files)}
            for measure, (new_wall, new_peak) in series["new"].best.items():
                old_wall, old_peak = series["old"].best[measure]
                print(f"  {measure:<15} {old_wall:7.3f}s {new_wall:7.3f}s  "
                      f"{old_wall / new_wall:6.2f}x  {old_peak:6.1f}Mi {new_peak:6.1f}Mi")
                row[measure] = {"old": [old_wall, old_peak], "new": [new_wall, new_peak]}
            if args.cfn_lint:
                row["cfn-lint CLI"] = cfn_lint_cli(files, work)
                print(f"  {'cfn-lint CLI':<15} {row['cfn-lint CLI']:7.3f}s (whole command, "
                      "once)")
            if count == 1:
                ready, lint = cfn_lint_floor(REPO, files, work)
                cores = os.cpu_count() or 1
                row["floor"] = {"import and rules": ready, "lint cpu": lint}
                print(f"  cfn-lint floor  {ready:.3f} s import and rules + {lint:.3f} s CPU "
                      f"linting = at least {ready + lint / cores:.3f} s cold on {cores} cores")
            rows.append(row)
    print(json.dumps(rows), file=sys.stderr)


if __name__ == "__main__":
    main()
