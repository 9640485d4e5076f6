"""`mlops-cfn validate`: cfn-lint, CloudFormation quotas and checkov over rendered templates."""

import sys
from pathlib import Path

import click

from ..errors import UserError
from . import EXIT_FINDINGS, cli


@cli.command()
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
@click.option("--no-security", is_flag=True, help="Skip the checkov security scan.")
def validate(paths, no_security):
    """Lint templates (cfn-lint), check CloudFormation quotas and scan with checkov.

    PATHS are template files or directories (default: templates/).
    """
    paths = list(paths) or [Path("templates")]
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        raise UserError(*(f"{p}: no such file or directory" for p in missing))
    from ..validate import validate as run_validation

    report = run_validation(paths, security=not no_security)
    click.echo(report.render())
    sys.exit(0 if report.ok else EXIT_FINDINGS)
