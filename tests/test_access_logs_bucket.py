"""The access-logs bucket as AWS's log deliveries see it: who writes there, what encryption they
accept, and whether the bucket policy lets each of them in, in every region.

The bucket is the one bucket not encrypted with the data key, an AWS Control Tower exception
(CT.S3.PR.10) whose recorded reason must name the deliveries that actually write there: the
rendered templates decide that, not a comment."""

from pathlib import Path

import pytest

from mlops_cfn import config, pipeline
from mlops_cfn.rules import failed_assertions, pseudo_parameters

from .template_eval import ACCOUNT, Resolver

REPO = Path(__file__).resolve().parents[1]
CONFIGS = [None, *sorted((REPO / "examples").glob("*.yaml"))]

# The writers a rendered template can point at the bucket, by the property that does it, and the
# AWS page that states what encryption the destination may have.
WRITERS = {
    "AWS::S3::Bucket": "Enabling Amazon S3 server access logging",
    "AWS::ElasticLoadBalancingV2::LoadBalancer":
        "Enable access logs for your Application Load Balancer",
    "AWS::Redshift::Cluster": "Database audit logging",
}


def pipelines():
    return [pipeline.build(config.load(path)) for path in CONFIGS]


def mentions_access_logs_bucket(node) -> bool:
    if isinstance(node, dict):
        if node in ({"Ref": "AccessLogsBucket"}, {"Ref": "AccessLogsBucketName"}):
            return True
        return any(mentions_access_logs_bucket(value) for value in node.values())
    if isinstance(node, list):
        return any(mentions_access_logs_bucket(item) for item in node)
    return False


def writers(pipe) -> set[str]:
    """The resource types whose log delivery property names the access-logs bucket."""
    found = set()
    for stage in pipe.stages:
        for resource in stage.template.to_dict()["Resources"].values():
            props = resource.get("Properties") or {}
            delivery = {
                "AWS::S3::Bucket": props.get("LoggingConfiguration"),
                "AWS::ElasticLoadBalancingV2::LoadBalancer": props.get("LoadBalancerAttributes"),
                "AWS::Redshift::Cluster": props.get("LoggingProperties"),
            }.get(resource["Type"])
            if delivery is not None and mentions_access_logs_bucket(delivery):
                found.add(resource["Type"])
    return found


def sse_s3_reason(pipe) -> str:
    [storage] = [s for s in pipe.stages if s.name == "storage"]
    bucket = storage.template.to_dict()["Resources"]["AccessLogsBucket"]
    [reason] = [e["reason"] for e in bucket["Metadata"]["controltower"]["exceptions"]
                if e["id"] == "CT.S3.PR.10"]
    return reason


def test_the_sse_s3_exception_names_every_delivery_that_writes_to_the_bucket_and_no_other():
    # The storage stage's reason is the same whatever the config; over the bundled config and
    # the examples, every kind of writer occurs somewhere.
    built = pipelines()
    [reason] = {sse_s3_reason(pipe) for pipe in built}
    seen = set().union(*(writers(pipe) for pipe in built))
    assert seen == {"AWS::S3::Bucket", "AWS::ElasticLoadBalancingV2::LoadBalancer"}
    for writer, page in WRITERS.items():
        assert (page in reason) == (writer in seen), (writer, reason)


def test_the_sse_s3_exception_does_not_rest_on_redshift_which_logs_to_cloudwatch():
    assert "Redshift" not in sse_s3_reason(pipeline.build(config.load(None)))


# --- who may deliver load balancer logs, region by region ----------------------------------------

# AWS: "Enable access logs for your Application Load Balancer" (Step 2, the ELB account table for
# regions available before August 2022; the service principal for those since), the GovCloud and
# China editions of the page for their partitions.
DOCUMENTED = {
    "us-east-1": {"AWS": "arn:aws:iam::127311923021:root"},
    "eu-west-1": {"AWS": "arn:aws:iam::156460612806:root"},
    "ap-southeast-3": {"AWS": "arn:aws:iam::589379963580:root"},
    "af-south-1": {"AWS": "arn:aws:iam::098369216593:root"},
    "us-gov-west-1": {"AWS": "arn:aws-us-gov:iam::048591011584:root"},
    "cn-north-1": {"AWS": "arn:aws-cn:iam::638102146993:root"},
    "il-central-1": {"Service": "logdelivery.elasticloadbalancing.amazonaws.com"},
    "ap-southeast-5": {"Service": "logdelivery.elasticloadbalancing.amazonaws.com"},
    "mx-central-1": {"Service": "logdelivery.elasticloadbalancing.amazonaws.com"},
}


def storage_template() -> dict:
    [storage] = [s for s in pipeline.build(config.load(None)).stages if s.name == "storage"]
    return storage.template.to_dict()


def load_balancer_delivery(template: dict, region: str) -> dict:
    """The bucket policy's load balancer statement as CloudFormation creates it in `region`."""
    resolver = Resolver(template, {"EnvironmentName": "dev"}, region=region)
    document = resolver.value(
        template["Resources"]["AccessLogsBucketPolicy"]["Properties"]["PolicyDocument"])
    [statement] = [s for s in document["Statement"]
                   if s.get("Sid") == "LoadBalancerAccessLogDelivery"]
    return statement


@pytest.mark.parametrize("region", sorted(DOCUMENTED))
def test_load_balancer_logs_are_let_in_from_the_principal_aws_documents_for_the_region(region):
    template = storage_template()
    assert not failed_assertions(template, pseudo_parameters(region))
    statement = load_balancer_delivery(template, region)
    assert statement["Principal"] == DOCUMENTED[region]
    assert statement["Action"] == ["s3:PutObject"]
    [resource] = statement["Resource"]
    assert ":s3:::mlops-demo-dev-logs-" in resource
    assert resource.endswith(f"/alb/AWSLogs/{ACCOUNT}/*")
    if "Service" in statement["Principal"]:
        # The confused-deputy guard of a service principal.
        assert statement["Condition"] == {"StringEquals": {"aws:SourceAccount": ACCOUNT}}
    else:
        # The page's policy for an ELB account carries no condition; one the account's writes
        # do not carry would refuse them.
        assert "Condition" not in statement


def test_every_region_cfn_lint_knows_has_a_load_balancer_log_principal_or_is_refused():
    from cfnlint.helpers import REGIONS

    template = storage_template()
    refused = set()
    for region in sorted(REGIONS):
        if failed_assertions(template, pseudo_parameters(region)):
            refused.add(region)
            continue
        principal = load_balancer_delivery(template, region)["Principal"]
        assert list(principal) in (["AWS"], ["Service"]), region
    # Refused: the isolated and sovereign partitions, which the page does not cover.
    assert refused and all("-iso" in r or r.startswith("eusc-") for r in refused), refused


def test_the_load_balancer_table_holds_twelve_digit_accounts_of_known_regions_once():
    from cfnlint.helpers import REGIONS

    from mlops_cfn.stages import load_balancer_logs as table

    assert set(table.REGIONS) <= set(REGIONS)
    assert not set(table.ELB_ACCOUNTS) & set(table.SERVICE_PRINCIPAL_REGIONS)
    assert all(len(a) == 12 and a.isdigit() for a in table.ELB_ACCOUNTS.values())
