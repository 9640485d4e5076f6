"""Deterministic template text, and writing it so an output directory is never half-done.

`render_files` is pure: the same pipeline always gives the same bytes (sorted keys, no
timestamps), which is what makes the committed templates/ testable and `render --check` exact.
`write_tree` builds the whole directory beside the target and swaps it in, so a failure at any
point leaves the previous output as it was. `stale_environments` finds the directories
`render --all-envs` wrote for environments the config no longer has, which it removes and
`--check` reports; a directory is render's only when its parameters.json carries this project's
and that environment's tags and it holds nothing render does not write.
"""

import json
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Literal, Sequence

from troposphere import Template

from . import cfn_yaml
from .assets import ASSETS_DIR
from .config import ENVIRONMENT_PATTERN
from .errors import UserError
from .pipeline import Pipeline
from .settings import left_to_run_time

Format = Literal["yaml", "json"]
PARAMETERS_FILE = "parameters.json"
ROOT_NAME = "root"
# What `mlops-cfn package` writes beside the root (package.py): products of packaging, not of
# rendering, so drift checks pass over them and the next render removes them.
PACKAGED_PREFIX = "packaged-"
PACKAGED_ROOT_NAME = PACKAGED_PREFIX + ROOT_NAME
# With --stack-name: the TemplateConfiguration the delivery pipeline deploys that stack with.
PACKAGED_PARAMETERS_FILE = PACKAGED_PREFIX + PARAMETERS_FILE
# Tags of parameters.json (pipeline.py writes them); they also tell render's own directories.
PROJECT_TAG, ENVIRONMENT_TAG = "mlops-cfn:project", "mlops-cfn:environment"


def suffix(fmt: Format) -> str:
    return f".{fmt}"


def template_text(template: Template, fmt: Format) -> str:
    return _text_of(template.to_dict(), fmt)


def _text_of(data: dict, fmt: Format) -> str:
    if fmt == "json":
        return json.dumps(data, indent=2, sort_keys=True) + "\n"  # Template.to_json's text
    # Not Template.to_yaml(): cfn-flip's pure-Python emitter took most of a render's time.
    return cfn_yaml.dump(data)


def render_files(pipeline: Pipeline, fmt: Format = "yaml") -> dict[str, str | bytes]:
    """Relative path -> content for one environment's output directory."""
    return render_environments([pipeline], fmt)[0]


