"""analytics stage (being written): Redshift (Serverless or provisioned) over the processed data."""

from ..config import PipelineConfig
from ..stage import Stage, StageBuilder


def build(config: PipelineConfig) -> Stage:
    return StageBuilder("analytics", config.project, "analytics (being written)").finish()
