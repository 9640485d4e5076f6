"""Options several verbs share."""

import click

config_option = click.option(
    "--config", "config_path", metavar="FILE",
    help="Pipeline file (default: the bundled pipeline.yaml).")
env_option = click.option(
    "--env", metavar="NAME", help="Environment from the file's `environments` (default: the first).")
