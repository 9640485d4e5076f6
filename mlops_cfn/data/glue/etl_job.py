"""Glue ETL job: raw records as Firehose lands them -> cleaned, typed, partitioned data.

Reads the raw table the raw crawler made over the raw prefix (found by its S3 location, since
the crawler names it after a folder), and writes the processed prefix as Parquet or CSV,
partitioned Hive-style. Job bookmarks make every run read only what earlier runs did not.

Cleaning, per record:
- column names become snake_case (`userId` -> `user_id`, `Page Views` -> `page_views`); two
  names that clean to the same text get `_2`, `_3`, ...
- text is trimmed; empty text and null tokens (`null`, `None`, `NaN`, `N/A`, ...) become null;
- values are coerced to the column's type in the raw table (a number sent as text in a numeric
  column becomes that number, anything unreadable becomes null; a column seen with several
  types stays text), booleans accept
  true/false/yes/no/1/0, and the `--timestamp_columns` are parsed into UTC timestamps;
- records with nothing but nulls outside the partition columns are dropped, as are exact
  duplicates.

Job arguments (the stage sets them; a replacement script gets the same):
  --database            Glue database of the raw and processed tables
  --raw_location        s3://<raw bucket>/<raw prefix> the raw crawler catalogs
  --processed_location  s3://<processed bucket>/<processed prefix> to write
  --output_format       parquet | csv
  --partition_keys      partition columns as a JSON list, e.g. ["year", "month", "day"]
  --timestamp_columns   columns to parse as timestamps, as a JSON list ([] for none)

Everything above `main()` is plain Python, importable without Spark or the Glue libraries, so
the transforms are tested locally on small samples; `main()` only moves data between Glue and
those functions.
"""

import json
import math
import re
import sys
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Iterable

ARGUMENTS = ("database", "raw_location", "processed_location", "output_format",
             "partition_keys", "timestamp_columns")

# Storage classes whose objects cannot be read without a restore (the raw bucket's archive).
ARCHIVED_STORAGE_CLASSES = ("GLACIER", "DEEP_ARCHIVE")

NULL_TOKENS = frozenset({"", "null", "none", "nan", "n/a", "na", "nil", "undefined", "-"})
TRUE_TOKENS = frozenset({"true", "t", "yes", "y", "1"})
FALSE_TOKENS = frozenset({"false", "f", "no", "n", "0"})

# What a column becomes, by the type the crawler (or Spark) gave it.
STRING, INTEGER, FLOAT, BOOLEAN, TIMESTAMP, PASSTHROUGH = (
    "string", "integer", "float", "boolean", "timestamp", "passthrough")
_KIND_BY_TYPE = {
    "string": STRING, "varchar": STRING, "char": STRING,
    "tinyint": INTEGER, "smallint": INTEGER, "int": INTEGER, "integer": INTEGER,
    "bigint": INTEGER, "long": INTEGER,
    "float": FLOAT, "double": FLOAT, "decimal": FLOAT,
    "boolean": BOOLEAN,
    "timestamp": TIMESTAMP, "date": TIMESTAMP,
}
_LONG_MIN, _LONG_MAX = -(2 ** 63), 2 ** 63 - 1
# Epoch values above this are milliseconds (this many seconds is the year 5138).
_EPOCH_MILLIS_FROM = 10 ** 11


@dataclass(frozen=True)
class Column:
    source: str   # name in the raw data
    target: str   # cleaned name in the processed data
    kind: str     # one of STRING ... PASSTHROUGH
    partition: bool = False  # names a folder level; kept as text under its own name


# --- names ------------------------------------------------------------------------------------

def clean_column_name(name: str) -> str:
    """`userId` -> `user_id`, `Page Views` -> `page_views`, `2fa` -> `_2fa`."""
    text = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", name.strip())
    text = re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1_\2", text)
    text = re.sub(r"[^0-9a-zA-Z]+", "_", text).strip("_").lower()
    if not text:
        text = "column"
    if text[0].isdigit():
        text = "_" + text
    return text[:127]


def unique_names(names: Iterable[str], reserved: Iterable[str] = ()) -> list[str]:
    """Cleaned names, with `_2`, `_3`, ... added where two clean to the same text or one
    cleans to a `reserved` name."""
    seen: dict[str, int] = {name: 1 for name in reserved}
    result = []
    for name in names:
        cleaned = clean_column_name(name)
        candidate = cleaned
        while candidate in seen:
            seen[cleaned] = seen.get(cleaned, 1) + 1
            candidate = f"{cleaned}_{seen[cleaned]}"
        seen.setdefault(candidate, 1)
        result.append(candidate)
    return result


# --- the plan: which column becomes what ---------------------------------------------------------

