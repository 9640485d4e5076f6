"""The network stage: the VPC the pipeline's compute runs in, or a place in an existing one.

Mode `create` (one of each per availability zone, 2 or 3 zones):
    Vpc (DNS support and hostnames on), PrivateSubnet<N>, PrivateRouteTable<N> with its
    association; S3Endpoint (gateway, on every private route table, limited to this account's
    buckets); <Service>Endpoint (interface, private DNS) per needed service;
    EndpointSecurityGroup (443 from the VPC's range only); FlowLog to FlowLogGroup (KMS,
    retention) through FlowLogRole.
    With `internet_gateway`: InternetGateway, PublicSubnet<N>, one PublicRouteTable, and per zone
    NatAddress<N> + NatGateway<N>, which carries the zone's private default route.
Mode `existing`: EndpointSecurityGroup in the given VPC and interface endpoints in the given
    subnets if `interface_endpoints` lists any; nothing else (no VPC, routes, flow logs).

Inputs: DataKeyArn (mode `create`: encrypts the flow log group).
Settings: VpcCidr (with `create`, its pattern admits only ranges the subnets fit in);
    LogRetentionDays (`create`); ExistingVpcId, ExistingSubnetIds (`existing`).
Outputs: VpcId, VpcCidrBlock, PrivateSubnetIds, PrivateSubnetZones (each private subnet's
    zone, in the same order), EndpointSecurityGroupId, PublicSubnetIds (only with
    `internet_gateway`).
"""

import re
from dataclasses import dataclass
from typing import Any

import awacs.logs as logs
import awacs.s3 as s3
from awacs.aws import Allow, ArnLike, Condition, Principal, Statement, StringEquals
from troposphere import (AccountId, Cidr, GetAtt, GetAZs, Join, Ref, Select, Split, Sub, Tags,
                         ec2, iam, logs as cw_logs)

from .. import naming, policies
from ..config import PipelineConfig
from ..config.network import (INTERFACE_ENDPOINT_SERVICES, VPC_PREFIX_MIN, NetworkConfig,
                              vpc_range_pattern)
from ..lint_rules import exceptions as lint_exceptions
from ..outputs import (ENDPOINT_SECURITY_GROUP_ID, PRIVATE_SUBNET_IDS, PRIVATE_SUBNET_ZONES,
                       PUBLIC_SUBNET_IDS, VPC_CIDR, VPC_ID)
from ..stage import Stage, StageBuilder
from .common import encrypted_log_group

HTTPS = 443
ANYWHERE = "0.0.0.0/0"
# EC2 resources have no names, only a `Name` tag, which the console shows.
NAME_TAG = naming.NameRule("EC2 Name tag", 256)

# What compute may do through the S3 gateway endpoint: object reads and writes (multipart
# included) and listing. Stages whose compute needs more S3 actions add them here.
S3_ENDPOINT_ACTIONS = (
    s3.GetBucketLocation,
    s3.ListBucket,
    s3.ListBucketMultipartUploads,
    s3.GetObject,
    s3.GetObjectVersion,
    s3.PutObject,
    s3.DeleteObject,
    s3.AbortMultipartUpload,
    s3.ListMultipartUploadParts,
)


def needed_interface_endpoints(config: PipelineConfig) -> list[str]:
    """The interface endpoints the enabled stages need (each stage's config says which), in a
    stable order."""
    needed: set[str] = set()
    for name in type(config.stages).model_fields:
        section = getattr(config.stages, name)
        if section.enabled:
            needed.update(section.vpc_endpoints())
    return [service for service in INTERFACE_ENDPOINT_SERVICES if service in needed]


def interface_endpoint_services(config: PipelineConfig) -> list[str]:
    """The configured list; when unset, what the stages need (mode `create`) or none (`existing`,
    whose owner usually runs its own endpoints: a second one with private DNS would clash)."""
    network = config.network
    if network.interface_endpoints is not None:
        return list(network.interface_endpoints)
    return needed_interface_endpoints(config) if network.mode == "create" else []


def endpoints_to_provide(config: PipelineConfig) -> list[str]:
    """In mode `existing`, the interface endpoints the enabled stages call that this stack does
    not create: the existing VPC must already have them (with private DNS), or those calls time
    out at run time. Empty in mode `create`."""
    if config.network.mode == "create":
        return []
    created = set(interface_endpoint_services(config))
    return [service for service in needed_interface_endpoints(config) if service not in created]


