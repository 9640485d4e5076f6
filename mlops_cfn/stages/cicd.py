"""cicd stage (being written): CodePipeline/CodeBuild for CI/CD/CT of this pipeline."""

from ..config import PipelineConfig
from ..stage import Stage, StageBuilder


def build(config: PipelineConfig) -> Stage:
    return StageBuilder("cicd", config.project, "cicd (being written)").finish()
