"""The four things derived from the one schema agree with each other and with the validator."""

from __future__ import annotations

import msgspec
import pyarrow as pa

from bxb_runtime.events import schema
from bxb_runtime.events.lines import OutputEvent, to_line
from bxb_runtime.events.validate import InputEvent, normalize

ARROW_TO_GLUE = {
    pa.string(): "string",
    pa.timestamp("ms", tz="UTC"): "timestamp",
    pa.float64(): "double",
    pa.decimal128(38, 18): "decimal(38,18)",
}
ARROW_TO_CLICKHOUSE = {
    pa.string(): "String",
    pa.timestamp("ms", tz="UTC"): "DateTime64(3, 'UTC')",
    pa.float64(): "Float64",
    pa.decimal128(38, 18): "Decimal(38, 18)",
}


def test_every_derivation_names_the_same_columns_in_the_same_order():
    names = list(schema.FIELD_NAMES)
    assert schema.arrow_schema().names == names
    assert [c["name"] for c in schema.glue_columns()] == names
    assert [name for name, _ in schema.clickhouse_columns()] == names
    assert sorted(f.name for f in msgspec.structs.fields(OutputEvent)) == sorted(names)


def test_types_agree_across_arrow_glue_and_clickhouse():
    glue = {c["name"]: c["type"] for c in schema.glue_columns()}
    clickhouse = dict(schema.clickhouse_columns())
    for field in schema.arrow_schema():
        assert glue[field.name] == ARROW_TO_GLUE[field.type], field.name
        expected = ARROW_TO_CLICKHOUSE[field.type]
        assert clickhouse[field.name] == (f"Nullable({expected})" if field.nullable else expected), field.name


def test_validator_accepts_exactly_the_producer_fields():
    producer_fields = {f.name for f in msgspec.structs.fields(InputEvent)}
    assert producer_fields == set(schema.INPUT_FIELDS)
    assert "ingested_at" not in producer_fields
    required = {f.name for f in msgspec.structs.fields(InputEvent) if f.required}
    assert required == set(schema.REQUIRED_FIELDS) == {"transaction_id", "external_customer_id", "code"}


def test_validator_output_fits_the_arrow_schema(rules, valid_event, now_ms):
    full = {**valid_event, "decimal_value": "12345678901234567890.123456789012345678"}
    for raw in (valid_event, full, {k: valid_event[k] for k in schema.REQUIRED_FIELDS}):
        line = to_line(normalize(raw, rules, arrival_ms=now_ms, ingested_ms=now_ms))
        row = msgspec.json.decode(line)
        row.setdefault("value", None)
        row.setdefault("decimal_value", None)
        table = pa.Table.from_pylist([_to_arrow_values(row)], schema=schema.arrow_schema())
        assert table.num_rows == 1
        assert table.column("organization_id")[0].as_py() == "org_1"


def _to_arrow_values(row: dict) -> dict:
    from datetime import UTC, datetime
    from decimal import Decimal

    out = dict(row)
    for name in ("timestamp", "ingested_at"):
        out[name] = datetime.fromtimestamp(row[name] / 1000, tz=UTC)
    if row["decimal_value"] is not None:
        out["decimal_value"] = Decimal(row["decimal_value"])
    return out


def test_required_fields_are_non_nullable_everywhere():
    arrow = schema.arrow_schema()
    for name in schema.REQUIRED_FIELDS:
        assert not arrow.field(name).nullable
        assert not dict(schema.clickhouse_columns())[name].startswith("Nullable")
