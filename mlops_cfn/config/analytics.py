"""The `stages.analytics` section: Redshift (Serverless or provisioned) over the processed data."""

from typing import Annotated

from pydantic import Field

from .base import StageToggle


class AnalyticsConfig(StageToggle):
    # Off until the stage is written (being built in parallel).
    enabled: Annotated[bool, Field(description="Render this stage.")] = False
