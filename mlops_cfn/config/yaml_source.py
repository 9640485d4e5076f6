"""Reading pipeline.yaml strictly: syntax errors with line and column, duplicate keys refused."""

from pathlib import Path
from typing import Any

import yaml

from ..errors import UserError


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses a key given twice in one mapping (PyYAML keeps the last)."""


def _construct_mapping(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False):
    seen: dict[Any, yaml.Node] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=True)
        if isinstance(key, (list, dict)):
            raise yaml.constructor.ConstructorError(
                None, None, "a mapping key must be a plain value, not a list or mapping",
                key_node.start_mark)
        if key in seen:
            mark = key_node.start_mark
            raise yaml.constructor.ConstructorError(
                None, None, f"key {key!r} appears twice in one mapping", mark)
        seen[key] = key_node
    return loader.construct_mapping(node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def read_yaml(path: Path) -> Any:
    try:
        if path.exists() and not (path.is_file() or path.is_dir()):
            # A FIFO or a device would block or never end.
            raise UserError(f"{path}: not a regular file, expected a pipeline YAML file")
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise UserError(f"{path}: is a directory, expected a pipeline YAML file") from None
    except UnicodeDecodeError:
        raise UserError(f"{path}: not a UTF-8 text file") from None
    except OSError as error:
        raise UserError(f"{path}: cannot read ({error.strerror})") from None
    return parse_yaml(text, str(path))


def parse_yaml(text: str, source: str) -> Any:
    try:
        data = yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        where = f":{mark.line + 1}:{mark.column + 1}" if mark else ""
        problem = error.problem or error.context or "invalid YAML"
        if "tag:yaml.org,2002:merge" in problem:
            problem = "merge keys (<<) are not supported; write the keys out"
        raise UserError(f"{source}{where}: YAML syntax error: {problem}") from None
    except yaml.YAMLError as error:
        first_line = str(error).splitlines()[0]
        raise UserError(f"{source}: YAML syntax error: {first_line}") from None
    return {} if data is None else data
