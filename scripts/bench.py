#!/usr/bin/env python3
"""Render and validate timings for the default pipeline over 1, 10 and 50 environments.

Each figure is one fresh process (imports included, as a user or pre-commit meets them), timed
by wall clock, with that process's peak resident memory (its forked workers included):

  render          mlops-cfn render --all-envs into an empty directory
  validate cold   mlops-cfn validate --no-security, empty cache
  validate warm   the same again: nothing changed, every result from the cache
  one stage edit  after editing one stage template in every environment
  cfn-lint CLI    the plain `cfn-lint` command over the same files, for comparison
  checkov         (with --security) mlops-cfn validate with checkov, empty cache

and, once, cfn-lint's own floor for one environment (importing it and loading its rules, then the
CPU time of linting each distinct template in one process), and the YAML writers for the
default templates: cfn-flip (what render uses, exactly
Template.to_yaml) against libyaml's C emitter with the same representers, and how many
templates the latter would change.

Usage: scripts/bench.py [--envs 1,10,50] [--security] [--jobs N]
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
sys.path.insert(0, str(REPO))

from mlops_cfn.config import DEFAULT_CONFIG  # noqa: E402

# Runs the CLI in this process and reports wall time and peak memory (self + children).
PROBE = """
import resource, sys, time
from mlops_cfn.cli import cli
start = time.perf_counter()
try:
    cli(sys.argv[1:], prog_name="mlops-cfn")
except SystemExit as done:
    code = done.code or 0
wall = time.perf_counter() - start
peak_kib = max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
               resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
print(f"BENCH {code} {wall:.4f} {peak_kib}", file=sys.stderr)
"""


def config_with_environments(count: int, target: Path) -> Path:
    """The bundled config with `count` environments differing only in values."""
    data = yaml.safe_load(DEFAULT_CONFIG.read_text())
    data["environments"] = {
        f"env{i}": {"log_retention_days": 30 if i % 2 else 90,
                    "stages": {"ingestion": {"retention_hours": 24 + i}}}
        for i in range(count)}
    target.write_text(yaml.safe_dump(data))
    return target


def run_cli(*args: str, cwd: Path) -> tuple[float, float, float]:
    """(wall seconds inside the process, wall seconds of the process, peak MiB)."""
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", PROBE, *args], cwd=cwd, capture_output=True,
                          text=True)
    process = time.perf_counter() - started
    line = next(l for l in done.stderr.splitlines() if l.startswith("BENCH "))
    _, code, inner, peak = line.split()
    if code not in ("0", "None"):
        raise SystemExit(f"mlops-cfn {' '.join(args)} exited {code}:\n{done.stdout}{done.stderr}")
    return float(inner), process, int(peak) / 1024


def time_command(command: list[str], cwd: Path) -> float:
    started = time.perf_counter()
    subprocess.run(command, cwd=cwd, capture_output=True, check=False)
    return time.perf_counter() - started


def bench(count: int, work: Path, security: bool, jobs: int) -> dict:
    work.mkdir()
    config = config_with_environments(count, work / "pipeline.yaml")
    out, cache = work / "templates", work / "cache"
    validate = ["validate", str(out), "--cache-dir", str(cache), "--jobs", str(jobs)]
    figures = {"environments": count}
    figures["render"] = run_cli("render", "--config", str(config), "--all-envs", "--out",
                                str(out), cwd=work)
    files = sorted(str(p) for p in out.rglob("*.yaml"))
    figures["files"] = len(files)
    figures["validate cold"] = run_cli(*validate, "--no-security", cwd=work)
    figures["validate warm"] = run_cli(*validate, "--no-security", cwd=work)
    for env_dir in out.iterdir():
        stage = env_dir / "storage.yaml"
        stage.write_text(stage.read_text() + "# edited\n")
    figures["one stage edit"] = run_cli(*validate, "--no-security", cwd=work)
    cfn_lint = shutil.which("cfn-lint") or str(Path(sys.executable).parent / "cfn-lint")
    figures["cfn-lint CLI"] = time_command([cfn_lint, *files], cwd=work)
    if count == 1:
        ready, lint = cfn_lint_floor(files, work)
        figures["floor"] = {"import and rules": ready, "lint cpu": lint}
    if security:
        shutil.rmtree(cache)
        figures["checkov cold"] = run_cli(*validate, cwd=work)
    return figures


# Times cfn-lint alone over the templates named: what no caching or scheduling of ours can remove
# from a cold run.
FLOOR_PROBE = """
import sys, time
start = time.perf_counter()
from mlops_cfn.validate import CfnLint, TemplateFile
from cfnlint.decode import decode
linter = CfnLint()
ready = time.perf_counter()
lint = 0.0
for name in sys.argv[1:]:
    data, _ = decode(name)
    began = time.process_time()
    linter.lint(TemplateFile(__import__("pathlib").Path(name), data))
    lint += time.process_time() - began
