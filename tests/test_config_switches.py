"""A switch set to true that the rest of the file cannot honour is an error naming both keys;
the same switch left at its default stays silent (config/switches.py)."""

import copy

import pytest
from click.testing import CliRunner

from mlops_cfn.cli import cli
from mlops_cfn.config import load_data
from mlops_cfn.config.switches import SWITCHES
from mlops_cfn.errors import UserError

from .helpers import FOUNDATION_ONLY, _merge, default_data

EXISTING_VPC = {"mode": "existing", "cidr": "10.9.0.0/16", "vpc_id": "vpc-0123abcd",
                "subnet_ids": ["subnet-0123abcd", "subnet-4567ef01"]}

# switch -> (the file's changes with the switch explicitly true, the setting in its way)
CASES = {
    "stages.monitoring.model_monitor.enabled": (
        {"stages": {"serving": {"target": "fargate"},
                    "monitoring": {"model_monitor": {"enabled": True}}}},
        "stages.serving.target is 'fargate'"),
    "stages.monitoring.retrain.enabled": (
        {"stages": {"training": {"enabled": False},
                    "monitoring": {"retrain": {"enabled": True}}}},
        "stages.training.enabled is false"),
    "stages.analytics.load.enabled": (
        {"stages": {"etl": {"enabled": False}, "analytics": {"load": {"enabled": True}}}},
        "stages.etl.enabled is false"),
    "stages.analytics.spectrum.enabled": (
        {"stages": {"etl": {"enabled": False}, "analytics": {"spectrum": {"enabled": True}}}},
        "stages.etl.enabled is false"),
    "stages.cicd.retrain.enabled": (
        {"stages": {"training": {"enabled": False}, "cicd": {"retrain": {"enabled": True}}}},
        "stages.training.enabled is false"),
    "stages.cicd.deploy_approved_models": (
        {"stages": {"serving": {"model_source": "model_data", "target": "fargate"},
                    "monitoring": {"model_monitor": {"enabled": False},
                                   "retrain": {"enabled": False}},
                    "cicd": {"deploy_approved_models": True}}},
        "stages.serving.model_source is 'model_data'"),
    "stages.cicd.build_model_api_image": (
        {"stages": {"serving": {"target": "sagemaker"},
                    "cicd": {"build_model_api_image": True}}},
        "stages.serving.target is 'sagemaker'"),
    "stages.cicd.smoke_test": (
        {"stages": {"serving": {"enabled": False}, "monitoring": {"enabled": False},
                    "cicd": {"smoke_test": True}}},
        "stages.serving.enabled is false"),
    "stages.serving.sagemaker.batch_transform.enabled": (
        {"stages": {"serving": {"target": "fargate",
                                "sagemaker": {"batch_transform": {"enabled": True}}}}},
        "stages.serving.target is 'fargate'"),
    "stages.serving.sagemaker.data_capture.enabled": (
        {"stages": {"serving": {"target": "fargate",
                                "sagemaker": {"data_capture": {"enabled": True}}}}},
        "stages.serving.target is 'fargate'"),
    "stages.serving.api_gateway.set_account_logging_role": (
        {"stages": {"serving": {"api_gateway": {"enabled": True, "type": "http",
                                                "set_account_logging_role": True}}}},
        "stages.serving.api_gateway.type is 'http'"),
    "stages.ingestion.ec2_consumer.enabled": (
        {"stages": {"ingestion": {"ec2_consumer": {"enabled": True}}}},
        "network.internet_gateway is false"),
    "network.internet_gateway": (
        {**copy.deepcopy(FOUNDATION_ONLY),
         "network": {**EXISTING_VPC, "internet_gateway": True}},
        "network.mode is 'existing'"),
}


def data_with(changes: dict) -> dict:
    """The bundled default, with one environment (its prod sets switches of its own), and
    `changes` merged in."""
    data = default_data()
    data["environments"] = {"dev": {}}
    _merge(data, copy.deepcopy(changes))
    return data


def refusal(data: dict) -> list[str]:
    with pytest.raises(UserError) as raised:
        load_data(data, "pipeline.yaml")
    return list(raised.value.problems)


def without_switch(changes: dict, path: str) -> dict:
    changes = copy.deepcopy(changes)
    *parents, name = path.split(".")
    section = changes
    for part in parents:
        section = section[part]
    del section[name]
    return changes