def kind_of(type_name: str) -> str:
    """The cleaning kind for a catalog or Spark type name (`bigint`, `decimal(10,2)`, ...)."""
    base = type_name.strip().lower().split("(", 1)[0].split("<", 1)[0]
    return _KIND_BY_TYPE.get(base, PASSTHROUGH)


def plan_columns(schema: Iterable[tuple[str, str]], timestamp_columns: Iterable[str] = (),
                 partition_keys: Iterable[str] = ()) -> list[Column]:
    """One Column per (name, type) of the raw schema, in its order.

    Partition columns keep their name (it names folders) and stay text; other names are
    cleaned around them. The `timestamp_columns` (cleaned names) are parsed as timestamps
    whatever their raw type.
    """
    schema = list(schema)
    partitions = set(partition_keys)
    timestamps = set(timestamp_columns)
    kept = [name for name, _ in schema if name in partitions]
    cleaned = iter(unique_names((name for name, _ in schema if name not in partitions),
                                reserved=kept))
    plan = []
    for source, type_name in schema:
        if source in partitions:
            plan.append(Column(source, source, STRING, partition=True))
            continue
        target = next(cleaned)
        kind = TIMESTAMP if target in timestamps else kind_of(type_name)
        plan.append(Column(source, target, kind))
    return plan


# --- values ---------------------------------------------------------------------------------------