print(f"FLOOR {ready - start:.4f} {lint:.4f}")
"""


def cfn_lint_floor(files: list[str], cwd: Path) -> tuple[float, float]:
    """(seconds to import cfn-lint and load its rules, CPU seconds to lint `files`)."""
    done = subprocess.run([sys.executable, "-c", FLOOR_PROBE, *files], cwd=cwd,
                          capture_output=True, text=True, check=True)
    line = next(l for l in done.stdout.splitlines() if l.startswith("FLOOR "))
    _, ready, lint = line.split()
    return float(ready), float(lint)


def yaml_writers() -> tuple[float, float, int, int]:
    """(cfn-flip seconds, libyaml seconds, templates differing, templates) for the default
    pipeline's templates, from the data cfn-flip itself loads."""
    import cfn_flip
    from cfn_flip.yaml_dumper import get_dumper

    from mlops_cfn import config, pipeline

    built = pipeline.build(config.load(None))
    texts = [json.dumps(t.to_dict(), sort_keys=True)
             for t in [built.root, *(s.template for s in built.stages)]]
    started = time.perf_counter()
    flipped = [cfn_flip.to_yaml(text) for text in texts]
    flip_seconds = time.perf_counter() - started

    dumper = get_dumper(False, False)

    class Libyaml(yaml.CDumper):  # libyaml's emitter, cfn-flip's representers
        yaml_representers = dict(dumper.yaml_representers)
        yaml_multi_representers = dict(dumper.yaml_multi_representers)

    started = time.perf_counter()
    emitted = []
    for text in texts:
        data, _ = cfn_flip.load(text)
        emitted.append(yaml.dump(cfn_flip.cfn_literal_parser(data), Dumper=Libyaml,
                                 default_flow_style=False, allow_unicode=True,
                                 width=cfn_flip.config.max_col_width))
    libyaml_seconds = time.perf_counter() - started
    differing = sum(a != b for a, b in zip(flipped, emitted))
    return flip_seconds, libyaml_seconds, differing, len(texts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--envs", default="1,10,50")
    parser.add_argument("--security", action="store_true", help="also time a checkov run")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for count in (int(n) for n in args.envs.split(",")):
            rows.append(bench(count, Path(tmp) / f"envs-{count}", args.security, args.jobs))
    print(f"{os.cpu_count()} CPUs, --jobs {args.jobs}; seconds inside the process "
          f"(whole process incl. interpreter start in brackets), peak MiB")
    for row in rows:
        print(f"\n{row['environments']} environment(s), {row['files']} template files")
        for name, value in row.items():
            if isinstance(value, tuple):
                inner, process, peak = value
                print(f"  {name:<15} {inner:7.3f} s  ({process:6.3f} s)  {peak:6.1f} MiB")
        cold = row["render"][0] + row["validate cold"][0]
        print(f"  {'cfn-lint CLI':<15} {row['cfn-lint CLI']:7.3f} s  (whole command)")
        if "floor" in row:
            ready, lint = row["floor"]["import and rules"], row["floor"]["lint cpu"]
            cores = os.cpu_count() or 1
            print(f"  cfn-lint floor  {ready:.3f} s import and rules + {lint:.3f} s CPU linting "
                  f"= at least {ready + lint / cores:.3f} s cold on {cores} cores")
        print(f"  render + validate cold {cold:.3f} s; validate cold / cfn-lint CLI = "
              f"{row['validate cold'][1] / row['cfn-lint CLI']:.2f}x; warm / cold = "
              f"{row['validate warm'][0] / row['validate cold'][0]:.3f}x")
    flip, libyaml, differing, total = yaml_writers()
    print(f"\nYAML for the default templates: cfn-flip {flip:.3f} s, libyaml's emitter "
          f"{libyaml:.3f} s, which writes {differing} of {total} templates differently "
          f"(quoting of tagged values, sequence indentation), so render keeps cfn-flip, memoised")
    print(json.dumps(rows), file=sys.stderr)


if __name__ == "__main__":
    main()
