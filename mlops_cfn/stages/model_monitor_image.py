"""The Model Monitor analyzer image, which AWS publishes from one account per region.

Both the monitoring stage's scheduled runs and the training pipeline's baselining step run it.
"""

from typing import Any

from ..stage import StageBuilder
from .image_registries import MODEL_MONITOR, account_in_region

MONITOR_IMAGE = "sagemaker-model-monitor-analyzer"
# The image's URI as Fn::Sub text; `${Account}` is `analyzer_account`.
ANALYZER_IMAGE = f"${{Account}}.dkr.ecr.${{AWS::Region}}.${{AWS::URLSuffix}}/{MONITOR_IMAGE}"


def analyzer_account(b: StageBuilder, monitor: Any) -> Any:
    """The configured account (`model_monitor.image_account`), or the region's from the table
    of image_registries.py, whose rule refuses a region the table lacks."""
    if monitor.image_account is not None:
        return b.setting(monitor, "image_account")
    return account_in_region(b, MODEL_MONITOR)
