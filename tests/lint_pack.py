"""Run mlops-cfn's own cfn-lint rules (mlops_cfn/lint_rules), and only them, on a template file
or on a template built in memory."""

from __future__ import annotations

import functools
from pathlib import Path

from mlops_cfn import lint_rules


@functools.cache
def _rules_and_config():
    from cfnlint.api import ManualArgs
    from cfnlint.config import ConfigMixIn
    from cfnlint.rules import RulesCollection

    rules = RulesCollection(include_rules=["E", "W", "I"])
    # As cfn-lint's --append-rules loads it: every rule file of the directory.
    rules.create_from_directory(str(lint_rules.PATH))
    return rules, ConfigMixIn([], **ManualArgs(regions=["us-east-1"]))


def rule_ids() -> set[str]:
    return set(_rules_and_config()[0].rules)


def findings(template: dict | Path) -> set[tuple[str, tuple]]:
    """(rule id, path) of each finding of the rule pack."""
    from cfnlint.decode import decode
    from cfnlint.runner import run_template_by_data

    if isinstance(template, Path):
        template, errors = decode(str(template))
        assert not errors, errors
    rules, config = _rules_and_config()
    return {(m.rule.id, tuple(m.path))
            for m in run_template_by_data(template, config, rules)}
