"""Finding the templates of a run and reading what a result depends on: each file's digest, its
size, the local child templates it names and, of a child, the parts a parent's lint reads.

Files are read and hashed here, never parsed by cfn-lint: this is all a warm run does.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

from ..errors import UserError

TEMPLATE_SUFFIXES = (".yaml", ".yml", ".json")


@dataclass(frozen=True)
class TemplateFile:
    """A file that decoded to a CloudFormation template (a mapping with a Resources section)."""

    path: Path
    data: dict = field(repr=False)
    size: int = 0  # bytes on disk, what CloudFormation's body size limits count


def _candidate_files(paths: Sequence[Path]) -> Iterable[tuple[Path, bool]]:
    """(file, named explicitly) for every file to look at, in a stable order."""
    for path in map(Path, paths):
        if path.is_file():
            yield path, True
        elif path.is_dir():
            for file in sorted(path.rglob("*")):
                hidden = any(part.startswith(".") for part in file.relative_to(path).parts)
                if file.suffix in TEMPLATE_SUFFIXES and file.is_file() and not hidden:
                    yield file, False
        else:
            raise UserError(f"{path}: no such file or directory")


class _Files:
    """The candidate files of a run, each read once: a digest, its size and the local nested
    templates it names. Contents are not kept (500 templates would be tens of megabytes)."""

    def __init__(self, candidates: Iterable[tuple[Path, bool]]):
        self._named: dict[Path, bool] = {}
        self._digest: dict[Path, bytes] = {}
        self._size: dict[Path, int] = {}
        self._children: dict[Path, tuple[Path, ...]] = {}
        self._interface: dict[Path, str] = {}
        for path, named in candidates:
            content = path.read_bytes()
            self._named[path] = named
            self._digest[_same_file(path)] = hashlib.sha256(content).digest()
            self._size[path] = len(content)
            self._children[path] = tuple(_local_children(path, content))

    @property
    def paths(self) -> list[Path]:
        return list(self._named)

    def named(self, path: Path) -> bool:
        return self._named[path]

    def size(self, path: Path) -> int:
        return self._size[path]

    def children(self, path: Path) -> tuple[Path, ...]:
        return self._children[path]

    def digest(self, path: Path) -> bytes:
        """The file's hash; a child outside the run is read here, a missing one hashes as such."""
        key = _same_file(path)
        if key not in self._digest:
            self._digest[key] = (hashlib.sha256(path.read_bytes()).digest() if path.is_file()
                                 else b"missing")
        return self._digest[key]

    def interface(self, path: Path) -> str:
        """What a parent template's lint result can depend on in a child it names (see
        `_ResultKeys.lint_by_interface`)."""
        key = _same_file(path)
        if key not in self._interface:
            # A child this cannot read is taken whole: any change to it then counts.
            self._interface[key] = _template_interface(path) or f"bytes {self.digest(path).hex()}"
        return self._interface[key]


def _same_file(path: Path) -> Path:
    return Path(os.path.abspath(path))


def _template_interface(path: Path) -> str | None:
    """A child template's parameters (and whether each has a default) and output names; None
    when the file cannot be read as a template.

    JSON is read as JSON (YAML parsers differ on its corners: tab indentation, long keys),
    anything else with libyaml where available and tags ignored, since only names are read: a
    few milliseconds a child, and no cfn-lint import (its decoder is pure Python in older
    releases). A key given twice makes the file unreadable here as it does for cfn-lint, which
    then reads nothing of the child.
    """
    import yaml

    try:
        content = path.read_bytes()
        if content.lstrip().startswith(b"{"):
            data = json.loads(content, object_pairs_hook=_unique_keys)
        else:
            data = yaml.load(content, Loader=_names_loader())  # noqa: S506 - a safe loader
    except (OSError, yaml.YAMLError, ValueError):
        return None
    if not isinstance(data, dict):
        return None
    parameters, outputs = data.get("Parameters"), data.get("Outputs")
    return json.dumps({
        "parameters": {str(name): isinstance(value, dict) and value.get("Default") is not None
                       for name, value in parameters.items()}
        if isinstance(parameters, dict) else repr(type(parameters)),
        "outputs": sorted(map(str, outputs)) if isinstance(outputs, dict) else None,
    }, sort_keys=True)


def _unique_keys(pairs: list[tuple[Any, Any]]) -> dict:
    keys = [key for key, _ in pairs]
    if len(set(keys)) != len(keys):
        raise ValueError("a key given twice")
    return dict(pairs)


@functools.cache
def _names_loader() -> type:
    import yaml

    class TagsIgnored(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
        pass

    def mapping(loader, node, deep=False):
        pairs = [(loader.construct_object(k, deep=deep), v) for k, v in node.value]
        _unique_keys([(key if isinstance(key, str) else repr(key), v) for key, v in pairs])
        return loader.construct_mapping(node, deep=deep)

    TagsIgnored.add_multi_constructor("!", lambda loader, suffix, node: None)
    TagsIgnored.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, mapping)
    return TagsIgnored


# A nested stack's TemplateURL that names a local file (not s3:// or https://, not an intrinsic).
# It starts with the literal name, so the search skips ahead instead of trying every byte.
_TEMPLATE_URL = re.compile(rb"""TemplateURL["']?\s*:\s*["']?([^\s"',{}\[\]!]+)""")


def _local_children(path: Path, content: bytes) -> list[Path]:
    found = []
    for match in _TEMPLATE_URL.finditer(content):
        value = match.group(1).decode("utf-8", "replace")
        if "://" not in value:
            found.append(path.parent / value)
    return found

