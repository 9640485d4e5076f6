"""The public Python API: each `mlops-cfn` verb as one call, returning a result, printing nothing.

    config = load_config("pipeline.yaml")
    pipelines = build_all(config)
    render_templates(pipelines, "templates")
    report = validate_templates(["templates"])

The CLI (cli/) is a thin shell over exactly these calls: it parses options, calls one of them and
prints the result. Names differ from the verbs where a module of this package has the verb's name
(`mlops_cfn.render`, `.validate`, `.package`, `.deploy`, `.graph`): importing that module sets
the package attribute of the same name, so a function called `render` would be replaced by the
module as soon as anything imported it.

Errors: input the caller can fix (a bad config value, a missing path, an unknown parameter) raises
`UserError`, whose `problems` are complete one-line messages; AWS refusing or failing raises
`DeployFailed`; templates with findings raise `ValidationFailed` from `preview_deployment` and
`deploy_pipeline` (`validate_templates` returns them in its report instead).

Everything heavy (troposphere, pydantic, cfn-lint, boto3) is imported inside the call that needs
it, so `import mlops_cfn` stays cheap.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable, Literal, Mapping, Sequence

from .rollout import Deployment, Preview, ValidationFailed

if TYPE_CHECKING:
    from .bootstrap import Bootstrap
    from .config import LoadedConfig
    from .deploy import Aws
    from .pipeline import Pipeline
    from .validate import Report

__all__ = [
    "load_config", "build", "build_all", "render_templates", "outdated_templates",
    "validate_templates", "package_templates", "preview_deployment", "deploy_pipeline",
    "diagram", "connect", "bootstrap_stack", "render_bootstrap", "preview_bootstrap",
    "deploy_bootstrap", "Rendered", "Packaged", "Preview", "Deployment", "ValidationFailed",
]

Format = Literal["yaml", "json"]


# --- config and pipelines --------------------------------------------------------------------

def load_config(path: str | os.PathLike | None = None, env: str | None = None) -> LoadedConfig:
    """Read and validate a pipeline file (None: the bundled example, mlops_cfn/data).

    Every environment is validated; `env` picks the one `build` uses by default (None: the
    first in the file). Raises UserError naming the file, the field and what is allowed.
    """
    from . import config

    return config.load(path, env)


def build(config: LoadedConfig, env: str | None = None, *, fmt: Format = "yaml") -> Pipeline:
    """The pipeline of one environment (None: the one `config` was loaded for): the root
    template, one template per enabled stage, and the environment's parameter values and tags.

    `fmt` is the file format the root's nested TemplateURLs name; `render_templates` writes that
    format. Raises UserError when stages cannot be wired (a stage needs one that is off).
    """
    from . import pipeline

    return pipeline.build(config.for_environment(env) if env else config,
                          file_suffix=_suffix(fmt))


def build_all(config: LoadedConfig, envs: Iterable[str] | None = None, *,
              fmt: Format = "yaml") -> list[Pipeline]:
    """`build` for several environments (None: every one in the file), in that order.

    Environments that differ only in values share their stage templates, so building and
    rendering fifty costs little more than one.
    """
    from . import pipeline

    names = list(config.merged) if envs is None else list(envs)
    for name in names:
        config.for_environment(name)  # an unknown name is a UserError before any build
    return pipeline.build_all(config, names, file_suffix=_suffix(fmt))


def diagram(pipeline: Pipeline, fmt: Literal["mermaid", "dot"] = "mermaid") -> str:
    """The nested stacks, every wire between them and their main resources, as Mermaid (GitHub
    renders it in Markdown) or Graphviz dot text."""
    from .graph import dot, mermaid

    if fmt not in ("mermaid", "dot"):
        from .errors import UserError

        raise UserError(f"diagram format {fmt!r}: must be mermaid or dot")
    return (mermaid if fmt == "mermaid" else dot)(pipeline)


# --- rendering -------------------------------------------------------------------------------

@dataclass(frozen=True)
class Rendered:
    """What `render_templates` produced, per environment."""

    files: dict[str, dict[str, str | bytes]]  # environment -> relative path -> content
    directories: dict[str, Path]  # environment -> directory written (empty when out is None)
    removed: tuple[Path, ...] = ()  # stale environment directories removed (prune)
    kept: tuple[Path, ...] = ()  # stale ones left: they hold files render did not write


def render_templates(pipelines: Pipeline | Sequence[Pipeline],
                     out: str | os.PathLike | None = None, *, prune: bool = False) -> Rendered:
    """Render templates, assets and parameters.json; write them when `out` is given.

    One pipeline is written into `out` itself; a sequence into `out/<environment>` each. A
    directory is replaced whole or not at all, and only one that is empty or holds rendered
    templates. With `prune` (a sequence only), directories under `out` that render wrote for
    environments not among `pipelines` are removed, unless they hold other files (`kept`).
    Output is deterministic: the same pipelines always give the same bytes.
    """
    from .render import render_environments, write_trees

    pipelines, targets = _layout(pipelines, out, prune)
    fmt = _format_of(pipelines)
    files = {p.environment: rendered
             for p, rendered in zip(pipelines, render_environments(pipelines, fmt))}
    if targets is None:
        return Rendered(files, {})
    stale = _stale(pipelines, Path(out)) if prune else None
    write_trees({targets[name]: content for name, content in files.items()},
                remove=stale.removable if stale else ())
    return Rendered(files, targets, *((stale.removable, stale.kept) if stale else ()))


def outdated_templates(pipelines: Pipeline | Sequence[Pipeline], out: str | os.PathLike, *,
                       prune: bool = False) -> list[str]:
    """What makes the files under `out` differ from a fresh `render_templates(pipelines, out)`,
    one line each (a file missing, differing or stale; with `prune`, a stale environment
    directory); empty when they are in sync. Writes nothing."""
    from .render import drift, render_environments

    pipelines, targets = _layout(pipelines, out, prune)
    problems = [problem for p, files in zip(pipelines, render_environments(
                    pipelines, _format_of(pipelines)))
                for problem in drift(files, targets[p.environment])]
    if prune:
        stale = _stale(pipelines, Path(out))
        problems += [f"{directory}/: environment {directory.name!r} is no longer in the config "
                     "(stale)" for directory in stale.removable]
        problems += [f"{directory}/: environment {directory.name!r} is no longer in the config "
                     "(stale); it holds files mlops-cfn did not render, so remove it yourself"
                     for directory in stale.kept]
    return problems


def _layout(pipelines, out, prune: bool):
    """(pipelines as a list, environment -> target directory or None without `out`)."""
    from .errors import UserError

    several = not _is_pipeline(pipelines)
    pipelines = list(pipelines) if several else [pipelines]
    if not pipelines:
        raise UserError("no pipelines to render: build at least one environment")
    names = [p.environment for p in pipelines]
    if len(set(names)) < len(names):
        raise UserError(f"environments given twice: {', '.join(sorted(set(names)))}; each "
                        "environment's directory is written once")
    if prune and not several:
        raise UserError("prune: needs a sequence of pipelines, each written to "
                        "<out>/<environment>, whose parent is pruned")
    if prune and out is None:
        raise UserError("prune: needs an output directory")
    if out is None:
        return pipelines, None
    out = Path(out)
    return pipelines, {p.environment: out / p.environment if several else out
                       for p in pipelines}


def _is_pipeline(value) -> bool:
    from .pipeline import Pipeline

    return isinstance(value, Pipeline)


def _stale(pipelines, parent: Path):
    from .render import PROJECT_TAG, stale_environments

    return stale_environments(parent, pipelines[0].tags[PROJECT_TAG],
                              [p.environment for p in pipelines])


def _suffix(fmt: str) -> str:
    from .errors import UserError

    if fmt not in ("yaml", "json"):
        raise UserError(f"template format {fmt!r}: must be yaml or json")
    return f".{fmt}"


def _format_of(pipelines) -> Format:
    """The format the pipelines were built for: what their roots' nested TemplateURLs name."""
    from .errors import UserError

    formats = set()
    for pipeline in pipelines:
        for resource in pipeline.root.resources.values():
            url = resource.properties.get("TemplateURL")
            if isinstance(url, str):
                formats.add("json" if url.endswith(".json") else "yaml")
    if len(formats) > 1:
        raise UserError("pipelines built for yaml and json together: build them with one fmt")
    return formats.pop() if formats else "yaml"


