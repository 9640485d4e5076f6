"""Security defaults, checked across every template the bundled config and the examples render.

Independent of the per-stage tests: whatever a stage adds, these rules hold for the whole
output. They read the built templates as data. The rules a user's own templates are held to as
well (customer-managed keys on data stores, no wildcard actions, source conditions in service
trust policies, retained data stores, no unasked public subnet) are cfn-lint rules in
mlops_cfn/lint_rules, tested on their fixtures in test_lint_rules.py; here every template must
pass them, and what is particular to this project's templates (which key, which resource may be
`*`) is checked beside.
"""

from pathlib import Path

import pytest

from mlops_cfn import boundary, config, permissions, pipeline

from .lint_pack import findings

REPO = Path(__file__).resolve().parents[1]
CONFIGS = [None, *sorted((REPO / "examples").glob("*.yaml"))]

# Actions for which AWS supports no resource-level permission, so `*` is the only resource
# (each use is commented in the stage that writes it).
ACTIONS_WITHOUT_RESOURCE_SCOPE = {
    "ec2:DescribeNetworkInterfaces", "ec2:DescribeSubnets", "ec2:DescribeVpcs",
    "ec2:DescribeSecurityGroups", "xray:PutTraceSegments", "xray:PutTelemetryRecords",
    # Glue checks a connection's routes and S3 endpoint with these (etl stage); IAM's service
    # reference lists no resource type for either.
    "ec2:DescribeRouteTables", "ec2:DescribeVpcEndpoints",
    # No resource type either; the etl stage limits it by the cloudwatch:namespace condition.
    "cloudwatch:PutMetricData",
    # SageMaker checks a VPC's DHCP options before placing a job there (monitoring stage's
    # Model Monitor runs); the action has no resource-level permission.
    "ec2:DescribeDhcpOptions",
    # An ECR registry token is for the whole registry (serving stage: the API tasks and the
    # SageMaker model pull images); the action has no resource type.
    "ecr:GetAuthorizationToken",
    # Vended log delivery, which Step Functions sets up with the state machine's role (serving
    # stage's batch transform); IAM lists no resource type for these.
    "logs:CreateLogDelivery", "logs:GetLogDelivery", "logs:UpdateLogDelivery",
    "logs:DeleteLogDelivery", "logs:ListLogDeliveries", "logs:PutResourcePolicy",
    "logs:DescribeResourcePolicies", "logs:DescribeLogGroups",
    # X-Ray sampling, beside the trace writes above (Step Functions tracing).
    "xray:GetSamplingRules", "xray:GetSamplingTargets",
    # Session Manager's channels (the ingestion stage's EC2 consumer instances); IAM's service
    # reference lists no resource type for them.
    "ssmmessages:CreateControlChannel", "ssmmessages:CreateDataChannel",
    "ssmmessages:OpenControlChannel", "ssmmessages:OpenDataChannel",
}
# Where AWS asks for "*" on actions that have resource types: a processing job in a VPC (the
# monitoring stage's Model Monitor runs) validates its role's network permissions and fails
# if they are scoped ("Don't scope in the policy with any conditions or resource filters",
# SageMaker Developer Guide, CreateProcessingJob API: Execution Role Permissions).
STAR_FOR_ROLE = {"MonitorRole": {
    "ec2:CreateNetworkInterface", "ec2:CreateNetworkInterfacePermission",
    "ec2:DeleteNetworkInterface", "ec2:DeleteNetworkInterfacePermission"}}


def all_templates():
    for path in CONFIGS:
        first = config.load(path)
        for env in first.merged:
            built = pipeline.build(first.for_environment(env))
            for stage in built.stages:
                name = f"{'default' if path is None else path.stem}/{env}/{stage.name}"
                yield name, stage.template.to_dict()


TEMPLATES = dict(all_templates())


