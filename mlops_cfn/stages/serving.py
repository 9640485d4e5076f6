"""serving stage (being written): SageMaker endpoint and batch transform, or a Fargate API."""

from ..config import PipelineConfig
from ..stage import Stage, StageBuilder


def build(config: PipelineConfig) -> Stage:
    return StageBuilder("serving", config.project, "serving (being written)").finish()
