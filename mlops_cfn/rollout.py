"""One environment to AWS: the steps `preview_deployment` and `deploy_pipeline` (api.py) share.

Render, check the stack name, choose run-time values, ask the account what it would refuse
(preflight.py), validate, package, create the change set and read it (deploy.py). Nothing here
prints: every line a person should see goes to `log` as it happens and into the result's
`notes`, so the CLI (cli/deploy.py, cli/diff.py) shows them live and a program reads them after.

The model and image the config leaves empty are passed with the live stack's values
(settings.left_to_run_time), so a deployment never resets what serves.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Literal, Mapping

if TYPE_CHECKING:
    from .changeset import Change
    from .config import LoadedConfig
    from .deploy import Aws, Preview as ChangeSet
    from .events import Outcome
    from .validate import Report

Log = Callable[[str], None]


class ValidationFailed(Exception):
    """The rendered templates have findings (cfn-lint, quotas, checkov): nothing was uploaded
    and no change set exists. `report` holds the findings; `str()` is the report's text."""

    def __init__(self, report: Report):
        self.report = report
        super().__init__(report.render())


@dataclass(frozen=True)
class Preview:
    """The change set deploying one environment would execute, read (nested stacks included).

    `preview_deployment` returns it with the change set already deleted; inside
    `deploy_pipeline` it is the change set about to be executed.
    """

    change_set: ChangeSet
    root_url: str  # the packaged root template in S3
    uploaded: tuple[str, ...]  # keys this run uploaded
    skipped: tuple[str, ...]  # keys already in the bucket with the same content
    report: Report | None  # None when validation was skipped
    notes: tuple[str, ...]  # what was chosen on the way (kept values, a model), in order
    aws: Aws = field(repr=False, compare=False)

    @property
    def stack_name(self) -> str:
        return self.change_set.request.stack_name

    @property
    def new_stack(self) -> bool:
        return self.change_set.change_set_type == "CREATE"

    @property
    def empty(self) -> bool:
        """Nothing would change: the stack is up to date."""
        return self.change_set.empty

    @property
    def changes(self) -> list[Change]:
        """Every resource change of the root and each nested stack (changeset.Change)."""
        return self.change_set.changes

    @property
    def refused(self) -> list[Change]:
        """The changes that would replace or remove data (the data guard)."""
        return self.change_set.refused

    @property
    def parameter_changes(self) -> dict[str, tuple[str, str]]:
        """Root parameters the update gives new values: name -> (current, new)."""
        return self.change_set.parameter_changes

    @property
    def protected(self) -> bool:
        """Termination protection goes on once the deployment succeeds."""
        return self.change_set.request.protected


Result = Literal["up to date", "refused", "declined", "executed"]


@dataclass(frozen=True)
class Deployment:
    """What `deploy_pipeline` did: nothing (`up to date`), nothing because the change set would
    replace or remove data (`refused`) or `confirm` said no (`declined`), or it executed the
    change set, whose end is `outcome`."""

    preview: Preview
    result: Result
    outcome: Outcome | None = None

    @property
    def ok(self) -> bool:
        """The stack is as the config says: up to date, or executed successfully."""
        return self.result == "up to date" or (
            self.result == "executed" and self.outcome is not None and self.outcome.ok)

    @property
    def status(self) -> str | None:
        """The root stack's final status after executing (CREATE_COMPLETE, ...)."""
        return self.outcome.status if self.outcome is not None else None

    @property
    def failure(self) -> str | None:
        """One line naming the first failing resource, when the execution failed."""
        if self.result != "executed" or self.ok or self.outcome is None:
            return None
        from .deploy import failure_message

        return failure_message(self.outcome)


