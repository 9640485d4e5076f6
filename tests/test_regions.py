"""Every region cfn-lint knows either has each built-in image the templates look up, or is
refused by the templates' Rules (at change-set creation) and by `deploy` (before any upload);
a lookup that would fail half-way through a deployment is never left to happen
(stages/image_registries.py)."""

from pathlib import Path

import pytest
from cfnlint.helpers import REGIONS

from mlops_cfn import config, pipeline
from mlops_cfn.preflight import region_problems, root_values
from mlops_cfn.rules import failed_assertions, pseudo_parameters
from mlops_cfn.stages import cicd_partition, load_balancer_logs
from mlops_cfn.stages.image_registries import CLARIFY, MODEL_MONITOR, XGBOOST

from .helpers import config_with

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = {"default": lambda: config.load()} | {
    path.stem: (lambda path=path: config.load(path))
    for path in sorted((ROOT / "examples").glob("*.yaml"))}


def region_lookups(template: dict) -> list[str]:
    """The mappings a template reads with the stack's region as the key."""
    found = []

    def walk(node):
        if isinstance(node, dict):
            lookup = node.get("Fn::FindInMap")
            if isinstance(lookup, list) and lookup[1] == {"Ref": "AWS::Region"}:
                found.append(lookup[0])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(template)
    return found


def resolves_in(template: dict, region: str) -> bool:
    """Whether every FindInMap keyed by the region finds an entry, as CloudFormation reads it."""
    return all(region in template["Mappings"][name] for name in region_lookups(template))


def without_partition_rule(template: dict) -> dict:
    rules = {k: v for k, v in (template.get("Rules") or {}).items()
             if k != cicd_partition.RULE}
    return {k: v for k, v in template.items() if k != "Rules"} | ({"Rules": rules} if rules
                                                                  else {})


def built(name: str):
    return pipeline.build(CONFIGS[name]())


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_every_region_cfn_lint_knows_resolves_or_is_refused_before_anything_starts(name):
    pipe = built(name)
    # The delivery pipeline's partition rule refuses regions for another reason (a service
    # missing there, not a lookup): test_the_delivery_pipeline_is_refused_in_china.
    root = without_partition_rule(pipe.root.to_dict())
    stages = [without_partition_rule(stage.template.to_dict()) for stage in pipe.stages]
    verdicts = {}
    for region in sorted(REGIONS):
        resolves = all(resolves_in(t, region) for t in stages)
        root_refuses = failed_assertions(root, root_values(root, pipe.parameters, region))
        stage_refuses = [f for t in stages
                         for f in failed_assertions(t, pseudo_parameters(region))]
        assert bool(root_refuses) == (not resolves), region
        assert bool(stage_refuses) == (not resolves), region
        assert bool(region_problems(root, pipe.parameters, region)) == (not resolves), region
        verdicts[region] = resolves
    if any(region_lookups(t) for t in stages):
        assert any(verdicts.values()) and not all(verdicts.values())
    else:
        assert all(verdicts.values())


def test_the_default_pipeline_runs_in_the_regions_both_images_are_documented_for():
    pipe = built("default")
    root = without_partition_rule(pipe.root.to_dict())
    supported = {r for r in REGIONS if not region_problems(root, pipe.parameters, r)}
    assert supported == set(MODEL_MONITOR.accounts) & set(XGBOOST.accounts) & set(REGIONS)
    assert {"us-east-1", "eu-west-1", "af-south-1", "ap-northeast-3", "eu-south-1"} <= supported
    assert "ap-southeast-5" not in supported


def test_the_refusal_is_one_line_naming_the_image_and_the_way_out():
    pipe = built("default")
    problems = region_problems(pipe.root.to_dict(), pipe.parameters, "mx-central-1")
    problems = sorted(problems)
    assert [p.split(" (it has in ")[0] for p in problems] == [
        "region mx-central-1: SageMaker's Model Monitor analyzer image has no documented "
        "account in this region",
        "region mx-central-1: SageMaker's built-in XGBoost image has no documented account in "
        "this region"]
    assert problems[0].endswith(
        "deploy to one of those, or set stages.monitoring.model_monitor.image_account")
    assert problems[1].endswith("deploy to one of those, or set stages.training.image_uri")
    assert all("\n" not in p for p in problems)


