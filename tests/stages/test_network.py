"""The network stage: a private VPC by default, internet access only on request, or an existing VPC."""

import ipaddress
import json
import re

import cfnlint.api
import pytest

from mlops_cfn.config import load_data
from mlops_cfn.errors import UserError
from mlops_cfn.outputs import (DATA_KEY_ARN, ENDPOINT_SECURITY_GROUP_ID, PRIVATE_SUBNET_IDS,
                               PUBLIC_SUBNET_IDS, VPC_CIDR, VPC_ID)
from mlops_cfn.config.ingestion import IngestionConfig
from mlops_cfn.stages import network
from tests.helpers import (default_data, foundation_config_with, only_resource,
                           resources_of_type, template_dict)

EXISTING = {
    "mode": "existing",
    "cidr": "10.60.0.0/16",
    "vpc_id": "vpc-0123abcd",
    "subnet_ids": ["subnet-0123abcd", "subnet-4567ef01"],
}


def build(**network_changes):
    # Only the foundation: later stages' own rules (three zones for Redshift Serverless, the
    # endpoints their compute needs) are theirs to test.
    return network.build(foundation_config_with({"network": network_changes}).config)


def template(**network_changes) -> dict:
    return template_dict(build(**network_changes))


def refs(values) -> list:
    return [v["Ref"] for v in values]


# --- the VPC and its private subnets ----------------------------------------------------------

def test_vpc_takes_its_range_from_the_setting_and_resolves_dns():
    vpc = only_resource(template(), "AWS::EC2::VPC")["Properties"]
    assert vpc["CidrBlock"] == {"Ref": "VpcCidr"}
    assert vpc["EnableDnsSupport"] is True and vpc["EnableDnsHostnames"] is True


@pytest.mark.parametrize("zones", [2, 3])
def test_one_private_subnet_and_route_table_per_zone(zones):
    t = template(availability_zones=zones)
    subnets = resources_of_type(t, "AWS::EC2::Subnet")
    tables = resources_of_type(t, "AWS::EC2::RouteTable")
    associations = resources_of_type(t, "AWS::EC2::SubnetRouteTableAssociation")
    assert len(subnets) == len(tables) == len(associations) == zones
    assert {a["Properties"]["SubnetId"]["Ref"] for a in associations.values()} == set(subnets)
    assert {a["Properties"]["RouteTableId"]["Ref"] for a in associations.values()} == set(tables)
    zones_used = [s["Properties"]["AvailabilityZone"]["Fn::Select"] for s in subnets.values()]
    assert sorted(index for index, _ in zones_used) == list(range(zones))
    assert all(azs == {"Fn::GetAZs": ""} for _, azs in zones_used)


@pytest.mark.parametrize("zones", [2, 3])
def test_subnet_ranges_are_cut_from_the_range_parameter(zones):
    subnets = resources_of_type(template(availability_zones=zones, subnet_prefix_length=22),
                                "AWS::EC2::Subnet")
    blocks = [s["Properties"]["CidrBlock"]["Fn::Select"] for s in subnets.values()]
    assert sorted(index for index, _ in blocks) == list(range(zones))
    for _, cidr in blocks:
        # Not a literal range: the per-environment VpcCidr, cut into /22s.
        assert cidr == {"Fn::Cidr": [{"Ref": "VpcCidr"}, zones, 32 - 22]}
    assert all(s["Properties"]["MapPublicIpOnLaunch"] is False for s in subnets.values())


def fn_cidr(block: str, count: int, cidr_bits: int) -> list[str]:
    """Fn::Cidr as CloudFormation evaluates it: the first `count` blocks of /(32 - cidr_bits)
    in `block`, or an error when it holds fewer ("Fn::Cidr", CloudFormation Template
    Reference)."""
    blocks = list(ipaddress.ip_network(block).subnets(new_prefix=32 - cidr_bits))
    if len(blocks) < count:
        raise ValueError(f"{block} holds {len(blocks)} blocks of /{32 - cidr_bits}")
    return [str(b) for b in blocks[:count]]


# Ranges of every size the config's field admits, with and without host bits.
CANDIDATE_RANGES = [f"10.{second}.{third}.0/{prefix}" for prefix in range(16, 25)
                    for second, third in ((0, 0), (7, 128), (9, 64), (3, 32), (5, 8), (1, 1))]
STRUCTURES = [dict(availability_zones=zones, internet_gateway=gateway, subnet_prefix_length=size)
              for zones in (2, 3) for gateway in (False, True) for size in (19, 20, 22, 24, 26)]


