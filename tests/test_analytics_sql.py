"""The SQL the analytics stage runs: generated from the config, one text per format."""

import pytest

from mlops_cfn.config.analytics import TableConfig
from mlops_cfn.config.record_schema import RecordColumn
from mlops_cfn.stages import analytics_sql as sql

TABLE = TableConfig(schema_name="sales", name="orders")
COLUMNS = [
    RecordColumn(name="order_id", type="integer"),
    RecordColumn(name="user", type="string", length=64),
    RecordColumn(name="note", type="string"),
    RecordColumn(name="amount", type="double"),
    RecordColumn(name="returned", type="boolean"),
    RecordColumn(name="placed_at", type="timestamp"),
]
SOURCE = "s3://${ProcessedBucketName}/${ProcessedDataPrefix}"
ROLE = "${RedshiftRole.Arn}"


def test_identifiers_are_quoted_so_reserved_words_work_as_column_names():
    assert sql.identifier("user") == '"user"'


@pytest.mark.parametrize("bad", ['a"b', "Orders", "a;drop", "", "1st", "a b"])
def test_anything_but_a_lowercase_identifier_is_refused(bad):
    with pytest.raises(ValueError):
        sql.identifier(bad)


def test_literals_keep_placeholders_and_refuse_quotes_and_backslashes():
    assert sql.literal(SOURCE) == f"'{SOURCE}'"
    for bad in ["it's", "a\\b", "${", "", "x${y"]:
        with pytest.raises(ValueError):
            sql.literal(bad)


def test_the_table_is_created_with_the_record_schemas_columns_in_order():
    assert sql.create_table(TABLE, COLUMNS) == (
        'CREATE TABLE IF NOT EXISTS "sales"."orders" (\n'
        '  "order_id" bigint,\n'
        '  "user" varchar(64),\n'
        '  "note" varchar(256),\n'
        '  "amount" double precision,\n'
        '  "returned" boolean,\n'
        '  "placed_at" timestamp\n'
        ")")


def test_parquet_copy_takes_types_from_the_files():
    assert sql.copy(TABLE, SOURCE, ROLE, "parquet") == (
        'COPY "sales"."orders"\n'
        "FROM 's3://${ProcessedBucketName}/${ProcessedDataPrefix}'\n"
        "IAM_ROLE '${RedshiftRole.Arn}'\n"
        "FORMAT AS PARQUET")


def test_csv_copy_skips_the_header_and_reads_iso_dates():
    text = sql.copy(TABLE, SOURCE, ROLE, "csv")
    assert text.startswith('COPY "sales"."orders"\nFROM ')
    lines = text.splitlines()
    assert lines[3:] == ["FORMAT AS CSV", "IGNOREHEADER 1", "DATEFORMAT 'auto'",
                         "TIMEFORMAT 'auto'"]
    assert "PARQUET" not in text


def test_csv_and_parquet_loads_differ_only_in_the_copy():
    parquet = sql.load_statements(TABLE, COLUMNS, SOURCE, ROLE, "parquet")
    csv = sql.load_statements(TABLE, COLUMNS, SOURCE, ROLE, "csv")
    assert parquet[:-1] == csv[:-1]
    assert parquet[-1] != csv[-1]


def test_the_load_creates_then_empties_then_copies():
    statements = sql.load_statements(TABLE, COLUMNS, SOURCE, ROLE, "parquet")
    assert [s.split()[0] for s in statements] == ["CREATE", "CREATE", "DELETE", "COPY"]
    assert statements[0] == 'CREATE SCHEMA IF NOT EXISTS "sales"'
    assert statements[2] == 'DELETE FROM "sales"."orders"'
    # TRUNCATE would commit mid-transaction and show readers an empty table.
    assert not any("TRUNCATE" in s for s in statements)


def test_the_external_schema_reads_the_glue_database_with_the_role():
    assert sql.external_schema("lake", "${GlueDatabaseName}", ROLE) == (
        'CREATE EXTERNAL SCHEMA IF NOT EXISTS "lake"\n'
        "FROM DATA CATALOG DATABASE '${GlueDatabaseName}'\n"
        "IAM_ROLE '${RedshiftRole.Arn}'")


def test_placeholders_name_what_the_sub_must_resolve():
    statements = sql.load_statements(TABLE, COLUMNS, SOURCE, ROLE, "csv")
    assert sql.placeholders(statements) == {
        "ProcessedBucketName", "ProcessedDataPrefix", "RedshiftRole.Arn"}
    assert sql.placeholders([sql.create_schema(TABLE)]) == set()


def test_csv_options_match_what_the_etl_job_writes():
    # The contract with mlops_cfn/data/glue/etl_job.py: a header row (skipped), commas and `"`
    # quotes (COPY's CSV defaults, so not spelled out), no compression (no GZIP option).
    job = load_etl_job()
    _, _, options = job.write_options("csv", "s3://bucket/events/", [])
    assert options == {"writeHeader": True, "separator": ",", "quoteChar": '"'}
    assert "IGNOREHEADER 1" in sql.CSV_OPTIONS
    assert not any("DELIMITER" in o or "QUOTE" in o or "GZIP" in o for o in sql.CSV_OPTIONS)
    assert job.write_options("parquet", "s3://bucket/events/", [])[0] == "glueparquet"


def load_etl_job():
    import importlib.util
    from pathlib import Path

    import mlops_cfn
    path = Path(mlops_cfn.__file__).parent / "data" / "glue" / "etl_job.py"
    spec = importlib.util.spec_from_file_location("etl_job_under_test", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
