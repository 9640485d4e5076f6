"""Validate CloudFormation templates before upload: cfn-lint, CloudFormation quotas, checkov.

`validate(paths)` finds the templates under `paths`, checks each one on its own (cfn-lint and the
quotas: a function of the file and, for a root, of the child templates its TemplateURLs name), then
runs checkov once over all of them, and returns a `Report`. Nothing is printed; the CLI prints
`report.render()` and exits with 0 when `report.ok`, else 1.

The per-file step (`check_template`) is the unit that a result cache and parallel workers can take
over: its result depends only on the template's bytes, its children's bytes, the cfn-lint version
and the rule settings. checkov stays one external run over all files, because it starts slowly.

cfn-lint and checkov are imported or started only when `validate` runs, so importing this module
costs nothing at CLI start-up.
"""

from __future__ import annotations

import functools
import hashlib
import json
import gc
import logging
import os
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Literal, Sequence

from mlops_cfn.errors import UserError

Tool = Literal["cfn-lint", "limits", "checkov"]
Severity = Literal["error", "warning", "info"]

TEMPLATE_SUFFIXES = (".yaml", ".yml", ".json")
DEFAULT_REGIONS = ("us-east-1",)

CHECKOV_ENV = "MLOPS_CFN_CHECKOV"
TOOLS_ENV = "MLOPS_CFN_TOOLS"
CHECKOV_INSTALL_HINT = (
    "install it with `pipx install checkov`, or run scripts/install-checkov, "
    f"or set {CHECKOV_ENV} to its path (or skip security checks with --no-security)"
)


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


def validate(paths: Sequence[Path], security: bool = True,
             regions: Sequence[str] = DEFAULT_REGIONS, *, jobs: int = 1,
             cache_dir: Path | None = None,
             progress: Callable[[str], None] = lambda step: None) -> Report:
    """Check every CloudFormation template in `paths` (files, or directories searched recursively).

    Byte-identical templates (with identical local children) are checked once. With `cache_dir`,
    each result is kept under a key of everything it depends on (see `_ResultKeys`), so a run
    over unchanged templates reads files and hashes them, and imports neither cfn-lint nor runs
    checkov. `jobs` > 1 spreads the cfn-lint work over forked workers. `progress` hears of each
    slow step before it starts (cfn-lint, checkov), for a display; a warm run has none.

    Raises UserError for a path that does not exist, a named file that is not a template, no
    templates at all, and (with `security`) a checkov that cannot be found or does not run.
    """
    files = _Files(_candidate_files(paths))
    # Look for checkov before spending time on cfn-lint: a missing tool is reported at once.
    checkov = find_checkov() if security else None
    keys = _ResultKeys(regions, checkov, files)
    cache = _Cache(cache_dir)

    lint_keys = {path: keys.lint(path) for path in files.paths}
    lint_results = {key: cache.get(key) for key in set(lint_keys.values())}
    missing = {key: path for path in files.paths
               if lint_results[key := lint_keys[path]] is None}
    # A root whose children changed only inside (not their parameters or outputs) lints as before.
    by_interface = {key: keys.lint_by_interface(path) for key, path in missing.items()
                    if files.children(path)}
    for key, interface_key in by_interface.items():
        if (result := cache.get(interface_key)) is not None:
            lint_results[key] = cache.put(key, result)
            del missing[key]
    if missing:
        progress(f"cfn-lint: {_counted(len(missing), 'file')}"
                 + (f", {min(jobs, len(missing))} workers" if jobs > 1 and len(missing) > 1
                    else ""))
    for key, result in zip(missing, _check_files(list(missing.values()), regions, jobs,
                                                 files.size)):
        lint_results[key] = cache.put(key, result)
        if key in by_interface:
            cache.put(by_interface[key], result)

    templates: list[Path] = []
    findings: list[Finding] = []
    for path in files.paths:
        named = files.named(path)
        result = lint_results[lint_keys[path]]
        if not result["template"] and not result["findings"]:
            if named:
                raise UserError(f"{path}: not a CloudFormation template (no Resources section)")
            continue
        if result["template"]:
            templates.append(path)
        findings += [_finding_from(item, path) for item in result["findings"]]
    if not templates and not findings:
        where = ", ".join(str(p) for p in paths) or "(no paths given)"
        raise UserError(f"no CloudFormation templates found in {where}")

    skips: list[Skip] = []
    if checkov:
        checkov_keys = {path: keys.checkov(path) for path in templates}
        checkov_results = {key: cache.get(key) for key in set(checkov_keys.values())}
        unscanned = {key: path for path in templates
                     if checkov_results[key := checkov_keys[path]] is None}
        if unscanned:
            progress(f"checkov: {_counted(len(unscanned), 'template')}")
            scanned = run_checkov(checkov, list(unscanned.values()))
            for key, path in unscanned.items():
                checkov_results[key] = cache.put(key, _checkov_result_for(path, *scanned))
        for path in templates:
            result = checkov_results[checkov_keys[path]]
            findings += [_finding_from(item, path) for item in result["findings"]]
            skips += [Skip(path, **item) for item in result["skips"]]
    cache.save()
    return Report(files=tuple(templates), findings=tuple(findings), skips=tuple(skips),
                  security=security)


