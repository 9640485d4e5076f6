"""The Model Monitor analyzer image, which AWS publishes from one account per region.

Both the monitoring stage's scheduled runs and the training pipeline's baselining step run it.
"""

from typing import Any

from troposphere import FindInMap, Ref

from ..stage import StageBuilder

MONITOR_IMAGE = "sagemaker-model-monitor-analyzer"
MONITOR_IMAGE_MAPPING = "ModelMonitorImageAccounts"
# The account publishing the analyzer image, per region (SageMaker Python SDK,
# image_uri_config/model-monitor.json, version 1).
MONITOR_IMAGE_REGISTRIES = {
    "ap-east-1": "001633400207", "ap-northeast-1": "574779866223",
    "ap-northeast-2": "709848358524", "ap-south-1": "126357580389",
    "ap-southeast-1": "245545462676", "ap-southeast-2": "563025443158",
    "ca-central-1": "536280801234", "cn-north-1": "453000072557",
    "cn-northwest-1": "453252182341", "eu-central-1": "048819808253",
    "eu-north-1": "895015795356", "eu-west-1": "468650794304", "eu-west-2": "749857270468",
    "eu-west-3": "680080141114", "me-south-1": "607024016150", "sa-east-1": "539772159869",
    "us-east-1": "156813124566", "us-east-2": "777275614652", "us-west-1": "890145073186",
    "us-west-2": "159807026194",
}
# The image's URI as Fn::Sub text; `${Account}` is `analyzer_account`.
ANALYZER_IMAGE = f"${{Account}}.dkr.ecr.${{AWS::Region}}.${{AWS::URLSuffix}}/{MONITOR_IMAGE}"


def analyzer_account(b: StageBuilder, monitor: Any) -> Any:
    """The configured account (`model_monitor.image_account`), or the region's from the table."""
    if monitor.image_account is not None:
        return b.setting(monitor, "image_account")
    b.template.add_mapping(MONITOR_IMAGE_MAPPING, {
        region: {"Account": account} for region, account in MONITOR_IMAGE_REGISTRIES.items()})
    return FindInMap(MONITOR_IMAGE_MAPPING, Ref("AWS::Region"), "Account")
