"""Glue ETL job: raw records as Firehose lands them -> cleaned, typed, partitioned data.

Reads the raw table the raw crawler made over the raw prefix (found by its S3 location, since
the crawler names it after a folder), and writes the processed prefix as Parquet or CSV,
partitioned Hive-style. Job bookmarks make every run read only what earlier runs did not; raw
objects already archived (GLACIER, DEEP_ARCHIVE) are skipped.

The output follows the record schema (the pipeline file's `record_schema`, passed as --schema):
its columns in its order with its types, which is what the warehouse's COPY (by position) and
training (by name) expect. A raw field the schema does not list is dropped; a listed column no
raw field cleans to is written as null.

Cleaning, per record:
- raw column names become snake_case (`userId` -> `user_id`, `Page Views` -> `page_views`);
  two names that clean to the same text get `_2`, `_3`, ...; the schema names cleaned names;
- text is trimmed; empty text and null tokens (`null`, `None`, `NaN`, `N/A`, ...) become null;
- values are coerced to their schema type (a number sent as text becomes that number, anything
  unreadable becomes null): booleans accept true/false/yes/no/1/0, timestamps ISO 8601 text or
  epoch seconds or milliseconds (read as UTC), strings are cut to the column's byte length;
- records with nothing but nulls outside the partition columns are dropped, as are exact
  duplicates.

When a run has written its records (and committed its bookmark), it tells EventBridge, on the
default bus, how many: an event of --event_source and --event_detail_type whose detail holds
jobName, jobRunId, recordsWritten, location and format. The stages that react to new data (the
warehouse load, training) match recordsWritten > 0, so a run that found nothing new starts
nothing.

Job arguments (the stage sets them; a replacement script gets the same):
  --database            Glue database of the raw and processed tables
  --raw_location        s3://<raw bucket>/<raw prefix> the raw crawler catalogs
  --processed_location  s3://<processed bucket>/<processed prefix> to write
  --output_format       parquet | csv
  --partition_keys      partition columns as a JSON list, e.g. ["year", "month", "day"]
  --schema              the record schema as a JSON list of {"name", "type"[, "max_bytes"]}
  --event_source        source of the new-data event
  --event_detail_type   detail type of the new-data event

Everything above `main()` is plain Python, importable without Spark or the Glue libraries, so
the transforms and the event are tested locally on small samples; `main()` only moves data
between Glue, those functions and EventBridge.
"""

import json
import math
import re
import sys
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Iterable

ARGUMENTS = ("database", "raw_location", "processed_location", "output_format",
             "partition_keys", "schema", "event_source", "event_detail_type")

# Storage classes whose objects cannot be read without a restore (the raw bucket's archive).
ARCHIVED_STORAGE_CLASSES = ("GLACIER", "DEEP_ARCHIVE")

NULL_TOKENS = frozenset({"", "null", "none", "nan", "n/a", "na", "nil", "undefined", "-"})
TRUE_TOKENS = frozenset({"true", "t", "yes", "y", "1"})
FALSE_TOKENS = frozenset({"false", "f", "no", "n", "0"})

# What a column becomes: the record schema's types (config/record_schema.py).
STRING, INTEGER, FLOAT, BOOLEAN, TIMESTAMP = ("string", "integer", "float", "boolean",
                                              "timestamp")
SCHEMA_KINDS = {"string": STRING, "integer": INTEGER, "double": FLOAT, "boolean": BOOLEAN,
                "timestamp": TIMESTAMP}
# The field of the new-data event that says how many records a run wrote.
RECORDS_WRITTEN = "recordsWritten"
_LONG_MIN, _LONG_MAX = -(2 ** 63), 2 ** 63 - 1
# Epoch values above this are milliseconds (this many seconds is the year 5138).
_EPOCH_MILLIS_FROM = 10 ** 11


@dataclass(frozen=True)
class Column:
    source: str | None  # name in the raw data; None: no raw field cleans to it (all null)
    target: str         # name in the processed data
    kind: str           # one of STRING ... TIMESTAMP
    partition: bool = False  # names a folder level; kept as text under its own name
    max_bytes: int | None = None  # longest text of a STRING column, in UTF-8 bytes


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

def parse_schema(argument: str) -> list[dict]:
    """The --schema argument: a JSON list of {"name", "type"[, "max_bytes"]}."""
    columns = json.loads(argument)
    if not isinstance(columns, list) or not columns:
        raise ValueError(f"--schema must be a non-empty JSON list, got {argument!r}")
    for column in columns:
        if not isinstance(column, dict) or column.get("type") not in SCHEMA_KINDS:
            raise ValueError(f"--schema: {column!r} is not a column of type "
                             f"{', '.join(SCHEMA_KINDS)}")
    return columns


def plan_columns(raw: Iterable[tuple[str, str]], schema: list[dict],
                 partition_keys: Iterable[str] = ()) -> list[Column]:
    """The processed columns: the schema's, in its order and of its types, each filled from the
    raw column whose cleaned name it is; then the raw partition keys (folders, kept as text).

    Partition columns keep their name (it names folders); other raw names are cleaned around
    them. `raw` is the raw table's (name, type) in its order.
    """
    raw = list(raw)
    partitions = [name for name, _ in raw if name in set(partition_keys)]
    cleaned = unique_names((name for name, _ in raw if name not in partitions),
                           reserved=partitions)
    source_of = dict(zip(cleaned, (name for name, _ in raw if name not in partitions)))
    plan = [Column(source_of.get(c["name"]), c["name"], SCHEMA_KINDS[c["type"]],
                   max_bytes=c.get("max_bytes"))
            for c in schema]
    plan += [Column(name, name, STRING, partition=True) for name in partitions]
    return plan


