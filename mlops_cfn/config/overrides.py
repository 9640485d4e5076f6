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

# docs/config.md's section on the escape hatch (reference.py appends it).
REFERENCE = """\
## overrides: the escape hatch

For what no key of this file sets: one property of one resource of a rendered stage template,
set or deleted, like CDK's `addPropertyOverride`. Name the stage, the resource's logical id in
`templates/<env>/<stage>.yaml`, and a path under the resource's `Properties`: keys separated by
dots, a list item by its index (`Rules.0`), `\\.` for a dot inside a key, and an intrinsic
function by its name (`BucketName.Fn::Sub`). The value replaces what is at the path (the
mappings on the way are created); `null` deletes the property. Intrinsic functions are written
in their long form (`{Ref: Name}`, `{"Fn::Sub": "..."}`).

```yaml
overrides:
  storage:
    RawBucket:
      ObjectLockEnabled: true
      LifecycleConfiguration.Rules.0.Transitions.0.StorageClass: DEEP_ARCHIVE
  ingestion:
    ConsumerFunction:
      EphemeralStorage.Size: 1024
      Description: null
```

- Every environment's template carries the override: it is applied where the stage is built,
  before environments that differ only in values share it, so their templates stay identical.
  An override is the file's, never an environment's (`environments.<env>.overrides` is an
  error): every environment deploys the same templates, promoted from one to the next; a value
  that differs between environments is a setting.
- Refused with exit code 2, before anything is written: a stage the pipeline does not have or
  that no environment enables, a logical id no environment's template of that stage has, a
  path that is not one or that goes through text or into a list by name, deleting what no
  environment has, a property the resource type does not have, a value of the wrong kind (a
  mapping where the type takes a list), an intrinsic function with arguments CloudFormation
  does not take. A resource only some environments have (a structural key differs) is
  overridden where it exists. The permissions boundary (`boundary`) is not overridden: it is
  derived from the other stages' roles, after their overrides.
- What the result is worth is judged as for any template: `mlops-cfn validate` runs cfn-lint
  (allowed values, patterns, what a property needs beside it) and the security checks on it. An override that
  breaks a security rule (say, removing a stream's KMS encryption) is still applied (it is an
  escape hatch), and validate reports the finding.
- `mlops-cfn diff` and `deploy` print each override before the change set that carries it.
"""
