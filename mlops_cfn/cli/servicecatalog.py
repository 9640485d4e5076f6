"""`mlops-cfn servicecatalog`: package the pipeline, write the platform team's hand-off bundle."""

from pathlib import Path

import click

from ..errors import UserError
from . import cli
from .options import aws_options, config_option, env_option, reports_failures
# The AWS options and failure reporting every verb that talks to AWS shares.

DEFAULT_OUT = "servicecatalog"


def _tag_option(ctx, param, values):
    pairs = []
    for value in values:
        key, sep, text = value.partition("=")
        if not sep or not key:
            raise UserError(f"--tag-option {value}: expected KEY=VALUE")
        pairs.append((key, text))
    return tuple(pairs)


@cli.command()
@click.option("--bucket", required=True, metavar="NAME",
              help="S3 bucket the templates and assets are uploaded to (it must exist).")
@click.option("--prefix", default="", metavar="P", help="Key prefix in the bucket.")
@click.option("--out", default=DEFAULT_OUT, show_default=True, metavar="DIR",
              help="Directory of the hand-off bundle.")
@config_option
@env_option
@click.option("--sagemaker-projects", is_flag=True,
              help="Offer the product as a SageMaker Projects template (Studio-visible).")
@click.option("--principal", "principals", multiple=True, metavar="ARN",
              help="IAM role, group or user allowed to launch: an ARN or role/NAME, group/NAME, "
                   "user/NAME (NAME may hold * or ?). Repeatable.")
@click.option("--tag-option", "tag_options", multiple=True, metavar="KEY=VALUE",
              callback=_tag_option,
              help="Tag end users may put on the product; replaces the default set (the "
                   "config's tags, project and environments). Repeatable.")
@click.option("--existing-tag-option", "existing_tag_options", multiple=True, metavar="ID",
              help="A TagOption already in the account (tag-..., from `aws servicecatalog "
                   "list-tag-options`) to associate instead of creating one; TagOptions are "
                   "unique per account, so a second portfolio re-uses the first's. Given, the "
                   "default set is not created (name the ones to create with --tag-option). "
                   "Repeatable.")
@click.option("--portfolio-name", metavar="TEXT",
              help="Portfolio display name (default: '<project> MLOps pipeline').")
@click.option("--provider", metavar="TEXT", help="Portfolio provider (default: the project).")
@click.option("--product-name", metavar="TEXT", help="Product name (default: the project).")
@click.option("--owner", metavar="TEXT", help="Product owner (default: the project).")
@click.option("--support-email", metavar="EMAIL", help="Support contact shown with the product.")
@click.option("--support-url", metavar="URL", help="Support page shown with the product.")
@click.option("--support-description", metavar="TEXT", help="How to get support.")
@aws_options
@reports_failures
def servicecatalog(bucket, prefix, out, config_path, env, sagemaker_projects, principals,
                   tag_options, existing_tag_options, portfolio_name, provider, product_name,
                   owner, support_email,
                   support_url, support_description, profile, region, endpoint_url):
    """Package the pipeline and write a Service Catalog portfolio and hand-off bundle.

    Every environment of the config becomes one product (they must render the same
    templates; --env hands off one environment). The product has no cicd stage: Service
    Catalog names the stacks it provisions, which a delivery pipeline cannot deploy.
    The config's `servicecatalog` section shares the portfolio with accounts and
    organizational units (launch-role.yaml for the recipients) and adds stack-set.yaml, a
    service-managed StackSet rolling the pipeline out to organizational units.
    """
    from .. import config
    from ..deploy import aws_errors, connect
    from ..package import require_bucket_in
    from ..servicecatalog import (LAUNCH_ROLE_FILE, STACK_SET_FILE, default_catalog, handoff,
                                  write_bundle)

    loaded = config.load(config_path, env)
    environments = [loaded.environment] if env else list(loaded.merged)
    catalog = default_catalog(
        loaded, environments, sagemaker_projects=sagemaker_projects, principals=principals,
        tag_options=tag_options, existing_tag_options=existing_tag_options,
        portfolio_name=portfolio_name, provider=provider,
        product_name=product_name, owner=owner, support_email=support_email,
        support_url=support_url, support_description=support_description)
    with aws_errors():
        aws = connect(profile, region, endpoint_url, require_region=False)
        if aws.region:
            require_bucket_in(aws.client("s3"), bucket, aws.region,
                              "the product launches its stacks in")
        result = handoff(loaded, bucket, catalog, environments=environments, prefix=prefix,
                         s3=aws.client("s3"))
    target = Path(out)
    write_bundle(result.files, target)
    for note in result.notes:
        click.echo(f"note: {note}", err=True)
    click.echo(f"product version {result.version}: {result.artifact_url} "
               f"({len(result.uploaded)} uploaded, {len(result.skipped)} already in S3)")
    extra = "".join(f", {name}" for name in (LAUNCH_ROLE_FILE, STACK_SET_FILE)
                    if name in result.files)
    click.echo(f"wrote {target}/ (portfolio.yaml{extra}, README.md, templates and parameters of "
               f"{', '.join(environments)})")
    if not catalog.principals:
        click.echo("note: no --principal given: nobody can launch the product until the "
                   "platform team associates principals with the portfolio", err=True)

