"""The `stages.monitoring` section: alarms, dashboard, Model Monitor and automatic retraining."""

from typing import Annotated

from pydantic import Field

from .base import StageToggle


class MonitoringConfig(StageToggle):
    # Off until the stage is written (being built in parallel).
    enabled: Annotated[bool, Field(description="Render this stage.")] = False
