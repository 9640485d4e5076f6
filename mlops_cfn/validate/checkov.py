"""checkov: found, run once over every template that needs it, and its JSON report read."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Sequence

from ..errors import UserError
from .report import Finding, Skip, _finding_to

CHECKOV_ENV = "MLOPS_CFN_CHECKOV"
TOOLS_ENV = "MLOPS_CFN_TOOLS"
CHECKOV_INSTALL_HINT = (
    "install it with `pipx install checkov`, or run scripts/install-checkov, "
    f"or set {CHECKOV_ENV} to its path (or skip security checks with --no-security)"
)


def find_checkov() -> str:
    """The checkov executable: $MLOPS_CFN_CHECKOV, else `checkov` on PATH, else the one
    scripts/install-checkov puts under ${MLOPS_CFN_TOOLS:-.tools} in the current directory."""
    named = os.environ.get(CHECKOV_ENV)
    if named:
        if os.path.isfile(named) and os.access(named, os.X_OK):
            return named
        # A wrong explicit setting must not quietly fall back to some other checkov.
        raise UserError(f"checkov not found: {CHECKOV_ENV}={named} is not an executable file; "
                        f"{CHECKOV_INSTALL_HINT}")
    import shutil

    on_path = shutil.which("checkov")
    if on_path:
        return on_path
    local = Path(os.environ.get(TOOLS_ENV) or ".tools") / "checkov" / "bin" / "checkov"
    if local.is_file() and os.access(local, os.X_OK):
        return str(local)
    raise UserError(f"checkov not found ({CHECKOV_ENV} is not set, no `checkov` on PATH, "
                    f"no {local}); {CHECKOV_INSTALL_HINT}")


def checkov_command(executable: str, files: Sequence[Path]) -> list[str]:
    # No --quiet: with JSON output it drops the skipped checks, which the report counts.
    return [executable, "--framework", "cloudformation", "--skip-download", "--output", "json",
            "--file", *(str(f.resolve()) for f in files)]


def run_checkov(executable: str, files: Sequence[Path]) -> tuple[list[Finding], list[Skip]]:
    """One checkov run over all `files`: failed checks as findings, skipped checks as skips."""
    if not files:
        return [], []
    import subprocess

    command = checkov_command(executable, files)
    try:
        done = subprocess.run(command, capture_output=True, text=True, check=False)
    except OSError as error:
        raise UserError(f"checkov could not be started ({executable}: {error.strerror}); "
                        f"{CHECKOV_INSTALL_HINT}") from error
    # Exit status 1 means failed checks; anything else but 0 is checkov itself failing.
    try:
        output = json.loads(done.stdout) if done.returncode in (0, 1) else None
    except json.JSONDecodeError:
        output = None
    if output is None:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise UserError(f"checkov failed (exit status {done.returncode}, {executable}): {last}")
    return parse_checkov_output(output, {f.resolve(): f for f in files})


def parse_checkov_output(output: Any, files: dict[Path, Path]) -> tuple[list[Finding], list[Skip]]:
    """Findings and skips from checkov's JSON report: one dict per framework, or a list of them.

    `files` maps the absolute paths checkov was given back to the paths the user named.
    """
    reports = output if isinstance(output, list) else [output]
    findings: list[Finding] = []
    skips: list[Skip] = []
    for report in reports:
        results = report.get("results", {}) if isinstance(report, dict) else {}
        for check in results.get("failed_checks", []):
            findings.append(Finding("checkov", "error", _checkov_file(check, files),
                                    _checkov_resource(check), check.get("check_id", "?"),
                                    check.get("check_name", ""), _checkov_line(check)))
        for check in results.get("skipped_checks", []):
            comment = (check.get("check_result") or {}).get("suppress_comment") or ""
            file, resource, rule = (_checkov_file(check, files), _checkov_resource(check),
                                    check.get("check_id", "?"))
            if comment.strip() in ("", _CHECKOV_NO_COMMENT):
                findings.append(Finding("checkov", "error", file, resource, rule,
                                        "skipped without a reason: add a comment to the "
                                        "Metadata checkov skip", _checkov_line(check)))
            else:
                skips.append(Skip(file, resource, rule, comment, _checkov_line(check)))
        for path in results.get("parsing_errors", []):
            findings.append(Finding("checkov", "error", _known_file(path, files), "", "parse",
                                    "checkov could not parse this template"))
    return findings, skips


# What checkov reports as the comment of a skip that has none.
_CHECKOV_NO_COMMENT = "No comment provided"


def _known_file(path: str, files: dict[Path, Path]) -> Path:
    return files.get(Path(path).resolve(), Path(path))


def _checkov_file(check: dict, files: dict[Path, Path]) -> Path:
    return _known_file(check.get("file_abs_path") or check.get("file_path", ""), files)


def _checkov_resource(check: dict) -> str:
    # "AWS::S3::Bucket.DataBucket": the type holds no dot, the logical id follows the first one.
    resource = check.get("resource") or ""
    return resource.split(".", 1)[1] if "." in resource else resource


def _checkov_line(check: dict) -> int | None:
    lines = check.get("file_line_range") or []
    return lines[0] if lines and lines[0] else None


def _checkov_result_for(path: Path, findings: list[Finding], skips: list[Skip]) -> dict:
    return {
        "findings": [_finding_to(f) for f in findings if f.file == path],
        "skips": [{"resource": s.resource, "rule": s.rule, "comment": s.comment, "line": s.line}
                  for s in skips if s.file == path],
    }


def checkov_identity(executable: str) -> str:
    """The installed checkov's version from its metadata beside the executable, else the
    executable's path and modification time."""
    resolved = Path(executable).resolve()
    for dist_info in sorted(resolved.parent.parent.glob("lib/python*/site-packages/checkov-*"
                                                        ".dist-info")):
        return dist_info.name
    stat = resolved.stat()
    return f"{resolved}|{stat.st_mtime_ns}|{stat.st_size}"