def _check_files(paths: list[Path], regions: Sequence[str], jobs: int,
                 size: Callable[[Path], int] = lambda path: 0) -> list[dict]:
    """cfn-lint, quotas and local references for each file, as cacheable results, in order.

    The linter (its rules take a second to load) is built once, before forking, so every worker
    shares it. Workers take one file at a time, largest first: lint time grows with size, and
    a large template left for last would keep one worker busy while the others idle.
    """
    if not paths:
        return []
    global _FORK_LINTER
    _FORK_LINTER = CfnLint(regions)
    # The rules and their schemas are a quarter of a million objects that live as long as the
    # run. Frozen, the collector stops walking them on every full collection (linting allocates
    # heavily), and a forked worker no longer touches their pages, which it would otherwise copy.
    gc.freeze()
    try:
        if jobs > 1 and len(paths) > 1:
            import multiprocessing

            largest_first = sorted(range(len(paths)), key=lambda i: -size(paths[i]))
            with multiprocessing.get_context("fork").Pool(min(jobs, len(paths))) as pool:
                done = pool.imap(_check_file, [paths[i] for i in largest_first], chunksize=1)
                results = dict(zip(largest_first, done))
            return [results[i] for i in range(len(paths))]
        return [_check_file(path) for path in paths]
    finally:
        _FORK_LINTER = None
        gc.unfreeze()


_FORK_LINTER: CfnLint | None = None


def _check_file(path: Path) -> dict:
    from cfnlint.decode import decode

    data, matches = decode(str(path))
    if matches:
        return {"template": False, "findings": [_finding_to(_lint_finding(path, m))
                                                 for m in matches]}
    if not (isinstance(data, dict) and "Resources" in data):
        return {"template": False, "findings": []}
    template = TemplateFile(path, data, path.stat().st_size)
    assert _FORK_LINTER is not None
    findings = check_template(template, _FORK_LINTER) + check_local_references(template)
    return {"template": True, "findings": [_finding_to(f) for f in findings]}


def _checkov_result_for(path: Path, findings: list[Finding], skips: list[Skip]) -> dict:
    return {
        "findings": [_finding_to(f) for f in findings if f.file == path],
        "skips": [{"resource": s.resource, "rule": s.rule, "comment": s.comment, "line": s.line}
                  for s in skips if s.file == path],
    }


def _finding_to(finding: Finding) -> dict:
    return {"tool": finding.tool, "severity": finding.severity, "resource": finding.resource,
            "rule": finding.rule, "message": finding.message, "line": finding.line}


def _finding_from(item: dict, path: Path) -> Finding:
    return Finding(file=path, **item)


class _Files:
    """The candidate files of a run, each read once: a digest, its size and the local nested
    templates it names. Contents are not kept (500 templates would be tens of megabytes)."""

    def __init__(self, candidates: Iterable[tuple[Path, bool]]):
        self._named: dict[Path, bool] = {}
        self._digest: dict[Path, bytes] = {}
        self._size: dict[Path, int] = {}
        self._children: dict[Path, tuple[Path, ...]] = {}
        self._interface: dict[Path, str] = {}
        for path, named in candidates:
            content = path.read_bytes()
            self._named[path] = named
            self._digest[_same_file(path)] = hashlib.sha256(content).digest()
            self._size[path] = len(content)
            self._children[path] = tuple(_local_children(path, content))

    @property
    def paths(self) -> list[Path]:
        return list(self._named)

    def named(self, path: Path) -> bool:
        return self._named[path]

    def size(self, path: Path) -> int:
        return self._size[path]

    def children(self, path: Path) -> tuple[Path, ...]:
        return self._children[path]

    def digest(self, path: Path) -> bytes:
        """The file's hash; a child outside the run is read here, a missing one hashes as such."""
        key = _same_file(path)
        if key not in self._digest:
            self._digest[key] = (hashlib.sha256(path.read_bytes()).digest() if path.is_file()
                                 else b"missing")
        return self._digest[key]

    def interface(self, path: Path) -> str:
        """What a parent template's lint result can depend on in a child it names (see
        `_ResultKeys.lint_by_interface`)."""
        key = _same_file(path)
        if key not in self._interface:
            # A child this cannot read is taken whole: any change to it then counts.
            self._interface[key] = _template_interface(path) or f"bytes {self.digest(path).hex()}"
        return self._interface[key]