# --- validation ------------------------------------------------------------------------------

def validate_templates(paths: str | os.PathLike | Iterable[str | os.PathLike] = "templates",
                       *, security: bool = True, jobs: int | None = None,
                       cache_dir: str | os.PathLike | None = None,
                       progress: Callable[[str], None] | None = None) -> Report:
    """cfn-lint, CloudFormation quota checks and (with `security`) checkov over template files
    or directories (one path, or several); returns the report (`ok`, `findings`, `render()`,
    `summary()`).

    Byte-identical templates are checked once. `jobs` cfn-lint workers (None: the CPU count).
    With `cache_dir`, results are kept by content there and a run over unchanged templates
    imports neither tool. `progress` hears of each slow step before it starts. Raises UserError
    for a path that does not exist, no templates found, or checkov missing with `security`.
    """
    from .errors import UserError
    from .validate import validate

    paths = [Path(paths)] if isinstance(paths, (str, os.PathLike)) else [Path(p) for p in paths]
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        raise UserError(*(f"{p}: no such file or directory" for p in missing))
    cache = Path(cache_dir) if cache_dir is not None else None
    if cache is not None and cache.exists() and not cache.is_dir():
        raise UserError(f"{cache}: not a directory (the cache directory)")
    return validate(paths, security=security, jobs=jobs or os.cpu_count() or 1,
                    cache_dir=cache, progress=progress or (lambda step: None))


