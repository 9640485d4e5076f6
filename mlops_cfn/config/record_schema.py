"""The `record_schema` section: the one description of a processed record.

Three consumers read the processed data, and each depends on its columns: the ETL job writes
them (which columns, in which order, with which types), the warehouse load copies them (a
Redshift COPY from Parquet or CSV matches columns by position), and training reads the label and
the features by name. All three follow from this section, so data that loads also trains.

The schema shapes every template that uses it (the job's arguments, the table's DDL, the
training pipeline's definition), so it is structure, not a setting: it is set once for the whole
file, and every environment shares it, as a model promoted from dev to prod must have been
trained on the same columns prod loads.
"""

from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator

from .base import Model, described_pattern

# What Redshift, Athena/Spectrum and Hive accept unquoted, and what the ETL job's cleaned
# (snake_case) names look like.
COLUMN_NAME_PATTERN = described_pattern(
    r"^[a-z_][a-z0-9_]{0,126}$",
    "a lowercase letter or _, then lowercase letters, digits or _ (127 characters at most)")
# Redshift's limit of columns in a table.
MAX_COLUMNS = 1600
# Redshift's VARCHAR holds at most this many bytes.
MAX_STRING_BYTES = 65535
DEFAULT_STRING_BYTES = 256

ColumnType = Literal["string", "integer", "double", "boolean", "timestamp"]
# Types the built-in XGBoost takes as numbers (a boolean as 1 or 0).
NUMERIC_TYPES = ("integer", "double", "boolean")


class RecordColumn(Model):
    name: Annotated[
        str,
        Field(pattern=COLUMN_NAME_PATTERN,
              description="Column name as the ETL job writes it: the raw field's name cleaned "
                          "to snake_case (`userId` -> `user_id`)."),
    ]
    type: Annotated[
        ColumnType,
        Field(description="`string` (Redshift VARCHAR), `integer` (64-bit, BIGINT), `double` "
                          "(DOUBLE PRECISION), `boolean`, `timestamp` (ISO 8601 text or epoch "
                          "seconds or milliseconds, read as UTC; TIMESTAMP)."),
    ]
    length: Annotated[
        int | None,
        Field(ge=1, le=MAX_STRING_BYTES,
              description=f"Longest value of a `string` column in UTF-8 bytes (the warehouse "
                          f"column's VARCHAR size); the ETL job cuts longer values. Unset: "
                          f"{DEFAULT_STRING_BYTES}."),
    ] = None

    @model_validator(mode="after")
    def _length_only_for_strings(self):
        if self.length is not None and self.type != "string":
            raise ValueError(f"column {self.name!r}: length applies to string columns only "
                             f"(this one is {self.type})")
        return self

    @property
    def max_bytes(self) -> int | None:
        if self.type != "string":
            return None
        return self.length if self.length is not None else DEFAULT_STRING_BYTES


def _column(name: str, type_: str, length: int | None = None) -> RecordColumn:
    return RecordColumn(name=name, type=type_, length=length)


# The sample events of the bundled pipeline (what producers write to the stream, as the README
# shows), with the label the bundled binary classifier learns.
DEFAULT_COLUMNS = (
    _column("event_id", "string", 64),
    _column("event_type", "string", 64),
    _column("user_id", "string", 64),
    _column("item_id", "string", 64),
    _column("event_time", "timestamp"),
    _column("value", "double"),
    _column("label", "integer"),
)


class RecordSchemaConfig(Model):
    columns: Annotated[
        list[RecordColumn],
        Field(min_length=1, max_length=MAX_COLUMNS,
              description="The processed record's columns, in the order the ETL job writes "
                          "them and the warehouse table holds them, each `{name, type, "
                          "length}`: name as the ETL job cleans the raw field's (snake_case); "
                          "type `string` (VARCHAR of `length` bytes, 256 unless given), "
                          "`integer` (BIGINT), `double` (DOUBLE PRECISION), `boolean` or "
                          "`timestamp` (ISO 8601 or epoch seconds/milliseconds, as UTC). A raw "
                          "field not listed is dropped; a listed column missing from a batch "
                          "is written as null. The ETL job's partition keys are folders, not "
                          "columns, and are not listed. The whole section is set once for the "
                          "file, not per environment: every environment loads and trains on "
                          "the same record."),
    ] = list(DEFAULT_COLUMNS)
    label: Annotated[
        str | None,
        Field(description="The column the model learns to predict (integer, double or "
                          "boolean). Null only while the training stage is off."),
    ] = "label"
    features: Annotated[
        list[str] | None,
        Field(max_length=MAX_COLUMNS,
              description="Columns the model learns from, in the order it sees them. Unset: "
                          "every integer, double and boolean column but the label, in column "
                          "order."),
    ] = None

    @field_validator("columns")
    @classmethod
    def _names_unique(cls, value):
        seen: set[str] = set()
        for column in value:
            if column.name in seen:
                raise ValueError(f"lists column {column.name!r} twice")
            seen.add(column.name)
        return value

    @model_validator(mode="after")
    def _label_and_features_are_numeric_columns(self):
        by_name = {c.name: c for c in self.columns}
        if self.label is not None:
            if self.label not in by_name:
                raise ValueError(f"label {self.label!r} is not one of the columns "
                                 f"({', '.join(by_name)})")
            if by_name[self.label].type not in NUMERIC_TYPES:
                raise ValueError(f"label {self.label!r} is a {by_name[self.label].type} "
                                 f"column; a label is {', '.join(NUMERIC_TYPES)}")
        for name in self.features or ():
            if name not in by_name:
                raise ValueError(f"features: {name!r} is not one of the columns "
                                 f"({', '.join(by_name)})")
            if name == self.label:
                raise ValueError(f"features lists the label {name!r}")
            if by_name[name].type not in NUMERIC_TYPES:
                raise ValueError(f"features: {name!r} is a {by_name[name].type} column; the "
                                 f"model learns from {', '.join(NUMERIC_TYPES)} columns")
        if self.features is not None and len(set(self.features)) != len(self.features):
            raise ValueError("features lists a column twice")
        return self

    def feature_columns(self) -> list[str]:
        """The features in effect: the configured ones, or every numeric column but the label."""
        if self.features is not None:
            return list(self.features)
        return [c.name for c in self.columns
                if c.type in NUMERIC_TYPES and c.name != self.label]

    def as_job_argument(self) -> list[dict[str, Any]]:
        """The schema as the ETL job reads it (its --schema argument, as JSON)."""
        return [{"name": c.name, "type": c.type,
                 **({"max_bytes": c.max_bytes} if c.max_bytes is not None else {})}
                for c in self.columns]
