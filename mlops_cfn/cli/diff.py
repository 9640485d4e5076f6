"""`mlops-cfn diff`: the change set `deploy` would execute, shown and deleted again."""

from . import cli
from .deploy import console, prepare_preview, preview_options
from .options import reports_failures


@cli.command()
@preview_options
@reports_failures
def diff(stack_name, config_path, env, overrides, latest_approved_model, bucket, prefix,
         no_validate, security, profile, region, endpoint_url):
    """Show what deploying would change (every nested stack), without executing anything."""
    from ..deploy import aws_errors, discard

    out = console()
    cfn, result = prepare_preview(
        out, stack_name=stack_name, config_path=config_path, env=env, overrides=overrides,
        latest_approved_model=latest_approved_model,
        bucket=bucket, prefix=prefix, no_validate=no_validate, security=security,
        profile=profile, region=region, endpoint_url=endpoint_url)
    if result.empty:
        out.print(f"no changes: {result.request.stack_name} is up to date")
        return
    with aws_errors("deleting the change set"):
        discard(cfn, result)
    if result.refused:
        out.print(f"[bold red]{len(result.refused)} change(s) would replace or remove data[/] "
                  f"(marked above): deploy refuses them without --allow-replacement")
    out.print("nothing executed; the change set was deleted")
