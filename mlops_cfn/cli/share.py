"""`mlops-cfn share`: share the deployed Service Catalog portfolio with organizational units.

CloudFormation's AWS::ServiceCatalog::PortfolioShare takes only an account, so the config's
`servicecatalog.share.organizational_units` are shared by this command, after the platform team
deployed the bundle's portfolio.yaml (servicecatalog.py, "Sharing").
"""

import click

from ..errors import UserError
from . import cli
from .options import aws_options, config_option, reports_failures


@cli.command()
@click.option("--portfolio-id", required=True, metavar="ID",
              help="The deployed portfolio (the PortfolioId output of portfolio.yaml's stack).")
@config_option
@aws_options
@reports_failures
def share(portfolio_id, config_path, profile, region, endpoint_url):
    """Share the portfolio with the config's organizational units (servicecatalog.share).

    Run it in the account that deployed portfolio.yaml: the management account or a delegated
    administrator for Service Catalog, with AWS Organizations access enabled. Units the portfolio
    is already shared with are left as they are; run again after adding one.
    """
    from .. import config
    from ..deploy import aws_errors, connect
    from ..servicecatalog import share_with_organization

    loaded = config.load(config_path)
    settings = loaded.base.servicecatalog.share
    if not settings.organizational_units:
        raise UserError(f"{loaded.source}: servicecatalog.share.organizational_units: lists no "
                        f"organizational unit to share with (accounts are shared by "
                        f"portfolio.yaml itself)")
    with aws_errors("sharing the portfolio"):
        aws = connect(profile, region, endpoint_url)
        result = share_with_organization(aws.client("servicecatalog"), portfolio_id,
                                         settings.organizational_units,
                                         settings.share_tag_options)
    for unit in result.existing:
        click.echo(f"{unit}: already shared")
    for unit in result.created:
        click.echo(f"{unit}: shared (Service Catalog completes the share asynchronously; "
                   f"`aws servicecatalog describe-portfolio-share-status` follows it)")
