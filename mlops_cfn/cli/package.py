"""`mlops-cfn package`: upload a rendered tree to S3 and write the packaged root."""

import sys
from pathlib import Path

import click

from . import EXIT_FINDINGS, cli


def reports_failures(function):
    """A failed AWS operation (DeployFailed) becomes its message and exit status 1."""
    import functools

    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        from ..deploy import DeployFailed

        try:
            return function(*args, **kwargs)
        except DeployFailed as failure:
            for problem in failure.problems:
                click.echo(f"error: {problem}", err=True)
            sys.exit(EXIT_FINDINGS)

    return wrapper


def aws_options(function):
    """--profile, --region and --endpoint-url, shared by the verbs that talk to AWS."""
    for option in reversed((
        click.option("--profile", metavar="NAME", help="AWS profile (default: boto3's chain)."),
        click.option("--region", metavar="NAME", help="AWS region (default: boto3's chain)."),
        click.option("--endpoint-url", metavar="URL",
                     help="Send AWS calls to this endpoint, e.g. a local moto server "
                          "(default: AWS_ENDPOINT_URL, else AWS)."),
    )):
        function = option(function)
    return function


@cli.command()
@click.argument("path", required=False, type=click.Path(path_type=Path),
                default=Path("templates") / "dev")
@click.option("--bucket", required=True, metavar="NAME", help="S3 bucket to upload to.")
@click.option("--prefix", default="", metavar="PREFIX", help="Key prefix inside the bucket.")
@aws_options
@reports_failures
def package(path, bucket, prefix, profile, region, endpoint_url):
    """Upload the templates and assets of PATH (default: templates/dev) to S3.

    Keys are content-addressed: unchanged files are not uploaded again. Writes the packaged root
    (nested TemplateURLs pointing at S3, AssetsBucket defaulting to the bucket) beside the root.
    """
    from ..deploy import aws_errors, connect
    from ..package import find_root, package as upload

    find_root(path)  # a wrong PATH fails before any AWS call
    with aws_errors():
        aws = connect(profile, region, endpoint_url, require_region=False)
        packaged = upload(path, bucket, prefix=prefix, s3=aws.client("s3"))
    click.echo(f"uploaded {len(packaged.uploaded)}, unchanged {len(packaged.skipped)} "
               f"(s3://{bucket}/{prefix})")
    click.echo(f"wrote {packaged.root_path}")
    click.echo(packaged.root_url)
