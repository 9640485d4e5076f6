"""`mlops-cfn bootstrap`: the stack that lets the home delivery pipeline deploy an environment in
another account or region, rendered, previewed (--diff) or deployed (--deploy): a shell over
api.bootstrap_stack, render_bootstrap, preview_bootstrap and deploy_bootstrap."""

import sys

import click

from . import EXIT_FINDINGS, cli
from .options import aws_options, config_option, reports_failures


@cli.command()
@config_option
@click.option("--env", metavar="NAME",
              help="The environment in another account or region to prepare.")
@click.option("--region-support", metavar="REGION",
              help="Instead of an environment: the home account's artifact store in REGION, "
                   "where environments deploy from another region (with the home account's "
                   "credentials; --artifact-key-arn is the home DeliveryKey's ARN).")
@click.option("--out", metavar="DIR",
              help="Where to write root.yaml and parameters.json (default: bootstrap/<env>).")
@click.option("--pipeline-role-arn", metavar="ARN",
              help="The home delivery pipeline's role (the only principal that may assume the "
                   "delivery role).")
@click.option("--artifact-bucket", metavar="NAME",
              help="The artifact bucket of the environment's region: the home delivery "
                   "pipeline's, or the region support stack's in another region.")
@click.option("--artifact-key-arn", metavar="ARN",
              help="That bucket's key, which encrypts the artifacts.")
@click.option("--deploy", "deploy_it", is_flag=True,
              help="Deploy the stack with credentials of the environment's account.")
@click.option("--diff", "diff_it", is_flag=True,
              help="Show what deploying would change, execute nothing.")
@click.option("--yes", "-y", is_flag=True, help="Execute without asking for confirmation.")
@click.option("--no-validate", is_flag=True,
              help="Skip cfn-lint, quota checks and the security scan before deploying.")
@click.option("--security/--no-security", default=None,
              help="Run the checkov security scan (default: when checkov is found).")
@aws_options
@reports_failures
def bootstrap(config_path, env, region_support, out, pipeline_role_arn, artifact_bucket,
              artifact_key_arn, deploy_it, diff_it, yes, no_validate, security, profile, region,
              endpoint_url):
    """Prepare an environment's own account and region for the delivery pipeline: the role the
    pipeline assumes there and the role CloudFormation deploys it with. With --region-support,
    the home account's artifact store in another region where environments deploy."""
    from ..api import bootstrap_stack, load_config, render_bootstrap
    from ..bootstrap import (ARTIFACT_BUCKET, ARTIFACT_KEY_ARN, PIPELINE_ROLE_ARN,
                             PRIMARY_KEY_ARN)

    if deploy_it and diff_it:
        raise click.UsageError("--deploy and --diff: choose one")
    if (env is None) == (region_support is None):
        raise click.UsageError("give --env (an environment in another account or region) or "
                               "--region-support (a region), one of the two")
    if region_support is not None:
        if pipeline_role_arn or artifact_bucket:
            raise click.UsageError("--region-support takes only --artifact-key-arn (the home "
                                   "DeliveryKey's ARN), not --pipeline-role-arn or "
                                   "--artifact-bucket")
        values = {PRIMARY_KEY_ARN: artifact_key_arn} if artifact_key_arn else {}
    else:
        values = {name: value for name, value in ((PIPELINE_ROLE_ARN, pipeline_role_arn),
                                                  (ARTIFACT_BUCKET, artifact_bucket),
                                                  (ARTIFACT_KEY_ARN, artifact_key_arn))
                  if value is not None}
    loaded = load_config(config_path, env)
    stack = bootstrap_stack(loaded, values=values, region_support=region_support)
    directory = render_bootstrap(stack, out or (f"bootstrap/region-{region_support}"
                                                if region_support else f"bootstrap/{env}"))
    where = " and ".join(part for part in (
        f"account {stack.account}" if stack.account else "",
        f"region {stack.region}" if stack.region else "") if part)
    click.echo(f"rendered {directory}/ (stack {stack.stack_name}, for {where})")
    if deploy_it or diff_it:
        _to_aws(loaded, values, deploy_it, yes, no_validate, security, profile,
                region or region_support or loaded.config.region, endpoint_url,
                region_support)


def _to_aws(loaded, values, deploy_it, yes, no_validate, security, profile, region,
            endpoint_url, region_support=None) -> None:
    from ..api import ValidationFailed, deploy_bootstrap, preview_bootstrap
    from ..deploy import aws_errors, connect
    from .deploy import _confirmed, console, show_preview

    out = console()
    with aws_errors():
        aws = connect(profile, region, endpoint_url)
    common = dict(values=values, validate=not no_validate, security=security, aws=aws,
                  log=lambda line: out.print(line, markup=False), region_support=region_support)
    try:
        if not deploy_it:
            preview = preview_bootstrap(loaded, **common)
            show_preview(out, preview)
            out.print(f"no changes: {preview.stack_name} is up to date" if preview.empty
                      else "nothing executed; the change set was deleted")
            return
        done = deploy_bootstrap(
            loaded, **common, on_preview=lambda preview: show_preview(out, preview),
            confirm=None if yes else (lambda preview: _confirmed(
                f"Execute these changes on {preview.stack_name}?")),
            console=out)
    except ValidationFailed as failed:
        out.print(failed.report.render(), markup=False)
        out.print("validation failed: nothing deployed (fix the findings, or --no-validate)")
        sys.exit(EXIT_FINDINGS)
    name = done.preview.stack_name
    if done.result == "up to date":
        out.print(f"no changes: {name} is up to date")
    elif done.result != "executed":
        out.print("cancelled: nothing deployed")
        sys.exit(EXIT_FINDINGS)
    elif not done.ok:
        out.print(done.failure, markup=False)
        sys.exit(EXIT_FINDINGS)
    else:
        out.print(f"[green]{name}: {done.status}[/]")
