"""network stage (STUB: being written)."""

from troposphere import GetAtt, Join, Ref, ec2

from ..config import PipelineConfig
from ..outputs import ENDPOINT_SECURITY_GROUP_ID, PRIVATE_SUBNET_IDS, VPC_CIDR, VPC_ID
from ..stage import Stage, StageBuilder


def build(config: PipelineConfig) -> Stage:
    b = StageBuilder("network", config.project, "VPC, private subnets and endpoints")
    vpc = b.add(ec2.VPC("Vpc", CidrBlock=b.setting(config.network, "cidr")))
    subnet = b.add(ec2.Subnet("PrivateSubnet1", VpcId=Ref(vpc), CidrBlock="10.0.0.0/24"))
    sg = b.add(ec2.SecurityGroup("EndpointSecurityGroup", GroupDescription="endpoints",
                                 VpcId=Ref(vpc)))
    b.output(VPC_ID, Ref(vpc))
    b.output(VPC_CIDR, GetAtt(vpc, "CidrBlock"))
    b.output(PRIVATE_SUBNET_IDS, Join(",", [Ref(subnet)]))
    b.output(ENDPOINT_SECURITY_GROUP_ID, Ref(sg))
    return b.finish()
