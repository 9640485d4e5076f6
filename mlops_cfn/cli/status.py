"""`mlops-cfn status`: what serves where, per environment, from the live stacks."""

import click

from . import cli
from .options import aws_options, config_option, reports_failures


@cli.command()
@config_option
@click.option("--env", "environments", multiple=True, metavar="NAME",
              help="Only these environments (repeatable; default: every one in the file).")
@aws_options
@reports_failures
def status(config_path, environments, profile, region, endpoint_url):
    """Per environment: the model package (version, approval), the API image tag, and the state
    of the SageMaker endpoint and the Fargate service. Reads only; changes nothing."""
    from rich.table import Table

    from .. import config
    from ..deploy import aws_errors, connect
    from ..errors import UserError
    from ..status import status as read_status
    from .deploy import console

    loaded = config.load(config_path)
    known = list(loaded.base.environments)
    unknown = [e for e in environments if e not in known]
    if unknown:
        raise UserError(f"--env {unknown[0]}: {loaded.source} has no such environment "
                        f"(it has {', '.join(known)})")
    with aws_errors():
        aws = connect(profile, region, endpoint_url)
    found = read_status(aws, loaded.config.project, list(environments) or known)
    table = Table(title=f"{loaded.config.project}: what serves where ({aws.region})")
    for column in ("environment", "stack", "model package", "image tag", "endpoint",
                   "API service"):
        table.add_column(column, overflow="fold")
    for one in found:
        if not one.deployed:
            table.add_row(one.environment, f"{one.stack_name}: not deployed", "", "", "", "")
            continue
        model = one.model or "none yet"
        if one.model_version:
            model = f"v{one.model_version} ({one.model_approval}) {one.model}"
        table.add_row(
            one.environment, f"{one.stack_name}: {one.stack_status}", model,
            one.image_tag or "none yet",
            f"{one.endpoint}: {one.endpoint_status}" if one.endpoint else "none",
            f"{one.service}: {one.service_state}" if one.service else "none")
    console().print(table)