def resources(resource_type=None):
    for template_name, template in TEMPLATES.items():
        for logical_id, resource in template.get("Resources", {}).items():
            if resource_type is None or resource["Type"] == resource_type:
                yield f"{template_name}:{logical_id}", logical_id, resource


def every(resource_type):
    """Each resource of the type in every template, as `resources` yields them; the type must
    occur somewhere, or a test of it would check nothing."""
    found = list(resources(resource_type))
    assert found, f"no {resource_type} in any template"
    return found


def policy_documents():
    """(where, document, resource type) for every policy in every template; a statement under
    Fn::If counts in each branch."""
    for where, _, resource in resources():
        props = resource.get("Properties", {})
        kind = resource["Type"]
        if kind == "AWS::KMS::Key":
            yield where, branches(props["KeyPolicy"]), kind
        if "PolicyDocument" in props:
            yield where, branches(props["PolicyDocument"]), kind
        for policy in props.get("Policies", []):
            # A conditional policy (Fn::If [condition, policy, AWS::NoValue]) is checked as if
            # its condition held.
            policy = policy["Fn::If"][1] if "Fn::If" in policy else policy
            yield f"{where}:{policy['PolicyName']}", branches(policy["PolicyDocument"]), kind


def branches(document: dict) -> dict:
    """The document with every statement of every Fn::If branch listed plainly."""
    def flat(statement):
        if "Fn::If" in statement:
            _, when_true, when_false = statement["Fn::If"]
            return flat(when_true) + flat(when_false)
        return [] if statement == {"Ref": "AWS::NoValue"} else [statement]
    return {**document, "Statement": [s for t in document["Statement"] for s in flat(t)]}


def as_list(value):
    return value if isinstance(value, list) else [value]


def test_there_is_something_to_check():
    assert len(TEMPLATES) >= 9
    assert len(list(policy_documents())) >= 5


def is_boundary(where: str) -> bool:
    """The permissions boundary: a ceiling that grants nothing (boundary.py; its own tests in
    test_boundary.py), so `<service>:*` on `*` is what it is made of."""
    return where.endswith(f"/{boundary.NAME}:{boundary.RESOURCE}")


def test_the_boundarys_wildcards_are_whole_services_never_iam_nor_everything():
    boundaries = [(w, d) for w, d, _ in policy_documents() if is_boundary(w)]
    assert boundaries
    for where, document in boundaries:
        for statement in document["Statement"]:
            for action in as_list(statement["Action"]):
                assert action != "*", where
                assert not (action.startswith("iam:") and "*" in action), (where, action)


@pytest.mark.parametrize("name", sorted(TEMPLATES))
def test_every_template_passes_the_projects_cfn_lint_rules(name):
    # E9001-E9005 (mlops_cfn/lint_rules): customer-managed keys, no wildcard action beyond the
    # documented families, source conditions, retained data stores, no unasked public subnet;
    # the exceptions a template records carry their reasons.
    assert findings(TEMPLATES[name]) == set()


def test_the_rule_pack_exceptions_are_the_documented_few():
    from mlops_cfn.lint_rules import METADATA_KEY
    excepted = {(logical_id, item["id"]) for _, logical_id, resource in resources()
                for item in resource.get("Metadata", {}).get(METADATA_KEY, {}).get(
                    "exceptions", [])}
    # The permissions boundary names whole services (boundary.py); the access-log bucket takes
    # only SSE-S3 deliveries (stages/storage.py); the public subnets exist where
    # network.internet_gateway asks for them (stages/network.py).
    assert excepted == {("PermissionsBoundary", "E9002"), ("AccessLogsBucket", "E9001"),
                        ("PublicSubnet1", "E9005"), ("PublicSubnet2", "E9005"),
                        ("PublicSubnet3", "E9005")}


