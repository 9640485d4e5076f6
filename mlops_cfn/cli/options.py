"""Options several verbs share."""

from pathlib import Path

import click

LOCAL_CONFIG = "pipeline.yaml"


def _local_config_first(ctx: click.Context, param: click.Parameter, value: str | None):
    """No --config: ./pipeline.yaml when there is one (what `mlops-cfn init` writes), else the
    bundled example. Saying which keeps a user from rendering the example by surprise."""
    if value is None and Path(LOCAL_CONFIG).is_file():
        click.echo(f"using ./{LOCAL_CONFIG} (--config names another file)", err=True)
        return LOCAL_CONFIG
    return value


config_option = click.option(
    "--config", "config_path", metavar="FILE", callback=_local_config_first,
    help=f"Pipeline file (default: ./{LOCAL_CONFIG} if present, else the bundled example).")
env_option = click.option(
    "--env", metavar="NAME",
    help="Environment from the file's `environments` (default: the first).")
