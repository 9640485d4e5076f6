"""`mlops-cfn init`: a commented starter pipeline.yaml and its JSON Schema for editors."""

import json
import re
from pathlib import Path

import click

from ..errors import UserError
from . import cli


@cli.command()
@click.argument("path", type=click.Path(path_type=Path), default=Path("pipeline.yaml"))
@click.option("--project", metavar="NAME",
              help="Project name (default: from the directory name).")
@click.option("--force", is_flag=True, help="Overwrite existing files.")
def init(path, project, force):
    """Write a starter PATH (default pipeline.yaml; a directory gets its own pipeline.yaml)
    with every setting at its default."""
    from ..config import PROJECT_PATTERN
    from ..config.schema import pipeline_schema
    from ..reference import SCHEMA_FILE, starter_config

    if path.is_dir():
        path = path / "pipeline.yaml"

    # The schema is derived from the model, so it is refreshed without asking; the pipeline
    # file is someone's work.
    schema_path = path.parent / SCHEMA_FILE
    if not force and path.exists():
        raise UserError(f"{path}: exists; pass --force to overwrite")
    name = project or _project_from(path.resolve().parent.name)
    if not re.match(PROJECT_PATTERN, name):
        raise UserError(f"--project: must match {PROJECT_PATTERN} (got {name!r})")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(starter_config(name))
        schema_path.write_text(json.dumps(pipeline_schema(), indent=2, sort_keys=True) + "\n")
    except OSError as error:
        raise UserError(f"{error.filename or path}: cannot write ({error.strerror})") from None
    click.echo(f"wrote {path} (project {name!r}) and {schema_path}; "
               f"next: mlops-cfn render --config {path}")


def _project_from(directory: str) -> str:
    """The directory name as a valid project name, or a neutral one."""
    name = re.sub(r"[^a-z0-9-]+", "-", directory.lower()).strip("-")[:32].strip("-")
    return name if len(name) >= 2 and name[0].isalpha() else "ml-pipeline"