def test_a_star_resource_only_for_actions_aws_cannot_scope():
    for where, document, kind in policy_documents():
        if kind == "AWS::KMS::Key" or is_boundary(where):
            continue  # in a key policy, "*" is the key the policy belongs to
        for statement in document["Statement"]:
            if statement["Effect"] != "Allow" or "*" not in as_list(statement.get("Resource", [])):
                continue
            # The deploy role's unscoped statement is derived from IAM's service reference
            # (permissions.py); every other one is listed above.
            actions = {a for a in as_list(statement["Action"])
                       if not (":DeployPolicy" in where
                               and not permissions.supports_resource_scope(a))}
            role = where.split(":")[1]
            allowed = ACTIONS_WITHOUT_RESOURCE_SCOPE | STAR_FOR_ROLE.get(role, set())
            assert actions <= allowed, (where, actions)


def test_no_principal_is_everyone_in_an_allow():
    for where, document, kind in policy_documents():
        if kind == "AWS::EC2::VPCEndpoint":
            # An endpoint policy filters what any caller in the VPC may do through the
            # endpoint; its principal is always everyone, the resources carry the limit.
            continue
        for statement in document["Statement"]:
            if statement["Effect"] == "Allow" and "Principal" in statement:
                assert statement["Principal"] != "*" and statement["Principal"] != {"AWS": "*"}, where


