"""The `overrides` section: one property of one rendered resource, set or deleted by path.

The escape hatch for what the config has no key for (CDK's `addPropertyOverride`): the file
names a stage, a resource's logical id in that stage's template, and a path under the
resource's `Properties`; the value replaces what is there (null deletes it). Only the syntax is
checked here. Whether the stage and the resource exist is known once the stages are built
(mlops_cfn/overrides.py applies them there).

The section is the file's, never an environment's: every environment deploys the same
templates, promoted unchanged from one to the next; what differs between environments is a
value, and a value that differs is a setting (a parameter), not a different template.
"""

from typing import Annotated

from pydantic import Field, JsonValue

from .base import described_pattern

# A template's logical ids: alphanumeric (CloudFormation's template anatomy).
LOGICAL_ID_PATTERN = described_pattern(
    r"^[A-Za-z0-9]{1,255}$", "a logical id of the stage's template: letters and digits")
STAGE_NAME_PATTERN = described_pattern(
    r"^[a-z][a-z0-9_]*$", "a stage name: lowercase letters, digits and _")
# A property name, then keys or list indexes separated by dots; `\.` is a dot inside a key.
PROPERTY_PATH_PATTERN = described_pattern(
    r"^[A-Za-z][A-Za-z0-9]*(\.([^.\\]|\\.)+)*$",
    "a property name, then keys or list indexes separated by dots, e.g. "
    "VersioningConfiguration.Status or Tags.0.Value (\\. for a dot inside a key)")

ResourceOverrides = dict[Annotated[str, Field(pattern=PROPERTY_PATH_PATTERN)], JsonValue]
Overrides = dict[
    Annotated[str, Field(pattern=STAGE_NAME_PATTERN)],
    dict[Annotated[str, Field(pattern=LOGICAL_ID_PATTERN)], ResourceOverrides],
]

DESCRIPTION = (
    "Escape hatch: per stage and logical id, a property path under the resource's Properties "
    "and the value it takes there (null deletes the property), applied to the rendered template "
    "of every environment, e.g. `storage: {RawBucket: {ObjectLockEnabled: true}}`. Unknown "
    "stages and resources are errors; the security checks of `mlops-cfn validate` still judge "
    "the result. Set once for the file, never per environment.")
