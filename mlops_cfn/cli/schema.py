"""`mlops-cfn schema`: the JSON Schema of pipeline.yaml."""

import click

from . import cli


@cli.command()
def schema():
    """Print the JSON Schema of pipeline.yaml (for editors and CI checks)."""
    import json

    from ..config import PipelineConfig

    click.echo(json.dumps(PipelineConfig.model_json_schema(), indent=2, sort_keys=True))
