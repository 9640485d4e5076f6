"""`mlops-cfn deploy`: render, check region and account, validate, package, preview the change set,
guard data, execute."""

import sys
import tempfile
from pathlib import Path

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


def prepare_preview(out, *, stack_name, config_path, env, overrides, latest_approved_model,
                    bucket, prefix, no_validate, security, profile, region, endpoint_url):
    """Render, validate, package and create the change set; print its table. Returns
    (cloudformation client, Preview). Exits 1 when validation finds problems."""
    from .. import config, pipeline
    from ..changeset import changes_table
    from ..deploy import (MODEL_PACKAGE_PARAMETER, Request, aws_errors, connect,
                          default_bucket, latest_approved, live_values, model_package_group,
                          override_problems, parse_overrides, preview, stack_parameters)
    from ..errors import UserError
    from ..package import normal_prefix, package, require_bucket_in
    from ..render import render_files, write_tree
    from ..settings import left_to_run_time
    from ..stages.cicd import stack_name as delivered_stack_name

    loaded = config.load(config_path, env)
    built = pipeline.build(loaded)
    for override in built.overrides:
        # The escape hatch's edits, said before the change set that carries them.
        out.print(f"override: {override.describe()} ({loaded.source})", markup=False)
    overrides = parse_overrides(overrides)
    name = stack_name or delivered_stack_name(loaded.config.project, loaded.environment)
    if loaded.config.stages.cicd.enabled and name != delivered_stack_name(
            loaded.config.project, loaded.environment):
        # The pipeline deploys every environment under that name and may manage only roles
        # named after it: another name would give the environment a second, competing stack.
        raise UserError(f"--stack-name {name}: with stages.cicd enabled the pipeline deploys "
                        f"this environment as stack "
                        f"{delivered_stack_name(loaded.config.project, loaded.environment)}; "
                        "leave --stack-name out")
    with aws_errors():
        aws = connect(profile, region, endpoint_url)
        if latest_approved_model:
            group = model_package_group(loaded.config.project, loaded.environment)
            overrides[MODEL_PACKAGE_PARAMETER] = latest_approved(aws, group)
            out.print(f"serving {overrides[MODEL_PACKAGE_PARAMETER]} (approved last in "
                      f"{group})")
        values = stack_parameters(list(built.root.parameters), built.parameters, overrides)
        if problems := override_problems(built.root.parameters, overrides):
            raise UserError(*problems)
        cfn = aws.client("cloudformation")
        # The model and image the config leaves empty are what serves now: kept, not reset.
        run_time = left_to_run_time(built.parameters) - set(overrides)
        kept = live_values(cfn, name, run_time)
        values = {k: v for k, v in values.items() if k not in run_time} | kept
        for parameter, value in kept.items():
            out.print(f"keeping {parameter}={value or '(empty)'} (what {name} has now)",
                      markup=False)
        _preflight(out, aws, built, values)
        with tempfile.TemporaryDirectory(prefix="mlops-cfn-deploy-") as scratch:
            tree = Path(scratch) / loaded.environment
            write_tree(render_files(built), tree)
            if not no_validate:
                _validate(out, tree, security)
            s3 = aws.client("s3")
            bucket = bucket or default_bucket(aws)
            if any(stage.assets for stage in built.stages):
                require_bucket_in(s3, bucket, aws.region)
            packaged = package(tree, bucket, prefix=prefix, s3=s3,
                               kms_for=aws.regional_client("kms"))
        out.print(f"packaged into s3://{bucket}/{normal_prefix(prefix)}: "
                  f"{len(packaged.uploaded)} uploaded, {len(packaged.skipped)} unchanged")
        request = Request(stack_name=name, template_url=packaged.root_url, parameters=values,
                          tags=built.tags, protected=built.protected,
                          description=f"mlops-cfn: {loaded.config.project} "
                                      f"{loaded.environment}")
        result = preview(cfn, request)
    kind = "new stack" if result.change_set_type == "CREATE" else "update"
    for parameter, (current, new) in result.parameter_changes.items():
        out.print(f"parameter {parameter}: {current or '(unset)'} -> {new or '(empty)'}",
                  markup=False)
    if result.changes:
        out.print(changes_table(result.changes, f"{name} ({kind}): "
                                f"{len(result.changes)} changes"))
    elif not result.empty:
        # CloudFormation lists the nested stacks a parameter reaches; moto lists nothing.
        out.print(f"{name} ({kind}): parameter values change; no resource changes listed")
    unreported = [change.logical_id for change in result.changes if change.unreported]
    if unreported:
        out.print(f"[yellow]warning:[/] what changes inside {', '.join(unreported)} was not "
                  "reported: it is not shown, and the data guard cannot check it")
    return cfn, result


