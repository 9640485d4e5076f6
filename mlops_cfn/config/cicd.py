"""The `stages.cicd` section: CodePipeline/CodeBuild for CI/CD/CT of this pipeline."""

from typing import Annotated

from pydantic import Field

from .base import StageToggle


class CicdConfig(StageToggle):
    # Off until the stage is written (being built in parallel).
    enabled: Annotated[bool, Field(description="Render this stage.")] = False
