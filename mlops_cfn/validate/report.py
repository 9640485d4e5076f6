"""What a validation run found: findings, justified checkov skips, the report and its text.

Findings also travel through the result cache as plain dicts (`_finding_to`, `_finding_from`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

Tool = Literal["cfn-lint", "limits", "checkov"]
Severity = Literal["error", "warning", "info"]


@dataclass(frozen=True)
class Finding:
    """One problem in one template, from one tool."""

    tool: Tool
    severity: Severity
    file: Path
    resource: str  # logical id, or "" when the finding is about the template as a whole
    rule: str  # cfn-lint rule id, checkov check id, or the key of a Limit
    message: str
    line: int | None = None

    @property
    def fails(self) -> bool:
        """Informational findings are shown but never fail a run."""
        return self.severity != "info"


@dataclass(frozen=True)
class Skip:
    """A checkov check the template skips on purpose, with the reason written in its Metadata."""

    file: Path
    resource: str
    rule: str
    comment: str
    line: int | None = None


@dataclass(frozen=True)
class Report:
    files: tuple[Path, ...]
    findings: tuple[Finding, ...] = ()
    skips: tuple[Skip, ...] = ()
    security: bool = True  # False when checkov was not run (--no-security)

    @property
    def ok(self) -> bool:
        return not any(f.fails for f in self.findings)

    def count(self, tool: Tool, severity: Severity) -> int:
        return sum(1 for f in self.findings if f.tool == tool and f.severity == severity)

    def render(self) -> str:
        """Findings grouped by file, one line each, then one summary line."""
        blocks = []
        for file in sorted({f.file for f in self.findings} | {s.file for s in self.skips}):
            lines = [(f.line or 0, _finding_line(f)) for f in self.findings if f.file == file]
            lines += [(s.line or 0, _skip_line(s)) for s in self.skips if s.file == file]
            blocks.append("\n".join(text for _, text in sorted(lines, key=lambda x: x[0])))
        return "\n\n".join(blocks + [self.summary()])

    def summary(self) -> str:
        lint = (f"cfn-lint {_counted(self.count('cfn-lint', 'error'), 'error')} "
                f"{_counted(self.count('cfn-lint', 'warning'), 'warning')}")
        if notes := self.count("cfn-lint", "info"):
            lint += f" {notes} informational"
        limits = f"limits {self.count('limits', 'error')}"
        if notes := self.count("limits", "info"):
            limits += f" ({notes} informational)"
        if self.security:
            security = (f"checkov {self.count('checkov', 'error')} failed "
                        f"({len(self.skips)} skipped with reasons)")
        else:
            security = "checkov not run"
        # Files that could not be read as templates count too: their findings are reported.
        files = set(self.files) | {finding.file for finding in self.findings}
        return f"{_counted(len(files), 'file')}: {lint}, {limits}, {security}"


def _counted(number: int, noun: str) -> str:
    return f"{number} {noun}" + ("" if number == 1 else "s")


def _location(file: Path, line: int | None) -> str:
    return f"{file}:{line}" if line else str(file)


def _finding_line(f: Finding) -> str:
    subject = f"{f.resource}: " if f.resource else ""
    return f"{_location(f.file, f.line)}: [{f.tool} {f.rule}] {subject}{f.message}"


def _skip_line(s: Skip) -> str:
    subject = f"{s.resource}: " if s.resource else ""
    return f"{_location(s.file, s.line)}: [checkov {s.rule} skipped] {subject}{s.comment}"


def _finding_to(finding: Finding) -> dict:
    return {"tool": finding.tool, "severity": finding.severity, "resource": finding.resource,
            "rule": finding.rule, "message": finding.message, "line": finding.line}


def _finding_from(item: dict, path: Path) -> Finding:
    return Finding(file=path, **item)