def test_buckets_use_the_projects_keys_and_block_public_access():
    for where, _, bucket in every("AWS::S3::Bucket"):
        props = bucket["Properties"]
        rule = props["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]
        default = rule["ServerSideEncryptionByDefault"]
        # SSE-S3 only where the template records why (E9001's exception: the access-log bucket)
        if default["SSEAlgorithm"] == "aws:kms":
            # the key itself in the storage stage, the DataKeyArn wire everywhere else, but the
            # delivery pipeline's own key for its buckets (stages/cicd.py: delivery_key)
            assert default["KMSMasterKeyID"] in ({"Ref": "DataKey"}, {"Ref": "DataKeyArn"},
                                                 {"Fn::GetAtt": ["DataKey", "Arn"]},
                                                 {"Fn::GetAtt": ["DeliveryKey", "Arn"]}), where
            assert rule["BucketKeyEnabled"] is True, where
        assert set(props["PublicAccessBlockConfiguration"].values()) == {True}, where
        assert props["VersioningConfiguration"]["Status"] == "Enabled", where


def test_every_log_group_expires():
    for where, _, group in every("AWS::Logs::LogGroup"):
        assert group["Properties"]["RetentionInDays"] == {"Ref": "LogRetentionDays"}, where


def test_queues_streams_and_deliveries_are_encrypted_with_the_data_key():
    data_key = {"Ref": "DataKeyArn"}
    for where, _, queue in every("AWS::SQS::Queue"):
        assert queue["Properties"]["KmsMasterKeyId"] == data_key, where
    for where, _, stream in every("AWS::Kinesis::Stream"):
        assert stream["Properties"]["StreamEncryption"] == {
            "EncryptionType": "KMS", "KeyId": data_key}, where
    for where, _, delivery in every("AWS::KinesisFirehose::DeliveryStream"):
        s3 = delivery["Properties"]["ExtendedS3DestinationConfiguration"]
        assert s3["EncryptionConfiguration"]["KMSEncryptionConfig"]["AWSKMSKeyARN"] == data_key


def test_functions_run_in_private_subnets_with_an_encrypted_environment():
    for where, _, function in every("AWS::Lambda::Function"):
        props = function["Properties"]
        assert props["VpcConfig"]["SubnetIds"] == {"Ref": "PrivateSubnetIds"}, where
        assert props["KmsKeyArn"] == {"Ref": "DataKeyArn"}, where


def test_security_groups_admit_nothing_from_the_internet():
    for where, _, group in every("AWS::EC2::SecurityGroup"):
        for rule in group["Properties"].get("SecurityGroupIngress", []):
            assert rule.get("CidrIp") != "0.0.0.0/0" and rule.get("CidrIpv6") != "::/0", where


@pytest.mark.parametrize("name", sorted(TEMPLATES))
def test_no_hard_coded_partition_account_or_region(name):
    # A Mappings table keyed by region (the built-in image registries) names regions by
    # design, and so does the Rules assertion refusing a region it lacks
    # (stages/image_registries.py); resources reach it only through FindInMap on AWS::Region.
    text = str({k: v for k, v in TEMPLATES[name].items() if k not in ("Mappings", "Rules")})
    assert "arn:aws:" not in text
    assert "us-east-1" not in text


def _parameter_used(template: dict, name: str) -> bool:
    import json
    body = json.dumps({k: v for k, v in template.items() if k not in ("Parameters", "Metadata")})
    return f'{{"Ref": "{name}"}}' in body or f"${{{name}}}" in body or f"${{{name}." in body


VARIANT_CHANGES = [
    {"stages": {"serving": {"sagemaker": {"deployment": {"traffic_shifting": shifting}}}}}
    for shifting in ("canary", "linear", "all_at_once")
] + [
    {"stages": {"ingestion": {"stream_mode": "provisioned", "consumer": {"enabled": False}}}},
    {"stages": {"analytics": {"deployment": "provisioned"}, "etl": {"output_format": "csv"}}},
    {"stages": {"serving": {"target": "fargate", "api_gateway": {"enabled": True}}}},
]


@pytest.mark.parametrize("changes", VARIANT_CHANGES, ids=lambda c: str(c)[:60])
def test_every_parameter_a_stage_declares_is_used(changes):
    # A declared, unused parameter is a cfn-lint warning (W2001) in the rendered template.
    from .helpers import config_with
    built = pipeline.build(config_with(changes))
    assert built.stages
    for stage in built.stages:
        template = stage.template.to_dict()
        unused = [p for p in template.get("Parameters", {}) if not _parameter_used(template, p)]
        assert not unused, (stage.name, unused)


# The one group that must reach the internet: delivery builds download packages through NAT.
INTERNET_EGRESS_GROUPS = {"BuildSecurityGroup"}


def test_with_the_s3_prefix_list_compute_sends_https_to_the_vpc_and_s3_only():
    from .helpers import config_with
    built = pipeline.build(config_with({"network": {"s3_prefix_list_id": "pl-63a5400a"}}))
    narrowed = 0
    for stage in built.stages:
        template = stage.template.to_dict()
        for name, resource in template["Resources"].items():
            if resource["Type"] != "AWS::EC2::SecurityGroup" or name in INTERNET_EGRESS_GROUPS:
                continue
            egress = resource["Properties"].get("SecurityGroupEgress", [])
            assert all(rule.get("CidrIp") != "0.0.0.0/0" for rule in egress), (stage.name, name)
            if any("DestinationPrefixListId" in rule for rule in egress):
                narrowed += 1
                assert {"Ref": "S3PrefixListId"} in [r.get("DestinationPrefixListId")
                                                     for r in egress]
                assert {"Ref": "VpcCidrBlock"} in [r.get("CidrIp") for r in egress]
    # Glue, Redshift, training jobs, Model Monitor, the SageMaker model, the API tasks.
    assert narrowed == 6
    assert built.parameters["S3PrefixListId"] == "pl-63a5400a"


def test_without_the_s3_prefix_list_compute_reaching_s3_may_send_https_anywhere():
    anywhere = {"CidrIp": "0.0.0.0/0", "FromPort": 443, "ToPort": 443, "IpProtocol": "tcp"}
    groups = [name for stage in pipeline.build(config.load(None)).stages
              for name, resource in stage.template.to_dict()["Resources"].items()
              if resource["Type"] == "AWS::EC2::SecurityGroup"
              for rule in resource["Properties"].get("SecurityGroupEgress", [])
              if anywhere.items() <= rule.items()]
    assert sorted(groups) == ["ApiTaskSecurityGroup", "GlueSecurityGroup", "JobSecurityGroup",
                              "ModelSecurityGroup", "MonitorSecurityGroup",
                              "WarehouseSecurityGroup"]