def _same_file(path: Path) -> Path:
    return Path(os.path.abspath(path))


def _template_interface(path: Path) -> str | None:
    """A child template's parameters (and whether each has a default) and output names; None
    when the file cannot be read as a template.

    JSON is read as JSON (YAML parsers differ on its corners: tab indentation, long keys),
    anything else with libyaml where available and tags ignored, since only names are read: a
    few milliseconds a child, and no cfn-lint import (its decoder is pure Python in older
    releases). A key given twice makes the file unreadable here as it does for cfn-lint, which
    then reads nothing of the child.
    """
    import yaml

    try:
        content = path.read_bytes()
        if content.lstrip().startswith(b"{"):
            data = json.loads(content, object_pairs_hook=_unique_keys)
        else:
            data = yaml.load(content, Loader=_names_loader())  # noqa: S506 - a safe loader
    except (OSError, yaml.YAMLError, ValueError):
        return None
    if not isinstance(data, dict):
        return None
    parameters, outputs = data.get("Parameters"), data.get("Outputs")
    return json.dumps({
        "parameters": {str(name): isinstance(value, dict) and value.get("Default") is not None
                       for name, value in parameters.items()}
        if isinstance(parameters, dict) else repr(type(parameters)),
        "outputs": sorted(map(str, outputs)) if isinstance(outputs, dict) else None,
    }, sort_keys=True)


def _unique_keys(pairs: list[tuple[Any, Any]]) -> dict:
    keys = [key for key, _ in pairs]
    if len(set(keys)) != len(keys):
        raise ValueError("a key given twice")
    return dict(pairs)


@functools.cache
def _names_loader() -> type:
    import yaml

    class TagsIgnored(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
        pass

    def mapping(loader, node, deep=False):
        pairs = [(loader.construct_object(k, deep=deep), v) for k, v in node.value]
        _unique_keys([(key if isinstance(key, str) else repr(key), v) for key, v in pairs])
        return loader.construct_mapping(node, deep=deep)

    TagsIgnored.add_multi_constructor("!", lambda loader, suffix, node: None)
    TagsIgnored.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, mapping)
    return TagsIgnored


class _ResultKeys:
    """Cache keys: a hash of everything a result depends on.

    cfn-lint's result depends on the template's bytes, the local child templates it names, the
    cfn-lint version, the regions, and this module's code (the quota table, how matches become
    findings). checkov's depends on the bytes and the checkov installation. Versions are read
    from package metadata, never by importing.

    Of a child, cfn-lint reads only its parameters (rule E3043: names, and which have a
    default) and its output names (the attributes `!GetAtt Stack.Outputs.X` may name), and the
    latter only for a child under the working directory. So a parent has two keys: one with its
    children's bytes, which a warm run checks without parsing anything, and one with only those
    parts of them, which lets a parent whose child was edited inside keep its result.
    """

    def __init__(self, regions: Sequence[str], checkov: str | None, files: _Files):
        from importlib.metadata import PackageNotFoundError, version

        try:
            lint_version = version("cfn-lint")
        except PackageNotFoundError:  # pragma: no cover - cfn-lint is a dependency
            lint_version = "unknown"
        own_code = hashlib.sha256(Path(__file__).read_bytes()).hexdigest() + _rules_digest()
        self._lint_base = f"lint|{lint_version}|{','.join(regions)}|{own_code}"
        self._checkov_base = f"checkov|{_checkov_identity(checkov)}|{own_code}" if checkov else ""
        self._files = files

    def lint(self, path: Path) -> str:
        return self._lint_key(path, lambda child: self._files.digest(child))

    def lint_by_interface(self, path: Path) -> str:
        return self._lint_key(path, lambda child: b"interface|"
                              + self._files.interface(child).encode())

    def _lint_key(self, path: Path, child_part: Callable[[Path], bytes]) -> str:
        digest = hashlib.sha256(self._lint_base.encode())
        digest.update(self._files.digest(path))
        for child in self._files.children(path):
            digest.update(f"|{child.name}|{_under_working_directory(child)}|".encode())
            digest.update(child_part(child))
        return digest.hexdigest()

    def checkov(self, path: Path) -> str:
        return hashlib.sha256(self._checkov_base.encode() + self._files.digest(path)).hexdigest()


