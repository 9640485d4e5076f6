"""`mlops-cfn graph`: the pipeline's stacks, wires and main resources as a diagram."""

import click

from . import cli
from .options import config_option, env_option


@cli.command()
@config_option
@env_option
@click.option("--format", "fmt", type=click.Choice(["mermaid", "dot"]), default="mermaid",
              show_default=True, help="Mermaid (renders on GitHub) or Graphviz dot.")
def graph(config_path, env, fmt):
    """Print a diagram of the nested stacks, every wire between them, and their main resources."""
    from ..api import build, diagram, load_config

    click.echo(diagram(build(load_config(config_path, env)), fmt), nl=False)