# --- AWS -------------------------------------------------------------------------------------

def connect(profile: str | None = None, region: str | None = None,
            endpoint_url: str | None = None) -> Aws:
    """An AWS connection for the calls below: boto3's own chain of credentials and region, with
    a profile, region or endpoint (a local moto server, say) when given. Raises UserError for a
    profile that does not exist, a malformed region or endpoint URL."""
    from .deploy import connect as connected

    return connected(profile, region, endpoint_url, require_region=False)


@dataclass(frozen=True)
class Packaged:
    """Where `package_templates` put a rendered tree."""

    root_url: str  # https URL of the packaged root template: what CloudFormation deploys
    root_path: Path  # packaged-root.<fmt>, written beside the tree's root template
    uploaded: tuple[str, ...]  # keys uploaded by this call
    skipped: tuple[str, ...]  # keys already in the bucket with the same content
    parameters_path: Path | None = None  # packaged-parameters.json (with stack_name)
    notes: tuple[str, ...] = ()  # what was chosen for the model and image, and why


def package_templates(tree: str | os.PathLike, bucket: str, *, prefix: str = "",
                      stack_name: str | None = None, latest_approved_model: bool = False,
                      model_api_image: bool = False, aws: Aws | None = None,
                      registry_account: str | None = None,
                      registry_region: str | None = None,
                      stack_account: str | None = None,
                      stack_region: str | None = None) -> Packaged:
    """Upload a rendered environment directory (templates and assets) to `bucket` under
    content-addressed keys (unchanged files are not uploaded again) and write the packaged root
    beside the tree's root template.

    With `stack_name`, also write packaged-parameters.json: parameters.json plus that stack's
    current model and image where the config leaves them empty (the delivery pipeline's
    TemplateConfiguration); `latest_approved_model` serves the environment's latest approved
    model package instead (the group in `registry_account` and `registry_region` when given:
    an environment in another account or region, sharing.py), `model_api_image` the model API
    shipped with this mlops-cfn. DeliveryAccountId, where the root has it, is the account that
    packages (sharing.py). The stack is read in `stack_region` when given, and in
    `stack_account` through that account's reader role (bootstrap.stack_reader_role): an
    environment in another account or region, whose live values the pipeline must keep too.
    Raises UserError for a tree that is not a rendered one or a malformed prefix, DeployFailed
    when S3 or CloudFormation refuse.
    """
    from .deploy import aws_errors, connect as connected
    from .errors import UserError
    from .model_api import image_tag
    from .package import (Registry, find_root, normal_prefix, package, stack_reader,
                          template_configuration)

    tree = Path(tree)
    for flag, given in (("latest_approved_model", latest_approved_model),
                        ("model_api_image", model_api_image)):
        if given and not stack_name:
            raise UserError(f"{flag} needs stack_name: it writes the template configuration "
                            "of that stack")
    for flag, given in (("stack_account", stack_account), ("stack_region", stack_region)):
        if given and not stack_name:
            raise UserError(f"{flag} needs stack_name: it says where that stack is")
    if stack_account is not None and not re.fullmatch(r"[0-9]{12}", stack_account):
        raise UserError(f"--stack-account {stack_account!r}: must be a twelve-digit AWS "
                        "account id")
    find_root(tree)  # a wrong tree fails before any AWS call
    normal_prefix(prefix)
    with aws_errors():
        aws = aws or connected(require_region=stack_name is not None)
        registry = (Registry(registry_account, registry_region or aws.region)
                    if latest_approved_model and (registry_account or registry_region)
                    else None)
        stacks = (aws.client("cloudformation") if not (stack_account or stack_region)
                  else stack_reader(aws, tree, stack_account, stack_region))
        configuration = (template_configuration(
            tree, stack_name, stacks,
            sagemaker=(None if not latest_approved_model else aws.client("sagemaker")
                       if registry_region is None
                       else aws.regional_client("sagemaker")(registry_region)),
            api_image_tag=image_tag() if model_api_image else None,
            registry=registry,
            caller_account=lambda: aws.client("sts").get_caller_identity()["Account"])
            if stack_name else None)
        packaged = package(tree, bucket, prefix=prefix, s3=aws.client("s3"),
                           kms_for=aws.regional_client("kms"))
    return Packaged(packaged.root_url, packaged.root_path, tuple(packaged.uploaded),
                    tuple(packaged.skipped),
                    configuration.path if configuration else None,
                    configuration.notes if configuration else ())


