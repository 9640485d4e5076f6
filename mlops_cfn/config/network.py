"""The `network` section: a VPC of our own, or placement in an existing one."""

import ipaddress
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from .base import Model, Setting, described_pattern

# Interface endpoint service names (the part after com.amazonaws.<region>.) we know how to
# create; the list is closed so a typo fails at load instead of at deploy.
INTERFACE_ENDPOINT_SERVICES = (
    "codebuild", "ecr.api", "ecr.dkr", "emr-serverless", "events", "glue", "kinesis-firehose",
    "kinesis-streams", "kms", "lambda", "logs", "monitoring", "redshift-data", "sagemaker.api",
    "sagemaker.runtime",
    "secretsmanager", "sns", "sqs", "states", "sts",
)
EndpointService = Literal[INTERFACE_ENDPOINT_SERVICES]  # type: ignore[valid-type]

VPC_ID_PATTERN = described_pattern(r"^vpc-[0-9a-f]{8,17}$",
                                   "a VPC id (vpc- and 8 or 17 hex digits)")
AVAILABILITY_ZONE_PATTERN = described_pattern(
    r"^[a-z]{2}(-[a-z]+)+-[0-9][a-z]$", "an availability zone name, such as eu-west-1a")
SUBNET_ID_PATTERN = described_pattern(r"^subnet-[0-9a-f]{8,17}$",
                                      "a subnet id (subnet- and 8 or 17 hex digits)")
PREFIX_LIST_ID_PATTERN = described_pattern(
    r"^pl-[0-9a-f]{8,17}$", "a prefix list id (pl- and 8 or 17 hex digits)")
# The prefix lengths of a VPC's IPv4 range this tool accepts (EC2 takes /16 to /28; a range
# smaller than /24 has no room for subnets in two zones plus the addresses AWS reserves).
VPC_PREFIX_MIN, VPC_PREFIX_MAX = 16, 24
_OCTET = r"(25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])"
# A /16 to /24 IPv4 block: what a VPC accepts.
CIDR_PATTERN = described_pattern(
    rf"^({_OCTET}\.){{3}}{_OCTET}/(1[6-9]|2[0-4])$",
    "an IPv4 range from /16 to /24, such as 10.40.0.0/16")


