"""`mlops-cfn deploy`: render, check region and account, validate, package, preview the change set,
guard data, execute: a shell over api.deploy_pipeline, which does all of it and prints nothing."""

import sys

import click

from . import EXIT_FINDINGS, cli
from .options import aws_options, config_option, env_option, reports_failures


def preview_options(function):
    """What `deploy` and `diff` share: which stack, from which config, through which bucket."""
    for option in reversed((
        click.option("--stack-name", metavar="NAME",
                     help="Root stack name (default: <project>-<env>)."),
        config_option,
        env_option,
        click.option("--parameter", "-p", "overrides", multiple=True, metavar="KEY=VALUE",
                     help="Override a root parameter's value (repeatable)."),
        click.option("--latest-approved-model", is_flag=True,
                     help="Serve the newest Approved package of the environment's model "
                          "registry group (sets ModelPackageArn)."),
        click.option("--bucket", metavar="NAME",
                     help="S3 bucket to package into (default: mlops-cfn-<account>-<region>, "
                          "which must exist)."),
        click.option("--prefix", default="", metavar="PREFIX", help="Key prefix in the bucket."),
        click.option("--no-validate", is_flag=True,
                     help="Skip cfn-lint, quota checks and the security scan."),
        click.option("--security/--no-security", default=None,
                     help="Run the checkov security scan (default: when checkov is found)."),
        aws_options,
    )):
        function = option(function)
    return function


def console():
    from rich.console import Console

    # Tables and event lines stay one per line when not on a terminal (CI logs, pipes).
    return Console(width=None if sys.stdout.isatty() else 200, highlight=False)


def run_preview(out, call, *, stack_name, config_path, env, overrides, latest_approved_model,
                bucket, prefix, no_validate, security, profile, region, endpoint_url, **more):
    """`call` (api.preview_deployment or api.deploy_pipeline) with the options as arguments,
    its lines printed as they happen; exits 1 when validation finds problems."""
    from ..api import ValidationFailed, load_config
    from ..deploy import aws_errors, connect, parse_overrides

    parameters = parse_overrides(overrides)
    loaded = load_config(config_path, env)
    with aws_errors():
        aws = connect(profile, region, endpoint_url)
    try:
        return call(loaded, stack_name=stack_name, parameters=parameters,
                    latest_approved_model=latest_approved_model, bucket=bucket, prefix=prefix,
                    validate=not no_validate, security=security, aws=aws,
                    log=lambda line: out.print(line, markup=False), **more)
    except ValidationFailed as failed:
        out.print(failed.report.render(), markup=False)
        out.print("validation failed: nothing deployed (fix the findings, or --no-validate)")
        sys.exit(EXIT_FINDINGS)


def show_preview(out, preview) -> None:
    """The root parameters that change, then every nested stack's changes as one table."""
    from ..changeset import changes_table

    name = preview.stack_name
    kind = "new stack" if preview.new_stack else "update"
    for parameter, (current, new) in preview.parameter_changes.items():
        out.print(f"parameter {parameter}: {current or '(unset)'} -> {new or '(empty)'}",
                  markup=False)
    if preview.changes:
        out.print(changes_table(preview.changes, f"{name} ({kind}): "
                                f"{len(preview.changes)} changes"))
    elif not preview.empty:
        # CloudFormation lists the nested stacks a parameter reaches; moto lists nothing.
        out.print(f"{name} ({kind}): parameter values change; no resource changes listed")
    unreported = [change.logical_id for change in preview.changes if change.unreported]
    if unreported:
        out.print(f"[yellow]warning:[/] what changes inside {', '.join(unreported)} was not "
                  "reported: it is not shown, and the data guard cannot check it")


@cli.command()
@preview_options
@click.option("--allow-replacement", is_flag=True,
              help="Execute even when a change replaces or removes a data store.")
@click.option("--yes", "-y", is_flag=True, help="Execute without asking for confirmation.")
@reports_failures
def deploy(allow_replacement, yes, **options):
    """Deploy the pipeline through a change set, following every nested stack's events."""
    from rich.text import Text

    from ..api import deploy_pipeline

    out = console()
    shown = []  # the preview, once shown: what comes after it is the execution

    def show(preview) -> None:
        show_preview(out, preview)
        shown.append(preview)

    def confirm(preview) -> bool:
        return _confirmed(f"Execute these changes on {preview.stack_name}?")

    try:
        done = run_preview(out, deploy_pipeline, **options,
                           allow_replacement=allow_replacement, on_preview=show,
                           confirm=None if yes else confirm, console=out)
    except KeyboardInterrupt:
        if shown:
            name = shown[0].stack_name
            out.print(f"stopped following {name}; CloudFormation goes on deploying it (see its "
                      f"events in the console, or `aws cloudformation describe-stack-events "
                      f"--stack-name {name}`)")
        raise
    name = done.preview.stack_name
    if done.result == "up to date":
        out.print(f"no changes: {name} is up to date")
        return
    if done.result == "refused":
        out.print(f"[bold red]refused:[/] {len(done.preview.refused)} change(s) would replace "
                  f"or remove data (marked above); nothing deployed. Rerun with "
                  f"--allow-replacement if that is intended.")
        sys.exit(EXIT_FINDINGS)
    if done.result == "declined":
        out.print("cancelled: nothing deployed")
        sys.exit(EXIT_FINDINGS)
    if not done.ok:
        out.print(Text(done.failure, style="bold red"))
        sys.exit(EXIT_FINDINGS)
    protection = "; termination protection on" if done.preview.protected else ""
    out.print(f"[green]{name}: {done.status}[/]{protection}")


def _confirmed(question: str) -> bool:
    """The user's yes; no answer at all (input closed, Ctrl-C at the prompt) is a no, so the
    change set and a new stack's empty shell are cleaned up as for one."""
    try:
        return click.confirm(question, default=False)
    except click.Abort:
        click.echo("", err=True)
        return False