def test_every_switch_has_a_case_below():
    assert set(CASES) == {switch.path for switch in SWITCHES}


@pytest.mark.parametrize("path", sorted(CASES))
def test_an_explicit_true_that_cannot_be_honoured_is_one_line_naming_both_keys(path):
    changes, obstacle = CASES[path]
    [line] = refusal(data_with(changes))
    assert line.startswith(f"pipeline.yaml: {path}: is true, but {obstacle} (")
    assert line.endswith(f", or {path} to false")


@pytest.mark.parametrize("path", sorted(CASES))
def test_the_same_switch_left_at_its_default_stays_silent(path):
    changes, _ = CASES[path]
    load_data(data_with(without_switch(changes, path)), "pipeline.yaml")


def test_the_four_reported_cases_read_as_the_issue_asks():
    [retrain] = refusal(data_with(CASES["stages.monitoring.retrain.enabled"][0]))
    assert retrain == (
        "pipeline.yaml: stages.monitoring.retrain.enabled: is true, but stages.training.enabled "
        "is false (retraining on drift starts the training pipeline when Model Monitor's "
        "violation alarm fires): set stages.training.enabled to true, or "
        "stages.monitoring.retrain.enabled to false")
    [monitor] = refusal(data_with(CASES["stages.monitoring.model_monitor.enabled"][0]))
    assert "set stages.serving.target to 'sagemaker' or 'both'" in monitor


def test_a_switch_set_in_an_environment_is_named_where_it_was_set():
    data = data_with({})
    data["environments"] = {"dev": {"stages": {"etl": {"enabled": False},
                                               "analytics": {"load": {"enabled": True}}}}}
    [line] = refusal(data)
    assert line.startswith("pipeline.yaml: environments.dev.stages.analytics.load.enabled: is "
                           "true, but environments.dev.stages.etl.enabled is false (")


def test_a_protection_of_something_that_does_not_exist_is_not_refused():
    # The bundled prod protects the load balancer; with SageMaker-only serving there is none,
    # and nothing is left unprotected.
    data = default_data()
    data["stages"]["serving"]["target"] = "sagemaker"
    assert data["environments"]["prod"]["stages"]["serving"]["fargate"]["deletion_protection"]
    load_data(data, "pipeline.yaml", "prod")


def test_a_base_switch_an_environment_cannot_honour_names_the_environments_key():
    data = data_with({"stages": {"analytics": {"spectrum": {"enabled": True}}}})
    data["environments"] = {"dev": {}, "prod": {"stages": {"etl": {"enabled": False}}}}
    [line] = refusal(data)
    assert line.startswith("pipeline.yaml: stages.analytics.spectrum.enabled: is true, but "
                           "environments.prod.stages.etl.enabled is false (")


def test_a_switch_inside_a_disabled_stage_is_moot():
    # The stage's own switch already says "none of this".
    load_data(data_with({"stages": {"etl": {"enabled": False},
                                    "analytics": {"enabled": False,
                                                  "load": {"enabled": True}}}}), "pipeline.yaml")


def test_continuous_training_is_judged_in_the_home_environment_only():
    # Outside its home environment the cicd stage creates nothing.
    data = data_with({"stages": {"cicd": {"retrain": {"enabled": True}}}})
    data["environments"] = {"dev": {}, "prod": {"stages": {"training": {"enabled": False}}}}
    load_data(data, "pipeline.yaml")
    data["stages"]["cicd"]["home_environment"] = "prod"
    [line] = refusal(data)
    assert "environments.prod.stages.training.enabled is false" in line


def test_render_refuses_it_with_exit_2_and_writes_nothing(tmp_path):
    import yaml

    config = tmp_path / "pipeline.yaml"
    config.write_text(yaml.safe_dump(data_with(CASES["stages.cicd.retrain.enabled"][0])))
    out = tmp_path / "out"
    result = CliRunner().invoke(cli, ["render", "--config", str(config), "--out", str(out)])
    assert result.exit_code == 2, result.output
    [line] = result.output.strip().splitlines()
    assert line.startswith(f"error: {config}: stages.cicd.retrain.enabled: is true, but "
                           "stages.training.enabled is false")
    assert not out.exists()
