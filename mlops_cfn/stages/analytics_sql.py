"""The SQL the analytics stage runs through the Redshift Data API, generated from the config.

Pure functions from config values to SQL text. Values known only at deploy time (the processed
bucket and prefix, the role ARN, the Glue database) come in as `${Name}` placeholders, which the
stage wraps in Fn::Sub; that is why every identifier is checked against a closed pattern and no
literal may hold `${`, a quote or a backslash of its own.

The table's columns are the record schema's, in its order and of its types (record_schema.py):
a COPY from Parquet or CSV fills columns by position, so the table and the files the ETL job
writes from the same schema always line up.

The load is one transaction (the Data API's BatchExecuteStatement runs a list of statements as
one): create the schema and table if missing, empty the table, COPY every processed file into it.
A COPY from a prefix reads every object under it, so emptying first keeps reruns from doubling
rows; readers see the previous rows until the transaction commits.
"""

import re
from typing import Literal, Sequence

from ..config.analytics import IDENTIFIER, TableConfig
from ..config.record_schema import RecordColumn

DataFormat = Literal["parquet", "csv"]

# What the ETL job's CSV output looks like (mlops_cfn/data/glue/etl_job.py, write_options):
# comma-separated, quoted with `"` (COPY's CSV defaults), one header row, uncompressed; dates and
# timestamps as ISO 8601 text, which 'auto' recognises.
CSV_OPTIONS = ("FORMAT AS CSV", "IGNOREHEADER 1", "DATEFORMAT 'auto'", "TIMEFORMAT 'auto'")
# Parquet carries its own types and compression; COPY accepts no further format options.
PARQUET_OPTIONS = ("FORMAT AS PARQUET",)

_PLACEHOLDER = re.compile(r"\$\{[A-Za-z0-9:.]+\}")

# The Redshift type of each record schema type (a string column is VARCHAR of its byte length).
# These are the types a COPY fills from the Parquet the ETL job writes (Spark's long, double,
# boolean, timestamp and string) and from its CSV text.
REDSHIFT_TYPES = {"integer": "bigint", "double": "double precision", "boolean": "boolean",
                  "timestamp": "timestamp"}


def identifier(name: str) -> str:
    """A quoted identifier. Quoting lets a column be called `user` or `order`; the pattern keeps
    anything but lowercase letters, digits and `_` out, so quoting changes nothing else."""
    if not re.match(IDENTIFIER, name):
        raise ValueError(f"{name!r} is not a lowercase identifier")
    return f'"{name}"'


def literal(text: str) -> str:
    """A string literal of text that may hold `${...}` placeholders but no quote or backslash
    (S3 URIs, ARNs and catalog names never do; refusing beats escaping rules that differ between
    Redshift settings)."""
    bare = _PLACEHOLDER.sub("", text)
    if any(c in bare for c in "'\\") or "${" in bare or not text:
        raise ValueError(f"{text!r} cannot be a SQL literal here")
    return f"'{text}'"


def qualified_table(table: TableConfig) -> str:
    return f"{identifier(table.schema_name)}.{identifier(table.name)}"


def create_schema(table: TableConfig) -> str:
    return f"CREATE SCHEMA IF NOT EXISTS {identifier(table.schema_name)}"


def redshift_type(column: RecordColumn) -> str:
    if column.type == "string":
        return f"varchar({column.max_bytes})"
    return REDSHIFT_TYPES[column.type]


def create_table(table: TableConfig, columns: Sequence[RecordColumn]) -> str:
    body = ",\n".join(f"  {identifier(c.name)} {redshift_type(c)}" for c in columns)
    return f"CREATE TABLE IF NOT EXISTS {qualified_table(table)} (\n{body}\n)"


def copy(table: TableConfig, source_uri: str, role_arn: str, data_format: DataFormat) -> str:
    """COPY from every object under `source_uri` (an s3:// prefix), as `role_arn`."""
    options = {"parquet": PARQUET_OPTIONS, "csv": CSV_OPTIONS}[data_format]
    return "\n".join([
        f"COPY {qualified_table(table)}",
        f"FROM {literal(source_uri)}",
        f"IAM_ROLE {literal(role_arn)}",
        *options,
    ])


def load_statements(table: TableConfig, columns: Sequence[RecordColumn], source_uri: str,
                    role_arn: str, data_format: DataFormat) -> list[str]:
    """The load, in the order the transaction runs it."""
    return [
        create_schema(table),
        create_table(table, columns),
        # DELETE, not TRUNCATE: TRUNCATE commits at once, which would show readers an empty
        # table until the COPY is done.
        f"DELETE FROM {qualified_table(table)}",
        copy(table, source_uri, role_arn, data_format),
    ]


def external_schema(schema_name: str, glue_database: str, role_arn: str) -> str:
    """An external schema over a Glue Data Catalog database: its tables become queryable in
    place (Redshift Spectrum) as `<schema_name>.<table>`."""
    return "\n".join([
        f"CREATE EXTERNAL SCHEMA IF NOT EXISTS {identifier(schema_name)}",
        f"FROM DATA CATALOG DATABASE {literal(glue_database)}",
        f"IAM_ROLE {literal(role_arn)}",
    ])


def placeholders(statements: Sequence[str]) -> set[str]:
    """The `${...}` names the statements use (what their Fn::Sub must be able to resolve)."""
    return {m[2:-1] for s in statements for m in _PLACEHOLDER.findall(s)}
