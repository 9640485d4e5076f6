"""`mlops-cfn render`: the pipeline's templates and parameters file, or a drift check
(api.render_templates, api.outdated_templates)."""

import shlex
import sys
from pathlib import Path

import click

from . import EXIT_FINDINGS, cli
from .options import config_option, env_option


@cli.command()
@config_option
@env_option
@click.option("--all-envs", is_flag=True, help="Every environment, each into <out>/<env>.")
@click.option("--out", metavar="DIR",
              help="Output directory (default: templates/<env>; with --all-envs the parent).")
@click.option("--format", "fmt", type=click.Choice(["yaml", "json"]), default=None,
              help="Template format (default: yaml; with --check, the format already on disk).")
@click.option("--check", is_flag=True,
              help="Write nothing; exit 1 when the files on disk differ from a fresh render.")
def render(config_path, env, all_envs, out, fmt, check):
    """Render the pipeline's templates and parameters file."""
    from ..api import build_all, load_config, outdated_templates, render_templates
    from ..stages.network import endpoint_requirement, endpoints_to_provide

    if all_envs and env:
        raise click.UsageError("--env and --all-envs exclude each other")
    first = load_config(config_path, env)
    environments = list(first.base.environments) if all_envs else [first.environment]
    # --all-envs: one directory per environment under the parent; else the one directory.
    parent = Path(out or "templates")
    targets = [parent / name for name in environments] if all_envs else \
        [Path(out) if out else parent / first.environment]
    fmt = fmt or (_format_on_disk(targets) if check else None) or "yaml"
    built = build_all(first, environments, fmt=fmt)
    pipelines, where = (built, parent) if all_envs else (built[0], targets[0])

    if check:
        problems = outdated_templates(pipelines, where, prune=all_envs)
        for problem in problems:
            click.echo(problem, err=True)
        if problems:
            refresh = _refresh_command(config_path, env, all_envs, out, fmt)
            click.echo(f"templates are out of date: run `{refresh}`", err=True)
            sys.exit(EXIT_FINDINGS)
        click.echo(f"in sync: {', '.join(str(t) for t in targets)}")
        return
    rendered = render_templates(pipelines, where, prune=all_envs)
    for name, target in rendered.directories.items():
        click.echo(f"wrote {target}/ ({', '.join(rendered.files[name])})")
    for name in environments:
        provide = endpoints_to_provide(first.for_environment(name).config)
        if provide:
            # An existing VPC's endpoints are its owner's: say which ones the stages call.
            click.echo(f"note: environment {name!r} (network.mode existing): "
                       f"{endpoint_requirement(provide)}", err=True)
    for directory in rendered.removed:
        click.echo(f"removed {directory}/ (environment {directory.name!r} is no longer in the "
                   "config)")
    for directory in rendered.kept:
        click.echo(f"left {directory}/: environment {directory.name!r} is no longer in the "
                   "config, but the directory holds files mlops-cfn did not render", err=True)


def _format_on_disk(targets) -> str | None:
    """The format of the root template already in the first target that has one."""
    from ..render import ROOT_NAME

    for target in targets:
        for fmt in ("yaml", "json"):
            if (target / f"{ROOT_NAME}.{fmt}").is_file():
                return fmt
    return None


def _refresh_command(config_path, env, all_envs, out, fmt) -> str:
    """The render command that brings the checked files up to date: the same options."""
    words = ["mlops-cfn", "render"]
    if config_path:
        words += ["--config", shlex.quote(config_path)]
    if env:
        words += ["--env", env]
    if all_envs:
        words.append("--all-envs")
    if out:
        words += ["--out", shlex.quote(out)]
    if fmt != "yaml":
        words += ["--format", fmt]
    return " ".join(words)