def prepare(loaded: LoadedConfig, *, stack_name: str | None, parameters: Mapping[str, str],
            latest_approved_model: bool, bucket: str | None, prefix: str, validate: bool,
            security: bool | None, aws: Aws | None, log: Log) -> Preview:
    """Everything up to a read change set, which is left in place (see `discard`)."""
    from . import pipeline
    from .deploy import (MODEL_PACKAGE_PARAMETER, Request, aws_errors, connect,
                         default_bucket, latest_approved, live_values, model_package_group,
                         override_problems, preview, stack_parameters)
    from .errors import UserError
    from .package import normal_prefix, package, require_bucket_in
    from .render import render_files, write_tree
    from .settings import left_to_run_time
    from .stages.cicd import stack_name as delivered_stack_name

    notes: list[str] = []

    def note(line: str) -> None:
        notes.append(line)
        log(line)

    built = pipeline.build(loaded)
    for override in built.overrides:
        # The escape hatch's edits (pipeline.yaml's `overrides`), said before the change set
        # that carries them.
        note(f"override: {override.describe()} ({loaded.source})")
    overrides = dict(parameters)
    delivered = delivered_stack_name(loaded.config.project, loaded.environment)
    name = stack_name or delivered
    if loaded.config.stages.cicd.enabled and name != delivered:
        # The pipeline deploys every environment under that name and may manage only roles
        # named after it: another name would give the environment a second, competing stack.
        raise UserError(f"--stack-name {name}: with stages.cicd enabled the pipeline deploys "
                        f"this environment as stack {delivered}; leave --stack-name out")
    with aws_errors():
        aws = aws or connect()
        if not aws.region:
            raise UserError("no AWS region: name one in connect(region=...) (--region), or set "
                            "AWS_REGION (or a region in the profile)")
        if latest_approved_model:
            group = model_package_group(loaded.config.project, loaded.environment)
            overrides[MODEL_PACKAGE_PARAMETER] = latest_approved(aws, group)
            note(f"serving {overrides[MODEL_PACKAGE_PARAMETER]} (approved last in {group})")
        values = stack_parameters(list(built.root.parameters), built.parameters, overrides)
        if problems := override_problems(built.root.parameters, overrides):
            raise UserError(*problems)
        cfn = aws.client("cloudformation")
        # The model and image the config leaves empty are what serves now: kept, not reset.
        run_time = left_to_run_time(built.parameters) - set(overrides)
        kept = live_values(cfn, name, run_time)
        values = {k: v for k, v in values.items() if k not in run_time} | kept
        for parameter, value in kept.items():
            note(f"keeping {parameter}={value or '(empty)'} (what {name} has now)")
        _preflight(aws, built, values, note)
        report = None
        with tempfile.TemporaryDirectory(prefix="mlops-cfn-deploy-") as scratch:
            tree = Path(scratch) / loaded.environment
            write_tree(render_files(built), tree)
            if validate:
                report = _validate(tree, security, note)
            s3 = aws.client("s3")
            bucket = bucket or default_bucket(aws)
            if any(stage.assets for stage in built.stages):
                require_bucket_in(s3, bucket, aws.region)
            packaged = package(tree, bucket, prefix=prefix, s3=s3,
                               kms_for=aws.regional_client("kms"))
        note(f"packaged into s3://{bucket}/{normal_prefix(prefix)}: "
             f"{len(packaged.uploaded)} uploaded, {len(packaged.skipped)} unchanged")
        request = Request(stack_name=name, template_url=packaged.root_url, parameters=values,
                          tags=built.tags, protected=built.protected,
                          description=f"mlops-cfn: {loaded.config.project} "
                                      f"{loaded.environment}")
        change_set = preview(cfn, request)
    return Preview(change_set, packaged.root_url, tuple(packaged.uploaded),
                   tuple(packaged.skipped), report, tuple(notes), aws)