def endpoint_requirement(services: list[str]) -> str:
    """The requirement on an existing VPC, in one sentence."""
    return ("The VPC must provide interface endpoints with private DNS for "
            + ", ".join(f"com.amazonaws.<region>.{s}" for s in services)
            + " (what the enabled stages call from the private subnets), and S3 (a gateway "
              "endpoint or a route to it).")


@dataclass(frozen=True)
class Placement:
    """Where compute goes: the VPC and its private subnets (a list, or a list parameter)."""

    vpc_id: Any
    private_subnets: Any
    private_subnet_ids: Any  # the same, as one comma-joined string for an output


def build(config: PipelineConfig) -> Stage:
    b = StageBuilder("network", config.project, "VPC, private subnets and VPC endpoints")
    network = config.network
    vpc_cidr = b.setting(network, "cidr")
    if network.mode == "create":
        constrain_vpc_range(b, network, vpc_cidr)
        placement = create_vpc(b, config, vpc_cidr)
    else:
        placement = existing_vpc(b, config)
    security_group = b.add(endpoint_security_group(placement.vpc_id, vpc_cidr))
    for service in interface_endpoint_services(config):
        b.add(interface_endpoint(service, placement, security_group))
    b.output(VPC_ID, placement.vpc_id)
    b.output(VPC_CIDR, vpc_cidr)
    b.output(PRIVATE_SUBNET_IDS, placement.private_subnet_ids)
    if network.mode == "create":
        # The same zones the private subnets are placed in (private subnet N, zone N).
        b.output(PRIVATE_SUBNET_ZONES, Join(",", [Select(zone, GetAZs(""))
                                                  for zone in range(network.availability_zones)]))
    elif network.subnet_zones is not None:
        b.output(PRIVATE_SUBNET_ZONES, Join(",", b.setting(network, "subnet_zones")))
    b.output(ENDPOINT_SECURITY_GROUP_ID, GetAtt(security_group, "GroupId"))
    return b.finish()


def constrain_vpc_range(b: StageBuilder, network: NetworkConfig, vpc_cidr: Ref) -> None:
    """VpcCidr accepts only the ranges `subnet_blocks` can cut this many subnets from.

    The range is a per-environment value while the subnet size and count are structural, so the
    parameter's pattern follows from the structure; the root template copies it (pipeline.py),
    which makes CloudFormation, and `deploy --parameter` before it, refuse a range too small."""
    largest = network.largest_vpc_prefix
    parameter = b.template.parameters[vpc_cidr.data["Ref"]]
    parameter.AllowedPattern = vpc_range_pattern(largest)
    sizes = (f"/{VPC_PREFIX_MIN} to /{largest}: {network.subnet_count} subnets of "
             f"/{network.subnet_prefix_length} are cut from it")
    parameter.ConstraintDescription = (
        f"an IPv4 range from /{VPC_PREFIX_MIN} to /{largest} with no host bits set, such as "
        f"10.0.0.0/{VPC_PREFIX_MIN}: {sizes.split(': ', 1)[1]}")
    # The field's description speaks of both modes and of what any VPC accepts; the parameter
    # of a created VPC states the range its pattern admits, so a console or Service Catalog
    # user reads the same limit CloudFormation enforces.
    parameter.Description = f"IPv4 range of the VPC this stack creates ({sizes})"


def existing_vpc(b: StageBuilder, config: PipelineConfig) -> Placement:
    network = config.network
    subnets = b.setting(network, "subnet_ids")
    vpc_id = b.setting(network, "vpc_id")
    provide = endpoints_to_provide(config)
    if provide:
        # Where someone deploying the template (a console, a Service Catalog launch) reads
        # what the VPC they name must already have; `render` prints the same.
        parameter = b.template.parameters[vpc_id.data["Ref"]]
        parameter.Description = f"{parameter.Description} {endpoint_requirement(provide)}"
    return Placement(vpc_id, subnets, Join(",", subnets))


