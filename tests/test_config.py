"""pipeline.yaml: what is accepted, what is refused, and how environments merge."""

import pytest

from mlops_cfn.config import DEFAULT_CONFIG, PipelineConfig, load, load_data, setting_values
from mlops_cfn.config.yaml_source import parse_yaml
from mlops_cfn.errors import UserError

from .helpers import FOUNDATION_ONLY, default_data


def problems_of(data, env=None) -> list[str]:
    with pytest.raises(UserError) as raised:
        load_data(data, "pipeline.yaml", env)
    return list(raised.value.problems)


def test_the_bundled_default_loads_for_every_environment_it_defines():
    loaded = load()
    assert loaded.source == str(DEFAULT_CONFIG)
    assert set(loaded.merged) == {"dev", "prod"}
    assert loaded.environment == "dev"


def test_a_minimal_file_needs_only_a_project_name():
    loaded = load_data({"project": "churn"}, "p.yaml")
    assert loaded.config.stages.storage.enabled
    assert list(loaded.merged) == ["dev"]


def test_environment_overrides_merge_over_the_base_key_by_key():
    loaded = load(None, "prod")
    assert loaded.config.stages.ingestion.retention_hours == 168
    # untouched siblings keep the base value
    assert loaded.config.stages.ingestion.stream_mode == loaded.base.stages.ingestion.stream_mode
    assert loaded.config.protected is True
    assert loaded.for_environment("dev").config.protected is False


def test_lists_in_overrides_replace_rather_than_extend():
    data = {"project": "pp", "tags": {"a": "1"},
            "network": {"interface_endpoints": ["kms", "logs"]},
            "environments": {"dev": {"network": {"interface_endpoints": ["sts"]},
                                     "tags": {"b": "2"}}}}
    data = {**data, **FOUNDATION_ONLY}
    config = load_data(data, "p.yaml").config
    assert config.network.interface_endpoints == ["sts"]
    assert config.tags == {"a": "1", "b": "2"}  # while mappings merge


@pytest.mark.parametrize("data, expected", [
    ({"project": "ok", "stages": {"ingestion": {"shards": 0}}},
     "pipeline.yaml: stages.ingestion.shards: must be >= 1 (got 0)"),
    ({"project": "ok", "stages": {"ingestion": {"shardz": 3}}},
     "pipeline.yaml: stages.ingestion.shardz: unknown key (did you mean 'shards'? allowed: "),
    ({"project": "ok", "stages": {"storage": {"archive_after_days": "soon"}}},
     "pipeline.yaml: stages.storage.archive_after_days: must be a whole number (got 'soon')"),
    ({"project": "ok", "stages": {"ingestion": {"stream_mode": "fast"}}},
     "pipeline.yaml: stages.ingestion.stream_mode: must be one of 'on_demand' or 'provisioned' "
     "(got 'fast')"),
    ({"project": "Bad_Name"}, "pipeline.yaml: project: must be 2-32 characters: a lowercase "),
    ({}, "pipeline.yaml: project: is required"),
    ({"project": "ok", "log_retention_days": 2},
     "pipeline.yaml: log_retention_days: must be one of 1, 3, 5"),
    ({"project": "ok", "tags": {"aws:owner": "me"}}, "pipeline.yaml: tags: tag key 'aws:owner'"),
    ({"project": "ok", "environments": {"Prod": {}}},
     "pipeline.yaml: environments.Prod: key must be 1-10 characters: a lowercase letter"),
    ({"project": "ok", "environments": {}},
     "pipeline.yaml: environments: must have at least 1 items"),
    ({"project": "ok", "stages": {"storage": "yes"}},
     "pipeline.yaml: stages.storage: must be a mapping (got 'yes')"),
    ({"project": "ok", "stages": {"etl": {"schedule": "cron(garbage)"}}},
     "pipeline.yaml: stages.etl.schedule: must be cron(minutes hours day-of-month month "
     "day-of-week year) in UTC"),
    # AWS refuses a cron giving both day-of-month and day-of-week.
    ({"project": "ok", "stages": {"training": {"schedule": "cron(0 12 * * MON-FRI *)"}}},
     "pipeline.yaml: stages.training.schedule: must be rate(N minutes|hours|days) or cron("),
])
def test_each_mistake_is_one_line_naming_file_field_and_what_is_allowed(data, expected):
    problems = problems_of(data)
    assert any(p.startswith(expected) for p in problems), problems
    assert all("\n" not in p for p in problems)


def test_every_problem_in_the_file_is_reported_at_once():
    problems = problems_of({"project": "ok", "stages": {"ingestion": {"shards": 0, "x": 1}}})
    assert len(problems) == 2


def test_a_mistake_in_an_override_names_the_environment_path():
    data = {"project": "ok",
            "environments": {"dev": {}, "prod": {"stages": {"ingestion": {"shards": -1}}}}}
    assert problems_of(data, "dev") == [
        "pipeline.yaml: environments.prod.stages.ingestion.shards: must be >= 1 (got -1)"]


def test_a_wrong_item_of_a_list_in_an_override_names_the_environment_path():
    # pydantic names the union member it tried below the item (`[0].str`); the value is still
    # the override's, so the line says where in the file it is.
    monitor = {"model_monitor": {"bias_drift": {"label_values": [[1]]}}}
    data = {"project": "ok",
            "environments": {"dev": {}, "prod": {"stages": {"monitoring": monitor}}}}
    problems = problems_of(data, "dev")
    assert problems and all(line.startswith(
        "pipeline.yaml: environments.prod.stages.monitoring.model_monitor.bias_drift"
        ".label_values[0]") for line in problems), problems


