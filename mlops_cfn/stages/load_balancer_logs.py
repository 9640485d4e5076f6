"""Who writes an Application Load Balancer's access logs to S3, per region, and the rule that
refuses a region AWS documents neither way.

AWS: "Enable access logs for your Application Load Balancer" (Elastic Load Balancing User Guide,
Step 2: attach a policy to your S3 bucket). In the regions available before August 2022 the
bucket policy must grant the regional Elastic Load Balancing account
(`arn:aws:iam::<elb-account-id>:root`, the page's table); in the regions available as of August
2022 or later, the log delivery service principal
`logdelivery.elasticloadbalancing.amazonaws.com`. The AWS GovCloud (US) accounts are those of the
AWS GovCloud (US) User Guide ("Elastic Load Balancing", access logs) and the China accounts those
of the same page on docs.amazonaws.cn; the account ARNs take the stack's partition.

A template can tell the two apart only by a mapping keyed by `AWS::Region`, and `FindInMap` of a
region the mapping lacks fails the whole stack, wherever in the template it stands (even in the
branch of an Fn::If not taken). So the mapping lists every region either way, and a `Rules`
assertion refuses any other at change-set creation, in one line, as the image tables do
(stages/image_registries.py); the root carries it (pipeline.py), `deploy` evaluates it before it
uploads anything (rules.py).
"""

from troposphere import Equals, FindInMap, Not, Ref

from ..stage import StageBuilder

MAPPING = "LoadBalancerLogDelivery"
RULE = "LoadBalancerLogDeliveryRegion"
# True where the bucket policy names the region's ELB account, false where the service principal.
BY_ACCOUNT = "LoadBalancerLogsByElbAccount"
SERVICE_PRINCIPAL = "logdelivery.elasticloadbalancing.amazonaws.com"
# The mapping's value for a region that uses the service principal (no account).
NO_ACCOUNT = "none"

# Regions available before August 2022: the Elastic Load Balancing account of each.
ELB_ACCOUNTS = {
    "af-south-1": "098369216593",
    "ap-east-1": "754344448648",
    "ap-northeast-1": "582318560864",
    "ap-northeast-2": "600734575887",
    "ap-northeast-3": "383597477331",
    "ap-south-1": "718504428378",
    "ap-southeast-1": "114774131450",
    "ap-southeast-2": "783225319266",
    "ap-southeast-3": "589379963580",
    "ca-central-1": "985666609251",
    "cn-north-1": "638102146993",
    "cn-northwest-1": "037604701340",
    "eu-central-1": "054676820928",
    "eu-north-1": "897822967062",
    "eu-south-1": "635631232127",
    "eu-west-1": "156460612806",
    "eu-west-2": "652711504416",
    "eu-west-3": "009996457667",
    "me-south-1": "076674570225",
    "sa-east-1": "507241528517",
    "us-east-1": "127311923021",
    "us-east-2": "033677994240",
    "us-gov-east-1": "190560391635",
    "us-gov-west-1": "048591011584",
    "us-west-1": "027434742980",
    "us-west-2": "797873946194",
}

# Regions available as of August 2022 or later: the service principal.
SERVICE_PRINCIPAL_REGIONS = (
    "ap-east-2",       # Asia Pacific (Taipei)
    "ap-south-2",      # Asia Pacific (Hyderabad)
    "ap-southeast-4",  # Asia Pacific (Melbourne)
    "ap-southeast-5",  # Asia Pacific (Malaysia)
    "ap-southeast-6",  # Asia Pacific (New Zealand)
    "ap-southeast-7",  # Asia Pacific (Thailand)
    "ca-west-1",       # Canada West (Calgary)
    "eu-central-2",    # Europe (Zurich)
    "eu-south-2",      # Europe (Spain)
    "il-central-1",    # Israel (Tel Aviv)
    "me-central-1",    # Middle East (UAE)
    "mx-central-1",    # Mexico (Central)
)

REGIONS = sorted([*ELB_ACCOUNTS, *SERVICE_PRINCIPAL_REGIONS])


def assertion() -> dict:
    return {
        "Assert": {"Fn::Contains": [REGIONS, Ref("AWS::Region")]},
        # Short: the root carries it, and the root's body is near CloudFormation's request
        # size limit; the regions are the rule's own list, beside it.
        "AssertDescription": (
            "mlops-cfn: Elastic Load Balancing documents no access log delivery principal for "
            "this region (the rule lists those it does): deploy to one of those"),
    }


def by_account_condition(b: StageBuilder) -> str:
    """The name of the condition that holds where the region's ELB account writes the logs; the
    template gains the mapping, the condition and the rule."""
    if MAPPING not in b.template.mappings:
        b.template.add_mapping(MAPPING, {
            region: {"Account": ELB_ACCOUNTS.get(region, NO_ACCOUNT)} for region in REGIONS})
        b.template.add_condition(BY_ACCOUNT, Not(Equals(elb_account(), NO_ACCOUNT)))
        b.template.add_rule(RULE, {"Assertions": [assertion()]})
    return BY_ACCOUNT


def elb_account() -> FindInMap:
    return FindInMap(MAPPING, Ref("AWS::Region"), "Account")