def _rules_digest() -> str:
    """The rule pack's code: a cached lint result is stale once a rule changes."""
    from mlops_cfn import lint_rules

    digest = hashlib.sha256()
    for path in sorted(lint_rules.PATH.glob("*.py")):
        digest.update(path.name.encode() + b"|" + path.read_bytes())
    return digest.hexdigest()


def _under_working_directory(path: Path) -> bool:
    """Whether cfn-lint reads this child's outputs: it refuses paths outside the working
    directory (its guard against path traversal), and then checks no `Outputs.X` name."""
    return os.path.normpath(os.path.abspath(path)).startswith(os.getcwd() + os.sep)


def _checkov_identity(executable: str) -> str:
    """The installed checkov's version from its metadata beside the executable, else the
    executable's path and modification time."""
    resolved = Path(executable).resolve()
    for dist_info in sorted(resolved.parent.parent.glob("lib/python*/site-packages/checkov-*"
                                                        ".dist-info")):
        return dist_info.name
    stat = resolved.stat()
    return f"{resolved}|{stat.st_mtime_ns}|{stat.st_size}"


# A nested stack's TemplateURL that names a local file (not s3:// or https://, not an intrinsic).
# It starts with the literal name, so the search skips ahead instead of trying every byte.
_TEMPLATE_URL = re.compile(rb"""TemplateURL["']?\s*:\s*["']?([^\s"',{}\[\]!]+)""")


def _local_children(path: Path, content: bytes) -> list[Path]:
    found = []
    for match in _TEMPLATE_URL.finditer(content):
        value = match.group(1).decode("utf-8", "replace")
        if "://" not in value:
            found.append(path.parent / value)
    return found


def check_local_references(template: TemplateFile) -> list[Finding]:
    """A nested stack whose TemplateURL is a local path must name a file beside the template.

    cfn-lint only logs when it cannot read such a child, and the root ignores W3002 (the local
    path is intended: packaging rewrites it), so a missing child is caught here.
    """
    findings = []
    resources = template.data.get("Resources") or {}
    for logical_id, resource in resources.items() if isinstance(resources, dict) else ():
        if not isinstance(resource, dict) or resource.get("Type") != "AWS::CloudFormation::Stack":
            continue
        url = (resource.get("Properties") or {}).get("TemplateURL")
        if isinstance(url, str) and "://" not in url and not (template.path.parent / url).is_file():
            findings.append(Finding(
                "cfn-lint", "error", template.path, logical_id, "local-template",
                f"TemplateURL: {url} does not exist beside {template.path.name}; a local path "
                f"must name a file for packaging to upload", _key_line(resources, logical_id)))
    return findings


class _Cache:
    """Results as small JSON files named by their key; a no-op without a directory.

    New results are kept in memory until `save`, which a run calls once it has a report: a run
    refused as bad input writes nothing.
    """

    def __init__(self, directory: Path | None):
        self.directory = directory
        self.pending: dict[str, dict] = {}

    def get(self, key: str) -> dict | None:
        if self.directory is None:
            return None
        if key in self.pending:
            return self.pending[key]
        try:
            return json.loads((self.directory / f"{key}.json").read_text())
        except (OSError, ValueError):
            return None

    def put(self, key: str, result: dict) -> dict:
        if self.directory is not None:
            self.pending[key] = result
        return result

    def save(self) -> None:
        if self.directory is None or not self.pending:
            return
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            ignore = self.directory / ".gitignore"
            if not ignore.exists():
                ignore.write_text("# written by mlops-cfn validate\n*\n")
            for key, result in self.pending.items():
                staging = self.directory / f".{key}.{os.getpid()}.tmp"
                staging.write_text(json.dumps(result))
                os.replace(staging, self.directory / f"{key}.json")
        except OSError:
            pass  # a cache that cannot be written only costs time
        self.pending.clear()


# --- finding the templates -------------------------------------------------------------------

