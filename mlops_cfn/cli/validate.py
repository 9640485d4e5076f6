"""`mlops-cfn validate`: cfn-lint, CloudFormation quotas and checkov over rendered templates
(api.validate_templates)."""

import sys
from pathlib import Path

import click

from ..errors import UserError
from . import EXIT_FINDINGS, cli


@cli.command()
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
@click.option("--no-security", is_flag=True, help="Skip the checkov security scan.")
@click.option("--jobs", "-j", type=click.IntRange(min=1), default=None,
              help="Parallel cfn-lint workers (default: the CPU count).")
@click.option("--cache-dir", type=click.Path(path_type=Path), default=Path(".mlops-cfn-cache"),
              show_default=True, help="Where results of unchanged templates are kept.")
@click.option("--no-cache", is_flag=True, help="Check everything afresh (and keep no results).")
def validate(paths, no_security, jobs, cache_dir, no_cache):
    """Lint templates (cfn-lint), check CloudFormation quotas and scan with checkov.

    PATHS are template files or directories (default: templates/).
    """
    if not no_cache and cache_dir.exists() and not cache_dir.is_dir():
        raise UserError(f"--cache-dir {cache_dir}: not a directory")
    from ..api import validate_templates

    # On a terminal, a line for each slow step. Not a spinner: its thread would be running when
    # the cfn-lint workers are forked, and a lock it held then would stay held in them.
    report = validate_templates(
        list(paths) or [Path("templates")], security=not no_security, jobs=jobs,
        cache_dir=None if no_cache else cache_dir,
        progress=((lambda step: click.echo(click.style(f"{step} ...", dim=True), err=True))
                  if sys.stderr.isatty() else None))
    click.echo(report.render())
    sys.exit(0 if report.ok else EXIT_FINDINGS)
