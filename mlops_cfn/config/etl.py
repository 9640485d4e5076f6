"""The `stages.etl` section: Glue catalog, crawlers and the ETL job from raw to processed data."""

from typing import Annotated

from pydantic import Field

from .base import StageToggle


class EtlConfig(StageToggle):
    # Off until the stage is written (being built in parallel).
    enabled: Annotated[bool, Field(description="Render this stage.")] = False
