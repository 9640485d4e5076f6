"""The `stages.training` section: SageMaker model registry and the training pipeline."""

from typing import Annotated

from pydantic import Field

from .base import StageToggle


class TrainingConfig(StageToggle):
    # Off until the stage is written (being built in parallel).
    enabled: Annotated[bool, Field(description="Render this stage.")] = False