@pytest.mark.parametrize("structure", STRUCTURES, ids=str)
def test_the_range_parameter_admits_exactly_the_ranges_the_config_admits(structure):
    # Finding 11: the VpcCidr pattern follows from the subnet size and count, so a value given
    # at deploy time (parameters.json, --parameter, a Service Catalog launch) is held to the
    # same rule as pipeline.yaml.
    t = template(**structure)
    parameter = t["Parameters"]["VpcCidr"]
    [cut] = {json.dumps(s["Properties"]["CidrBlock"]["Fn::Select"][1])
             for s in resources_of_type(t, "AWS::EC2::Subnet").values()}
    _, count, bits = json.loads(cut)["Fn::Cidr"]
    verdicts = {}
    for candidate in CANDIDATE_RANGES:
        try:
            foundation_config_with({"network": {**structure, "cidr": candidate}})
            config_accepts = True
        except UserError:
            config_accepts = False
        pattern_accepts = re.fullmatch(parameter["AllowedPattern"], candidate) is not None
        verdicts[candidate] = (config_accepts, pattern_accepts)
        if pattern_accepts:
            # What CloudFormation does with an admitted value never fails.
            assert len(fn_cidr(candidate, count, bits)) == count
    assert {c: v for c, v in verdicts.items() if v[0] != v[1]} == {}
    assert any(a for a, _ in verdicts.values()) and not all(a for a, _ in verdicts.values())


def test_the_default_structure_admits_ranges_from_16_to_18_and_says_why():
    parameter = template()["Parameters"]["VpcCidr"]
    assert re.fullmatch(parameter["AllowedPattern"], "10.40.0.0/18")
    assert not re.fullmatch(parameter["AllowedPattern"], "10.40.0.0/19")
    assert not re.fullmatch(parameter["AllowedPattern"], "10.40.1.0/18")  # host bits
    assert parameter["ConstraintDescription"] == (
        "an IPv4 range from /16 to /18 with no host bits set, such as 10.0.0.0/16: 3 subnets "
        "of /20 are cut from it")


def test_subnets_too_large_for_any_vpc_are_refused_with_the_size_that_fits():
    with pytest.raises(UserError) as raised:
        build(availability_zones=3, internet_gateway=True, subnet_prefix_length=18)
    assert str(raised.value) == (
        "pipeline.yaml: network: subnet_prefix_length 18 is too large for 6 subnets in one VPC "
        "(a /16 at the most): it must be 19 or more")


def test_an_existing_vpcs_range_keeps_the_plain_range_pattern():
    parameter = template(**EXISTING)["Parameters"]["VpcCidr"]
    assert re.fullmatch(parameter["AllowedPattern"], "10.60.0.0/24")


def test_the_template_holds_no_range_literally():
    assert "10.40." not in json.dumps(template())


def test_private_subnets_are_offered_as_one_comma_joined_output():
    t = template(availability_zones=3)
    assert t["Outputs"][PRIVATE_SUBNET_IDS.name]["Value"] == {
        "Fn::Sub": "${PrivateSubnet1},${PrivateSubnet2},${PrivateSubnet3}"}
    assert t["Outputs"][VPC_ID.name]["Value"] == {"Ref": "Vpc"}
    assert t["Outputs"][VPC_CIDR.name]["Value"] == {"Ref": "VpcCidr"}


# --- internet access ----------------------------------------------------------------------

def test_no_internet_path_by_default():
    t = template()
    for kind in ("AWS::EC2::InternetGateway", "AWS::EC2::NatGateway", "AWS::EC2::EIP",
                 "AWS::EC2::Route"):
        assert resources_of_type(t, kind) == {}
    assert PUBLIC_SUBNET_IDS.name not in t["Outputs"]


@pytest.mark.parametrize("zones", [2, 3])
def test_internet_gateway_adds_public_subnets_and_a_nat_per_zone(zones):
    t = template(availability_zones=zones, internet_gateway=True)
    only_resource(t, "AWS::EC2::InternetGateway")
    nats = resources_of_type(t, "AWS::EC2::NatGateway")
    public = {name for name in resources_of_type(t, "AWS::EC2::Subnet") if "Public" in name}
    assert len(nats) == len(resources_of_type(t, "AWS::EC2::EIP")) == len(public) == zones
    # Each NAT sits in its own zone's public subnet.
    assert {n["Properties"]["SubnetId"]["Ref"] for n in nats.values()} == public
    assert t["Outputs"][PUBLIC_SUBNET_IDS.name]["Value"]["Fn::Sub"].count("${PublicSubnet") == zones