def unplanned(raw: Iterable[tuple[str, str]], plan: list[Column]) -> list[str]:
    """Raw columns the plan drops (the schema does not list what they clean to)."""
    used = {c.source for c in plan}
    return [name for name, _ in raw if name not in used]


# --- values ---------------------------------------------------------------------------------------

def is_null(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    return isinstance(value, str) and value.strip().lower() in NULL_TOKENS


def to_string(value: Any, max_bytes: int | None = None) -> str | None:
    if is_null(value):
        return None
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, (dict, list)):
        text = json.dumps(value, sort_keys=True, separators=(",", ":"))
    else:
        text = str(value).strip()
    if max_bytes is not None and len(text.encode("utf-8")) > max_bytes:
        # Cut at a character boundary: the warehouse's VARCHAR counts bytes.
        text = text.encode("utf-8")[:max_bytes].decode("utf-8", errors="ignore")
    return text


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
}


def clean_value(value: Any, kind: str, max_bytes: int | None = None) -> Any:
    if kind == STRING:
        return to_string(value, max_bytes)
    return _CONVERTERS[kind](value)


# --- records --------------------------------------------------------------------------------------

def clean_record(record: dict, plan: list[Column]) -> dict | None:
    """The record with cleaned names and typed values, or None when it holds nothing but
    nulls outside the partition columns."""
    cleaned = {column.target: (None if column.source is None else
                               clean_value(record.get(column.source), column.kind,
                                           column.max_bytes))
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


# --- the new-data event ---------------------------------------------------------------------------

def new_data_event(source: str, detail_type: str, job_name: str, run_id: str, records: int,
                   location: str, output_format: str) -> dict:
    """The PutEvents entry announcing what a run wrote (on the default bus)."""
    detail = {"jobName": job_name, "jobRunId": run_id, RECORDS_WRITTEN: records,
              "location": location, "format": output_format}
    return {"Source": source, "DetailType": detail_type, "Detail": json.dumps(detail),
            "EventBusName": "default"}


def send_event(events_client: Any, entry: dict) -> None:
    """Put one event; a refused entry is an error (PutEvents reports it, it does not raise)."""
    response = events_client.put_events(Entries=[entry])
    if response.get("FailedEntryCount"):
        failed = response["Entries"][0]
        raise RuntimeError(f"EventBridge refused the new-data event: "
                           f"{failed.get('ErrorCode')}: {failed.get('ErrorMessage')}")


def finish_run(commit: Any, events_client: Any, args: dict, written: int) -> None:
    """Commit the run's bookmark, then announce what it wrote.

    In that order: a run that fails after the commit has written and bookmarked its records,
    and the next run that writes announces them with its own (the load and training read the
    whole processed prefix); announcing first could start a load of data the bookmark then
    never records, and the next run would write it again.
    """
    commit()
    send_event(events_client, new_data_event(
        args["event_source"], args["event_detail_type"], args["JOB_NAME"], args["JOB_RUN_ID"],
        written, args["processed_location"], args["output_format"]))


# --- Glue -----------------------------------------------------------------------------------------

def main() -> None:  # pragma: no cover - runs inside Glue only
    import boto3
    from awsglue.context import GlueContext
    from awsglue.dynamicframe import DynamicFrame
    from awsglue.job import Job
    from awsglue.utils import getResolvedOptions
    from pyspark.context import SparkContext
    from pyspark.sql import types as T

    args = getResolvedOptions(sys.argv, ["JOB_NAME", "JOB_RUN_ID", *ARGUMENTS])
    glue_context = GlueContext(SparkContext.getOrCreate())
    spark = glue_context.spark_session
    logger = glue_context.get_logger()
    job = Job(glue_context)
    job.init(args["JOB_NAME"], args)

    partition_keys = parse_list(args["partition_keys"])
    schema_columns = parse_schema(args["schema"])
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
    written = 0
    if frame.columns and not frame.rdd.isEmpty():
        raw_columns = [(f.name, f.dataType.simpleString()) for f in frame.schema.fields]
        plan = plan_columns(raw_columns, schema_columns, partition_keys)
        dropped = unplanned(raw_columns, plan)
        if dropped:
            logger.info(f"not in the record schema, dropped: {', '.join(dropped)}")
        missing = [c.target for c in plan if c.source is None]
        if missing:
            logger.warn(f"no raw field for {', '.join(missing)}: written as null")
        spark_types = {STRING: T.StringType(), INTEGER: T.LongType(), FLOAT: T.DoubleType(),
                       BOOLEAN: T.BooleanType(), TIMESTAMP: T.TimestampType()}
        schema = T.StructType([T.StructField(c.target, spark_types[c.kind], True) for c in plan])
        targets = [c.target for c in plan]
        rows = (frame.rdd
                .map(lambda row: clean_record(row.asDict(), plan))
                .filter(lambda record: record is not None)
                .map(lambda record: tuple(record[name] for name in targets)))
        cleaned = spark.createDataFrame(rows, schema).dropDuplicates().cache()
        written = cleaned.count()
        if written:
            keys = [c.target for c in plan if c.partition]
            output_format, connection, format_options = write_options(
                args["output_format"], args["processed_location"], keys)
            glue_context.write_dynamic_frame.from_options(
                frame=DynamicFrame.fromDF(cleaned, glue_context, "processed"),
                connection_type="s3", connection_options=connection,
                format=output_format, format_options=format_options,
                transformation_ctx="processed")
    logger.info(f"{written} new records from {raw_table}")
    finish_run(job.commit, boto3.client("events"), args, written)


if __name__ == "__main__":
    main()
