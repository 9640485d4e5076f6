"""Building blocks shared by every section of the config model."""

import types
import typing
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator


# What a pattern allows, in words, for error messages (`must be <hint>` reads better than the
# regular expression). Modules defining a pattern register its wording here.
PATTERN_HINTS: dict[str, str] = {}


def described_pattern(pattern: str, hint: str) -> str:
    PATTERN_HINTS[pattern] = hint
    return pattern


# A cron expression as EventBridge, EventBridge Scheduler and Glue read it: six fields (minutes
# hours day-of-month month day-of-week year) in UTC, of which exactly one of day-of-month and
# day-of-week is `?`.
_CRON_FIELD = r"[0-9A-Za-z*,/#-]+"
_CRON = (rf"cron\({_CRON_FIELD} {_CRON_FIELD} "
         rf"(?:\? {_CRON_FIELD} {_CRON_FIELD}|{_CRON_FIELD} {_CRON_FIELD} \?) {_CRON_FIELD}\)")
_RATE = r"rate\([1-9][0-9]{0,4} (?:minute|minutes|hour|hours|day|days)\)"
CRON_PATTERN = described_pattern(
    rf"^{_CRON}$", "cron(minutes hours day-of-month month day-of-week year) in UTC, with `?` "
                   "for exactly one of day-of-month and day-of-week, e.g. cron(15 * * * ? *)")
SCHEDULE_PATTERN = described_pattern(
    rf"^(?:{_RATE}|{_CRON})$",
    "rate(N minutes|hours|days) or cron(minutes hours day-of-month month day-of-week year) "
    "with `?` for exactly one of day-of-month and day-of-week, e.g. rate(7 days)")


class Model(BaseModel):
    """Strict and immutable: an unknown key is an error, so a typo never passes silently."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, defer_build=True)

    @field_validator("*", mode="before")
    @classmethod
    def _choices_of_numbers_take_whole_numbers(cls, value: Any, info: ValidationInfo) -> Any:
        # pydantic matches a Literal of numbers by equality, so `true` passed as 1 and 30.0 as
        # 30, though strict mode refuses both for a plain int (and the schema for both).
        if isinstance(value, (bool, float)):
            choices = _number_choices(cls.model_fields[info.field_name].annotation)
            if choices:
                raise ValueError(f"must be one of {', '.join(map(str, choices))}")
        return value


@dataclass(frozen=True)
class Setting:
    """Marks a config value that may differ between environments without changing the templates.

    Each marked field becomes a CloudFormation parameter named `parameter` on the root template,
    passed down to the stages that use it; its value per environment goes to parameters.json.
    Fields without the marker are structural: changing one changes the rendered templates.
    """

    parameter: str
    # CloudFormation parameter type when it is more specific than the field's Python type,
    # e.g. AWS::EC2::VPC::Id, so the console offers a picker and CloudFormation checks the value.
    type: str | None = None
    # Chosen when deploying rather than in the file (which model serves, which image runs):
    # left empty in the config, the value the stack has now is kept on every deployment
    # (settings.left_to_run_time), never reset by a parameters file the pipeline replays.
    run_time: bool = False


# CloudWatch Logs accepts only these retention periods.
LogRetentionDays = Literal[
    1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922,
    3288, 3653,
]


class StageToggle(Model):
    """A stage section: every stage can be switched off."""

    enabled: Annotated[bool, Field(description="Render this stage.")] = True

    def vpc_endpoints(self) -> tuple[str, ...]:
        """Interface VPC endpoints this stage's in-VPC compute calls, with these settings.

        The network stage creates the union over the enabled stages (unless the user lists the
        endpoints). S3 is never listed: a created VPC always has the S3 gateway endpoint.
        """
        return ()

    def problems_with(self, config: Any) -> list[str]:
        """Rules this stage sets on other sections of the file (`config` is the whole
        PipelineConfig), as messages naming the fields, e.g. Redshift Serverless needing three
        availability zones. Checked only while the stage is enabled."""
        return []


def _number_choices(annotation: Any) -> tuple[int, ...]:
    """The whole numbers a `Literal` of whole numbers allows, else ()."""
    annotation = unwrap_annotation(annotation)
    if typing.get_origin(annotation) is not typing.Literal:
        return ()
    choices = typing.get_args(annotation)
    numbers = all(isinstance(c, int) and not isinstance(c, bool) for c in choices)
    return choices if numbers else ()


def unwrap_annotation(annotation: Any) -> Any:
    """Strip Annotated and Optional so the model (or container) underneath shows."""
    while True:
        origin = typing.get_origin(annotation)
        if origin is typing.Annotated:
            annotation = typing.get_args(annotation)[0]
        elif origin in (typing.Union, types.UnionType):
            members = [a for a in typing.get_args(annotation) if a is not type(None)]
            if len(members) != 1:
                return annotation
            annotation = members[0]
        else:
            return annotation