def test_each_private_route_table_leaves_through_its_zones_nat():
    t = template(availability_zones=3, internet_gateway=True)
    routes = resources_of_type(t, "AWS::EC2::Route")
    through_nat = {r["Properties"]["RouteTableId"]["Ref"]: r["Properties"]["NatGatewayId"]["Ref"]
                   for r in routes.values() if "NatGatewayId" in r["Properties"]}
    assert through_nat == {f"PrivateRouteTable{z}": f"NatGateway{z}" for z in (1, 2, 3)}
    public_route = only_resource({"Resources": {k: v for k, v in routes.items()
                                                if "GatewayId" in v["Properties"]}},
                                 "AWS::EC2::Route")
    assert public_route["Properties"]["GatewayId"] == {"Ref": "InternetGateway"}


def test_public_and_private_subnets_take_different_blocks():
    subnets = resources_of_type(template(internet_gateway=True, availability_zones=2), "AWS::EC2::Subnet")
    indexes = [s["Properties"]["CidrBlock"]["Fn::Select"][0] for s in subnets.values()]
    assert sorted(indexes) == [0, 1, 2, 3]


# --- endpoints ----------------------------------------------------------------------------

@pytest.mark.parametrize("zones", [2, 3])
def test_s3_gateway_endpoint_serves_every_private_route_table(zones):
    t = template(availability_zones=zones)
    endpoint = t["Resources"]["S3Endpoint"]["Properties"]
    assert endpoint["VpcEndpointType"] == "Gateway"
    assert endpoint["ServiceName"] == {"Fn::Sub": "com.amazonaws.${AWS::Region}.s3"}
    assert sorted(refs(endpoint["RouteTableIds"])) == sorted(
        resources_of_type(t, "AWS::EC2::RouteTable"))


def test_s3_endpoint_reaches_only_this_accounts_buckets_and_ecr_layers():
    statements = template()["Resources"]["S3Endpoint"]["Properties"]["PolicyDocument"]["Statement"]
    own, layers = statements
    assert own["Condition"] == {"StringEquals": {"s3:ResourceAccount": {"Ref": "AWS::AccountId"}}}
    assert "starport-layer-bucket" in layers["Resource"][0]["Fn::Sub"]
    assert layers["Action"] == ["s3:GetObject"]
    for statement in statements:
        assert statement["Effect"] == "Allow"
        assert all(not a.endswith("*") for a in statement["Action"])


def interface_endpoints(t: dict) -> dict[str, dict]:
    return {name: e["Properties"] for name, e in resources_of_type(t, "AWS::EC2::VPCEndpoint").items()
            if e["Properties"]["VpcEndpointType"] == "Interface"}


def test_interface_endpoints_as_configured_with_private_dns_in_the_private_subnets():
    endpoints = interface_endpoints(template(interface_endpoints=["logs", "ecr.dkr"], availability_zones=2))
    assert sorted(endpoints) == ["EcrDkrEndpoint", "LogsEndpoint"]
    assert endpoints["EcrDkrEndpoint"]["ServiceName"] == {
        "Fn::Sub": "com.amazonaws.${AWS::Region}.ecr.dkr"}
    for endpoint in endpoints.values():
        assert endpoint["PrivateDnsEnabled"] is True
        assert refs(endpoint["SubnetIds"]) == ["PrivateSubnet1", "PrivateSubnet2"]
        assert endpoint["SecurityGroupIds"] == [
            {"Fn::GetAtt": ["EndpointSecurityGroup", "GroupId"]}]


def test_an_empty_list_means_no_interface_endpoints():
    assert interface_endpoints(template(interface_endpoints=[])) == {}


def test_unset_list_is_derived_from_the_enabled_stages(monkeypatch):
    # The bundled consumer needs no interface endpoint (IngestionConfig.vpc_endpoints says why);
    # a stage whose compute called an API would get that service's endpoint.
    assert interface_endpoints(template()) == {}
    monkeypatch.setattr(IngestionConfig, "vpc_endpoints", lambda self: ("sts", "logs"))
    assert sorted(interface_endpoints(template())) == ["LogsEndpoint", "StsEndpoint"]
    without_consumer = foundation_config_with(
        {"stages": {"ingestion": {"consumer": {"enabled": False}}}}).config
    assert network.needed_interface_endpoints(without_consumer) == ["logs", "sts"]
    without_ingestion = foundation_config_with({"stages": {"ingestion": {"enabled": False}}}).config
    assert network.needed_interface_endpoints(without_ingestion) == []


