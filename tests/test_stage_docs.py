"""Each stage module's docstring says which wires it takes and offers, and says it truly.

A stage module's docstring holds an `Inputs:` and an `Outputs:` paragraph naming the wires
(outputs.py) the stage takes and offers, with the conditions in prose (`with the consumer also
VpcId`; `RawBucketName/Arn` names RawBucketName and RawBucketArn). Built over the bundled
config and every example, in every environment, the wires each stage really takes and offers
must be exactly those its paragraphs name: a wire added without a word, or a word left behind
by a wire removed, fails here. (PermissionsBoundaryArn, which the composer gives every stage
with roles, is said once, in boundary.py.) The serving stage's parts (serving_*.py) name a
part of serving's wires each.
"""

import importlib
import re
from pathlib import Path

import pytest

from mlops_cfn import boundary, config, outputs, pipeline

REPO = Path(__file__).resolve().parents[1]
CONFIGS = [None, *sorted((REPO / "examples").glob("*.yaml"))]
SERVING_PARTS = ("serving_api", "serving_batch", "serving_fargate", "serving_sagemaker")


def every_wire_name() -> set[str]:
    wires = [w for w in vars(outputs).values() if isinstance(w, outputs.Wire)]
    return ({w.name for w in wires} | {w.presence.wire.name for w in wires if w.presence}
            | {boundary.WIRE.name})


WIRES = every_wire_name()


def wires_built() -> dict[str, tuple[set[str], set[str]]]:
    """Stage name -> (wires taken, wires offered) over every config and environment."""
    found: dict[str, tuple[set[str], set[str]]] = {}
    for path in CONFIGS:
        loaded = config.load(path)
        for built in pipeline.build_all(loaded, list(loaded.merged)):
            for stage in built.stages:
                taken, offered = found.setdefault(stage.name, (set(), set()))
                taken |= {w.name for w in stage.inputs} - {boundary.WIRE.name}
                offered |= {w.name for w in stage.outputs}
    return found


BUILT = wires_built()


def named(docstring: str, label: str) -> set[str]:
    """The wire names in the docstring's `<label>:` paragraph (up to the next `Word:` line or
    a blank line)."""
    found = re.search(rf"^{label}:(.*?)(?=^\S+:|\n\n|\Z)", docstring, re.S | re.M)
    assert found, f"no {label}: paragraph"
    names = set()
    for name, alternative in re.findall(r"\b([A-Z][A-Za-z0-9]+)(?:/([A-Z][a-z0-9]+))?",
                                        found.group(1)):
        names.add(name)
        if alternative:  # RawBucketName/Arn
            names.add(re.sub(r"[A-Z][a-z0-9]*$", alternative, name))
    return names & WIRES


def docstring(module: str) -> str:
    return importlib.import_module(f"mlops_cfn.stages.{module}").__doc__ or ""


def test_every_module_that_documents_wires_is_a_stage_the_configs_build_or_a_part_of_serving():
    documenting = {p.stem for p in (REPO / "mlops_cfn" / "stages").glob("*.py")
                   if re.search(r"^Outputs:", docstring(p.stem), re.M)}
    assert documenting == set(BUILT) - {boundary.NAME} | set(SERVING_PARTS)


@pytest.mark.parametrize("stage", sorted(set(BUILT) - {boundary.NAME}))
def test_a_stage_docstring_names_exactly_the_wires_the_stage_takes_and_offers(stage):
    taken, offered = BUILT[stage]
    text = docstring(stage)
    assert named(text, "Inputs") == taken, \
        f"Inputs: unsaid {sorted(taken - named(text, 'Inputs'))}, " \
        f"said but never taken {sorted(named(text, 'Inputs') - taken)}"
    assert named(text, "Outputs") == offered, \
        f"Outputs: unsaid {sorted(offered - named(text, 'Outputs'))}, " \
        f"said but never offered {sorted(named(text, 'Outputs') - offered)}"


@pytest.mark.parametrize("part", SERVING_PARTS)
def test_each_part_of_serving_names_wires_serving_has(part):
    taken, offered = BUILT["serving"]
    text = docstring(part)
    assert named(text, "Outputs") and named(text, "Outputs") <= offered
    if "\nInputs:" in text or text.startswith("Inputs:"):
        assert named(text, "Inputs") <= taken