def _preflight(out, aws, built, values: dict[str, str]) -> None:
    """What the account and region would refuse (preflight.py), said before any upload."""
    from ..errors import UserError
    from ..preflight import lambda_problems, region_problems, root_values

    root = built.root.to_dict()
    problems = region_problems(root, values, aws.region)
    found, notes = lambda_problems(aws.client("lambda"), built.stages,
                                   root_values(root, values, aws.region), aws.region)
    for note in notes:
        out.print(f"note: {note}", markup=False)
    if problems or found:
        raise UserError(*problems, *found)


def _validate(out, tree: Path, security):
    from ..errors import UserError
    from ..validate import find_checkov, validate

    if security is None:
        try:
            find_checkov()
            security = True
        except UserError:
            out.print("checkov not found: security scan skipped (--no-security silences this)")
            security = False
    report = validate([tree], security=security)
    if not report.ok:
        out.print(report.render(), markup=False)
        out.print("validation failed: nothing deployed (fix the findings, or --no-validate)")
        sys.exit(EXIT_FINDINGS)
    out.print(report.summary(), markup=False)


@cli.command()
@preview_options
@click.option("--allow-replacement", is_flag=True,
              help="Execute even when a change replaces or removes a data store.")
@click.option("--yes", "-y", is_flag=True, help="Execute without asking for confirmation.")
@reports_failures
def deploy(stack_name, config_path, env, overrides, latest_approved_model, bucket, prefix,
           no_validate, security, profile, region, endpoint_url, allow_replacement, yes):
    """Deploy the pipeline through a change set, following every nested stack's events."""
    from rich.text import Text

    from ..deploy import aws_errors, discard, execute, failure_message

    out = console()
    cfn, result = prepare_preview(
        out, stack_name=stack_name, config_path=config_path, env=env, overrides=overrides,
        latest_approved_model=latest_approved_model,
        bucket=bucket, prefix=prefix, no_validate=no_validate, security=security,
        profile=profile, region=region, endpoint_url=endpoint_url)
    name = result.request.stack_name
    if result.empty:
        out.print(f"no changes: {name} is up to date")
        return
    with aws_errors():
        if result.refused and not allow_replacement:
            discard(cfn, result)
            out.print(f"[bold red]refused:[/] {len(result.refused)} change(s) would replace or "
                      f"remove data (marked above); nothing deployed. Rerun with "
                      f"--allow-replacement if that is intended.")
            sys.exit(EXIT_FINDINGS)
        if not yes and not _confirmed(f"Execute these changes on {name}?"):
            discard(cfn, result)
            out.print("cancelled: nothing deployed")
            sys.exit(EXIT_FINDINGS)
        try:
            outcome = execute(cfn, result, out)
        except KeyboardInterrupt:
            out.print(f"stopped following {name}; CloudFormation goes on deploying it (see its "
                      f"events in the console, or `aws cloudformation describe-stack-events "
                      f"--stack-name {name}`)")
            raise
    if not outcome.ok:
        out.print(Text(failure_message(outcome), style="bold red"))
        sys.exit(EXIT_FINDINGS)
    protection = "; termination protection on" if result.request.protected else ""
    out.print(f"[green]{name}: {outcome.status}[/]{protection}")


def _confirmed(question: str) -> bool:
    """The user's yes; no answer at all (input closed, Ctrl-C at the prompt) is a no, so the
    change set and a new stack's empty shell are cleaned up as for one."""
    try:
        return click.confirm(question, default=False)
    except click.Abort:
        click.echo("", err=True)
        return False
