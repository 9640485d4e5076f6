"""One record schema for the three consumers of processed data (issue 12, finding 9).

The ETL job writes the processed files, the warehouse load copies them into a table (a COPY from
Parquet or CSV matches columns by position), and training reads the label and the features by
name. All three are read here from the rendered templates and must describe the same record:
the same columns in the same order, types that carry over, a label and features that exist.
"""

import json
import re
import shlex

import pytest

from mlops_cfn import pipeline
from mlops_cfn.config import load
from mlops_cfn.errors import UserError
from tests.helpers import config_with, default_data
from mlops_cfn.config import load_data

# What the job writes for each schema type (Spark's type in the Parquet file) and the warehouse
# column a Parquet or CSV COPY fills from it.
SPARK_TO_REDSHIFT = {"string": "varchar", "integer": "bigint", "double": "double precision",
                     "boolean": "boolean", "timestamp": "timestamp"}
NUMERIC = {"integer", "double", "boolean"}

ORDERS = {"columns": [{"name": "order_id", "type": "string", "length": 64},
                      {"name": "amount", "type": "double"},
                      {"name": "placed_at", "type": "timestamp"},
                      {"name": "items", "type": "integer"},
                      {"name": "returned", "type": "boolean"}],
          "label": "returned"}


def rendered(changes: dict | None = None, env: str = "dev") -> dict[str, dict]:
    built = pipeline.build(config_with(changes, env))
    return {stage.name: stage.template.to_dict() for stage in built.stages}


def job_columns(templates: dict) -> list[dict]:
    job = next(r for r in templates["etl"]["Resources"].values() if r["Type"] == "AWS::Glue::Job")
    return json.loads(job["Properties"]["DefaultArguments"]["--schema"])


def table_columns(templates: dict) -> list[tuple[str, str]]:
    """(name, Redshift type) of the CREATE TABLE the load runs, in order."""
    rule = templates["analytics"]["Resources"]["LoadRule"]["Properties"]
    [load_target] = [t for t in rule["Targets"] if t["Id"] == "load-table"]
    sqls = [s["Fn::Sub"] if isinstance(s, dict) else s
            for s in load_target["RedshiftDataParameters"]["Sqls"]]
    [create] = [s for s in sqls if s.startswith("CREATE TABLE")]
    body = create[create.index("(\n") + 2:create.rindex("\n)")]
    return [re.match(r'\s*"(\w+)" (.+?),?$', line).groups() for line in body.splitlines()]


def training_columns(templates: dict) -> tuple[str, list[str]]:
    """The label and features the prepare step is told (the SageMaker pipeline's first step,
    or the training build's prepare command with engine codebuild)."""
    resources = templates["training"]["Resources"].values()
    builds = [r for r in resources if r["Type"] == "AWS::CodeBuild::Project"
              and "prepare.py" in r["Properties"]["Source"].get("BuildSpec", "")]
    if builds:
        [build] = builds
        [command] = [line for line in build["Properties"]["Source"]["BuildSpec"].splitlines()
                     if "prepare.py" in line]
        arguments = shlex.split(command.strip().lstrip("- "))
        return (arguments[arguments.index("--label-column") + 1],
                arguments[arguments.index("--feature-columns") + 1].split(","))
    pipeline_resource = next(r for r in resources if r["Type"] == "AWS::SageMaker::Pipeline")
    body = pipeline_resource["Properties"]["PipelineDefinition"]["PipelineDefinitionBody"]
    text = body["Fn::Sub"] if isinstance(body["Fn::Sub"], str) else body["Fn::Sub"][0]
    arguments = json.loads(re.sub(r"\$\{[^}]*\}", "0", text))["Steps"][0]["Arguments"][
        "AppSpecification"]["ContainerArguments"]
    label = arguments[arguments.index("--label-column") + 1]
    features = arguments[arguments.index("--feature-columns") + 1].split(",")
    return label, features


@pytest.mark.parametrize("changes", [None, {"record_schema": ORDERS},
                                     {"record_schema": ORDERS,
                                      "stages": {"etl": {"output_format": "csv"}}}],
                         ids=["default", "orders", "orders-csv"])
def test_the_job_the_table_and_training_describe_the_same_record(changes):
    templates = rendered(changes)
    written = job_columns(templates)
    table = table_columns(templates)
    # Same columns, same order: a COPY fills the table by position.
    assert [c["name"] for c in written] == [name for name, _ in table]
    for column, (_, redshift_type) in zip(written, table):
        assert redshift_type.startswith(SPARK_TO_REDSHIFT[column["type"]])
        if column["type"] == "string":
            assert redshift_type == f"varchar({column['max_bytes']})"
    # Training reads a label and features the job writes, all of them numbers.
    label, features = training_columns(templates)
    types = {c["name"]: c["type"] for c in written}
    assert label in types and types[label] in NUMERIC
    assert features and all(types[f] in NUMERIC for f in features)
    assert label not in features


def test_the_bundled_schema_matches_the_sample_events_and_learns_its_label():
    templates = rendered()
    assert [c["name"] for c in job_columns(templates)] == [
        "event_id", "event_type", "user_id", "item_id", "event_time", "value", "label"]
    assert training_columns(templates) == ("label", ["value"])


