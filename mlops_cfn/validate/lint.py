"""cfn-lint, the CloudFormation quotas and local child references, per template, in workers.

cfn-lint's configuration is `lint_settings`, in one place: what the linter is built with and
what the result cache's key covers (`lint_identity`) cannot disagree. cfn-lint is imported only
when a template has to be linted: a warm run never imports it.
"""

from __future__ import annotations

import gc
import hashlib
import json
import os
from pathlib import Path
from typing import Any, Callable, Sequence

from .discovery import TemplateFile
from .quotas import _key_line, check_limits
from .report import Finding, Severity, _finding_to

DEFAULT_REGIONS = ("us-east-1",)


def lint_settings(regions: Sequence[str] = DEFAULT_REGIONS) -> dict[str, Any]:
    """cfn-lint's arguments for every template of a run (cfnlint.api.ManualArgs's names).

    Rule directories to load beside cfn-lint's own go in "append_rules" (a list of paths): the
    linter loads them and the cache key covers every file in them.
    """
    from mlops_cfn import lint_rules  # finds the directory; loads no rule, imports no cfn-lint

    # cfn-lint's rules and mlops-cfn's own security rules (mlops_cfn/lint_rules).
    return {"regions": list(regions), "append_rules": [str(lint_rules.PATH)]}


def lint_identity(regions: Sequence[str] = DEFAULT_REGIONS) -> str:
    """What a lint result depends on besides the template: the installed cfn-lint (its version
    file, found without importing it), `lint_settings`, and the files of any appended rule
    directories."""
    from importlib.util import find_spec

    settings = lint_settings(regions)
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode())
    spec = find_spec("cfnlint")
    for location in (spec.submodule_search_locations or []) if spec else []:
        _digest_file(digest, os.path.join(location, "version.py"))
    for directory in settings.get("append_rules", ()):
        for root, dirs, names in sorted(os.walk(directory)):
            dirs[:] = sorted(d for d in dirs if d != "__pycache__")
            for name in sorted(names):
                _digest_file(digest, os.path.join(root, name))
    return digest.hexdigest()


def _digest_file(digest: Any, path: str) -> None:
    digest.update(path.encode() + b"\0")
    try:
        with open(path, "rb") as file:
            digest.update(file.read())
    except OSError:
        digest.update(b"missing")


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
    # Linting leaves much cyclic garbage: at Python's usual pace of collection, whatever the
    # command set for its own short life (cli.main), workers stay 20 MiB smaller.
    thresholds = gc.get_threshold()
    gc.set_threshold(700, 10, 10)
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
        gc.set_threshold(*thresholds)
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
        import logging

        from cfnlint.api import ManualArgs
        from cfnlint.config import ConfigMixIn
        from cfnlint.runner import Runner

        self.config = ConfigMixIn([], **ManualArgs(**lint_settings(regions)))
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
# are meant to be packaged (render writes nested TemplateURLs as paths relative to the root, for
# `package` to upload; docs/architecture.md, "package"), so the warning is noise; whether the
# named file exists is what matters, and `check_local_references` checks that (cfn-lint itself
# only logs when it cannot read a child).
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

