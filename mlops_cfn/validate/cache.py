"""Results kept between runs, under keys of everything they depend on."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Callable, Sequence

from .checkov import checkov_identity
from .discovery import _Files
from .lint import lint_identity


class _ResultKeys:
    """Cache keys: a hash of everything a result depends on.

    cfn-lint's result depends on the template's bytes, the local child templates it names, the
    installed cfn-lint and its configuration (lint.lint_identity), and this package's code (the
    quota table, how matches become findings). checkov's depends on the bytes and the checkov
    installation. Versions are read from files, never by importing.

    Of a child, cfn-lint reads only its parameters (rule E3043: names, and which have a
    default) and its output names (the attributes `!GetAtt Stack.Outputs.X` may name), and the
    latter only for a child under the working directory. So a parent has two keys: one with its
    children's bytes, which a warm run checks without parsing anything, and one with only those
    parts of them, which lets a parent whose child was edited inside keep its result.
    """

    def __init__(self, regions: Sequence[str], checkov: str | None, files: _Files):
        own_code = _own_code()
        self._lint_base = f"lint|{lint_identity(regions)}|{own_code}"
        self._checkov_base = f"checkov|{checkov_identity(checkov)}|{own_code}" if checkov else ""
        self._files = files

    def lint(self, path: Path) -> str:
        return self._lint_key(path, lambda child: self._files.digest(child))

    def lint_by_interface(self, path: Path) -> str:
        return self._lint_key(path, lambda child: b"interface|"
                              + self._files.interface(child).encode())

    def _lint_key(self, path: Path, child_part: Callable[[Path], bytes]) -> str:
        digest = hashlib.sha256(self._lint_base.encode())
        digest.update(self._files.digest(path))
        for child in self._files.children(path):
            digest.update(f"|{child.name}|{_under_working_directory(child)}|".encode())
            digest.update(child_part(child))
        return digest.hexdigest()

    def checkov(self, path: Path) -> str:
        return hashlib.sha256(self._checkov_base.encode() + self._files.digest(path)).hexdigest()


def _under_working_directory(path: Path) -> bool:
    """Whether cfn-lint reads this child's outputs: it refuses paths outside the working
    directory (its guard against path traversal), and then checks no `Outputs.X` name."""
    return os.path.normpath(os.path.abspath(path)).startswith(os.getcwd() + os.sep)


def _own_code() -> str:
    """A hash of this package's modules: a change to any of them may change a result."""
    digest = hashlib.sha256()
    for module in sorted(Path(__file__).parent.glob("*.py")):
        digest.update(module.name.encode() + b"\0" + module.read_bytes())
    return digest.hexdigest()


class _Cache:
    """Results as small JSON files named by their key; a no-op without a directory.

    New results are kept in memory until `save`, which a run calls once it has a report: a run
    refused as bad input writes nothing.
    """

    def __init__(self, directory: Path | None):
        self.directory = directory
        self.pending: dict[str, dict] = {}

    def get(self, key: str) -> dict | None:
        if self.directory is None:
            return None
        if key in self.pending:
            return self.pending[key]
        try:
            return json.loads((self.directory / f"{key}.json").read_text())
        except (OSError, ValueError):
            return None

    def put(self, key: str, result: dict) -> dict:
        if self.directory is not None:
            self.pending[key] = result
        return result

    def save(self) -> None:
        if self.directory is None or not self.pending:
            return
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            ignore = self.directory / ".gitignore"
            if not ignore.exists():
                ignore.write_text("# written by mlops-cfn validate\n*\n")
            for key, result in self.pending.items():
                staging = self.directory / f".{key}.{os.getpid()}.tmp"
                staging.write_text(json.dumps(result))
                os.replace(staging, self.directory / f"{key}.json")
        except OSError:
            pass  # a cache that cannot be written only costs time
        self.pending.clear()