def create_vpc(b: StageBuilder, config: PipelineConfig, vpc_cidr: Ref) -> Placement:
    network = config.network
    zones = network.availability_zones
    vpc = b.add(ec2.VPC(
        "Vpc", CidrBlock=vpc_cidr, EnableDnsSupport=True, EnableDnsHostnames=True,
        Tags=_name(b, "vpc")))
    # Private subnets take the first blocks of the range, public ones (if any) the next.
    blocks = subnet_blocks(vpc_cidr, network, count=zones * (2 if network.internet_gateway else 1))
    private_subnets, route_tables = [], []
    for zone in range(zones):
        subnet = b.add(_subnet(b, "Private", zone, vpc, blocks[zone]))
        table = b.add(ec2.RouteTable(f"PrivateRouteTable{zone + 1}", VpcId=Ref(vpc),
                                     Tags=_name(b, "private", str(zone + 1))))
        b.add(ec2.SubnetRouteTableAssociation(
            f"PrivateRouteTableAssociation{zone + 1}", SubnetId=Ref(subnet),
            RouteTableId=Ref(table)))
        private_subnets.append(subnet)
        route_tables.append(table)
    b.add(s3_gateway_endpoint(vpc, route_tables, answers_custom_resources(config)))
    if network.internet_gateway:
        public_subnets = add_internet_access(b, vpc, route_tables, blocks[zones:])
        b.output(PUBLIC_SUBNET_IDS, _comma_joined(public_subnets))
    add_flow_logs(b, config, vpc)
    return Placement(Ref(vpc), [Ref(s) for s in private_subnets], _comma_joined(private_subnets))


def subnet_blocks(vpc_cidr: Ref, network: NetworkConfig, count: int) -> list[Select]:
    """`count` equal subnet ranges cut from the VPC range parameter, so the range stays a
    per-environment value while the subnet size (a structural choice) is fixed here."""
    cidr = Cidr(vpc_cidr, count, 32 - network.subnet_prefix_length)
    return [Select(index, cidr) for index in range(count)]


def _subnet(b: StageBuilder, kind: str, zone: int, vpc: ec2.VPC, block: Select) -> ec2.Subnet:
    return ec2.Subnet(
        f"{kind}Subnet{zone + 1}",
        VpcId=Ref(vpc),
        CidrBlock=block,
        AvailabilityZone=Select(zone, GetAZs("")),
        # Public subnets too: the only public addresses are the NAT gateways' elastic IPs.
        MapPublicIpOnLaunch=False,
        Tags=_name(b, kind.lower(), str(zone + 1)),
    )


# The rule pack's E9005 takes a public subnet only with a reason: here, the one it was asked for.
PUBLIC_SUBNET_REASON = (
    "Asked for: network.internet_gateway is on in the pipeline file. The subnet holds its "
    "zone's NAT gateway and maps no public address on launch; the pipeline's compute stays in "
    "the private subnets")


def add_internet_access(b: StageBuilder, vpc: ec2.VPC, private_route_tables: list,
                        blocks: list[Select]) -> list[ec2.Subnet]:
    """Public subnets behind an internet gateway and a NAT gateway per zone, so one zone's
    outage does not cut the others off; each private route table sends its default route
    through its own zone's NAT."""
    gateway = b.add(ec2.InternetGateway("InternetGateway", Tags=_name(b, "igw")))
    attachment = b.add(ec2.VPCGatewayAttachment(
        "InternetGatewayAttachment", VpcId=Ref(vpc), InternetGatewayId=Ref(gateway)))
    public_table = b.add(ec2.RouteTable("PublicRouteTable", VpcId=Ref(vpc),
                                        Tags=_name(b, "public")))
    b.add(ec2.Route("PublicDefaultRoute", RouteTableId=Ref(public_table),
                    DestinationCidrBlock=ANYWHERE, GatewayId=Ref(gateway),
                    DependsOn=attachment))
    public_subnets = []
    for zone, (private_table, block) in enumerate(zip(private_route_tables, blocks)):
        subnet = _subnet(b, "Public", zone, vpc, block)
        subnet.Metadata = lint_exceptions(("E9005", PUBLIC_SUBNET_REASON))
        b.add(subnet)
        b.add(ec2.SubnetRouteTableAssociation(
            f"PublicRouteTableAssociation{zone + 1}", SubnetId=Ref(subnet),
            RouteTableId=Ref(public_table)))
        address = b.add(ec2.EIP(f"NatAddress{zone + 1}", Domain="vpc", DependsOn=attachment,
                                Tags=_name(b, "nat", str(zone + 1))))
        nat = b.add(ec2.NatGateway(
            f"NatGateway{zone + 1}", AllocationId=GetAtt(address, "AllocationId"),
            SubnetId=Ref(subnet), Tags=_name(b, "nat", str(zone + 1))))
        b.add(ec2.Route(f"PrivateDefaultRoute{zone + 1}", RouteTableId=Ref(private_table),
                        DestinationCidrBlock=ANYWHERE, NatGatewayId=Ref(nat)))
        public_subnets.append(subnet)
    return public_subnets


