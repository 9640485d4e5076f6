"""Validate CloudFormation templates before upload: cfn-lint, CloudFormation quotas, checkov.

`validate(paths)` finds the templates under `paths`, checks each one on its own (cfn-lint and the
quotas: a function of the file and, for a root, of the child templates its TemplateURLs name), then
runs checkov once over all of them, and returns a `Report`. Nothing is printed; the CLI prints
`report.render()` and exits with 0 when `report.ok`, else 1.

The per-file step (`check_template`) is the unit that a result cache and parallel workers can take
over: its result depends only on the template's bytes, its children's bytes, the cfn-lint version
and its configuration (`lint.lint_settings`). checkov stays one external run over all files,
because it starts slowly.

One module a job: `discovery` (which files, their digests and children), `cache` (result keys
and storage), `lint` (cfn-lint's configuration, workers, local references), `quotas`
(CloudFormation's limits), `checkov`, `report` (findings and their text). cfn-lint and checkov
are imported or started only when a template needs them, so a run over unchanged templates
imports neither.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

from ..errors import UserError
from .cache import _Cache, _ResultKeys
from .checkov import _checkov_result_for, find_checkov, parse_checkov_output, run_checkov
from .discovery import TemplateFile, _candidate_files, _Files
from .lint import DEFAULT_REGIONS, CfnLint, _check_files, check_template, lint_settings
from .quotas import LIMITS, Limit, check_limits
from .report import Finding, Report, Skip, _counted, _finding_from


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


__all__ = ["Finding", "Skip", "Report", "TemplateFile", "Limit", "LIMITS", "validate",
           "check_template", "check_limits", "CfnLint", "lint_settings", "find_checkov",
           "run_checkov", "parse_checkov_output"]
