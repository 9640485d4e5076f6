"""E9005: no subnet is public unless the template says it was asked for."""

from __future__ import annotations

from cfnlint.rules import CloudFormationLintRule, RuleMatch

from mlops_cfn.lint_rules import _common

ANYWHERE = {"0.0.0.0/0", "::/0"}


def _ref(value) -> str | None:
    return value.get("Ref") if isinstance(value, dict) and isinstance(value.get("Ref"), str) else None


def internet_gateways(resources: dict) -> set[str]:
    return {name for name, r in resources.items()
            if isinstance(r, dict) and r.get("Type") == "AWS::EC2::InternetGateway"}


def public_route_tables(resources: dict) -> set[str]:
    """Route tables of this template with a route to an internet gateway (of this template,
    or named by its `igw-` id)."""
    gateways = internet_gateways(resources)
    tables = set()
    for resource in resources.values():
        if not isinstance(resource, dict) or resource.get("Type") != "AWS::EC2::Route":
            continue
        props = resource.get("Properties") or {}
        gateway = props.get("GatewayId")
        to_internet = (_ref(gateway) in gateways
                       or (isinstance(gateway, str) and gateway.startswith("igw-")))
        if to_internet and _ref(props.get("RouteTableId")):
            tables.add(_ref(props["RouteTableId"]))
    return tables


class NoUnaskedPublicSubnet(CloudFormationLintRule):
    """A public subnet gives its network interfaces a way to and from the internet; the
    pipeline's compute runs in private subnets and reaches AWS through VPC endpoints. A
    template that needs one (NAT gateways) says so on the subnet."""

    id = "E9005"
    shortdesc = "No public subnet unless asked for"
    description = (
        "A subnet that maps public IP addresses on launch, or whose route table routes to an "
        "internet gateway, carries an exception with its reason in Metadata (mlops-cfn: "
        "exceptions), as the network stage writes when internet access is asked for")
    source_url = "https://docs.aws.amazon.com/vpc/latest/userguide/configure-subnets.html"
    tags = ["resources", "ec2", "network", "mlops-cfn"]

    def match(self, cfn):
        resources = cfn.template.get("Resources", {})
        public_tables = public_route_tables(resources)
        routed = {}
        for resource in resources.values():
            if isinstance(resource, dict) and resource.get("Type") == \
                    "AWS::EC2::SubnetRouteTableAssociation":
                props = resource.get("Properties") or {}
                if _ref(props.get("RouteTableId")) in public_tables and _ref(props.get("SubnetId")):
                    routed[_ref(props["SubnetId"])] = _ref(props["RouteTableId"])
        matches = []
        for name, resource in resources.items():
            if (not isinstance(resource, dict) or resource.get("Type") != "AWS::EC2::Subnet"
                    or _common.excepted(resource, self.id)):
                continue
            path = ["Resources", name, "Properties"]
            for value, where in _common.values_at(resource.get("Properties"), path,
                                                  ["?MapPublicIpOnLaunch"]):
                if value is True or value == "true":
                    matches.append(RuleMatch(where, f"{name}: gives out public IP addresses"
                                                    f"{_common.HINT}"))
            if name in routed:
                matches.append(RuleMatch(["Resources", name],
                                         f"{name}: public, its route table {routed[name]} "
                                         f"routes to an internet gateway{_common.HINT}"))
        return matches
