"""The billing event, defined once.

Everything else is derived from ``FIELDS``: the validator (``events.validate``),
the Arrow schema for Parquet, the Glue columns for Firehose's Parquet
conversion, and the ClickHouse column list. ``tests/events/test_schema.py``
asserts that all four agree.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pyarrow is imported lazily: the transform Lambda does not ship it
    import pyarrow as pa


class Kind(enum.Enum):
    """Storage kind of a field: one row per target system.

    value = (Arrow type name, Glue/Hive type, ClickHouse type). Arrow types are
    named, not built, so this module imports without pyarrow.
    """

    STRING = ("string", "string", "String")
    # UTC milliseconds since the epoch. The transform emits an integer, which
    # Firehose's OpenX JSON SerDe reads as epoch millis for a `timestamp` column.
    TIMESTAMP_MS = ("timestamp_ms_utc", "timestamp", "DateTime64(3, 'UTC')")
    # Canonical JSON text (sorted keys, compact).
    JSON = ("json_string", "string", "String")
    FLOAT = ("float64", "double", "Float64")
    # ClickHouse Decimal128(18) = Decimal(38, 18). Emitted as a JSON string so no
    # float ever touches it.
    DECIMAL = ("decimal128_38_18", "decimal(38,18)", "Decimal(38, 18)")

    @property
    def arrow(self) -> pa.DataType:
        import pyarrow as pa

        return {
            "string": pa.string(),
            "timestamp_ms_utc": pa.timestamp("ms", tz="UTC"),
            "json_string": pa.string(),
            "float64": pa.float64(),
            "decimal128_38_18": pa.decimal128(38, 18),
        }[self.value[0]]

    @property
    def glue(self) -> str:
        return self.value[1]

    @property
    def clickhouse(self) -> str:
        return self.value[2]


class Origin(enum.Enum):
    PRODUCER = "producer"  # sent by the API server
    ENRICHED = "enriched"  # may be sent; otherwise filled from deployment config
    PIPELINE = "pipeline"  # always set by the pipeline; a producer may not send it


@dataclass(frozen=True)
class Field:
    name: str
    kind: Kind
    doc: str
    origin: Origin = Origin.PRODUCER
    required: bool = False  # must the producer send it?
    nullable: bool = False  # may the stored value be null?
    max_length: int | None = None  # characters, for strings


MAX_ID_LENGTH = 256

FIELDS: tuple[Field, ...] = (
    Field("transaction_id", Kind.STRING, "Idempotency key.", required=True, max_length=MAX_ID_LENGTH),
    Field("external_customer_id", Kind.STRING, "The customer billed.", required=True, max_length=MAX_ID_LENGTH),
    Field("code", Kind.STRING, "Billable metric code.", required=True, max_length=MAX_ID_LENGTH),
    Field("timestamp", Kind.TIMESTAMP_MS, "Event time; Firehose arrival time when absent."),
    Field("properties", Kind.JSON, "Free-form properties as canonical JSON ('{}' when absent)."),
    Field("value", Kind.FLOAT, "Optional numeric value.", nullable=True),
    Field("decimal_value", Kind.DECIMAL, "Optional exact decimal value.", nullable=True),
    Field(
        "organization_id",
        Kind.STRING,
        "Tenant; from deployment config when not sent.",
        origin=Origin.ENRICHED,
        max_length=128,
    ),
    Field("ingested_at", Kind.TIMESTAMP_MS, "When the transform processed the event.", origin=Origin.PIPELINE),
    # The same on every path and every retry of one Kinesis record: lateness is measured from it,
    # and a missing timestamp defaults to it.
    Field(
        "arrived_at",
        Kind.TIMESTAMP_MS,
        "When the Kinesis record that carried the event arrived in the stream.",
        origin=Origin.PIPELINE,
    ),
)

FIELD_BY_NAME: dict[str, Field] = {f.name: f for f in FIELDS}
FIELD_NAMES: tuple[str, ...] = tuple(f.name for f in FIELDS)
REQUIRED_FIELDS: tuple[str, ...] = tuple(f.name for f in FIELDS if f.required)
# What a producer may send: everything but pipeline-owned fields.
INPUT_FIELDS: frozenset[str] = frozenset(f.name for f in FIELDS if f.origin is not Origin.PIPELINE)


def arrow_schema() -> pa.Schema:
    """Arrow schema of a normalised event, used for Parquet."""
    import pyarrow as pa

    return pa.schema([pa.field(f.name, f.kind.arrow, nullable=f.nullable) for f in FIELDS])


def glue_columns() -> list[dict[str, str]]:
    """Glue table columns for Firehose's Parquet conversion (CfnTable ColumnProperty shape)."""
    return [{"name": f.name, "type": f.kind.glue, "comment": f.doc} for f in FIELDS]


def clickhouse_columns() -> list[tuple[str, str]]:
    """(name, type) pairs for ClickHouse tables that hold events."""
    return [(f.name, f"Nullable({f.kind.clickhouse})" if f.nullable else f.kind.clickhouse) for f in FIELDS]