def test_an_environment_may_not_rename_the_project():
    data = {"project": "ok", "environments": {"prod": {"project": "other"}}}
    assert problems_of(data) == [
        "pipeline.yaml: environments.prod.project: is set once for the whole file, "
        "not per environment"]


def test_a_project_set_per_environment_is_one_problem_even_when_also_invalid():
    data = {"project": "ok", "environments": {"dev": {"project": "x"}}}
    assert problems_of(data) == [
        "pipeline.yaml: environments.dev.project: is set once for the whole file, "
        "not per environment"]


def test_an_unknown_environment_lists_the_defined_ones():
    assert problems_of({"project": "ok", "environments": {"dev": {}, "prod": {}}}, "qa") == [
        "pipeline.yaml: environments: no environment 'qa' (defined: dev, prod)"]


def test_a_top_level_that_is_not_a_mapping_is_refused():
    assert problems_of(["project", "x"]) == [
        "pipeline.yaml: must be a mapping of settings (got list)"]


def test_yaml_syntax_errors_carry_line_and_column():
    with pytest.raises(UserError, match=r"^p.yaml:4:1: YAML syntax error: "):
        parse_yaml("project: ok\nstages:\n  ingestion: [\n", "p.yaml")


def test_a_key_given_twice_is_refused_rather_than_silently_taking_the_last():
    with pytest.raises(UserError, match=r"p.yaml:3:1: YAML syntax error: key 'project' appears twice"):
        parse_yaml("project: a\ntags: {}\nproject: b\n", "p.yaml")


def test_missing_file_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="no such file"):
        load(tmp_path / "absent.yaml")


def test_settings_are_collected_by_parameter_name_from_every_section():
    values = setting_values(load(None, "prod").config)
    assert values["StreamRetentionHours"] == 168
    assert values["LogRetentionDays"] == 365
    assert values["ArchiveAfterDays"] == 90


def test_setting_parameter_names_are_unique_across_the_model():
    seen: dict[str, str] = {}

    def walk(model_type, path):
        for name, field in model_type.model_fields.items():
            for marker in field.metadata:
                if type(marker).__name__ == "Setting":
                    assert marker.parameter not in seen, (path + name, seen[marker.parameter])
                    seen[marker.parameter] = path + name
            annotation = field.annotation
            if isinstance(annotation, type) and hasattr(annotation, "model_fields"):
                walk(annotation, f"{path}{name}.")

    walk(PipelineConfig, "")
    assert "StreamShardCount" in seen


def test_the_bundled_default_changes_nothing_structural_between_dev_and_prod():
    data = default_data()
    assert set(data["environments"]) == {"dev", "prod"}


@pytest.mark.parametrize("text, expected", [
    ("? [a]\n: 1\n", "p.yaml:1:3: YAML syntax error: a mapping key must be a plain value"),
    ("\x00", "p.yaml: YAML syntax error: unacceptable character #x0000"),
    ("project: ok\ntags: &x {a: *x}\n", "p.yaml:2:7: YAML syntax error: found unconstructable"),
    ("project: !Ref x\n", "p.yaml:1:10: YAML syntax error: could not determine a constructor"),
])
def test_yaml_that_python_could_not_use_safely_is_a_located_syntax_error(text, expected):
    with pytest.raises(UserError) as raised:
        parse_yaml(text, "p.yaml")
    assert raised.value.problems[0].startswith(expected)


def test_an_environment_switching_to_an_existing_vpc_must_give_its_range():
    data = {"project": "ok", "network": {"cidr": "10.40.0.0/16"},
            "environments": {"dev": {}, "prod": {"network": {
        "mode": "existing", "vpc_id": "vpc-0123456789abcdef0",
        "subnet_ids": ["subnet-0123456789abcdef0", "subnet-0123456789abcdef1",
                       "subnet-0123456789abcdef2"],
        "subnet_zones": ["eu-west-1a", "eu-west-1b", "eu-west-1c"]}}}}
    assert problems_of(data) == [
        "pipeline.yaml: environments.prod.network.cidr: is required when the environment "
        "switches to mode 'existing' (the existing VPC's IPv4 range)"]
    data["environments"]["prod"]["network"]["cidr"] = "10.9.0.0/16"
    assert load_data(data, "pipeline.yaml", "prod").config.network.cidr == "10.9.0.0/16"


def test_an_environment_named_prod_is_protected_unless_the_file_says_otherwise():
    loaded = load_data({"project": "ok", "environments": {"dev": {}, "prod": {}}}, "p.yaml")
    assert loaded.for_environment("prod").config.protected is True
    assert loaded.for_environment("dev").config.protected is False
    explicit = load_data({"project": "ok", "environments": {"prod": {"protected": False}}},
                         "p.yaml")
    assert explicit.config.protected is False


@pytest.mark.parametrize("schedule", ["rate(7 days)", "rate(1 hour)", "cron(15 * * * ? *)",
                                      "cron(0/5 8-17 ? * MON-FRI *)", "cron(0 10 ? * 6L 2027)"])
def test_schedules_aws_accepts_are_accepted(schedule):
    load_data({"project": "ok", "stages": {"training": {"schedule": schedule}}}, "p.yaml")


def test_hyperparameters_written_as_numbers_or_booleans_become_the_text_sagemaker_takes():
    config = load_data({"project": "ok", "stages": {"training": {"hyperparameters": {
        "objective": "binary:logistic", "num_round": 200, "eta": 0.2, "verbose": True}}}},
        "p.yaml").config
    assert config.stages.training.hyperparameters == {
        "objective": "binary:logistic", "num_round": "200", "eta": "0.2", "verbose": "true"}
