"""The `stages.serving` section: SageMaker endpoint and batch transform, or a Fargate API."""

from typing import Annotated

from pydantic import Field

from .base import StageToggle


class ServingConfig(StageToggle):
    # Off until the stage is written (being built in parallel).
    enabled: Annotated[bool, Field(description="Render this stage.")] = False
