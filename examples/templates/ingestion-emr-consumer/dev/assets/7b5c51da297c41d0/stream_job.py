"""EMR Serverless streaming job: ingest stream -> cleaned, typed records in the processed bucket.

Spark Structured Streaming reads the Kinesis stream with the Kinesis Data Streams connector that
EMR releases 7.1.0 and later ship (format `aws-kinesis`, GetRecords consumer), and every
micro-batch is cleaned exactly as the Glue ETL job cleans raw records: the record schema's
columns, in its order, with its types (etl_job.py's plan_columns/clean_record, shipped beside
this script with --py-files), empty records and exact duplicates dropped. It is written in the
ETL job's format (Parquet or CSV) and partitioned by the ETL job's partition keys, whose time
parts (year, month, day, hour) come from the record's arrival time in the stream in UTC: the
time Firehose's date partition of the raw data follows too.

A record whose data is not JSON holding an object is counted and skipped: the raw bucket
keeps it anyway. Progress is kept in the checkpoint location (S3), so a restarted run goes on
where the last one stopped; foreachBatch writes at least once (a batch interrupted between its
write and its checkpoint is written again).

Arguments (the stage sets them; see stages/ingestion_emr.py):
  --stream_name          the Kinesis stream
  --region               its region
  --output_location      s3://<processed bucket>/<prefix>
  --checkpoint_location  s3://<processed bucket>/_checkpoints/<prefix>
  --output_format        parquet | csv
  --partition_keys       partition columns as a JSON list
  --schema               the record schema as a JSON list of {"name", "type"[, "max_bytes"]}
  --trigger_seconds      how often a micro-batch is written

Everything above `main()` is plain Python, testable without Spark; `main()` only moves data
between Spark and those functions.
"""

import argparse
import json
from datetime import datetime, timezone
from typing import Any, Iterable

try:  # on EMR Serverless: etl_job.py is shipped beside this script (--py-files)
    import etl_job as cleaning
except ImportError:  # in the project's own tests
    from mlops_cfn.data.glue import etl_job as cleaning

# The partition keys the stream job can fill, from the record's arrival time (UTC), in the
# form Firehose writes them: zero-padded text.
TIME_PARTS = {"year": "%Y", "month": "%m", "day": "%d", "hour": "%H"}
ARGUMENTS = ("stream_name", "region", "output_location", "checkpoint_location", "output_format",
             "partition_keys", "schema", "trigger_seconds")


def decode(data: bytes) -> dict | None:
    """A record's payload as the JSON object it should hold, or None."""
    try:
        payload = json.loads(data)
    except (TypeError, ValueError):  # JSON and UTF-8 errors are ValueErrors
        return None
    return payload if isinstance(payload, dict) else None


def time_partitions(arrival: datetime, keys: Iterable[str]) -> dict[str, str]:
    """The values of the time partition keys for a record that arrived at `arrival`; a key the
    stream cannot fill is skipped, as the ETL job skips a key missing from the data."""
    if arrival.tzinfo is not None:
        arrival = arrival.astimezone(timezone.utc)
    return {key: arrival.strftime(TIME_PARTS[key]) for key in keys if key in TIME_PARTS}


def partition_columns(keys: Iterable[str]) -> list[str]:
    return [key for key in keys if key in TIME_PARTS]


def output_columns(schema: list[dict], keys: Iterable[str]) -> list[str]:
    """The columns of the output, in order: the schema's, then the partition keys."""
    return [column["name"] for column in schema] + partition_columns(keys)


def clean(payload: dict, schema: list[dict]) -> dict | None:
    """The payload's fields as the schema's columns (names cleaned and matched, values typed),
    exactly as the ETL job cleans a raw record; None when nothing but nulls remains."""
    plan = cleaning.plan_columns([(name, "string") for name in payload], schema)
    return cleaning.clean_record(payload, plan)


def transform(records: Iterable[tuple[bytes, datetime]], schema: list[dict],
              keys: list[str]) -> tuple[list[dict], int]:
    """(cleaned rows, count of invalid records) for one batch of (data, arrival time): each
    row holds the output columns; exact duplicates within the batch are dropped."""
    rows, invalid, seen = [], 0, set()
    for data, arrival in records:
        payload = decode(data)
        if payload is None:
            invalid += 1
            continue
        cleaned = clean(payload, schema)
        if cleaned is None:
            continue
        row = {**cleaned, **time_partitions(arrival, keys)}
        key = json.dumps(row, sort_keys=True, default=str)
        if key not in seen:
            seen.add(key)
            rows.append(row)
    return rows, invalid


def write_options(output_format: str) -> tuple[str, dict]:
    """Spark's (format, options) for the processed data, as the ETL job writes it."""
    if output_format == "parquet":
        return "parquet", {"compression": "snappy"}
    if output_format == "csv":
        return "csv", {"header": "true", "sep": ",", "quote": '"'}
    raise ValueError(f"output_format must be parquet or csv, not {output_format!r}")


def parse_arguments(argv: list[str]) -> dict[str, Any]:
    parser = argparse.ArgumentParser()
    for name in ARGUMENTS:
        parser.add_argument(f"--{name}", required=True)
    args = vars(parser.parse_args(argv))
    args["partition_keys"] = cleaning.parse_list(args["partition_keys"])
    args["schema"] = cleaning.parse_schema(args["schema"])
    args["trigger_seconds"] = int(args["trigger_seconds"])
    write_options(args["output_format"])  # fails early on a wrong format
    return args


def main(argv: list[str]) -> None:  # pragma: no cover - runs on EMR Serverless only
    from pyspark.sql import SparkSession
    from pyspark.sql import types as T

    args = parse_arguments(argv)
    spark = SparkSession.builder.appName("mlops-stream-consumer").getOrCreate()
    schema, keys = args["schema"], args["partition_keys"]
    spark_types = {"string": T.StringType(), "integer": T.LongType(), "double": T.DoubleType(),
                   "boolean": T.BooleanType(), "timestamp": T.TimestampType()}
    row_type = T.StructType(
        [T.StructField(c["name"], spark_types[c["type"]], True) for c in schema]
        + [T.StructField(key, T.StringType(), True) for key in partition_columns(keys)])
    names = output_columns(schema, keys)
    output_format, options = write_options(args["output_format"])

    def rows_of(partition):
        rows, _ = transform(((bytes(r.data), r.approximateArrivalTimestamp) for r in partition),
                            schema, keys)
        return (tuple(row.get(name) for name in names) for row in rows)

    def write_batch(frame, batch_id):
        rows = frame.select("data", "approximateArrivalTimestamp").rdd.mapPartitions(rows_of)
        cleaned = spark.createDataFrame(rows, row_type).dropDuplicates()
        (cleaned.write.mode("append").format(output_format).options(**options)
         .partitionBy(*partition_columns(keys)).save(args["output_location"]))

    region = args["region"]
    stream = (spark.readStream.format("aws-kinesis")
              .option("kinesis.region", region)
              .option("kinesis.streamName", args["stream_name"])
              .option("kinesis.consumerType", "GetRecords")
              .option("kinesis.endpointUrl", f"https://kinesis.{region}.amazonaws.com")
              .option("kinesis.startingPosition", "TRIM_HORIZON")
              .load())
    (stream.writeStream.foreachBatch(write_batch)
     .option("checkpointLocation", args["checkpoint_location"])
     .trigger(processingTime=f"{args['trigger_seconds']} seconds")
     .start()
     .awaitTermination())


if __name__ == "__main__":  # pragma: no cover
    import sys
    main(sys.argv[1:])