def render_environments(pipelines: Sequence[Pipeline],
                        fmt: Format = "yaml") -> list[dict[str, str | bytes]]:
    """`render_files` for each pipeline; a template shared by several (pipeline.build_all) is
    serialised once, and so is a template equal to one already written (each environment has
    its own root, and those of environments differing only in values are equal)."""
    texts: dict[int, str] = {}  # by id: the pipelines keep every template alive meanwhile
    by_content: dict[str, str] = {}  # by compact JSON, which the C encoder writes fast

    def text(template: Template) -> str:
        if id(template) not in texts:
            data = template.to_dict()
            key = json.dumps(data, sort_keys=True, separators=(",", ":"))
            if key not in by_content:
                by_content[key] = _text_of(data, fmt)
            texts[id(template)] = by_content[key]
        return texts[id(template)]

    rendered = []
    for pipeline in pipelines:
        files: dict[str, str | bytes] = {ROOT_NAME + suffix(fmt): text(pipeline.root)}
        for stage in pipeline.stages:
            files[stage.name + suffix(fmt)] = text(stage.template)
            for asset in stage.assets:
                files[asset.key] = asset.content
        # The form CodePipeline's CloudFormation action accepts as TemplateConfiguration; no
        # run-time value the config leaves empty (the model, the image): a deployment keeps
        # what serves (settings.left_to_run_time).
        run_time = left_to_run_time(pipeline.parameters)
        files[PARAMETERS_FILE] = json.dumps(
            {"Parameters": {name: value for name, value in pipeline.parameters.items()
                            if name not in run_time},
             "Tags": pipeline.tags}, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
        rendered.append(files)
    return rendered


def write_tree(files: dict[str, str | bytes], out_dir: Path) -> None:
    """Replace `out_dir` with exactly `files`, or leave it untouched on failure."""
    write_trees({out_dir: files})


def write_trees(trees: dict[Path, dict[str, str | bytes]],
                remove: Sequence[Path] = ()) -> None:
    """`write_tree` for several directories (render --all-envs): every directory is checked and
    every new tree built before the first is swapped in, so a refusal or a failed write leaves
    all of them as they were. `remove` (stale environments, see stale_environments) goes once
    the new trees are in."""
    for out_dir in [*trees, *remove]:
        _refuse_foreign_directory(out_dir)
    staged: list[tuple[Path, Path]] = []
    out_dir = next(iter(trees), None)
    try:
        for out_dir, files in trees.items():
            staged.append((_staged(files, out_dir), out_dir))
        for staging, out_dir in staged:
            _swap_in(staging, out_dir)
        for out_dir in remove:
            _remove(out_dir)
    except OSError as error:
        failed = out_dir if error.filename is None else Path(error.filename)
        raise UserError(f"{failed}: cannot write ({error.strerror})") from None
    finally:
        for staging, _ in staged:
            shutil.rmtree(staging, ignore_errors=True)


def replace_directory(files: dict[str, str | bytes], out_dir: Path) -> None:
    """Build `files` beside `out_dir` and swap them in: the old content stays until the new is
    complete. The caller decides whether `out_dir` may be replaced at all."""
    try:
        staging = _staged(files, out_dir)
        try:
            _swap_in(staging, out_dir)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    except OSError as error:
        raise UserError(f"{out_dir}: cannot write ({error.strerror})") from None


def _staged(files: dict[str, str | bytes], out_dir: Path) -> Path:
    """`files` written into a new directory beside `out_dir`."""
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.new-", dir=out_dir.parent))
    try:
        for name, content in files.items():
            path = staging / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(_as_bytes(content))
        os.chmod(staging, 0o755)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return staging


def _swap_in(staging: Path, out_dir: Path) -> None:
    """`staging` becomes `out_dir`; the old `out_dir`, if any, is removed after the swap."""
    if out_dir.exists():
        retired = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.old-", dir=out_dir.parent))
        os.replace(out_dir, retired / out_dir.name)
        os.replace(staging, out_dir)
        shutil.rmtree(retired, ignore_errors=True)
    else:
        os.replace(staging, out_dir)


def _remove(out_dir: Path) -> None:
    """Moved aside first, so a directory is either whole or gone."""
    retired = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.old-", dir=out_dir.parent))
    os.replace(out_dir, retired / out_dir.name)
    shutil.rmtree(retired, ignore_errors=True)


@dataclass(frozen=True)
class StaleEnvironments:
    """Environment directories `render --all-envs` wrote for environments the config no longer
    has: `removable` hold only what it renders; `kept` hold other files too (someone's notes),
    which render never deletes."""

    removable: tuple[Path, ...]
    kept: tuple[Path, ...]


def stale_environments(parent: Path, project: str, environments: Iterable[str]) -> \
        StaleEnvironments:
    """Directories under `parent` that this tool wrote for one of `project`'s environments
    and that no environment of the config renders any more.

    A directory counts as this tool's only when everything says so: its name is an environment
    name, its parameters.json carries the tags render writes into it (`mlops-cfn:project` this
    project, `mlops-cfn:environment` that name), so another project's output or an unrelated
    folder beside them is never touched."""
    removable, kept = [], []
    current = set(environments)
    candidates = sorted(parent.iterdir()) if parent.is_dir() else []
    for directory in candidates:
        if (directory.name in current or directory.is_symlink() or not directory.is_dir()
                or not re.fullmatch(ENVIRONMENT_PATTERN, directory.name)
                or not _rendered_for(directory, project)):
            continue
        (kept if _foreign_entries(directory) else removable).append(directory)
    return StaleEnvironments(tuple(removable), tuple(kept))


def _rendered_for(directory: Path, project: str) -> bool:
    try:
        tags = json.loads((directory / PARAMETERS_FILE).read_text(encoding="utf-8"))["Tags"]
    except (OSError, ValueError, KeyError, TypeError):
        return False
    return (isinstance(tags, dict) and tags.get(PROJECT_TAG) == project
            and tags.get(ENVIRONMENT_TAG) == directory.name)


def _as_bytes(content: str | bytes) -> bytes:
    return content.encode("utf-8") if isinstance(content, str) else content


def drift(files: dict[str, str | bytes], out_dir: Path) -> list[str]:
    """What differs between `out_dir` on disk and `files`; empty when in sync."""
    problems = []
    present = ({p.relative_to(out_dir).as_posix() for p in out_dir.rglob("*")
                if p.is_file() and not (p.parent == out_dir
                                        and p.name.startswith(PACKAGED_PREFIX))}
               if out_dir.is_dir() else set())
    for name, content in files.items():
        path = out_dir / name
        if name not in present:
            problems.append(f"{path}: missing")
        elif path.read_bytes() != _as_bytes(content):
            problems.append(f"{path}: differs from what the code renders")
    for name in sorted(present - set(files)):
        problems.append(f"{out_dir / name}: not rendered by the current config (stale)")
    return problems


def _foreign_entries(out_dir: Path) -> list[str]:
    """Names in `out_dir` that render does not write."""
    return [p.name for p in out_dir.iterdir()
            if not (p.is_dir() and p.name == ASSETS_DIR and not p.is_symlink())
            and (not p.is_file() or p.suffix not in (".yaml", ".yml", ".json"))]


def _refuse_foreign_directory(out_dir: Path) -> None:
    """Only an empty directory, or one holding rendered templates, may be replaced whole.

    `render --out .` must not delete a repository.
    """
    blocking = next((parent for parent in out_dir.parents
                     if parent.exists() and not parent.is_dir()), None)
    if blocking is not None:
        raise UserError(f"{out_dir}: {blocking} is a file, not a directory; choose another "
                        "--out")
    if not out_dir.exists():
        return
    if not out_dir.is_dir():
        raise UserError(f"{out_dir}: exists and is not a directory; choose another --out")
    entries = list(out_dir.iterdir())
    foreign = _foreign_entries(out_dir)
    if entries and (foreign or not (out_dir / PARAMETERS_FILE).exists()):
        shown = ", ".join(sorted(foreign)[:5]) or "files without a parameters.json"
        raise UserError(
            f"{out_dir}: holds files mlops-cfn did not render ({shown}); "
            f"choose an empty or new directory for --out")
