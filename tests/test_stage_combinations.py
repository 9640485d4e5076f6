"""Any mix of stages a user may switch on renders clean templates, or is refused in one line.

Every on/off combination of the stages after network, storage and ingestion, each with a
variant of the choices that change what a stage builds (serving target and API, Redshift
deployment, output format, the stream consumer), drawn from a fixed seed so a failure repeats.
"""

import itertools
import random

import pytest

from mlops_cfn import pipeline
from mlops_cfn.config import load_data
from mlops_cfn.errors import UserError
from mlops_cfn.render import render_files, write_tree
from mlops_cfn.validate import validate

from .helpers import LATER_STAGES, default_data


def combinations() -> list[tuple[str, dict]]:
    chance = random.Random(20261126)
    found = []
    for switches in itertools.product([True, False], repeat=len(LATER_STAGES)):
        data = default_data()
        stages = data["stages"]
        for name, on in zip(LATER_STAGES, switches):
            stages.setdefault(name, {})["enabled"] = on
        target = chance.choice(["sagemaker", "fargate", "both"])
        stages["serving"]["target"] = target
        if target != "sagemaker" and chance.random() < 0.6:
            stages["serving"]["api_gateway"] = {
                "enabled": True, "type": "http" if target == "fargate" else
                chance.choice(["http", "rest"])}
        stages["analytics"]["deployment"] = chance.choice(["serverless", "provisioned"])
        stages["etl"]["output_format"] = chance.choice(["parquet", "csv"])
        stages["ingestion"]["consumer"]["enabled"] = chance.random() < 0.7
        name = "+".join(n for n, on in zip(LATER_STAGES, switches) if on) or "foundation"
        found.append((name, data))
    return found


@pytest.mark.slow
def test_every_combination_of_stages_renders_clean_templates_or_is_refused_in_one_line(
        tmp_path):
    trees, refused = [], []
    for name, data in combinations():
        try:
            built = pipeline.build(load_data(data, f"{name}.yaml"))
        except UserError as error:
            assert all(p.startswith(f"{name}.yaml: ") and "\n" not in p
                       for p in error.problems)
            refused.append(name)
            continue
        write_tree(render_files(built), tmp_path / name)
        trees.append(tmp_path / name)
    assert len(trees) >= 48, f"most combinations build; refused: {refused}"
    report = validate(trees, security=False, jobs=2, cache_dir=tmp_path / ".cache")
    assert report.ok, report.render()
