"""The stage contract: what a stage module's `build(config) -> Stage` returns.

A stage owns one template. It talks to the rest of the pipeline only through named wires (the
outputs it offers and the inputs it needs, see outputs.py) and settings (environment values the
root passes down). `StageBuilder` keeps that bookkeeping next to the template while a stage is
built, so a stage module never declares a parameter or output by hand.

One thing crosses between stages at build time rather than through a wire: what a stage asks of
the pipeline's data key's policy (`KeyUse`). A key policy is the only place to let an AWS service
that calls KMS as itself use the key, and the policy is the storage stage's; so a stage that
makes a service do that (an SNS topic CloudWatch alarms publish to, a Fargate cluster whose task
storage is encrypted) says so through its builder, and the composer hands every enabled stage's
`KeyUse` to the storage stage (pipeline.py). The storage stage names no other stage's resources.
"""

from dataclasses import dataclass
from typing import Any, TypeVar

from awacs.aws import Statement
from pydantic import BaseModel
from troposphere import AWSObject, Equals, If, Output, Parameter, Ref, Sub, Template

from . import naming
from .assets import (ASSETS_KEY_CONDITION, Asset, assets_bucket_parameter,
                     assets_key_condition, assets_key_parameter, assets_prefix_parameter,
                     key_policies, tool_wheel_parameter, tool_wheel_uri)
from .outputs import ABSENT, PRESENT, Presence, Wire
from .settings import ENVIRONMENT_NAME, environment_parameter, setting_parameter

R = TypeVar("R", bound=AWSObject)


@dataclass(frozen=True)
class KeyUse:
    """What a stage asks of the data key's policy (the module docstring).

    Both may mention only pseudo parameters (`${AWS::AccountId}`) and EnvironmentName, which
    the storage template has too; the storage stage refuses anything else.
    """

    # Key-policy statements for AWS service principals, each scoped by a condition
    # (policies.key_use_by_service), by Sid: two stages asking for the same grant give the
    # same statement.
    statements: tuple[Statement, ...] = ()
    # Names (Fn::Sub patterns, `*` allowed) of log groups outside the project's own prefix
    # that CloudWatch Logs may encrypt with the key: those a service names itself after a
    # resource of the stage (a SageMaker endpoint's /aws/sagemaker/Endpoints/<name>).
    log_groups: tuple[str, ...] = ()


@dataclass(frozen=True)
class Stage:
    name: str
    template: Template
    inputs: tuple[Wire, ...]
    outputs: tuple[Wire, ...]
    # Names of the root parameters this stage takes (EnvironmentName and Setting fields).
    settings: tuple[str, ...]
    # Files the stack reads from S3 (see assets.py); rendered beside the templates.
    assets: tuple[Asset, ...] = ()
    # What it asks of the data key's policy (see KeyUse).
    key_use: KeyUse = KeyUse()

    @property
    def logical_id(self) -> str:
        """The stage's AWS::CloudFormation::Stack in the root template."""
        return "".join(part.capitalize() for part in self.name.split("_")) + "Stack"