def test_endpoint_security_group_admits_only_https_from_the_vpc_range():
    group = only_resource(template(), "AWS::EC2::SecurityGroup")["Properties"]
    [ingress] = group["SecurityGroupIngress"]
    assert (ingress["IpProtocol"], ingress["FromPort"], ingress["ToPort"]) == ("tcp", 443, 443)
    assert ingress["CidrIp"] == {"Ref": "VpcCidr"}
    [egress] = group["SecurityGroupEgress"]  # endpoints only answer: nothing goes out
    assert egress["CidrIp"] == "255.255.255.255/32"
    assert group["VpcId"] == {"Ref": "Vpc"}


def test_endpoint_security_group_is_an_output():
    assert template()["Outputs"][ENDPOINT_SECURITY_GROUP_ID.name]["Value"] == {
        "Fn::GetAtt": ["EndpointSecurityGroup", "GroupId"]}


# --- flow logs ----------------------------------------------------------------------------

def test_flow_logs_record_the_configured_traffic_into_the_log_group():
    flow_log = only_resource(template(flow_log_traffic="REJECT"), "AWS::EC2::FlowLog")
    props = flow_log["Properties"]
    assert props["ResourceId"] == {"Ref": "Vpc"}
    assert props["TrafficType"] == "REJECT"
    assert props["LogGroupName"] == {"Ref": "FlowLogGroup"}
    assert props["DeliverLogsPermissionArn"] == {"Fn::GetAtt": ["FlowLogRole", "Arn"]}


def test_flow_log_group_is_encrypted_with_the_data_key_and_kept_per_setting():
    stage = build()
    group = template_dict(stage)["Resources"]["FlowLogGroup"]
    assert group["Properties"]["KmsKeyId"] == {"Ref": DATA_KEY_ARN.name}
    assert group["Properties"]["RetentionInDays"] == {"Ref": "LogRetentionDays"}
    assert group["DeletionPolicy"] == "Retain"
    assert DATA_KEY_ARN in stage.inputs
    assert "LogRetentionDays" in stage.settings


def flow_log_statements() -> dict[str, dict]:
    role = only_resource(template(), "AWS::IAM::Role")["Properties"]
    return {s["Sid"]: s for p in role["Policies"] for s in p["PolicyDocument"]["Statement"]}


def test_flow_log_role_is_assumed_only_by_flow_logs_of_this_account():
    role = only_resource(template(), "AWS::IAM::Role")["Properties"]
    [trust] = role["AssumeRolePolicyDocument"]["Statement"]
    assert trust["Principal"] == {"Service": "vpc-flow-logs.amazonaws.com"}
    assert trust["Condition"]["StringEquals"] == {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}


def test_flow_log_role_writes_only_to_its_log_group():
    write = flow_log_statements()["WriteFlowRecords"]
    assert write["Resource"] == [{"Fn::GetAtt": ["FlowLogGroup", "Arn"]}]
    assert set(write["Action"]) == {
        "logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams"}


def test_flow_log_role_may_find_its_log_group_as_aws_documents():
    # "IAM role for publishing flow logs to CloudWatch Logs" lists logs:DescribeLogGroups; the
    # action names no group, so it is granted on this account's groups of this region.
    find = flow_log_statements()["FindTheLogGroup"]
    assert find["Action"] == ["logs:DescribeLogGroups"]
    assert find["Resource"] == [{"Fn::Sub": "arn:${AWS::Partition}:logs:${AWS::Region}:"
                                            "${AWS::AccountId}:log-group:*"}]


def test_flow_log_role_grants_what_the_documented_policy_lists_but_creating_the_group():
    granted = {a for s in flow_log_statements().values() for a in s["Action"]}
    documented = {"logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents",
                  "logs:DescribeLogGroups", "logs:DescribeLogStreams"}
    # The stack creates the group itself.
    assert granted == documented - {"logs:CreateLogGroup"}


# --- an existing VPC ----------------------------------------------------------------------

