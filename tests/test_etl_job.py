"""The bundled Glue job script: valid Python for Glue's interpreter, and transforms that clean and
type a small sample the way the module docstring says. No Spark needed: everything but main()
is plain Python."""

import ast
import importlib.util
import json
from datetime import datetime

import pytest
from moto.events.models import EventPattern

from mlops_cfn import pipeline
from mlops_cfn.stages import analytics, etl, etl_events, training
from tests.helpers import config_with, only_resource, template_dict

SCRIPT = etl.JOB_SCRIPT
SOURCE = SCRIPT.read_text(encoding="utf-8")


def load_script():
    spec = importlib.util.spec_from_file_location("etl_job_under_test", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


job = load_script()


# --- the file ---------------------------------------------------------------------------------

def test_the_script_compiles():
    compile(SOURCE, str(SCRIPT), "exec")


def test_the_script_is_valid_for_glue_4s_python_3_10():
    ast.parse(SOURCE, feature_version=(3, 10))


def test_spark_and_glue_are_imported_inside_main_only():
    tree = ast.parse(SOURCE)
    top_level = [node for node in tree.body if isinstance(node, (ast.Import, ast.ImportFrom))]
    names = {alias.name.split(".")[0] for node in top_level for alias in node.names}
    names |= {node.module.split(".")[0] for node in top_level
              if isinstance(node, ast.ImportFrom) and node.module}
    assert not names & {"pyspark", "awsglue", "boto3"}


def test_every_argument_the_script_reads_is_set_on_the_job():
    t = template_dict(etl.build(config_with({"stages": {"etl": {"enabled": True}}}).config))
    arguments = only_resource(t, "AWS::Glue::Job")["Properties"]["DefaultArguments"]
    assert {f"--{name}" for name in job.ARGUMENTS} <= set(arguments)


# --- names ------------------------------------------------------------------------------------

@pytest.mark.parametrize("raw, cleaned", [
    ("userId", "user_id"),
    ("Page Views", "page_views"),
    ("HTTPStatus", "http_status"),
    ("price-EUR", "price_eur"),
    ("2fa", "_2fa"),
    ("  ", "column"),
])
def test_column_names_become_snake_case(raw, cleaned):
    assert job.clean_column_name(raw) == cleaned


def test_names_that_clean_alike_are_numbered():
    assert job.unique_names(["userId", "user_id", "USER ID"]) == ["user_id", "user_id_2",
                                                                   "user_id_3"]


# --- values -----------------------------------------------------------------------------------

@pytest.mark.parametrize("value, kind, expected", [
    ("  hello ", job.STRING, "hello"),
    ("", job.STRING, None),
    ("NULL", job.STRING, None),
    ("N/A", job.STRING, None),
    ("42", job.INTEGER, 42),
    ("4.0", job.INTEGER, 4),
    ("4.5", job.INTEGER, None),
    ("forty", job.INTEGER, None),
    (str(2 ** 64), job.INTEGER, None),
    ("3.25", job.FLOAT, 3.25),
    ("NaN", job.FLOAT, None),
    ("inf", job.FLOAT, None),
    ("yes", job.BOOLEAN, True),
    ("0", job.BOOLEAN, False),
    ("maybe", job.BOOLEAN, None),
    ("2024-05-01T12:30:00Z", job.TIMESTAMP, datetime(2024, 5, 1, 12, 30)),
    ("2024-05-01T14:30:00+02:00", job.TIMESTAMP, datetime(2024, 5, 1, 12, 30)),
    (1714566600, job.TIMESTAMP, datetime(2024, 5, 1, 12, 30)),
    (1714566600000, job.TIMESTAMP, datetime(2024, 5, 1, 12, 30)),
    ("1714566600", job.TIMESTAMP, datetime(2024, 5, 1, 12, 30)),
    ("yesterday", job.TIMESTAMP, None),
    ({"a": 1}, job.STRING, '{"a":1}'),
])
def test_values_are_cleaned_to_their_kind(value, kind, expected):
    assert job.clean_value(value, kind) == expected


def test_text_is_cut_to_the_columns_byte_length_at_a_character_boundary():
    # Redshift's VARCHAR(n) counts bytes: "é" is two in UTF-8.
    assert job.clean_value("abcdef", job.STRING, max_bytes=4) == "abcd"
    assert job.clean_value("aé€", job.STRING, max_bytes=4) == "aé"
    assert job.clean_value("aé€", job.STRING, max_bytes=6) == "aé€"
    assert job.clean_value("  abc ", job.STRING, max_bytes=None) == "abc"


# --- a small sample, end to end ------------------------------------------------------------------

RAW_SCHEMA = [("eventId", "string"), ("userId", "string"), ("Amount", "double"),
              ("quantity", "bigint"), ("isReturn", "boolean"), ("eventTime", "string"),
              ("device", "struct<os:string>"), ("year", "string"), ("month", "string")]
# The record schema as the stage passes it (--schema): order, names and types of the output.
SCHEMA = [{"name": "event_id", "type": "string", "max_bytes": 64},
          {"name": "event_time", "type": "timestamp"},
          {"name": "amount", "type": "double"},
          {"name": "quantity", "type": "integer"},
          {"name": "is_return", "type": "boolean"},
          {"name": "label", "type": "integer"}]
SAMPLE = [
    {"eventId": "e1", "userId": " u-1 ", "Amount": "12.50", "quantity": "2", "isReturn": "no",
     "eventTime": "2024-05-01T12:30:00Z", "device": {"os": "ios"}, "year": "2024",
     "month": "05"},
    # The same event again (Firehose delivers at least once): dropped.
    {"eventId": "e1", "userId": "u-1", "Amount": 12.5, "quantity": 2, "isReturn": False,
     "eventTime": "2024-05-01T12:30:00Z", "device": {"os": "ios"}, "year": "2024",
     "month": "05"},
    # Unreadable values become null; the record stays.
    {"eventId": "e2", "userId": "u-2", "Amount": "twelve", "quantity": "lots", "isReturn": "1",
     "eventTime": 1714566600000, "device": None, "year": "2024", "month": "05"},
    # Nothing but nulls outside the partition columns: dropped.
    {"eventId": "", "userId": "null", "Amount": None, "year": "2024", "month": "05"},
]


def test_the_output_has_the_schemas_columns_in_its_order_then_the_partition_folders():
    plan = job.plan_columns(RAW_SCHEMA, SCHEMA, partition_keys=["year", "month", "day"])
    assert [(c.source, c.target, c.kind, c.partition) for c in plan] == [
        ("eventId", "event_id", job.STRING, False),
        ("eventTime", "event_time", job.TIMESTAMP, False),
        ("Amount", "amount", job.FLOAT, False),
        ("quantity", "quantity", job.INTEGER, False),
        ("isReturn", "is_return", job.BOOLEAN, False),
        # No raw field cleans to `label`: written as null, so COPY positions still line up.
        (None, "label", job.INTEGER, False),
        ("year", "year", job.STRING, True),
        ("month", "month", job.STRING, True),
    ]
    # userId and device are not in the schema: dropped (and logged by main()).
    assert job.unplanned(RAW_SCHEMA, plan) == ["userId", "device"]


def test_a_sample_is_cleaned_typed_and_deduplicated():
    plan = job.plan_columns(RAW_SCHEMA, SCHEMA, partition_keys=["year", "month", "day"])
    rows = job.transform_records(SAMPLE, plan)
    assert rows == [
        {"event_id": "e1", "event_time": datetime(2024, 5, 1, 12, 30), "amount": 12.5,
         "quantity": 2, "is_return": False, "label": None, "year": "2024", "month": "05"},
        {"event_id": "e2", "event_time": datetime(2024, 5, 1, 12, 30), "amount": None,
         "quantity": None, "is_return": True, "label": None, "year": "2024", "month": "05"},
    ]


def test_the_schema_types_the_values_whatever_the_raw_type():
    plan = job.plan_columns([("value", "string"), ("flag", "string")],
                            [{"name": "value", "type": "double"},
                             {"name": "flag", "type": "boolean"}])
    assert job.transform_records([{"value": "1.5", "flag": "yes"}], plan) == [
        {"value": 1.5, "flag": True}]


def test_partition_columns_keep_their_names_and_other_names_make_way():
    plan = job.plan_columns([("Year", "int"), ("year", "string")],
                            [{"name": "year_2", "type": "integer"}], partition_keys=["year"])
    assert plan == [job.Column("Year", "year_2", job.INTEGER),
                    job.Column("year", "year", job.STRING, partition=True)]


@pytest.mark.parametrize("argument", ["[]", '{"a": 1}', '[{"name": "x", "type": "text"}]'])
def test_a_schema_argument_that_is_not_a_list_of_typed_columns_is_refused(argument):
    with pytest.raises(ValueError, match="--schema"):
        job.parse_schema(argument)


def test_the_stage_passes_the_pipeline_files_record_schema():
    config = config_with({"record_schema": {"columns": [
        {"name": "order_id", "type": "string", "length": 32},
        {"name": "amount", "type": "double"}, {"name": "returned", "type": "boolean"}],
        "label": "returned"}}).config
    arguments = only_resource(template_dict(etl.build(config)), "AWS::Glue::Job")[
        "Properties"]["DefaultArguments"]
    assert job.parse_schema(arguments["--schema"]) == [
        {"name": "order_id", "type": "string", "max_bytes": 32},
        {"name": "amount", "type": "double"}, {"name": "returned", "type": "boolean"}]


# --- finding the raw table, writing the processed data -------------------------------------------

TABLES = [
    {"Name": "raw_events", "StorageDescriptor": {"Location": "s3://raw-bucket/events/"}},
    {"Name": "events", "StorageDescriptor": {"Location": "s3://processed-bucket/events/"}},
    {"Name": "view", "TableType": "VIRTUAL_VIEW"},
]


def test_the_raw_table_is_found_by_its_location():
    assert job.table_for_location(TABLES, "s3://raw-bucket/events") == "raw_events"
    assert job.table_for_location(TABLES, "s3://raw-bucket/events/") == "raw_events"


def test_no_table_or_several_tables_at_the_location_are_errors():
    with pytest.raises(LookupError, match="has the raw crawler run"):
        job.table_for_location(TABLES, "s3://raw-bucket/other/")
    twice = TABLES + [{"Name": "raw_events_2", "StorageDescriptor": {
        "Location": "s3://raw-bucket/events"}}]
    with pytest.raises(LookupError, match="raw_events, raw_events_2"):
        job.table_for_location(twice, "s3://raw-bucket/events/")


def test_parquet_is_written_snappy_compressed_and_partitioned():
    output_format, connection, options = job.write_options(
        "parquet", "s3://processed-bucket/events", ["year", "month"])
    assert output_format == "glueparquet"
    assert connection == {"path": "s3://processed-bucket/events/",
                          "partitionKeys": ["year", "month"]}
    assert options == {"compression": "snappy"}


def test_csv_is_written_with_a_header_and_partitioned():
    output_format, connection, options = job.write_options(
        "csv", "s3://processed-bucket/events/", ["year"])
    assert output_format == "csv"
    assert connection["partitionKeys"] == ["year"]
    assert options["writeHeader"] is True and options["separator"] == ","


def test_an_unknown_format_is_refused():
    with pytest.raises(ValueError, match="parquet or csv"):
        job.write_options("orc", "s3://b/p/", [])


@pytest.mark.parametrize("argument, expected", [
    (json.dumps(["year", "month"]), ["year", "month"]),
    ("[]", []),
    ("year, month", ["year", "month"]),
    ("", []),
])
def test_list_arguments_are_json_or_comma_separated(argument, expected):
    assert job.parse_list(argument) == expected


# --- the new-data event (issue 12, finding 8) ----------------------------------------------------

ARGS = {"JOB_NAME": "demo-dev-etl", "JOB_RUN_ID": "jr_1", "event_source": etl_events.SOURCE,
        "event_detail_type": etl_events.DETAIL_TYPE, "output_format": "parquet",
        "processed_location": "s3://processed/events/"}


class FakeEvents:
    """EventBridge's PutEvents as the job calls it, recording what it was sent."""

    def __init__(self, calls: list, fail: bool = False):
        self.calls, self.fail = calls, fail

    def put_events(self, Entries):
        self.calls.append(("put_events", Entries))
        if self.fail:
            return {"FailedEntryCount": 1, "Entries": [
                {"ErrorCode": "AccessDeniedException", "ErrorMessage": "not allowed"}]}
        return {"FailedEntryCount": 0, "Entries": [{"EventId": "1"}]}


def finished(written: int) -> list:
    calls: list = []
    job.finish_run(lambda: calls.append(("commit",)), FakeEvents(calls), ARGS, written)
    return calls


def test_a_run_commits_its_bookmark_then_announces_what_it_wrote():
    calls = finished(1234)
    assert [c[0] for c in calls] == ["commit", "put_events"]
    [entry] = calls[1][1]
    assert entry["Source"] == etl_events.SOURCE
    assert entry["DetailType"] == etl_events.DETAIL_TYPE
    assert entry["EventBusName"] == "default"
    assert json.loads(entry["Detail"]) == {
        "jobName": "demo-dev-etl", "jobRunId": "jr_1", "recordsWritten": 1234,
        "location": "s3://processed/events/", "format": "parquet"}


def test_a_refused_event_fails_the_run_after_the_commit():
    calls: list = []
    with pytest.raises(RuntimeError, match="AccessDeniedException"):
        job.finish_run(lambda: calls.append(("commit",)), FakeEvents(calls, fail=True), ARGS, 3)
    assert [c[0] for c in calls] == ["commit", "put_events"]


def test_main_writes_then_finishes_the_run_with_the_count_it_wrote():
    """main() is Glue-only; its order is read from the source: the count, the write only when
    there is something to write, then finish_run (commit, then the event)."""
    main = next(n for n in ast.parse(SOURCE).body
                if isinstance(n, ast.FunctionDef) and n.name == "main")
    calls = sorted((n for n in ast.walk(main) if isinstance(n, ast.Call)),
                   key=lambda n: (n.lineno, n.col_offset))
    names = [n.func.attr if isinstance(n.func, ast.Attribute) else getattr(n.func, "id", "")
             for n in calls]
    assert names.index("count") < names.index("from_options") < names.index("finish_run")
    assert "commit" not in names and "put_events" not in names  # only through finish_run
    [call] = [n for n in ast.walk(main) if isinstance(n, ast.Call)
              and getattr(n.func, "id", "") == "finish_run"]
    assert ast.unparse(call.args[0]) == "job.commit"
    assert ast.unparse(call.args[3]) == "written"


def test_every_argument_the_event_needs_is_set_on_the_job():
    t = template_dict(etl.build(config_with().config))
    arguments = only_resource(t, "AWS::Glue::Job")["Properties"]["DefaultArguments"]
    assert arguments["--event_source"] == etl_events.SOURCE
    assert arguments["--event_detail_type"] == etl_events.DETAIL_TYPE


def event_as_delivered(entry: dict) -> dict:
    """The event EventBridge matches rules against, for a PutEvents entry."""
    return {"version": "0", "id": "1", "detail-type": entry["DetailType"],
            "source": entry["Source"], "account": "111122223333", "time": "2024-05-01T12:00:00Z",
            "region": "eu-west-1", "resources": [], "detail": json.loads(entry["Detail"])}


def rendered_patterns() -> dict[str, dict]:
    """The event pattern of every rule that reacts to the ETL job, as rendered, with the job's
    name in place of the EtlJobName parameter."""
    loaded = config_with()
    found = {}
    for stage in (analytics.build(loaded.config), training.build(loaded.config)):
        for name, resource in template_dict(stage)["Resources"].items():
            pattern = resource["Properties"].get("EventPattern")
            if resource["Type"] == "AWS::Events::Rule" and pattern and \
                    {"Ref": "EtlJobName"} in pattern.get("detail", {}).get("jobName", []):
                pattern = json.loads(json.dumps(pattern).replace(
                    json.dumps({"Ref": "EtlJobName"}), json.dumps(ARGS["JOB_NAME"])))
                found[f"{stage.name}/{name}"] = pattern
    return found


def matches(pattern: dict, event: dict) -> bool:
    # moto's implementation of EventBridge's pattern matching (numeric filters included).
    return EventPattern.load(json.dumps(pattern)).matches_event(event)


def test_the_load_and_training_react_to_new_records_only():
    patterns = rendered_patterns()
    assert set(patterns) == {"analytics/LoadRule", "training/EtlSucceededRule"}
    with_records = event_as_delivered(job.new_data_event(
        etl_events.SOURCE, etl_events.DETAIL_TYPE, ARGS["JOB_NAME"], "jr_1", 5, "s3://p/", "csv"))
    nothing_new = event_as_delivered(job.new_data_event(
        etl_events.SOURCE, etl_events.DETAIL_TYPE, ARGS["JOB_NAME"], "jr_2", 0, "s3://p/", "csv"))
    other_job = event_as_delivered(job.new_data_event(
        etl_events.SOURCE, etl_events.DETAIL_TYPE, "someone-else", "jr_3", 5, "s3://p/", "csv"))
    glue_success = {**with_records, "source": "aws.glue", "detail-type": "Glue Job State Change",
                    "detail": {"jobName": ARGS["JOB_NAME"], "state": "SUCCEEDED"}}
    for name, pattern in patterns.items():
        assert matches(pattern, with_records), name
        assert not matches(pattern, nothing_new), name
        assert not matches(pattern, other_job), name
        assert not matches(pattern, glue_success), name


def test_the_job_may_put_only_its_own_event_on_the_default_bus():
    t = template_dict(etl.build(config_with().config))
    role = t["Resources"]["JobRole"]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"]
    [put] = [s for s in role if "events:PutEvents" in s["Action"]]
    assert put["Action"] == ["events:PutEvents"]
    assert put["Resource"] == [{"Fn::Sub": "arn:${AWS::Partition}:events:${AWS::Region}:"
                                           "${AWS::AccountId}:event-bus/default"}]
    assert put["Condition"] == {"StringEquals": {"events:source": etl_events.SOURCE,
                                                 "events:detail-type": etl_events.DETAIL_TYPE}}


def test_the_job_reaches_eventbridge_from_the_private_subnets():
    # The job runs in the private subnets: PutEvents goes through the `events` endpoint.
    assert "events" in config_with().config.stages.etl.vpc_endpoints()
    [network] = [s for s in pipeline.build(config_with()).stages if s.name == "network"]
    endpoint = network.template.to_dict()["Resources"]["EventsEndpoint"]["Properties"]
    assert endpoint["ServiceName"] == {"Fn::Sub": "com.amazonaws.${AWS::Region}.events"}