def test_configured_features_are_what_training_reads_in_their_order():
    schema = {**ORDERS, "features": ["items", "amount"]}
    assert training_columns(rendered({"record_schema": schema})) == (
        "returned", ["items", "amount"])


# --- one-line errors ------------------------------------------------------------------------------

def errors(schema: dict, **stages) -> str:
    data = default_data()
    data["record_schema"] = schema
    data["stages"].update(stages)
    with pytest.raises(UserError) as caught:
        load_data(data, "pipeline.yaml")
    return str(caught.value)


def column(name: str, type_: str = "double", **more) -> dict:
    return {"name": name, "type": type_, **more}


@pytest.mark.parametrize("schema, message", [
    ({"columns": [column("x", "text"), column("label", "integer")]},
     "pipeline.yaml: record_schema.columns[0].type: must be one of 'string', 'integer', "
     "'double', 'boolean' or 'timestamp' (got 'text')"),
    ({"columns": [column("x"), column("x"), column("label", "integer")]},
     "pipeline.yaml: record_schema.columns: lists column 'x' twice"),
    ({"columns": [column("x"), column("y")], "label": "label"},
     "pipeline.yaml: record_schema: label 'label' is not one of the columns (x, y)"),
    ({"columns": [column("x"), column("name", "string")], "label": "name"},
     "pipeline.yaml: record_schema: label 'name' is a string column; a label is integer, "
     "double, boolean"),
    ({"columns": [column("x"), column("label", "integer")], "features": ["z"]},
     "pipeline.yaml: record_schema: features: 'z' is not one of the columns (x, label)"),
    ({"columns": [column("x"), column("label", "integer")], "features": ["label"]},
     "pipeline.yaml: record_schema: features lists the label 'label'"),
    ({"columns": [column("x", "timestamp"), column("label", "integer")], "features": ["x"]},
     "pipeline.yaml: record_schema: features: 'x' is a timestamp column; the model learns "
     "from integer, double, boolean columns"),
    ({"columns": [column("x", length=4), column("label", "integer")]},
     "pipeline.yaml: record_schema.columns[0]: column 'x': length applies to string columns "
     "only (this one is double)"),
    ({"columns": [column("User Id"), column("label", "integer")]},
     "pipeline.yaml: record_schema.columns[0].name: must be a lowercase letter or _, then "
     "lowercase letters, digits or _"),
    ({"columns": [column("x"), column("label", "integer")], "lable": "x"},
     "pipeline.yaml: record_schema.lable: unknown key (did you mean 'label'?"),
])
def test_schema_mistakes_are_one_line_naming_the_field(schema, message):
    text = errors(schema)
    assert text.startswith(message), text
    assert "\n" not in text


def test_training_needs_a_label_and_a_feature():
    assert errors({"columns": [column("x")], "label": None}) == (
        "pipeline.yaml: record_schema.label: the training stage needs the column the model "
        "learns to predict (or set stages.training.enabled: false)")
    assert errors({"columns": [column("name", "string"), column("label", "integer")]}) == (
        "pipeline.yaml: record_schema.features: the training stage needs at least one integer, "
        "double or boolean column besides the label")
    # Without training, a schema needs no label.
    data = default_data()
    data["record_schema"] = {"columns": [column("x")], "label": None}
    data["stages"]["training"] = {"enabled": False}
    data["stages"]["monitoring"] = {"enabled": False}
    data["stages"]["serving"] = {"enabled": False}
    data["stages"]["cicd"] = {"enabled": False}
    load_data(data, "pipeline.yaml")


def test_the_schema_is_set_once_for_every_environment():
    # Structure, not a setting: dev and prod load and train on the same columns.
    data = default_data()
    data["environments"]["prod"]["record_schema"] = {"label": "value"}
    with pytest.raises(UserError) as caught:
        load_data(data, "pipeline.yaml")
    assert str(caught.value) == ("pipeline.yaml: environments.prod.record_schema: is set once "
                                 "for the whole file, not per environment")


def test_environments_render_the_same_templates_for_one_schema():
    dev = rendered({"record_schema": ORDERS}, "dev")
    prod = rendered({"record_schema": ORDERS}, "prod")
    for name in ("etl", "analytics", "training"):
        assert json.dumps(dev[name], sort_keys=True) == json.dumps(prod[name], sort_keys=True)


def test_every_example_describes_one_record_for_its_consumers():
    from pathlib import Path
    examples = sorted(Path(__file__).resolve().parent.parent.glob("examples/*.yaml"))
    checked = 0
    for path in examples:
        loaded = load(path)
        templates = {s.name: s.template.to_dict() for s in pipeline.build(loaded).stages}
        if "etl" in templates and "analytics" in templates and "LoadRule" in templates[
                "analytics"]["Resources"]:
            assert [c["name"] for c in job_columns(templates)] == [
                n for n, _ in table_columns(templates)], path.name
            checked += 1
        if "etl" in templates and "training" in templates:
            label, features = training_columns(templates)
            names = {c["name"] for c in job_columns(templates)}
            assert {label, *features} <= names, path.name
            checked += 1
    assert checked >= 2