def test_naming_the_images_lifts_the_restriction():
    pipe = pipeline.build(config_with({"stages": {
        "training": {"image_uri": "123456789012.dkr.ecr.mx-central-1.amazonaws.com/xgb:1"},
        "monitoring": {"model_monitor": {"image_account": "123456789012"}}}}))
    root = pipe.root.to_dict()
    # What remains is the load balancer log table's, which mx-central-1 is in, and the
    # delivery pipeline's partition rule.
    assert sorted(root["Rules"]) == sorted([load_balancer_logs.RULE, cicd_partition.RULE])
    assert {m for s in pipe.stages for m in region_lookups(s.template.to_dict())} == {
        load_balancer_logs.MAPPING}
    assert region_problems(root, pipe.parameters, "mx-central-1") == []


def test_every_region_lookup_carries_the_rule_for_its_table():
    # A table added later without its rule would fail half-way through a deployment again.
    tables = {table.mapping: (table.rule, table.assertion())
              for table in (MODEL_MONITOR, XGBOOST, CLARIFY)}
    tables[load_balancer_logs.MAPPING] = (load_balancer_logs.RULE, load_balancer_logs.assertion())
    for name in CONFIGS:
        for stage in built(name).stages:
            template = stage.template.to_dict()
            for mapping in region_lookups(template):
                rule, assertion = tables[mapping]
                assert template["Rules"][rule] == {"Assertions": [
                    {"Assert": {"Fn::Contains": [sorted(template["Mappings"][mapping]),
                                                 {"Ref": "AWS::Region"}]},
                     "AssertDescription": assertion["AssertDescription"]}]}


def test_the_tables_hold_twelve_digit_accounts_of_known_regions():
    for table in (MODEL_MONITOR, XGBOOST, CLARIFY):
        assert set(table.accounts) <= set(REGIONS), table.mapping
        assert all(len(a) == 12 and a.isdigit() for a in table.accounts.values())
    # Model Monitor's analyzer runs beside the training pipeline: no region has one alone.
    assert set(MODEL_MONITOR.accounts) <= set(XGBOOST.accounts)


# --- the delivery pipeline: no CodePipeline in the China regions --------------------------------

@pytest.mark.parametrize("region", ["cn-north-1", "cn-northwest-1"])
def test_the_delivery_pipeline_is_refused_in_china_in_one_line_naming_the_switch(region):
    # AWS: "AWS CodeBuild - Getting Started with Amazon Web Services in China": CodePipeline is
    # not available in the Beijing and Ningxia Regions.
    pipe = built("default")
    problems = region_problems(pipe.root.to_dict(), pipe.parameters, region)
    assert [p for p in problems if "CodePipeline" in p] == [
        f"region {region}: the delivery pipeline (stages.cicd) is an AWS CodePipeline "
        "pipeline, and CodePipeline is not available in the China regions: deploy with "
        "stages.cicd.enabled: false there"]
    [cicd] = [s for s in pipe.stages if s.name == "cicd"]
    assert failed_assertions(cicd.template.to_dict(), pseudo_parameters(region))


def test_without_the_delivery_pipeline_china_is_not_refused_for_it():
    pipe = pipeline.build(config_with({"stages": {"cicd": {"enabled": False}}}))
    root = pipe.root.to_dict()
    assert cicd_partition.RULE not in root.get("Rules", {})
    assert not [p for p in region_problems(root, pipe.parameters, "cn-north-1")
                if "CodePipeline" in p]


@pytest.mark.parametrize("region", ["us-gov-west-1", "eu-west-1"])
def test_the_delivery_pipeline_rule_refuses_no_other_partition(region):
    [cicd] = [s for s in built("default").stages if s.name == "cicd"]
    rules_only = {"Rules": {cicd_partition.RULE: cicd.template.to_dict()["Rules"][
        cicd_partition.RULE]}}
    assert failed_assertions(rules_only, pseudo_parameters(region)) == []