@dataclass(frozen=True)
class TemplateFile:
    """A file that decoded to a CloudFormation template (a mapping with a Resources section)."""

    path: Path
    data: dict = field(repr=False)
    size: int = 0  # bytes on disk, what CloudFormation's body size limits count


def find_templates(paths: Sequence[Path]) -> tuple[list[TemplateFile], list[Finding]]:
    """The templates in `paths`, and a cfn-lint parse error for each file that cannot be read.

    In directories, files that decode to something without `Resources` (parameters.json, other
    config) are not templates and are passed over; hidden directories (.git, .tools) are not
    searched. A file named explicitly must be a template.
    """
    from cfnlint.decode import decode

    templates: list[TemplateFile] = []
    unreadable: list[Finding] = []
    seen: set[Path] = set()
    for path, named in _candidate_files(paths):
        if path.resolve() in seen:
            continue
        seen.add(path.resolve())
        data, matches = decode(str(path))
        if matches:
            unreadable += [_lint_finding(path, m) for m in matches]
        elif isinstance(data, dict) and "Resources" in data:
            templates.append(TemplateFile(path, data, path.stat().st_size))
        elif named:
            raise UserError(f"{path}: not a CloudFormation template (no Resources section)")
    if not templates and not unreadable:
        where = ", ".join(str(p) for p in paths) or "(no paths given)"
        raise UserError(f"no CloudFormation templates found in {where}")
    return templates, unreadable


def _candidate_files(paths: Sequence[Path]) -> Iterable[tuple[Path, bool]]:
    """(file, named explicitly) for every file to look at, in a stable order."""
    for path in map(Path, paths):
        if path.is_file():
            yield path, True
        elif path.is_dir():
            for file in sorted(path.rglob("*")):
                hidden = any(part.startswith(".") for part in file.relative_to(path).parts)
                if file.suffix in TEMPLATE_SUFFIXES and file.is_file() and not hidden:
                    yield file, False
        else:
            raise UserError(f"{path}: no such file or directory")


# --- one template: cfn-lint and CloudFormation quotas ---------------------------------------

def check_template(template: TemplateFile, linter: CfnLint) -> list[Finding]:
    """Everything that can be said about one template on its own (no checkov)."""
    return linter.lint(template) + check_limits(template)


class CfnLint:
    """cfn-lint's configuration and rules, loaded once and used for every template of a run.

    `cfnlint.api.lint_file` would rebuild the rules for each file; `run_template_by_file_path`
    takes them ready-made, and linting by path lets rule E3043 read a nested stack's child
    template from a TemplateURL relative to the file.
    """

    def __init__(self, regions: Sequence[str] = DEFAULT_REGIONS):
        from cfnlint.api import ManualArgs
        from cfnlint.config import ConfigMixIn
        from cfnlint.runner import Runner

        from mlops_cfn import lint_rules

        # cfn-lint's rules and mlops-cfn's own security rules (mlops_cfn/lint_rules).
        self.config = ConfigMixIn([], **ManualArgs(regions=list(regions),
                                                   append_rules=[str(lint_rules.PATH)]))
        # cfn-lint logs "Template file not found" when a nested stack's child is missing; the
        # report says that itself (see PACKAGE_ONLY_RULE), so keep Python's last-resort handler
        # from printing it to stderr. Handlers the application configures still receive it.
        logging.getLogger("cfnlint").addHandler(logging.NullHandler())
        self.rules = Runner(self.config).rules

    def lint(self, template: TemplateFile) -> list[Finding]:
        from cfnlint.runner import run_template_by_file_path

        matches = run_template_by_file_path(str(template.path), self.config, self.rules, False)
        return [_lint_finding(template.path, match) for match in matches
                if not (match.rule.id == PACKAGE_ONLY_RULE
                        and _local_path(template, _match_path(match)) is not None)]


# W3002 says a property holds a local path that only `package` understands. Our rendered trees
# are meant to be packaged (nested TemplateURLs are relative paths, DESIGN.md), so the warning is
# noise; whether the named file exists is what matters, and `check_local_references` checks that
# (cfn-lint itself only logs when it cannot read a child).
PACKAGE_ONLY_RULE = "W3002"
_SEVERITY: dict[str, Severity] = {"error": "error", "warning": "warning", "informational": "info"}


def _match_path(match: Any) -> tuple:
    return tuple(getattr(match, "path", None) or ())