class NetworkConfig(Model):
    mode: Annotated[
        Literal["create", "existing"],
        Field(description="`create` a VPC for the pipeline, or place it in an `existing` one."),
    ] = "create"
    cidr: Annotated[
        str,
        Field(pattern=CIDR_PATTERN,
              description="IPv4 range of the VPC (/16 to /24): with mode `create`, the range "
                          "the new VPC gets and its subnets are cut from; with mode `existing`, "
                          "the existing VPC's range, which the endpoint security group admits "
                          "(required then: there is no safe default for someone else's VPC)."),
        Setting("VpcCidr"),
    ] = "10.40.0.0/16"
    availability_zones: Annotated[
        Literal[2, 3],
        Field(description="How many availability zones the created VPC spans (Redshift "
                          "Serverless needs 3)."),
    ] = 3
    subnet_prefix_length: Annotated[
        int,
        Field(ge=16, le=28,
              description="Size of each subnet, as a prefix length (20 = 4,096 addresses)."),
    ] = 20
    internet_gateway: Annotated[
        bool,
        Field(description="Add public subnets, an internet gateway and one NAT gateway per zone, "
                          "for workloads that must reach the internet. Off: private subnets only, "
                          "AWS services through VPC endpoints."),
    ] = False
    interface_endpoints: Annotated[
        list[EndpointService] | None,
        Field(description="Interface VPC endpoints to create. Leave unset to derive them from "
                          "the enabled stages (mode `create`) or to create none (mode "
                          "`existing`, whose owner usually runs its own endpoints: the VPC must "
                          "then provide every one the enabled stages call, which `render` "
                          "prints and the ExistingVpcId parameter's description names); [] for "
                          "none. A created VPC always gets an S3 gateway endpoint."),
    ] = None
    flow_log_traffic: Annotated[
        Literal["ALL", "ACCEPT", "REJECT"],
        Field(description="Which traffic VPC flow logs record."),
    ] = "ALL"
    vpc_id: Annotated[
        str | None,
        Field(pattern=VPC_ID_PATTERN, description="With mode `existing`: the VPC to use."),
        Setting("ExistingVpcId", type="AWS::EC2::VPC::Id"),
    ] = None
    subnet_ids: Annotated[
        list[Annotated[str, Field(pattern=SUBNET_ID_PATTERN)]] | None,
        Field(description="With mode `existing`: private subnets (two or more zones) for compute."),
        Setting("ExistingSubnetIds", type="List<AWS::EC2::Subnet::Id>"),
    ] = None

    subnet_zones: Annotated[
        list[Annotated[str, Field(pattern=AVAILABILITY_ZONE_PATTERN)]] | None,
        Field(description="With mode `existing`: the availability zone of each of subnet_ids, "
                          "in the same order (Glue connections must name their subnet's zone "
                          "and cannot look it up; a created VPC's zones are known)."),
        Setting("ExistingSubnetZones", type="List<AWS::EC2::AvailabilityZone::Name>"),
    ] = None

    s3_prefix_list_id: Annotated[
        str | None,
        Field(pattern=PREFIX_LIST_ID_PATTERN,
              description="The region's AWS-managed prefix list of S3 (`aws ec2 "
                          "describe-managed-prefix-lists --filters Name=prefix-list-name,"
                          "Values=com.amazonaws.<region>.s3`). Given, compute security groups "
                          "send HTTPS only to the VPC's range (interface endpoints) and to S3's "
                          "addresses; unset, to any address on port 443, because the S3 "
                          "gateway endpoint is reached at S3's public addresses and "
                          "CloudFormation cannot look the list up. Matters most with "
                          "`internet_gateway`, where the rest of port 443 leads to the internet."),
        Setting("S3PrefixListId"),
    ] = None

    @field_validator("cidr")
    @classmethod
    def _a_network_address(cls, value):
        network = ipaddress.ip_network(value, strict=False)
        if str(network) != value:
            # EC2 refuses a range with host bits set; say which one was meant.
            raise ValueError(f"{value} has host bits set; the range is {network}")
        return value

    @field_validator("interface_endpoints")
    @classmethod
    def _no_repeats(cls, value):
        if value is not None and len(set(value)) != len(value):
            raise ValueError("lists a service twice")
        return value

    @model_validator(mode="after")
    def _mode_fits_fields(self):
        if self.subnet_zones is not None:
            if self.mode != "existing":
                raise ValueError("subnet_zones is only for mode 'existing' (a created VPC's "
                                 "zones are known)")
            if len(self.subnet_zones) != len(self.subnet_ids or []):
                raise ValueError(f"subnet_zones names {len(self.subnet_zones)} zones for "
                                 f"{len(self.subnet_ids or [])} subnet_ids; give one per subnet")
        if self.mode == "existing":
            if "cidr" not in self.model_fields_set:
                raise ValueError(
                    "mode 'existing' needs cidr: the existing VPC's IPv4 range, which the "
                    "endpoint security group admits on port 443")
            if self.vpc_id is None or not self.subnet_ids:
                raise ValueError("mode 'existing' needs vpc_id and subnet_ids")
            if len(self.subnet_ids) < 2:
                raise ValueError("mode 'existing' needs subnet_ids in at least two zones")
        else:
            if self.vpc_id is not None or self.subnet_ids is not None:
                raise ValueError("vpc_id and subnet_ids are only for mode 'existing'")
            self._check_subnets_fit()
        return self

    @property
    def subnet_count(self) -> int:
        """Subnets a created VPC's range is cut into: one private (and with internet_gateway
        one public) per zone."""
        return self.availability_zones * (2 if self.internet_gateway else 1)

    @property
    def largest_vpc_prefix(self) -> int:
        """The longest prefix (smallest range) the subnets can still be cut from: Fn::Cidr cuts
        `subnet_count` blocks of /subnet_prefix_length from the start of the range
        (stages/network.py), so the range must hold at least that many."""
        blocks_bits = (self.subnet_count - 1).bit_length()  # ceil(log2(subnet_count))
        return min(self.subnet_prefix_length - blocks_bits, VPC_PREFIX_MAX)

    def _check_subnets_fit(self) -> None:
        vpc = ipaddress.ip_network(self.cidr, strict=False)
        if self.largest_vpc_prefix < VPC_PREFIX_MIN:
            blocks_bits = (self.subnet_count - 1).bit_length()
            raise ValueError(
                f"subnet_prefix_length {self.subnet_prefix_length} is too large for "
                f"{self.subnet_count} subnets in one VPC (a /{VPC_PREFIX_MIN} at the most): "
                f"it must be {VPC_PREFIX_MIN + blocks_bits} or more")
        if vpc.prefixlen > self.largest_vpc_prefix:
            room = 2 ** max(self.subnet_prefix_length - vpc.prefixlen, 0)
            raise ValueError(
                f"cidr {self.cidr} holds {room} subnets of /{self.subnet_prefix_length}, "
                f"{self.subnet_count} are needed (a range from /{VPC_PREFIX_MIN} to "
                f"/{self.largest_vpc_prefix} holds them)")


def vpc_range_pattern(largest_prefix: int) -> str:
    """An IPv4 network address (no host bits set) from /16 to /`largest_prefix`, as a regular
    expression: the VpcCidr parameter's AllowedPattern for a created VPC, so that a value given
    at deploy time (parameters.json, --parameter, a Service Catalog launch) is refused by
    CloudFormation before any subnet is cut from it, as the config loader refuses it."""
    if largest_prefix < VPC_PREFIX_MIN:
        raise ValueError(f"no VPC range from /{VPC_PREFIX_MIN} up is as small as "
                         f"/{largest_prefix}")
    return network_address_pattern(VPC_PREFIX_MIN, largest_prefix)


def network_address_pattern(first_prefix: int, last_prefix: int) -> str:
    """IPv4 ranges from /`first_prefix` to /`last_prefix` whose host bits are all zero (what
    ipaddress.ip_network(strict=True) accepts), as a regular expression: per prefix length, the
    octets before it are any, the one it cuts a multiple of the block size, the rest 0."""
    shared = first_prefix // 8  # octets every alternative takes whole
    alternatives = []
    for prefix in range(first_prefix, last_prefix + 1):
        octets = []
        for index in range(shared, 4):
            bits = min(max(prefix - 8 * index, 0), 8)  # network bits in this octet
            if bits == 8:
                octets.append(_OCTET)
            elif bits == 0:
                octets.append("0")
            else:
                step = 2 ** (8 - bits)
                octets.append("(" + "|".join(str(v) for v in range(0, 256, step)) + ")")
        alternatives.append(r"\.".join(octets) + f"/{prefix}")
    return "^" + rf"{_OCTET}\." * shared + "(" + "|".join(alternatives) + ")$"
