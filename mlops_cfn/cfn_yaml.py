"""CloudFormation YAML text from a template's data, written by libyaml's C emitter.

troposphere's `to_yaml` goes through cfn-flip, whose pure-Python emitter was most of the time of
a whole `mlops-cfn render`; PyYAML's CDumper hands the same document to libyaml, an order of
magnitude faster. What the text looks like, and why:

- intrinsic functions in their short form (`!Ref Name`, `!GetAtt Name.Arn`, `!Sub ...`), as the
  CloudFormation User Guide writes them ("Intrinsic function reference"), tagged values unquoted
  where YAML allows it;
- mapping keys sorted (`sort_keys`, what render asks for: the order never depends on how a stage
  built its template), or kept as given (package keeps a template's own order);
- a string holding a line break as a literal block (`|`): scripts and buildspecs read as written;
- no line folding: a long ARN or reason stays on one line, greppable and diffable;
- a string starting with "0", or a number with an exponent and no point ("1e3"), single-quoted:
  YAML 1.2 readers take these for numbers, where PyYAML's YAML 1.1 (which quotes every other
  string that would read as a number, boolean or null) does not; an account id stays a string;
- block sequences not indented under their key (libyaml's only style; valid YAML, which
  cfn-lint and CloudFormation read alike).

The same data always gives the same bytes. PyYAML built without libyaml falls back to its Python
emitter, taught to write tagged values plain where libyaml does, so the bytes do not depend on
the installation (tests/test_cfn_yaml.py compares the two on every rendered template).
"""

import functools
import io
import re
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

# The short forms the CloudFormation User Guide documents (Fn::ForEach is a key, not a value, and
# has none). Any other single-key mapping, "Fn::" or not, stays a mapping.
SHORT_FORMS = frozenset({
    "Ref", "Condition",
    *(f"Fn::{name}" for name in (
        "And", "Base64", "Cidr", "Equals", "FindInMap", "GetAZs", "GetAtt", "If", "ImportValue",
        "Join", "Length", "Not", "Or", "Select", "Split", "Sub", "ToJsonString", "Transform")),
})

_STR, _MAP, _SEQ = "tag:yaml.org,2002:str", "tag:yaml.org,2002:map", "tag:yaml.org,2002:seq"
_BOOL, _NULL, _INT = "tag:yaml.org,2002:bool", "tag:yaml.org,2002:null", "tag:yaml.org,2002:int"
_EXPONENT_ONLY = re.compile(r"[-+]?[0-9]+[eE][-+]?[0-9]+")
# Wider than any line: libyaml folds plain and quoted scalars at the width otherwise.
_UNFOLDED = 1 << 30


def dump(data: Any, sort_keys: bool = True, *, python_emitter: bool = False) -> str:
    """`data` (a template as dicts, lists and scalars) as CloudFormation YAML.

    `python_emitter` takes the fallback even where libyaml is installed (tests compare them)."""
    stream = io.StringIO()
    dumper = (_PythonEmitterAsLibyaml if python_emitter else _DUMPER)(
        stream, allow_unicode=True, width=_UNFOLDED, default_flow_style=False)
    try:
        dumper.open()
        dumper.serialize(_node(data, sort_keys))
        dumper.close()
    finally:
        dumper.dispose()
    return stream.getvalue()


def _node(value: Any, sort_keys: bool) -> Node:
    if isinstance(value, str):
        return ScalarNode(_STR, value, style=_string_style(value))
    if isinstance(value, dict):
        if len(value) == 1:
            short = _short_form(value, sort_keys)
            if short is not None:
                return short
        keys = sorted(value, key=str) if sort_keys else list(value)
        return MappingNode(_MAP, [
            (ScalarNode(_STR, key, style=_string_style(key)) if type(key) is str
             else _node(key, sort_keys), _node(value[key], sort_keys))
            for key in keys])
    if isinstance(value, (list, tuple)):
        return SequenceNode(_SEQ, [_node(item, sort_keys) for item in value])
    if value is True or value is False:
        return ScalarNode(_BOOL, "true" if value else "false")
    if value is None:
        return ScalarNode(_NULL, "null")
    if isinstance(value, int):
        return ScalarNode(_INT, str(value))
    if isinstance(value, float):
        return yaml.SafeDumper.represent_float(_FLOATS, value)
    raise TypeError(f"cannot write {type(value).__name__} as CloudFormation YAML: {value!r}")


def _short_form(mapping: dict, sort_keys: bool) -> Node | None:
    """`{"Fn::Sub": x}` as `!Sub x`; None when the mapping is not an intrinsic function."""
    key = next(iter(mapping))
    argument = mapping[key]
    if key not in SHORT_FORMS or (key in ("Ref", "Condition") and not isinstance(argument, str)):
        return None  # `Condition: {...}` (a policy's) and the like are plain mappings
    name = key.removeprefix("Fn::")
    if name == "GetAtt" and isinstance(argument, (list, tuple)) and len(argument) == 2 \
            and all(isinstance(part, str) for part in argument):
        argument = ".".join(argument)
    node = _node(argument, sort_keys)
    if node.tag.startswith("!"):
        # The argument is itself a short form (`Fn::Base64` of an `Fn::Sub`): a node takes one
        # tag, so the outer function keeps its long form, `Fn::Base64: !Sub ...`.
        return None
    node.tag = f"!{name}"
    return node


def _string_style(value: str) -> str | None:
    if "\n" in value or "\r" in value:
        return "|"  # libyaml picks double quotes when a literal block cannot hold the text
    if value.startswith("0") or _EXPONENT_ONLY.fullmatch(value):
        return "'"
    return None  # plain, unless YAML would read it as something else (then quoted)


_FLOATS = yaml.SafeDumper(None)  # only its float representer is used


@functools.lru_cache(maxsize=1 << 16)
def _plain_tag(value: str) -> str:
    return _RESOLVER.resolve(ScalarNode, value, (True, False))


_RESOLVER = yaml.resolver.Resolver()


class _Resolving:
    """The emitter asks, twice for every scalar, which tag YAML would read it with (to write a
    tag only where it must); a template repeats the same strings (names, ARNs, actions) many
    times, so the answer for plain text is remembered. Exactly PyYAML's Resolver otherwise: it
    has no path resolvers, so a quoted scalar is a string."""

    def resolve(self, kind, value, implicit):
        if kind is ScalarNode:
            return _plain_tag(value) if implicit[0] else _STR
        return super().resolve(kind, value, implicit)


class _PythonEmitterAsLibyaml(_Resolving, yaml.Dumper):
    """PyYAML's own emitter where libyaml is missing, writing a tagged scalar plain whenever
    libyaml does (yaml_emitter_select_scalar_style: plain unless the text forbids it); PyYAML
    would quote it."""

    def choose_scalar_style(self):
        style = super().choose_scalar_style()
        event, analysis = self.event, self.analysis
        if (style == "'" and not event.style and not any(event.implicit)  # tag written
                and not (self.simple_key_context and (analysis.empty or analysis.multiline))
                and (analysis.allow_flow_plain if self.flow_level
                     else analysis.allow_block_plain)):
            return ""
        return style


if hasattr(yaml, "CDumper"):
    class _Libyaml(_Resolving, yaml.CDumper):
        pass

    _DUMPER: type = _Libyaml
else:  # PyYAML built without libyaml
    _DUMPER = _PythonEmitterAsLibyaml
