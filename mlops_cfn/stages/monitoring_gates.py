"""When each monitoring resource exists: gates from the conditional wires it watches.

Serving names its endpoint and ECS service before they exist (outputs.py, conditional wires);
monitoring gets a condition for each (HasEndpoint, HasApiService). A `Gate` is the set of those
conditions a resource needs: an alarm on the endpoint's metrics needs {HasEndpoint}, one on the
load balancer's nothing, the Model Monitor rules what the schedule needs. Every resource is given
the conjunction of its gate as its Condition; a value that lists resources of different gates
(the dashboard, the composite alarm's rule, the topic policy) picks between variants with Fn::If,
decided at deploy time, so environments that differ only in values render the same template.
"""

from itertools import product
from typing import Any, Callable, Iterable, Sequence

from troposphere import And, Condition, If, NoValue, encode_to_dict

from ..outputs import Wire
from ..stage import StageBuilder
from .monitoring_metrics import Local, Watch

Gate = frozenset[str]
ALWAYS: Gate = frozenset()


def gate_of(b: StageBuilder, watch: Watch, local_gates: dict[str, Gate]) -> Gate:
    """What the watch's metric needs to exist: the presence of its conditional wires and the
    gates of the monitoring resources it counts (`local_gates`, by logical id)."""
    needed: set[str] = set()
    for _, source in watch.dimensions:
        if isinstance(source, Local):
            needed |= local_gates.get(source.logical_id, ALWAYS)
        elif isinstance(source, Wire) and source.presence is not None:
            needed.add(b.presence(source))
    return frozenset(needed)


def condition_of(b: StageBuilder, gate: Gate) -> str | None:
    """The template's condition for `gate`: None, its one condition, or an Fn::And of them."""
    if not gate:
        return None
    names = sorted(gate)
    if len(names) == 1:
        return names[0]
    name = "And".join(names)
    if name not in b.template.conditions:
        b.template.add_condition(name, And(*(Condition(n) for n in names)))
    return name


def conditionally(b: StageBuilder, resource: Any, gate: Gate) -> Any:
    """`resource` given the Condition of `gate` (none when it always exists)."""
    condition = condition_of(b, gate)
    if condition is not None:
        resource.Condition = condition
    return resource


def common_gate(gates: Sequence[Gate], what: str) -> Gate:
    """The gate of something that exists while any of `gates` holds: their shared part, when
    one of them is exactly that (an Fn::Or of unrelated gates is not needed by any watch)."""
    shared = frozenset.intersection(*gates)
    if shared not in gates:
        raise ValueError(f"{what}: its parts exist under unrelated conditions "
                         f"({', '.join(sorted('+'.join(sorted(g)) for g in gates))})")
    return shared


def element(b: StageBuilder, value: Any, gate: Gate, within: Gate = ALWAYS,
            otherwise: Any = NoValue) -> Any:
    """A list element that exists under `gate`, in a list that exists under `within`."""
    extra = gate - within
    if not extra:
        return value
    return If(condition_of(b, gate), value, otherwise)


def by_gates(b: StageBuilder, gates: Iterable[Gate], build: Callable[[Gate], Any],
             within: Gate = ALWAYS) -> Any:
    """`build(present)` for every combination of the conditions in `gates` (beyond `within`,
    which hold anyway), as nested Fn::If; equal variants collapse."""
    conditions = sorted(set().union(*gates) - within) if gates else []
    variants = {}
    for values in product((True, False), repeat=len(conditions)):
        present = within | frozenset(c for c, v in zip(conditions, values) if v)
        variants[values] = build(present)

    def pick(index: int, chosen: tuple[bool, ...]) -> Any:
        if index == len(conditions):
            return variants[chosen]
        when_true = pick(index + 1, chosen + (True,))
        when_false = pick(index + 1, chosen + (False,))
        if _same(when_true, when_false):
            return when_true
        return If(conditions[index], when_true, when_false)

    return pick(0, ())


def _same(one: Any, other: Any) -> bool:
    return encode_to_dict(one) == encode_to_dict(other)