def is_null(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    return isinstance(value, str) and value.strip().lower() in NULL_TOKENS


def to_string(value: Any) -> str | None:
    if is_null(value):
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return json.dumps(value, sort_keys=True, separators=(",", ":"))
    return str(value).strip()


def to_integer(value: Any) -> int | None:
    """A whole number in the 64-bit range (Spark's LongType), or None."""
    if is_null(value):
        return None
    if isinstance(value, (bool, int)):
        number = int(value)
    elif isinstance(value, float):
        if math.isinf(value) or math.isnan(value) or value != int(value):
            return None
        number = int(value)
    else:
        text = str(value).strip()
        if re.fullmatch(r"[+-]?\d+", text):
            number = int(text)
        else:
            return to_integer(to_float(text))
    return number if _LONG_MIN <= number <= _LONG_MAX else None


def to_float(value: Any) -> float | None:
    if is_null(value):
        return None
    try:
        number = float(value.strip() if isinstance(value, str) else value)
    except (TypeError, ValueError, OverflowError):
        return None
    return None if math.isinf(number) or math.isnan(number) else number


def to_boolean(value: Any) -> bool | None:
    if is_null(value):
        return None
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in TRUE_TOKENS:
        return True
    if text in FALSE_TOKENS:
        return False
    return None


def to_timestamp(value: Any) -> datetime | None:
    """ISO 8601 text or epoch seconds/milliseconds, as a naive datetime in UTC (what Spark's
    TimestampType stores)."""
    if is_null(value):
        return None
    if isinstance(value, datetime):
        parsed = value
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = value / 1000 if abs(value) >= _EPOCH_MILLIS_FROM else value
        try:
            parsed = datetime.fromtimestamp(seconds, tz=timezone.utc)
        except (OverflowError, OSError, ValueError):
            return None
    else:
        text = str(value).strip()
        if re.fullmatch(r"-?\d+(\.\d+)?", text):
            return to_timestamp(float(text))
        try:
            parsed = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
        except ValueError:
            return None
    if parsed.tzinfo is not None:
        parsed = parsed.astimezone(timezone.utc).replace(tzinfo=None)
    return parsed


_CONVERTERS = {
    STRING: to_string,
    INTEGER: to_integer,
    FLOAT: to_float,
    BOOLEAN: to_boolean,
    TIMESTAMP: to_timestamp,
    PASSTHROUGH: lambda value: None if is_null(value) else value,
}


def clean_value(value: Any, kind: str) -> Any:
    return _CONVERTERS[kind](value)


# --- records --------------------------------------------------------------------------------------

def clean_record(record: dict, plan: list[Column]) -> dict | None:
    """The record with cleaned names and typed values, or None when it holds nothing but
    nulls outside the partition columns."""
    cleaned = {column.target: clean_value(record.get(column.source), column.kind)
               for column in plan}
    if all(cleaned[c.target] is None for c in plan if not c.partition):
        return None
    return cleaned


def transform_records(records: Iterable[dict], plan: list[Column]) -> list[dict]:
    """Clean every record, drop the empty ones and exact duplicates (first one kept)."""
    seen: set[str] = set()
    kept = []
    for record in records:
        cleaned = clean_record(record, plan)
        if cleaned is None:
            continue
        key = json.dumps(cleaned, sort_keys=True, default=str)
        if key not in seen:
            seen.add(key)
            kept.append(cleaned)
    return kept


# --- locations and options ------------------------------------------------------------------------

def parse_list(argument: str) -> list[str]:
    """A list job argument: JSON (`["year", "month"]`, `[]`) or comma-separated text. JSON,
    because Glue drops arguments whose value is empty."""
    text = argument.strip()
    if text.startswith("["):
        items = json.loads(text)
        if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
            raise ValueError(f"expected a JSON list of names, got {argument!r}")
        return [item.strip() for item in items if item.strip()]
    return [item.strip() for item in text.split(",") if item.strip()]


def same_location(a: str, b: str) -> bool:
    return a.rstrip("/") == b.rstrip("/")


def table_for_location(tables: Iterable[dict], location: str) -> str:
    """The name of the table (GetTables' TableList entries) over `location`."""
    matches = sorted(t["Name"] for t in tables
                     if same_location(t.get("StorageDescriptor", {}).get("Location", ""), location))
    if not matches:
        raise LookupError(f"no table over {location} yet: has the raw crawler run?")
    if len(matches) > 1:
        raise LookupError(f"several tables over {location}: {', '.join(matches)}")
    return matches[0]


def write_options(output_format: str, location: str,
                  partition_keys: list[str]) -> tuple[str, dict, dict]:
    """Glue's (format, connection_options, format_options) for the processed data."""
    connection = {"path": location.rstrip("/") + "/", "partitionKeys": list(partition_keys)}
    if output_format == "parquet":
        return "glueparquet", connection, {"compression": "snappy"}
    if output_format == "csv":
        return "csv", connection, {"writeHeader": True, "separator": ",", "quoteChar": '"'}
    raise ValueError(f"output_format must be parquet or csv, not {output_format!r}")


# --- Glue -----------------------------------------------------------------------------------------

def main() -> None:  # pragma: no cover - runs inside Glue only
    import boto3
    from awsglue.context import GlueContext
    from awsglue.dynamicframe import DynamicFrame
    from awsglue.job import Job
    from awsglue.utils import getResolvedOptions
    from pyspark.context import SparkContext
    from pyspark.sql import types as T

    args = getResolvedOptions(sys.argv, ["JOB_NAME", *ARGUMENTS])
    glue_context = GlueContext(SparkContext.getOrCreate())
    spark = glue_context.spark_session
    logger = glue_context.get_logger()
    job = Job(glue_context)
    job.init(args["JOB_NAME"], args)

    partition_keys = parse_list(args["partition_keys"])
    paginator = boto3.client("glue").get_paginator("get_tables")
    tables = [t for page in paginator.paginate(DatabaseName=args["database"])
              for t in page["TableList"]]
    raw_table = table_for_location(tables, args["raw_location"])

    # Raw objects move to an archive class with age (the backup): never read those, so a run
    # after a bookmark reset reads what is readable instead of failing on the first archived
    # object (AWS: "Excluding Amazon S3 storage classes").
    source = glue_context.create_dynamic_frame.from_catalog(
        database=args["database"], table_name=raw_table, transformation_ctx="raw",
        additional_options={"excludeStorageClasses": list(ARCHIVED_STORAGE_CLASSES)})
    # A column the crawler saw with more than one type arrives (and stays) text.
    frame = source.resolveChoice(choice="cast:string").toDF()
    if not frame.columns or frame.rdd.isEmpty():
        logger.info(f"no new records in {raw_table}")
        job.commit()
        return

    plan = plan_columns(((f.name, f.dataType.simpleString()) for f in frame.schema.fields),
                        parse_list(args["timestamp_columns"]), partition_keys)
    spark_types = {STRING: T.StringType(), INTEGER: T.LongType(), FLOAT: T.DoubleType(),
                   BOOLEAN: T.BooleanType(), TIMESTAMP: T.TimestampType()}
    schema = T.StructType([
        T.StructField(c.target, spark_types.get(c.kind) or frame.schema[c.source].dataType, True)
        for c in plan])
    targets = [c.target for c in plan]
    rows = (frame.rdd
            .map(lambda row: clean_record(row.asDict(), plan))
            .filter(lambda record: record is not None)
            .map(lambda record: tuple(record[name] for name in targets)))
    cleaned = spark.createDataFrame(rows, schema).dropDuplicates()

    keys = [key for key in partition_keys if key in cleaned.columns]
    output_format, connection, format_options = write_options(
        args["output_format"], args["processed_location"], keys)
    glue_context.write_dynamic_frame.from_options(
        frame=DynamicFrame.fromDF(cleaned, glue_context, "processed"),
        connection_type="s3", connection_options=connection,
        format=output_format, format_options=format_options,
        transformation_ctx="processed")
    job.commit()


if __name__ == "__main__":
    main()
