"""`mlops-cfn schema`: the JSON Schema of pipeline.yaml."""

import click

from . import cli


@cli.command()
def schema():
    """Print the JSON Schema of pipeline.yaml (for editors and CI checks).

    It accepts what the tool accepts, but for rules across several fields, which only the
    tool checks (config/schema.py names them)."""
    import json

    from ..config.schema import pipeline_schema

    click.echo(json.dumps(pipeline_schema(), indent=2, sort_keys=True))
