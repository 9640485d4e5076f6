"""Options and error handling several verbs share."""

import os
import sys

import click

from . import EXIT_FINDINGS

LOCAL_CONFIG = "pipeline.yaml"


def _local_config_first(ctx: click.Context, param: click.Parameter, value: str | None):
    """No --config: ./pipeline.yaml when there is one (what `mlops-cfn init` writes), else the
    bundled example. Saying which keeps a user from rendering the example by surprise."""
    if value == "":
        raise click.BadParameter("an empty file name")
    # Anything by that name, even a directory or a broken link: its error then names it,
    # rather than the bundled example being rendered in its place.
    if value is None and os.path.lexists(LOCAL_CONFIG):
        click.echo(f"using ./{LOCAL_CONFIG} (--config names another file)", err=True)
        return LOCAL_CONFIG
    return value


config_option = click.option(
    "--config", "config_path", metavar="FILE", callback=_local_config_first,
    help=f"Pipeline file (default: ./{LOCAL_CONFIG} if present, else the bundled example).")
env_option = click.option(
    "--env", metavar="NAME",
    help="Environment from the file's `environments` (default: the first).")


def reports_failures(function):
    """A failed AWS operation (DeployFailed) becomes its message and exit status 1."""
    import functools

    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        from ..deploy import DeployFailed

        try:
            return function(*args, **kwargs)
        except DeployFailed as failure:
            for problem in failure.problems:
                click.echo(f"error: {problem}", err=True)
            sys.exit(EXIT_FINDINGS)

    return wrapper


def aws_options(function):
    """--profile, --region and --endpoint-url, shared by the verbs that talk to AWS."""
    for option in reversed((
        click.option("--profile", metavar="NAME", help="AWS profile (default: boto3's chain)."),
        click.option("--region", metavar="NAME", help="AWS region (default: boto3's chain)."),
        click.option("--endpoint-url", metavar="URL",
                     help="Send AWS calls to this endpoint, e.g. a local moto server "
                          "(default: AWS_ENDPOINT_URL, else AWS)."),
    )):
        function = option(function)
    return function