def answers_custom_resources(config: PipelineConfig) -> bool:
    """Whether a function in the private subnets answers CloudFormation custom resources: the
    EMR consumer's supervisor (stages/ingestion_emr.py) stops its application on deletion."""
    ingestion = config.stages.ingestion
    return ingestion.enabled and ingestion.emr_consumer.enabled


def custom_resource_responses() -> Statement:
    """CloudFormation's AWS-owned bucket a custom resource's answer is uploaded to (a presigned
    URL). AWS: "Setting up VPC endpoints for AWS CloudFormation" (considerations: a VPC endpoint
    policy must allow responses to `cloudformation-custom-resource-response-<region>`, the
    region without dashes, e.g. uswest2)."""
    region = Join("", Split("-", Ref("AWS::Region")))
    return Statement(
        Sid="CloudFormationCustomResourceResponses",
        Effect=Allow,
        Principal=Principal("*"),
        Action=[s3.PutObject],
        Resource=[Join("", ["arn:", Ref("AWS::Partition"),
                            ":s3:::cloudformation-custom-resource-response-", region, "/*"])],
    )


def s3_gateway_endpoint(vpc: ec2.VPC, route_tables: list[ec2.RouteTable],
                        custom_resources: bool = False) -> ec2.VPCEndpoint:
    """S3 through the route tables, for free, limited to this account's buckets (so compute
    cannot copy data to a bucket elsewhere), ECR's image layers and, when a function in the VPC
    answers custom resources, CloudFormation's response bucket."""
    extra = [custom_resource_responses()] if custom_resources else []
    return ec2.VPCEndpoint(
        "S3Endpoint",
        VpcId=Ref(vpc),
        ServiceName=Sub("com.amazonaws.${AWS::Region}.s3"),
        VpcEndpointType="Gateway",
        RouteTableIds=[Ref(t) for t in route_tables],
        PolicyDocument=policies.document(
            # "Control access to VPC endpoints using endpoint policies" and "Gateway endpoints
            # for Amazon S3" (AWS PrivateLink guide): an endpoint policy limited by
            # s3:ResourceAccount to buckets of this account.
            Statement(
                Sid="BucketsOfThisAccount",
                Effect=Allow,
                # An endpoint policy limits what passes the endpoint; who may act is still up
                # to IAM, so the principal is everyone and the limit is the bucket's account.
                Principal=Principal("*"),
                Action=list(S3_ENDPOINT_ACTIONS),
                Resource=[policies.arn("s3", "*", regional=False, in_account=False),
                          policies.arn("s3", "*/*", regional=False, in_account=False)],
                Condition=Condition(StringEquals("s3:ResourceAccount", AccountId)),
            ),
            Statement(
                Sid="EcrImageLayers",
                Effect=Allow,
                # Containers pulled from ECR inside the VPC fetch their layers from this
                # AWS-owned bucket ("Amazon ECR interface VPC endpoints (AWS PrivateLink)",
                # minimum Amazon S3 bucket permissions for Amazon ECR).
                Principal=Principal("*"),
                Action=[s3.GetObject],
                Resource=[policies.arn("s3", "prod-${AWS::Region}-starport-layer-bucket/*",
                                       regional=False, in_account=False)],
            ),
            *extra,
        ),
    )


def endpoint_security_group(vpc_id: Any, vpc_cidr: Ref) -> ec2.SecurityGroup:
    return ec2.SecurityGroup(
        "EndpointSecurityGroup",
        GroupDescription="Interface VPC endpoints: HTTPS from inside the VPC",
        VpcId=vpc_id,
        SecurityGroupIngress=[ec2.SecurityGroupRule(
            IpProtocol="tcp", FromPort=HTTPS, ToPort=HTTPS, CidrIp=vpc_cidr,
            Description="HTTPS from the VPC's range")],
        # Endpoints only answer (the group is stateful), so they need no egress; without a rule
        # EC2 would allow all. This one matches nothing (ICMP type 252 code 86 to a broadcast
        # address), the usual way to say "no egress".
        SecurityGroupEgress=[ec2.SecurityGroupRule(
            IpProtocol="icmp", FromPort=252, ToPort=86, CidrIp="255.255.255.255/32",
            Description="No outbound traffic")],
    )


