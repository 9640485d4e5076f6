"""AWS CloudFormation Guard with AWS Control Tower's proactive-control rules.

Control Tower implements each proactive control (`CT.<SERVICE>.PR.<n>`) as a Guard rule that a
CloudFormation hook evaluates against every resource of the control's types as it is created or
updated ("Proactive controls", AWS Control Tower Controls Reference Guide). The same rule files
and the Guard engine ship in AWS's CDK validator plugin (cdklabs.cdk-validator-cfnguard on PyPI,
@cdklabs/cdk-validator-cfnguard on npm); scripts/install-cfn-guard unpacks both into
`${MLOPS_CFN_TOOLS:-.tools}/cfn-guard`. Nothing here restates a rule: the engine evaluates AWS's
own files, and this module only reads each file's control id, title, fix and resource types to
name what it reports.

Each resource goes to the engine in the hook's document form, `{<type>: {resourceProperties:
...}}`, which every rule file handles besides whole templates (its `is_cfn_hook` branch).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Literal

from ..errors import UserError
from .deployed import DeployedResource

INSTALL_HINT = "run scripts/install-cfn-guard, or set MLOPS_CFN_GUARD_HOME to its folder"
# cfn-guard's exit status when every data file passed or was skipped, and when some failed.
_ALL_PASSED, _SOME_FAILED = 0, 19

Status = Literal["pass", "fail", "skip"]
_RANK = {"skip": 0, "pass": 1, "fail": 2}


@dataclass(frozen=True)
class Control:
    """One proactive control, as its rule file names it."""

    id: str  # CT.S3.PR.1
    title: str  # what it requires, in the catalog's words
    fix: str  # the remediation the rule prints
    rule: str  # the Guard rule evaluated for it
    resource_types: frozenset[str]
    file: str  # the rule file, relative to the rules folder

    @property
    def page(self) -> str:
        """The control's page in the AWS Control Tower Controls Reference Guide."""
        service = self.id.split(".")[1].lower()
        return (f"https://docs.aws.amazon.com/controltower/latest/controlreference/"
                f"{_PAGE_NAMES.get(service, service)}-rules.html")


# Where the page's name differs from the id's service part (the guide's "<name>-rules" pages).
_PAGE_NAMES = {"apigateway": "api-gateway", "elasticloadbalancing": "elb",
               "autoscaling": "ec2-auto-scaling", "guardduty": "guard-duty"}


@dataclass(frozen=True)
class Engine:
    """A cfn-guard executable and the folder of Control Tower rule files."""

    executable: Path
    rules: Path

    @property
    def controls(self) -> tuple[Control, ...]:
        return read_controls(self.rules)

    def evaluate(self, resources: Sequence[DeployedResource]
                 ) -> list[dict[str, Status]]:
        """For each resource, the status of every control whose rule reported on it."""
        by_rule = {c.rule: c for c in self.controls}
        with tempfile.TemporaryDirectory(prefix="mlops-cfn-guard-") as folder:
            for index, resource in enumerate(resources):
                document = {resource.type: {"resourceProperties": resource.properties}}
                (Path(folder) / f"{index:05d}.json").write_text(json.dumps(document))
            types = {r.type for r in resources}
            # Only the rule files that report on a type present: the others would skip.
            files = [f for c in self.controls if c.resource_types & types
                     for f in ("--rules", str(self.rules / c.file))]
            if not files:
                return [{} for _ in resources]
            run = subprocess.run(
                [str(self.executable), "validate", *files, "--data", folder,
                 "--output-format", "json", "--show-summary", "none", "--structured"],
                capture_output=True, text=True, check=False)
        if run.returncode not in (_ALL_PASSED, _SOME_FAILED):
            raise UserError(f"{self.executable}: cfn-guard failed (exit {run.returncode}): "
                            f"{(run.stderr or run.stdout).strip()[:500]}")
        results: list[dict[str, Status]] = [{} for _ in resources]
        for report in json.loads(run.stdout):
            index = int(Path(report["name"]).stem)
            statuses = results[index]
            for key, status in (("compliant", "pass"), ("not_applicable", "skip"),
                                ("not_compliant", "fail")):
                for entry in report.get(key, []):
                    name = entry if isinstance(entry, str) else entry["Rule"]["name"]
                    control = by_rule.get(name)
                    # A rule file holds the rule twice, for templates and for hook documents:
                    # the branch that applied decides (a failure over a pass over a skip).
                    if (control and resources[index].type in control.resource_types
                            and _RANK[status] > _RANK.get(statuses.get(control.id), -1)):
                        statuses[control.id] = status
        return results


def find_engine() -> Engine:
    """cfn-guard and the rules: $MLOPS_CFN_GUARD_HOME, else the folder scripts/install-cfn-guard
    fills, ${MLOPS_CFN_TOOLS:-.tools}/cfn-guard from the current directory."""
    home = Path(os.environ.get("MLOPS_CFN_GUARD_HOME")
                or Path(os.environ.get("MLOPS_CFN_TOOLS", ".tools")) / "cfn-guard")
    executable, rules = home / "bin" / "cfn-guard", home / "rules"
    if not (executable.is_file() and os.access(executable, os.X_OK)):
        raise UserError(f"{home}: no cfn-guard with Control Tower's rules there; {INSTALL_HINT}")
    if not read_controls(rules):
        raise UserError(f"{rules}: no Control Tower rule files; {INSTALL_HINT}")
    return Engine(executable, rules)


_ID_AND_TITLE = re.compile(r"\[(CT\.[A-Z0-9-]+\.PR\.\d+)\]:\s*(.+)")
_FIX = re.compile(r"\[FIX\]:\s*(.+)")
_HOOK_RULE = re.compile(r"^rule\s+(\w+)\s+when\s+is_cfn_hook\(%INPUT_DOCUMENT,\s*%(\w+)\)", re.M)
_TYPE_CONSTANT = re.compile(r"^let\s+(\w+)\s*=\s*[\"'](AWS::[A-Za-z0-9]+::[A-Za-z0-9]+)[\"']",
                            re.M)


@cache
def read_controls(rules: Path) -> tuple[Control, ...]:
    """Every control of the rules folder: id, title, fix, rule name and resource types, as
    each rule file states them in its hook branch."""
    controls = []
    for path in sorted(rules.rglob("*.guard")):
        text = path.read_text()
        hooks = _HOOK_RULE.findall(text)
        named = _ID_AND_TITLE.search(text)
        fix = _FIX.search(text)
        if not hooks or not named:
            raise UserError(f"{path}: not a Control Tower rule file this check can read "
                            "(no hook rule or no control id)")
        constants = dict(_TYPE_CONSTANT.findall(text))
        types = frozenset(constants[variable] for _, variable in hooks if variable in constants)
        names = {name for name, _ in hooks}
        if len(names) != 1 or not types:
            raise UserError(f"{path}: expected one hook rule over named resource types")
        controls.append(Control(named.group(1), named.group(2).strip(),
                                fix.group(1).strip() if fix else "", names.pop(), types,
                                str(path.relative_to(rules))))
    return tuple(sorted(controls, key=_control_order))


def _control_order(control: Control) -> tuple:
    service, number = control.id.rsplit(".PR.", 1)
    return service, int(number)
