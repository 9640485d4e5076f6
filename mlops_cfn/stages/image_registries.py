"""The AWS accounts that publish SageMaker's built-in images, per region, and the rule that refuses
a region without one.

A built-in image lives in an account of AWS's that differs from region to region, which a template
can only look up in a mapping keyed by `AWS::Region`. Where the mapping has no entry, `FindInMap`
fails in the middle of a deployment. So every template that looks an image up carries a `Rules`
assertion that its region is in the table: CloudFormation evaluates rules before it creates or
updates anything, at change-set creation ("Rule functions": rules may use `Ref`, pseudo
parameters included), and the root template carries its stages' rules (pipeline.py), so the
whole pipeline is refused in one line, before any nested stack starts. `mlops-cfn deploy`
evaluates the same rules before it uploads anything (rules.py).

Sources: "Docker Registry Paths and Example Code" of the Amazon SageMaker Developer Guide, one
page per region, sections "Model Monitor (algorithm)" and "XGBoost (algorithm)" (the pages as
of June 2023 list 25 regions). The XGBoost entries for the eight regions those pages did not yet
cover (ap-south-2, ap-southeast-4, ca-west-1, eu-central-2, eu-south-2, il-central-1,
me-central-1, us-gov-east-1) are as this project had them, from the SageMaker Python SDK's
image URI configuration. A region missing here is refused; `image_account` (Model Monitor) or
`image_uri` (training) names an image for it instead.
"""

from dataclasses import dataclass

from troposphere import FindInMap, Ref

from ..stage import StageBuilder


@dataclass(frozen=True)
class RegionTable:
    """One image's publishing account per region, as a template mapping plus its rule."""

    mapping: str
    rule: str
    image: str
    remedy: str
    accounts: dict[str, str]

    @property
    def regions(self) -> list[str]:
        return sorted(self.accounts)

    def assertion(self) -> dict:
        return {
            "Assert": {"Fn::Contains": [self.regions, Ref("AWS::Region")]},
            "AssertDescription": (
                f"mlops-cfn: {self.image} has no documented account in this region (it has in "
                f"{', '.join(self.regions)}): deploy to one of those, or {self.remedy}"),
        }


MODEL_MONITOR = RegionTable(
    mapping="ModelMonitorImageAccounts",
    rule="ModelMonitorImageRegion",
    image="SageMaker's Model Monitor analyzer image",
    remedy="set stages.monitoring.model_monitor.image_account",
    accounts={
        "af-south-1": "875698925577",
        "ap-east-1": "001633400207",
        "ap-northeast-1": "574779866223",
        "ap-northeast-2": "709848358524",
        "ap-northeast-3": "990339680094",
        "ap-south-1": "126357580389",
        "ap-southeast-1": "245545462676",
        "ap-southeast-2": "563025443158",
        "ca-central-1": "536280801234",
        "cn-north-1": "453000072557",
        "cn-northwest-1": "453252182341",
        "eu-central-1": "048819808253",
        "eu-north-1": "895015795356",
        "eu-south-1": "933208885752",
        "eu-west-1": "468650794304",
        "eu-west-2": "749857270468",
        "eu-west-3": "680080141114",
        "me-south-1": "607024016150",
        "sa-east-1": "539772159869",
        "us-east-1": "156813124566",
        "us-east-2": "777275614652",
        "us-west-1": "890145073186",
        "us-west-2": "159807026194",
    },
)

XGBOOST = RegionTable(
    mapping="XgboostRegistry",
    rule="XgboostImageRegion",
    image="SageMaker's built-in XGBoost image",
    remedy="set stages.training.image_uri",
    accounts={
        "af-south-1": "510948584623",
        "ap-east-1": "651117190479",
        "ap-northeast-1": "354813040037",
        "ap-northeast-2": "366743142698",
        "ap-northeast-3": "867004704886",
        "ap-south-1": "720646828776",
        "ap-south-2": "628508329040",
        "ap-southeast-1": "121021644041",
        "ap-southeast-2": "783357654285",
        "ap-southeast-3": "951798379941",
        "ap-southeast-4": "106583098589",
        "ca-central-1": "341280168497",
        "ca-west-1": "190319476487",
        "cn-north-1": "450853457545",
        "cn-northwest-1": "451049120500",
        "eu-central-1": "492215442770",
        "eu-central-2": "680994064768",
        "eu-north-1": "662702820516",
        "eu-south-1": "978288397137",
        "eu-south-2": "104374241257",
        "eu-west-1": "141502667606",
        "eu-west-2": "764974769150",
        "eu-west-3": "659782779980",
        "il-central-1": "898809789911",
        "me-central-1": "272398656194",
        "me-south-1": "801668240914",
        "sa-east-1": "737474898029",
        "us-east-1": "683313688378",
        "us-east-2": "257758044811",
        "us-gov-east-1": "237065988967",
        "us-gov-west-1": "414596584902",
        "us-west-1": "746614075791",
        "us-west-2": "246618743249",
    },
)


# "Get Started with a SageMaker Clarify Container" (SageMaker Developer Guide, as of June 2023):
# sagemaker-clarify-processing:1.0, one account per region. The bias drift monitor and the
# training pipeline's bias baseline run it.
CLARIFY = RegionTable(
    mapping="ClarifyImageAccounts",
    rule="ClarifyImageRegion",
    image="SageMaker Clarify's processing image",
    remedy="turn off stages.monitoring.model_monitor.bias_drift",
    accounts={
        "af-south-1": "811711786498",
        "ap-east-1": "098760798382",
        "ap-northeast-1": "377024640650",
        "ap-northeast-2": "263625296855",
        "ap-northeast-3": "912233562940",
        "ap-south-1": "452307495513",
        "ap-southeast-1": "834264404009",
        "ap-southeast-2": "007051062584",
        "ap-southeast-3": "705930551576",
        "ca-central-1": "675030665977",
        "cn-north-1": "122526803553",
        "cn-northwest-1": "122578899357",
        "eu-central-1": "017069133835",
        "eu-north-1": "763603941244",
        "eu-south-1": "638885417683",
        "eu-west-1": "131013547314",
        "eu-west-2": "440796970383",
        "eu-west-3": "341593696636",
        "me-south-1": "835444307964",
        "sa-east-1": "520018980103",
        "us-east-1": "205585389593",
        "us-east-2": "211330385671",
        "us-west-1": "740489534195",
        "us-west-2": "306415355426",
    },
)

def account_in_region(b: StageBuilder, table: RegionTable) -> FindInMap:
    """The publishing account in the stack's region; the template gains the table and the rule
    that refuses a region it lacks."""
    if table.mapping not in b.template.mappings:
        b.template.add_mapping(table.mapping, {
            region: {"Account": account} for region, account in sorted(table.accounts.items())})
        b.template.add_rule(table.rule, {"Assertions": [table.assertion()]})
    return FindInMap(table.mapping, Ref("AWS::Region"), "Account")
