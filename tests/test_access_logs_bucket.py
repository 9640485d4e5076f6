"""The access-logs bucket as AWS's log deliveries see it: who writes there, what encryption they
accept, and whether the bucket policy lets each of them in, in every region.

The bucket is the one bucket not encrypted with the data key, an AWS Control Tower exception
(CT.S3.PR.10) whose recorded reason must name the deliveries that actually write there: the
rendered templates decide that, not a comment."""

from pathlib import Path

from mlops_cfn import config, pipeline

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