def preview_deployment(config: LoadedConfig, env: str | None = None, *,
                       stack_name: str | None = None,
                       parameters: Mapping[str, str] | None = None,
                       latest_approved_model: bool = False, bucket: str | None = None,
                       prefix: str = "", validate: bool = True, security: bool | None = None,
                       aws: Aws | None = None,
                       log: Callable[[str], None] | None = None) -> Preview:
    """What deploying one environment would change, every nested stack included; executes
    nothing (the change set is read, then deleted).

    The steps are `deploy_pipeline`'s: build, check what the region and account would refuse,
    validate (unless `validate` is False; `security` None runs checkov when it is found),
    package into `bucket` (None: mlops-cfn-<account>-<region>, which must exist) and create the
    change set of `stack_name` (None: <project>-<env>). `parameters` override root parameter
    values; the model and image the config leaves empty keep the stack's live values, or
    `latest_approved_model` serves the environment's latest approved model package. `log`
    hears each line worth showing (a kept value, the packaging) as it happens; they are in the
    result's `notes` too.

    Raises UserError (bad input, a region or account that would refuse the templates),
    ValidationFailed (findings; nothing uploaded), DeployFailed (AWS refused).
    """
    from .rollout import discard, prepare

    preview = _prepare(config, env, stack_name, parameters, latest_approved_model, bucket,
                       prefix, validate, security, aws, log, prepare)
    if not preview.empty:
        discard(preview, "deleting the change set")
    return preview


def deploy_pipeline(config: LoadedConfig, env: str | None = None, *,
                    stack_name: str | None = None, parameters: Mapping[str, str] | None = None,
                    latest_approved_model: bool = False, bucket: str | None = None,
                    prefix: str = "", validate: bool = True, security: bool | None = None,
                    allow_replacement: bool = False,
                    on_preview: Callable[[Preview], None] | None = None,
                    confirm: Callable[[Preview], bool] | None = None,
                    console=None, aws: Aws | None = None,
                    log: Callable[[str], None] | None = None) -> Deployment:
    """Deploy one environment through a change set: `preview_deployment`'s steps, then the data
    guard, then execute and follow every nested stack's events to the end.

    A change set that would replace or remove a data store is deleted unexecuted
    (`result == "refused"`) unless `allow_replacement`. `on_preview` sees the read change set
    first (to show it); `confirm` is asked before executing (None: execute without asking), and
    a no deletes the change set (`"declined"`). `console` (a rich Console) shows the events live;
    None shows nothing. Protected environments get termination protection. The result's `ok`
    is False for a refused, declined or failed deployment; `failure` names the failing resource.

    Raises as `preview_deployment` does; DeployFailed when AWS refuses the execution.
    """
    from .rollout import decide_and_execute, prepare

    preview = _prepare(config, env, stack_name, parameters, latest_approved_model, bucket,
                       prefix, validate, security, aws, log, prepare)
    if on_preview is not None:
        on_preview(preview)
    return decide_and_execute(preview, allow_replacement=allow_replacement, confirm=confirm,
                              console=console)