def _lint_finding(file: Path, match: Any, message: str | None = None) -> Finding:
    path = _match_path(match)
    resource = str(path[1]) if len(path) > 1 and path[0] == "Resources" else ""
    return Finding(tool="cfn-lint", severity=_SEVERITY.get(match.rule.severity, "error"),
                   file=file, resource=resource, rule=match.rule.id,
                   message=message or match.message, line=match.linenumber or None)


def _local_path(template: TemplateFile, path: tuple) -> Path | None:
    """The file a package-only property names, relative to the template; None if not a path."""
    value: Any = template.data
    for key in path:
        try:
            value = value[key]
        except (KeyError, IndexError, TypeError):
            return None
    if not isinstance(value, str) or "://" in value:
        return None
    return template.path.parent / value


# --- CloudFormation quotas ------------------------------------------------------------------

@dataclass(frozen=True)
class Limit:
    rule: str
    quota: str  # the quota's name as the CloudFormation quotas page gives it
    maximum: int
    unit: str
    severity: Severity = "error"


# CloudFormation quotas checked before upload (AWS CloudFormation User Guide, "Quotas").
# The 51,200-byte body applies only to a template passed in the request itself; ours are
# uploaded to S3 by `package`, so exceeding it is information, not a failure.
LIMITS: dict[str, Limit] = {limit.rule: limit for limit in (
    Limit("body-size-s3", "template body size in an S3 object", 1_000_000, "bytes"),
    Limit("body-size-request", "template body size in a request", 51_200, "bytes", "info"),
    Limit("resources", "resources per template", 500, "resources"),
    Limit("parameters", "parameters per template", 200, "parameters"),
    Limit("outputs", "outputs per template", 200, "outputs"),
    Limit("mappings", "mappings per template", 200, "mappings"),
    Limit("name-length", "logical ID, parameter, mapping and output name length", 255,
          "characters"),
    Limit("description", "template description size", 1024, "bytes"),
)}

_COUNTED_SECTIONS = {"Resources": "resources", "Parameters": "parameters",
                     "Outputs": "outputs", "Mappings": "mappings"}
_SECTION_NAMES = {"Resources": "logical ID", "Parameters": "parameter name",
                  "Outputs": "output name", "Mappings": "mapping name"}


def check_limits(template: TemplateFile) -> list[Finding]:
    """Breaches of the CloudFormation quotas in LIMITS, each message naming its quota."""
    data = template.data

    def breach(rule: str, what: str, value: int, line: int | None = None,
               resource: str = "") -> Finding:
        limit = LIMITS[rule]
        advice = "; upload it to S3 (mlops-cfn package does)" if limit.severity == "info" else ""
        message = (f"{what}: {value:,} {limit.unit}, over the limit of {limit.maximum:,} "
                   f"({limit.quota}){advice}")
        return Finding("limits", limit.severity, template.path, resource, rule, message, line)

    findings = []
    for rule in ("body-size-s3", "body-size-request"):
        if template.size > LIMITS[rule].maximum:
            findings.append(breach(rule, "the template body", template.size))
            break  # over the S3 limit says all there is to say
    for section, rule in _COUNTED_SECTIONS.items():
        entries = data.get(section)
        if isinstance(entries, dict) and len(entries) > LIMITS[rule].maximum:
            findings.append(breach(rule, section, len(entries), _key_line(data, section)))
    for section, kind in _SECTION_NAMES.items():
        entries = data.get(section)
        for name in entries if isinstance(entries, dict) else ():
            if len(name) > LIMITS["name-length"].maximum:
                shown = f"{kind} {name[:40]}..."  # the whole name would fill the screen
                findings.append(breach("name-length", shown, len(name), _key_line(entries, name),
                                       name if section == "Resources" else ""))
    description = data.get("Description")
    if isinstance(description, str):
        size = len(description.encode("utf-8"))
        if size > LIMITS["description"].maximum:
            findings.append(breach("description", "Description", size,
                                   _key_line(data, "Description")))
    return findings


def _key_line(mapping: dict, key: str) -> int | None:
    """1-based line of `key` in a mapping decoded by cfnlint.decode, when it kept the mark."""
    for candidate in mapping:
        if candidate == key:
            mark = getattr(candidate, "start_mark", None)
            return mark.line + 1 if mark is not None else None
    return None


# --- checkov ---------------------------------------------------------------------------------

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


__all__ = ["Finding", "Skip", "Report", "TemplateFile", "Limit", "LIMITS", "validate",
           "find_templates", "check_template", "check_limits", "CfnLint", "find_checkov",
           "run_checkov", "parse_checkov_output"]