class StageBuilder:
    def __init__(self, name: str, project: str, description: str):
        self.name = name
        self.project = project
        self.template = Template(Description=f"{project}: {description}")
        self._inputs: dict[str, Wire] = {}
        self._outputs: dict[str, Wire] = {}
        self._settings: list[str] = []
        self._assets: dict[str, Asset] = {}
        self._key_statements: dict[str, Statement] = {}
        self._key_log_groups: list[str] = []

    def add(self, resource: R) -> R:
        return self.template.add_resource(resource)

    def input(self, wire: Wire) -> Ref:
        """A value another stage offers; the composer feeds it from that stage's output.

        A conditional wire (outputs.py) brings its companion parameter and condition along: every
        use of the value must be gated on `presence(wire)`, which the composer checks.
        """
        if wire.name not in self._inputs:
            self._inputs[wire.name] = wire
            props = {"AllowedValues": list(wire.allowed_values)} if wire.allowed_values else {}
            self.template.add_parameter(
                Parameter(wire.name, Type=wire.type, Description=wire.description, **props))
            if wire.presence is not None:
                self._declare_presence(wire.presence)
        return Ref(wire.name)

    def presence(self, wire: Wire) -> str:
        """The condition under which what the conditional `wire` names exists (declaring the
        wire as an input)."""
        if wire.presence is None:
            raise ValueError(f"wire {wire.name} names nothing conditional")
        self.input(wire)
        return wire.presence.condition

    def output(self, wire: Wire, value: Any, condition: str | bool | None = None) -> None:
        """Offer `value` as `wire`.

        A conditional wire needs `condition`: the name of this template's condition under which
        what the wire names exists (or True where it always does in this configuration); its
        companion wire is output from it. The value itself is output unconditionally (the
        composer's GetAtt of a missing output would fail), so it must be known before what it
        names exists: a fixed name, not a Ref.
        """
        if wire.presence is not None and condition in (None, False):
            raise ValueError(f"wire {wire.name} names a resource created under a condition: "
                             f"output it with the condition it exists under")
        if wire.presence is None and condition is not None:
            raise ValueError(f"wire {wire.name} is not conditional: output it without a "
                             f"condition, or give the wire a presence (outputs.py)")
        if isinstance(condition, str) and condition not in self.template.conditions:
            raise ValueError(f"wire {wire.name}: no condition {condition!r} in this template")
        self._outputs[wire.name] = wire
        self.template.add_output(Output(wire.name, Description=wire.description, Value=value))
        if wire.presence is not None:
            companion = wire.presence.wire
            exists = PRESENT if condition is True else If(condition, PRESENT, ABSENT)
            self._outputs[companion.name] = companion
            self.template.add_output(Output(companion.name, Description=companion.description,
                                            Value=exists))

    def setting(self, section: BaseModel | type[BaseModel], field_name: str) -> Ref:
        """A value that may differ between environments: a parameter fed by the root.

        The value itself is never read here; that keeps templates identical across
        environments that differ only in values.
        """
        section_type = section if isinstance(section, type) else type(section)
        parameter = setting_parameter(section_type, field_name)
        return self._declare(parameter)

    @property
    def environment(self) -> Ref:
        return self._declare(environment_parameter())

    def physical_name(self, rule: naming.NameRule, *purpose: str) -> Sub:
        """A physical name for one of this stage's resources (see naming.py)."""
        self._declare(environment_parameter())
        return Sub(naming.physical_name(rule, self.project, *purpose))

    def log_group_name(self, *purpose: str) -> Sub:
        self._declare(environment_parameter())
        return Sub(naming.log_group_name(self.project, *purpose))

    def asset(self, file_name: str, content: bytes) -> Asset:
        """A file this stack reads from S3 (a Glue script, a Lambda zip); see assets.py."""
        self._declare_assets_location()
        asset = Asset(file_name, content)
        self._assets[asset.key] = asset
        return asset

    def asset_key_policies(self) -> list:
        """For a role that reads assets at run time: its inline policy to decrypt them with
        the assets bucket's key, when the bucket has one (assets.key_policies)."""
        self._declare_assets_location()
        self._declare(assets_key_parameter())
        if ASSETS_KEY_CONDITION not in self.template.conditions:
            self.template.add_condition(ASSETS_KEY_CONDITION, assets_key_condition())
        return key_policies()

    def tool_wheel(self) -> Sub:
        """The s3:// URI of the mlops-cfn wheel packaging uploads (wheel.py), for the build
        that installs it; its object ARN is assets.tool_wheel_arn()."""
        self._declare_assets_location()
        self._declare(tool_wheel_parameter())
        return tool_wheel_uri()

    def _declare_assets_location(self) -> None:
        """The parameters packaging sets for where the assets are (assets.py)."""
        self._declare(assets_bucket_parameter())
        self._declare(assets_prefix_parameter())

    def data_key_use(self, statement: Statement) -> None:
        """Ask the data key's policy for `statement`: a grant to an AWS service that uses the
        key as itself for a resource of this stage (see KeyUse)."""
        self._key_statements[statement.Sid] = statement

    def data_key_log_group(self, pattern: str) -> None:
        """Ask that CloudWatch Logs may encrypt the log groups `pattern` (Fn::Sub text) names
        with the data key: a service's own log group for a resource of this stage."""
        if pattern not in self._key_log_groups:
            self._key_log_groups.append(pattern)

    def finish(self) -> Stage:
        return Stage(
            name=self.name,
            template=self.template,
            inputs=tuple(self._inputs.values()),
            outputs=tuple(self._outputs.values()),
            settings=tuple(self._settings),
            assets=tuple(self._assets.values()),
            key_use=KeyUse(tuple(self._key_statements.values()), tuple(self._key_log_groups)),
        )

    def _declare_presence(self, presence: Presence) -> None:
        self.input(presence.wire)
        if presence.condition not in self.template.conditions:
            self.template.add_condition(presence.condition,
                                        Equals(Ref(presence.wire.name), PRESENT))

    def _declare(self, parameter: Parameter) -> Ref:
        if parameter.title not in self.template.parameters:
            self.template.add_parameter(parameter)
            self._settings.append(parameter.title)
        return Ref(parameter.title)


__all__ = ["ENVIRONMENT_NAME", "KeyUse", "Stage", "StageBuilder"]