def prepare_bootstrap(loaded: LoadedConfig, *, values: Mapping[str, str], validate: bool,
                      security: bool | None, aws: Aws | None, log: Log,
                      region_support: str | None = None) -> Preview:
    """`prepare` for an environment's bootstrap stack (bootstrap.py), in the environment's own
    account and region: build, check where the credentials reach, validate, create the change
    set (the template travels in the request: nothing is uploaded). With `region_support`, the
    home account's region support stack in that region (bootstrap.region_support) instead."""
    from . import bootstrap
    from .deploy import Request, aws_errors, call, connect, live_values, preview
    from .errors import UserError
    from .placement import key_path
    from .render import write_tree

    notes: list[str] = []

    def note(line: str) -> None:
        notes.append(line)
        log(line)

    if region_support is not None:
        from .stages.cicd import home_environment

        loaded = loaded.for_environment(home_environment(loaded.config))
        bootstrap.region_support(loaded, region_support)  # refused before any call
        name = bootstrap.region_support_stack_name(loaded.config.project, region_support)
        parameters, wanted_region = bootstrap.REGION_PARAMETERS, region_support
        what = "the home delivery pipeline's key (an output of the home environment's stack)"
    else:
        name = bootstrap.stack_name(loaded.config.project, loaded.environment)
        bootstrap.build(loaded)  # a home environment or a region refused: said before any call
        parameters, wanted_region = bootstrap.PARAMETERS, loaded.config.region
        what = ("the home delivery pipeline's role, artifact bucket and key (outputs of the "
                "home environment's stack, or of the region support stack in the "
                "environment's region for the bucket and key)")
    config = loaded.config
    with aws_errors():
        aws = aws or connect(region=wanted_region)
        if wanted_region is not None and aws.region != wanted_region:
            where = (f"bootstrap --region-support {region_support}" if region_support else
                     f"{loaded.source}: {key_path(loaded, 'region')} is {wanted_region}")
            raise UserError(f"region {aws.region}: {where}: bootstrap "
                            f"{region_support or loaded.environment} there "
                            f"(--region {wanted_region})")
        account = call(aws.client("sts").get_caller_identity, "finding the account")["Account"]
        if config.account is not None and account != config.account:
            raise UserError(f"the credentials are for account {account}, but "
                            f"{loaded.source}: {key_path(loaded, 'account')} is "
                            f"{config.account}: use credentials (a --profile) of that account")
        cfn = aws.client("cloudformation")
        kept = {k: v for k, v in live_values(cfn, name, parameters).items()
                if k not in values}
        for parameter, value in kept.items():
            note(f"keeping {parameter}={value} (what {name} has now)")
        given = {**kept, **values}
        missing = [option for parameter, option in parameters.items()
                   if not given.get(parameter)]
        if missing:
            raise UserError(f"bootstrap --deploy: {', '.join(missing)} needed: {what}, "
                            "README \"Several accounts\"")
        built = (bootstrap.region_support(loaded, region_support, given)
                 if region_support is not None else bootstrap.build(loaded, given))
        report = None
        files = built.files()
        if validate:
            with tempfile.TemporaryDirectory(prefix="mlops-cfn-bootstrap-") as scratch:
                tree = Path(scratch) / loaded.environment
                write_tree(files, tree)
                report = _validate(tree, security, note)
        request = Request(stack_name=name, template_url="", parameters=given,
                          tags={"mlops-cfn:project": config.project,
                                "mlops-cfn:environment": loaded.environment, **config.tags},
                          description=f"mlops-cfn bootstrap: {config.project} "
                                      f"{region_support or loaded.environment}",
                          template_body=files["root.yaml"])
        change_set = preview(cfn, request)
    return Preview(change_set, "", (), (), report, tuple(notes), aws)


def discard(preview: Preview, doing: str = "") -> None:
    """Delete the change set (and a new stack's empty shell); nothing runs."""
    from .deploy import aws_errors, discard as delete

    with aws_errors(doing):
        delete(preview.aws.client("cloudformation"), preview.change_set)


def decide_and_execute(preview: Preview, *, allow_replacement: bool,
                       confirm: Callable[[Preview], bool] | None, console) -> Deployment:
    """The data guard, the caller's yes, then the execution followed to its end."""
    from .deploy import aws_errors, execute

    if preview.empty:
        return Deployment(preview, "up to date")
    if preview.refused and not allow_replacement:
        discard(preview)
        return Deployment(preview, "refused")
    if confirm is not None and not confirm(preview):
        discard(preview)
        return Deployment(preview, "declined")
    if console is None:
        from rich.console import Console

        console = Console(quiet=True)
    with aws_errors():
        outcome = execute(preview.aws.client("cloudformation"), preview.change_set, console)
    return Deployment(preview, "executed", outcome)


def _preflight(aws: Aws, built, values: dict[str, str], note: Log) -> None:
    """What the account and region would refuse (preflight.py), said before any upload."""
    from .errors import UserError
    from .preflight import (lambda_problems, region_problems, root_values,
                            service_linked_role_problems)

    root = built.root.to_dict()
    problems = region_problems(root, values, aws.region)
    found, notes = lambda_problems(aws.client("lambda"), built.stages,
                                   root_values(root, values, aws.region), aws.region)
    roles, role_notes = service_linked_role_problems(aws.client("iam"), built.stages)
    for line in notes + role_notes:
        note(f"note: {line}")
    if problems or found or roles:
        raise UserError(*problems, *found, *roles)


def _validate(tree: Path, security: bool | None, note: Log) -> Report:
    """cfn-lint, quotas and (unless `security` is False) checkov; None for `security` means
    checkov when it can be found."""
    from .errors import UserError
    from .validate import find_checkov, validate

    if security is None:
        try:
            find_checkov()
            security = True
        except UserError:
            note("checkov not found: security scan skipped (--no-security silences this)")
            security = False
    report = validate([tree], security=security)
    if not report.ok:
        raise ValidationFailed(report)
    note(report.summary())
    return report