def interface_endpoint(service: str, placement: Placement,
                       security_group: ec2.SecurityGroup) -> ec2.VPCEndpoint:
    return ec2.VPCEndpoint(
        endpoint_logical_id(service),
        VpcId=placement.vpc_id,
        ServiceName=Sub(f"com.amazonaws.${{AWS::Region}}.{service}"),
        VpcEndpointType="Interface",
        PrivateDnsEnabled=True,
        SubnetIds=placement.private_subnets,
        SecurityGroupIds=[GetAtt(security_group, "GroupId")],
    )


def endpoint_logical_id(service: str) -> str:
    """`ecr.dkr` -> `EcrDkrEndpoint`."""
    return "".join(part.capitalize() for part in re.split(r"[.-]", service)) + "Endpoint"


def add_flow_logs(b: StageBuilder, config: PipelineConfig, vpc: ec2.VPC) -> None:
    # Flow logs are the network's audit trail: they outlive the stack.
    group = encrypted_log_group(b, config, "FlowLogGroup", "vpc-flow-logs", audit=True)
    role = b.add(flow_log_role(group))
    b.add(ec2.FlowLog(
        "FlowLog",
        ResourceId=Ref(vpc),
        ResourceType="VPC",
        TrafficType=config.network.flow_log_traffic,
        LogDestinationType="cloud-watch-logs",
        LogGroupName=Ref(group),
        DeliverLogsPermissionArn=GetAtt(role, "Arn"),
        Tags=_name(b, "flow-logs"),
    ))


def flow_log_role(group: cw_logs.LogGroup) -> iam.Role:
    """The role VPC Flow Logs assumes to write into `group`, and nowhere else.

    AWS's policy for it ("IAM role for publishing flow logs to CloudWatch Logs", Amazon VPC User
    Guide) lists logs:CreateLogGroup, CreateLogStream, PutLogEvents, DescribeLogGroups and
    DescribeLogStreams on `*`. The group is this stack's, so CreateLogGroup is left out and the
    writes are scoped to it; DescribeLogGroups, with which the service finds the group, is a list
    call that names no group.
    """
    group_arn = GetAtt(group, "Arn")  # `...:log-group:<name>:*`, which covers its streams
    return iam.Role(
        "FlowLogRole",
        Description="VPC Flow Logs writes the VPC's flow records to its log group",
        # Only for flow logs of this account (confused deputy protection: "IAM role for
        # publishing flow logs to CloudWatch Logs", trust policy with aws:SourceAccount and
        # aws:SourceArn).
        AssumeRolePolicyDocument=policies.trusted_by(
            "vpc-flow-logs.amazonaws.com",
            StringEquals("aws:SourceAccount", AccountId),
            ArnLike("aws:SourceArn", policies.arn("ec2", "vpc-flow-log/*")),
        ),
        Policies=[iam.Policy(
            PolicyName="write-flow-logs",
            PolicyDocument=policies.document(
                # AWS: "IAM role for publishing flow logs to CloudWatch Logs" (Amazon VPC User
                # Guide): the streams and records the service writes into the group.
                Statement(
                    Sid="WriteFlowRecords",
                    Effect=Allow,
                    Action=[logs.CreateLogStream, logs.PutLogEvents, logs.DescribeLogStreams],
                    Resource=[group_arn],
                ),
                # AWS: same page: logs:DescribeLogGroups, with which the service looks the group
                # up before it writes. The action names no group ("Actions, resources, and
                # condition keys for Amazon CloudWatch Logs"): it is authorized on the
                # account's log groups of this region, the narrowest resource it takes.
                Statement(
                    Sid="FindTheLogGroup",
                    Effect=Allow,
                    Action=[logs.DescribeLogGroups],
                    Resource=[policies.arn("logs", "log-group:*")],
                ),
            ),
        )],
    )


def _name(b: StageBuilder, *purpose: str) -> Tags:
    return Tags(Name=b.physical_name(NAME_TAG, *purpose))


def _comma_joined(resources: list) -> Sub:
    return Sub(",".join(f"${{{r.title}}}" for r in resources))
