"""`mlops-cfn smoke`: one sample record to what an environment serves; exit 1 on a bad answer."""

import click

from . import EXIT_FINDINGS, cli
from .options import aws_options, config_option, env_option, reports_failures


@cli.command()
@config_option
@env_option
@click.option("--stack-name", metavar="NAME", help="Root stack name (default: <project>-<env>).")
@click.option("--endpoint-only", is_flag=True,
              help="Check the SageMaker endpoint only (where the API's internal load balancer "
                   "cannot be reached).")
@aws_options
@reports_failures
def smoke(config_path, env, stack_name, endpoint_only, profile, region, endpoint_url):
    """Send one sample record (the record schema's features, all 0) to the environment's
    SageMaker endpoint and Fargate API, and check each answers one prediction. What does not
    exist yet (no model, no image) is noted, not failed."""
    import sys

    from .. import config
    from ..deploy import aws_errors, connect
    from ..smoke import smoke as run_smoke
    from ..stages.cicd import stack_name as default_stack_name

    loaded = config.load(config_path, env)
    name = stack_name or default_stack_name(loaded.config.project, loaded.environment)
    with aws_errors():
        aws = connect(profile, region, endpoint_url)
    checks, notes = run_smoke(aws, name, loaded.config.record_schema.feature_columns(),
                              endpoint_only=endpoint_only)
    for note in notes:
        click.echo(f"note: {note}")
    for check in checks:
        click.echo(f"{'ok' if check.ok else 'FAILED'}: {check.target}: {check.detail}")
    if not checks:
        click.echo(f"{name}: nothing serves yet; nothing to check")
    if not all(check.ok for check in checks):
        sys.exit(EXIT_FINDINGS)
