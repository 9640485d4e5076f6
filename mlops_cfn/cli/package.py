"""`mlops-cfn package`: upload a rendered tree to S3 and write the packaged root
(api.package_templates)."""

from pathlib import Path

import click

from . import cli
from .options import aws_options, reports_failures


@cli.command()
@click.argument("path", required=False, type=click.Path(path_type=Path),
                default=Path("templates") / "dev")
@click.option("--bucket", required=True, metavar="NAME", help="S3 bucket to upload to.")
@click.option("--prefix", default="", metavar="PREFIX", help="Key prefix inside the bucket.")
@click.option("--stack-name", metavar="NAME",
              help="The stack this package will update: also write packaged-parameters.json, "
                   "parameters.json plus the stack's current model and image where the config "
                   "leaves them empty (the delivery pipeline's TemplateConfiguration).")
@click.option("--latest-approved-model", is_flag=True,
              help="With --stack-name: serve the latest approved package of the environment's "
                   "model registry group (the stack's current one while none is approved), "
                   "unless the config names a model.")
@click.option("--registry-account", metavar="ACCOUNT",
              help="With --latest-approved-model: the environment's registry group is in this "
                   "account (its group's policy admits the caller), not the caller's.")
@click.option("--registry-region", metavar="REGION",
              help="With --latest-approved-model: the environment's registry group is in this "
                   "region, not the caller's.")
@click.option("--stack-account", metavar="ACCOUNT",
              help="With --stack-name: the stack is in this account, read through its "
                   "bootstrap stack's reader role (MlopsCfnStackReader-<project>-<env>), which "
                   "trusts the home delivery pipeline's build.")
@click.option("--stack-region", metavar="REGION",
              help="With --stack-name: the stack is in this region, not the caller's.")
@click.option("--model-api-image", is_flag=True,
              help="With --stack-name: the API image is the model API shipped with this "
                   "mlops-cfn (its content tag), unless the config names a tag.")
@aws_options
@reports_failures
def package(path, bucket, prefix, stack_name, latest_approved_model, registry_account,
            registry_region, stack_account, stack_region, model_api_image, profile, region,
            endpoint_url):
    """Upload the templates and assets of PATH (default: templates/dev) to S3.

    Keys are content-addressed: unchanged files are not uploaded again. Writes the packaged root
    (nested TemplateURLs pointing at S3, the assets' bucket, prefix and key as defaults) beside
    the root.
    """
    from ..api import package_templates
    from ..deploy import aws_errors, connect
    from ..package import normal_prefix

    for flag, given in (("--latest-approved-model", latest_approved_model),
                        ("--model-api-image", model_api_image)):
        if given and not stack_name:
            raise click.UsageError(f"{flag} needs --stack-name: it writes the template "
                                   "configuration of that stack")
    for flag, given in (("--registry-account", registry_account),
                        ("--registry-region", registry_region)):
        if given and not latest_approved_model:
            raise click.UsageError(f"{flag} needs --latest-approved-model: it says where the "
                                   "environment's registry group is")
    for flag, given in (("--stack-account", stack_account), ("--stack-region", stack_region)):
        if given and not stack_name:
            raise click.UsageError(f"{flag} needs --stack-name: it says where that stack is")
    with aws_errors():
        aws = connect(profile, region, endpoint_url, require_region=stack_name is not None)
    packaged = package_templates(path, bucket, prefix=prefix, stack_name=stack_name,
                                 latest_approved_model=latest_approved_model,
                                 registry_account=registry_account,
                                 registry_region=registry_region,
                                 stack_account=stack_account, stack_region=stack_region,
                                 model_api_image=model_api_image, aws=aws)
    click.echo(f"uploaded {len(packaged.uploaded)}, unchanged {len(packaged.skipped)} "
               f"(s3://{bucket}/{normal_prefix(prefix)})")
    click.echo(f"wrote {packaged.root_path}")
    for note in packaged.notes:
        click.echo(note)
    if packaged.parameters_path is not None:
        click.echo(f"wrote {packaged.parameters_path}")
    click.echo(packaged.root_url)
