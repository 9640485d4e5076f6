"""The bundled Glue job script: valid Python for Glue's interpreter, and transforms that clean and
type a small sample the way the module docstring says. No Spark needed: everything but main()
is plain Python."""

import ast
import importlib.util
import json
from datetime import datetime

import pytest

from mlops_cfn.stages import etl
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
    ({"a": 1}, job.PASSTHROUGH, {"a": 1}),
])
def test_values_are_cleaned_to_their_kind(value, kind, expected):
    assert job.clean_value(value, kind) == expected


@pytest.mark.parametrize("type_name, kind", [
    ("string", job.STRING), ("bigint", job.INTEGER), ("int", job.INTEGER),
    ("double", job.FLOAT), ("decimal(10,2)", job.FLOAT), ("boolean", job.BOOLEAN),
    ("timestamp", job.TIMESTAMP), ("struct<a:int>", job.PASSTHROUGH),
    ("array<string>", job.PASSTHROUGH),
])
def test_catalog_types_map_to_cleaning_kinds(type_name, kind):
    assert job.kind_of(type_name) == kind


# --- a small sample, end to end ------------------------------------------------------------------

RAW_SCHEMA = [("eventId", "string"), ("userId", "string"), ("Amount", "double"),
              ("quantity", "bigint"), ("isReturn", "boolean"), ("eventTime", "string"),
              ("device", "struct<os:string>"), ("year", "string"), ("month", "string")]
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


def test_a_sample_is_cleaned_typed_and_deduplicated():
    plan = job.plan_columns(RAW_SCHEMA, timestamp_columns=["event_time"],
                            partition_keys=["year", "month", "day"])
    rows = job.transform_records(SAMPLE, plan)
    assert rows == [
        {"event_id": "e1", "user_id": "u-1", "amount": 12.5, "quantity": 2, "is_return": False,
         "event_time": datetime(2024, 5, 1, 12, 30), "device": {"os": "ios"}, "year": "2024",
         "month": "05"},
        {"event_id": "e2", "user_id": "u-2", "amount": None, "quantity": None, "is_return": True,
         "event_time": datetime(2024, 5, 1, 12, 30), "device": None, "year": "2024",
         "month": "05"},
    ]


def test_partition_columns_keep_their_names_and_other_names_make_way():
    plan = job.plan_columns([("Year", "int"), ("year", "string")], partition_keys=["year"])
    assert plan == [job.Column("Year", "year_2", job.INTEGER),
                    job.Column("year", "year", job.STRING, partition=True)]


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