def _prepare(config, env, stack_name, parameters, latest_approved_model, bucket, prefix,
             validate, security, aws, log, prepare) -> Preview:
    return prepare(config.for_environment(env) if env else config, stack_name=stack_name,
                   parameters=dict(parameters or {}),
                   latest_approved_model=latest_approved_model, bucket=bucket, prefix=prefix,
                   validate=validate, security=security, aws=aws,
                   log=log or (lambda line: None))


# --- environments in other accounts and regions ----------------------------------------------

def bootstrap_stack(config: LoadedConfig, env: str | None = None, *,
                    values: Mapping[str, str] | None = None,
                    region_support: str | None = None) -> Bootstrap:
    """The bootstrap stack of an environment in another account or region (bootstrap.py): the
    role the home delivery pipeline assumes there and the role CloudFormation deploys the
    environment with. `values`: the home account's values by parameter name
    (bootstrap.PARAMETERS), each optional here. Raises UserError for an environment in the home
    account and region, a region the templates do not support, a malformed value. With
    `region_support`, the home account's region support stack in that region instead
    (bootstrap.region_support; values by bootstrap.REGION_PARAMETERS)."""
    from . import bootstrap

    if region_support is not None:
        return bootstrap.region_support(config, region_support, values)
    return bootstrap.build(config.for_environment(env) if env else config, values)


def render_bootstrap(stack: Bootstrap, out: str | os.PathLike) -> Path:
    """Write the bootstrap stack's root.yaml and parameters.json into `out` (replaced whole, as
    `render_templates` replaces an environment's directory); returns the directory."""
    from .render import write_tree

    out = Path(out)
    write_tree(stack.files(), out)
    return out


def preview_bootstrap(config: LoadedConfig, env: str | None = None, *,
                      values: Mapping[str, str] | None = None, validate: bool = True,
                      security: bool | None = None, aws: Aws | None = None,
                      log: Callable[[str], None] | None = None,
                      region_support: str | None = None) -> Preview:
    """What deploying the environment's bootstrap stack (or with `region_support` the region
    support stack there) would change; executes nothing (the
    change set is read, then deleted). `aws` must reach the environment's account and region
    (UserError otherwise). The home values not given keep the stack's current ones; without a
    stack they are required. Raises as `preview_deployment` does."""
    from .rollout import discard, prepare_bootstrap

    preview = prepare_bootstrap(config.for_environment(env) if env else config,
                                values=dict(values or {}), validate=validate,
                                security=security, aws=aws, log=log or (lambda line: None),
                                region_support=region_support)
    if not preview.empty:
        discard(preview, "deleting the change set")
    return preview


def deploy_bootstrap(config: LoadedConfig, env: str | None = None, *,
                     values: Mapping[str, str] | None = None, validate: bool = True,
                     security: bool | None = None,
                     on_preview: Callable[[Preview], None] | None = None,
                     confirm: Callable[[Preview], bool] | None = None, console=None,
                     aws: Aws | None = None,
                     log: Callable[[str], None] | None = None,
                     region_support: str | None = None) -> Deployment:
    """Create or update the environment's bootstrap stack through a change set, as
    `deploy_pipeline` does an environment: `preview_bootstrap`'s steps, `on_preview`, `confirm`,
    then execute and follow the events. Running it again with the same config and values is
    `up to date` (an empty change set)."""
    from .rollout import decide_and_execute, prepare_bootstrap

    preview = prepare_bootstrap(config.for_environment(env) if env else config,
                                values=dict(values or {}), validate=validate,
                                security=security, aws=aws, log=log or (lambda line: None),
                                region_support=region_support)
    if on_preview is not None:
        on_preview(preview)
    return decide_and_execute(preview, allow_replacement=False, confirm=confirm,
                              console=console)
