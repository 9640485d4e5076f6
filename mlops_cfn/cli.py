"""The `mlops-cfn` command: a thin shell over the library.

Each verb parses its options, calls one library function and prints. `UserError` becomes its
message on stderr and exit status 2 in one place (`_Cli.invoke`); tracebacks only with --debug.
Heavy imports (cfn-lint, boto3) happen inside the verbs that need them, so `--help` and
`render` start fast.
"""

import sys
from pathlib import Path

import click

from . import __version__
from .errors import UserError

EXIT_FINDINGS = 1
EXIT_USAGE = 2


class _Cli(click.Group):
    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except UserError as error:
            if ctx.obj and ctx.obj.get("debug"):
                raise
            for problem in error.problems:
                click.echo(f"error: {problem}", err=True)
            ctx.exit(EXIT_USAGE)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            ctx.exit(130)


@click.group(cls=_Cli, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="mlops-cfn")
@click.option("--debug", is_flag=True, help="Show tracebacks for errors.")
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """Render, validate and ship CloudFormation for a complete MLOps pipeline."""
    ctx.obj = {"debug": debug}


_config_option = click.option(
    "--config", "config_path", metavar="FILE",
    help="Pipeline file (default: the bundled pipeline.yaml).")
_env_option = click.option(
    "--env", metavar="NAME", help="Environment from the file's `environments` (default: the first).")


@cli.command()
@_config_option
@_env_option
@click.option("--all-envs", is_flag=True, help="Every environment, each into <out>/<env>.")
@click.option("--out", metavar="DIR",
              help="Output directory (default: templates/<env>; with --all-envs the parent).")
@click.option("--format", "fmt", type=click.Choice(["yaml", "json"]), default="yaml",
              show_default=True)
@click.option("--check", is_flag=True,
              help="Write nothing; exit 1 when the files on disk differ from a fresh render.")
def render(config_path, env, all_envs, out, fmt, check):
    """Render the pipeline's templates and parameters file."""
    from . import config, pipeline
    from .render import drift, render_files, suffix, write_tree

    if all_envs and env:
        raise click.UsageError("--env and --all-envs exclude each other")
    first = config.load(config_path, env)
    environments = list(first.base.environments) if all_envs else [first.environment]
    outputs = {}
    for name in environments:
        loaded = first.for_environment(name)
        built = pipeline.build(loaded, file_suffix=suffix(fmt))
        if all_envs:
            target = Path(out or "templates") / name
        else:
            target = Path(out) if out else Path("templates") / name
        outputs[target] = render_files(built, fmt)

    if check:
        problems = [p for target, files in outputs.items() for p in drift(files, target)]
        for problem in problems:
            click.echo(problem, err=True)
        if problems:
            click.echo("templates are out of date: run `mlops-cfn render`", err=True)
            sys.exit(EXIT_FINDINGS)
        click.echo(f"in sync: {', '.join(str(t) for t in outputs)}")
        return
    for target, files in outputs.items():
        write_tree(files, target)
        click.echo(f"wrote {target}/ ({', '.join(files)})")


@cli.command()
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
@click.option("--no-security", is_flag=True, help="Skip the checkov security scan.")
def validate(paths, no_security):
    """Lint templates (cfn-lint), check CloudFormation quotas and scan with checkov.

    PATHS are template files or directories (default: templates/).
    """
    paths = list(paths) or [Path("templates")]
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        raise UserError(*(f"{p}: no such file or directory" for p in missing))
    from .validate import validate as run_validation

    report = run_validation(paths, security=not no_security)
    click.echo(report.render())
    sys.exit(0 if report.ok else EXIT_FINDINGS)


@cli.command()
def schema():
    """Print the JSON Schema of pipeline.yaml (for editors and CI checks)."""
    import json

    from .config import PipelineConfig

    click.echo(json.dumps(PipelineConfig.model_json_schema(), indent=2, sort_keys=True))


def main() -> None:
    cli(prog_name="mlops-cfn")