def test_existing_mode_passes_the_vpc_and_subnets_through():
    stage = build(**EXISTING)
    t = template_dict(stage)
    assert resources_of_type(t, "AWS::EC2::VPC") == {}
    assert resources_of_type(t, "AWS::EC2::Subnet") == {}
    assert resources_of_type(t, "AWS::EC2::FlowLog") == {}
    assert t["Parameters"]["ExistingVpcId"]["Type"] == "AWS::EC2::VPC::Id"
    assert t["Outputs"][VPC_ID.name]["Value"] == {"Ref": "ExistingVpcId"}
    assert t["Outputs"][PRIVATE_SUBNET_IDS.name]["Value"] == {
        "Fn::Join": [",", {"Ref": "ExistingSubnetIds"}]}
    assert t["Outputs"][VPC_CIDR.name]["Value"] == {"Ref": "VpcCidr"}
    assert stage.inputs == ()


def test_existing_mode_still_guards_endpoints_in_that_vpc():
    t = template(**EXISTING, interface_endpoints=["kms"])
    group = only_resource(t, "AWS::EC2::SecurityGroup")["Properties"]
    assert group["VpcId"] == {"Ref": "ExistingVpcId"}
    assert group["SecurityGroupIngress"][0]["CidrIp"] == {"Ref": "VpcCidr"}
    [endpoint] = interface_endpoints(t).values()
    assert endpoint["SubnetIds"] == {"Ref": "ExistingSubnetIds"}
    assert endpoint["VpcId"] == {"Ref": "ExistingVpcId"}


def test_existing_mode_derives_no_endpoints(monkeypatch):
    # Another private-DNS endpoint for a service the VPC already serves would fail to create.
    monkeypatch.setattr(IngestionConfig, "vpc_endpoints", lambda self: ("sts",))
    assert interface_endpoints(template(**EXISTING)) == {}


def test_existing_mode_needs_the_vpc_range_stated():
    data = default_data()
    data["network"] = {k: v for k, v in EXISTING.items() if k != "cidr"}
    with pytest.raises(UserError) as caught:
        load_data(data, "pipeline.yaml")
    [line] = str(caught.value).splitlines()
    assert line.startswith("pipeline.yaml: network: ")
    assert "needs cidr" in line and "existing VPC's IPv4 range" in line


# --- zero findings ------------------------------------------------------------------------

VARIANTS = {
    "create-2-zones": {},
    "create-3-zones": {"availability_zones": 3},
    "create-2-zones-internet": {"internet_gateway": True},
    "create-3-zones-internet": {"availability_zones": 3, "internet_gateway": True},
    "create-with-endpoints": {"interface_endpoints": ["logs", "sts", "ecr.api", "ecr.dkr"]},
    "existing": EXISTING,
    "existing-with-endpoints": {**EXISTING, "interface_endpoints": ["logs", "kms"]},
}


@pytest.mark.parametrize("changes", VARIANTS.values(), ids=VARIANTS.keys())
def test_cfn_lint_finds_nothing(changes):
    text = build(**changes).template.to_yaml()
    matches = cfnlint.api.lint(text, config=cfnlint.api.ManualArgs(regions=["us-east-1"]))
    assert [str(m) for m in matches] == []


def test_a_created_vpc_offers_the_zone_of_each_private_subnet_in_order():
    t = template(availability_zones=3)
    zones = t["Outputs"]["PrivateSubnetZones"]["Value"]["Fn::Join"][1]
    assert zones == [{"Fn::Select": [i, {"Fn::GetAZs": ""}]} for i in range(3)]
    for i in range(3):
        subnet = t["Resources"][f"PrivateSubnet{i + 1}"]["Properties"]
        assert subnet["AvailabilityZone"] == zones[i]


def test_an_existing_vpc_offers_the_zones_the_config_names():
    t = template(**EXISTING, subnet_zones=["eu-west-1a", "eu-west-1b"])
    assert t["Outputs"]["PrivateSubnetZones"]["Value"] == {
        "Fn::Join": [",", {"Ref": "ExistingSubnetZones"}]}
    assert "PrivateSubnetZones" not in template(**EXISTING)["Outputs"]


@pytest.mark.parametrize("network, message", [
    ({**EXISTING, "subnet_zones": ["eu-west-1a"]},
     "subnet_zones names 1 zones for 2 subnet_ids; give one per subnet"),
    ({"subnet_zones": ["eu-west-1a", "eu-west-1b", "eu-west-1c"]},
     "subnet_zones is only for mode 'existing'"),
])
def test_subnet_zones_must_match_the_existing_subnets(network, message):
    data = default_data()
    data["network"] = network
    with pytest.raises(UserError, match=message):
        load_data(data, "pipeline.yaml")
