"""The billing event, defined once.

Everything else is derived from ``FIELDS``: the validator (``events.validate``),
the Arrow schema for Parquet, the Glue columns for Firehose's Parquet
conversion, and the ClickHouse column list. ``tests/unit/events/test_schema.py``
asserts that all four agree.

The schema has versions. Each field says in which version it was added (``added_in``) and,
if producers may no longer send it, in which it was removed (``removed_in``: the column
stays everywhere and is null from then on). ``fields_at(v)`` is the schema as of version v,
so ClickHouse migration N renders the columns as they were when N was written and an
applied migration never changes its checksum (``clickhouse.ddl``). What a change may be is
checked on import (``check_history``); see README, "Changing the event schema".
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
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
    added_in: int = 1  # schema version that added the field
    removed_in: int | None = None  # from this version producers may not send it; the column stays, null


class SchemaChangeError(ValueError):
    """A change to ``FIELDS`` the pipeline cannot roll out safely; names the field."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"event schema, field {field!r}: {message}")
        self.field = field


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

# What each released version stored: (name, kind, nullable), in order. Frozen once released:
# ``check_history`` refuses FIELDS that no longer match (a rename, a type change, a field deleted
# or moved), naming the field. Append a version's fields here when it ships.
RELEASED: dict[int, tuple[tuple[str, str, bool], ...]] = {
    1: (
        ("transaction_id", "STRING", False),
        ("external_customer_id", "STRING", False),
        ("code", "STRING", False),
        ("timestamp", "TIMESTAMP_MS", False),
        ("properties", "JSON", False),
        ("value", "FLOAT", True),
        ("decimal_value", "DECIMAL", True),
        ("organization_id", "STRING", False),
        ("ingested_at", "TIMESTAMP_MS", False),
        ("arrived_at", "TIMESTAMP_MS", False),
    ),
}
# Kinds a field added after version 1 may have: each has a generic check in events.validate.
ADDABLE_KINDS = frozenset({Kind.STRING, Kind.FLOAT, Kind.DECIMAL, Kind.TIMESTAMP_MS})


def schema_version(fields: Sequence[Field] = FIELDS) -> int:
    """The newest version any field names."""
    return max(max(f.added_in, f.removed_in or 0) for f in fields)


def fields_at(version: int, fields: Sequence[Field] = FIELDS) -> tuple[Field, ...]:
    """The stored fields as of ``version`` (removed fields included: their columns stay)."""
    return tuple(f for f in fields if f.added_in <= version)


def check_history(
    fields: Sequence[Field] = FIELDS, released: dict[int, tuple[tuple[str, str, bool], ...]] = RELEASED
) -> None:
    """Refuse what cannot roll out safely. Supported: adding an optional (nullable) producer field
    at the end, and removing a nullable producer field (it stops being accepted; the column stays).
    Not supported, so refused: changing a released field's type, name, nullability or position,
    deleting it from FIELDS, adding a required, non-null or pipeline field. There is nothing to
    widen: every number is already Float64 or Decimal(38, 18)."""
    seen: set[str] = set()
    previous = 1
    for f in fields:
        if f.name in seen:
            raise SchemaChangeError(f.name, "is declared twice")
        seen.add(f.name)
        if f.added_in < 1:
            raise SchemaChangeError(f.name, f"added_in must be 1 or more, got {f.added_in}")
        if f.added_in < previous:
            raise SchemaChangeError(
                f.name,
                f"added in version {f.added_in} but listed after a version-{previous} field; add fields at the end",
            )
        previous = f.added_in
        if f.added_in > 1:
            if f.required or not f.nullable:
                raise SchemaChangeError(
                    f.name,
                    "a field added after version 1 must be optional and nullable (required=False, nullable=True): "
                    "events and Parquet files written before it have no value for it",
                )
            if f.origin is not Origin.PRODUCER:
                raise SchemaChangeError(f.name, "a field added after version 1 must be a producer field")
            if f.kind not in ADDABLE_KINDS:
                raise SchemaChangeError(
                    f.name, f"kind {f.kind.name} cannot be added; use one of {sorted(k.name for k in ADDABLE_KINDS)}"
                )
        if f.removed_in is not None:
            if f.removed_in <= f.added_in:
                raise SchemaChangeError(f.name, f"removed_in ({f.removed_in}) must come after added_in ({f.added_in})")
            if f.required or not f.nullable or f.origin is not Origin.PRODUCER:
                raise SchemaChangeError(
                    f.name,
                    "only an optional, nullable producer field can be removed "
                    "(its column stays and holds null from then on)",
                )
    by_name = {f.name: f for f in fields}
    for version, columns in sorted(released.items()):
        for name, kind, nullable in columns:
            f = by_name.get(name)
            if f is None:
                raise SchemaChangeError(
                    name, f"was released in version {version} and is gone; to remove it set removed_in, never delete it"
                )
            if f.kind.name != kind:
                raise SchemaChangeError(
                    name,
                    f"its type changed from {kind} to {f.kind.name}; "
                    "a released field's type never changes (add a new field)",
                )
            if f.nullable != nullable:
                raise SchemaChangeError(
                    name, f"nullable changed from {nullable} to {f.nullable}; a released field keeps it"
                )
            if f.added_in != version:
                raise SchemaChangeError(name, f"was released in version {version} but now says added_in={f.added_in}")
        names = [name for name, _, _ in columns]
        if [f.name for f in fields if f.added_in == version] != names:
            raise SchemaChangeError(names[0], f"the order of the fields released in version {version} changed")


check_history()

FIELD_BY_NAME: dict[str, Field] = {f.name: f for f in FIELDS}
FIELD_NAMES: tuple[str, ...] = tuple(f.name for f in FIELDS)
REQUIRED_FIELDS: tuple[str, ...] = tuple(f.name for f in FIELDS if f.required)
# What a producer may send: everything but pipeline-owned and removed fields.
INPUT_FIELDS: frozenset[str] = frozenset(
    f.name for f in FIELDS if f.origin is not Origin.PIPELINE and f.removed_in is None
)
REMOVED_FIELDS: frozenset[str] = frozenset(f.name for f in FIELDS if f.removed_in is not None)
SCHEMA_VERSION = schema_version()


def arrow_schema(fields: Sequence[Field] = FIELDS) -> pa.Schema:
    """Arrow schema of a normalised event, used for Parquet."""
    import pyarrow as pa

    return pa.schema([pa.field(f.name, f.kind.arrow, nullable=f.nullable) for f in fields])


def glue_columns(fields: Sequence[Field] = FIELDS) -> list[dict[str, str]]:
    """Glue table columns for Firehose's Parquet conversion (CfnTable ColumnProperty shape)."""
    return [{"name": f.name, "type": f.kind.glue, "comment": f.doc} for f in fields]


def clickhouse_type(f: Field) -> str:
    return f"Nullable({f.kind.clickhouse})" if f.nullable else f.kind.clickhouse


def clickhouse_columns(fields: Sequence[Field] = FIELDS) -> list[tuple[str, str]]:
    """(name, type) pairs for ClickHouse tables that hold events."""
    return [(f.name, clickhouse_type(f)) for f in fields]
