import io
import json
from decimal import Decimal

import pyarrow.parquet as pq
import pytest

from bxb_runtime.events.schema import arrow_schema
from bxb_stream.firehose.parquet import ConversionError, ParquetBuffer, convert_record

BASE = {
    "transaction_id": "t1",
    "external_customer_id": "c1",
    "code": "api",
    "timestamp": 1767323045678,
    "properties": "{}",
    "organization_id": "o1",
    "ingested_at": 1767323045679,
    "arrived_at": 1767323045678,
}


def conv(**over: object) -> dict[str, object]:
    body = {k: v for k, v in {**BASE, **over}.items() if v is not ...}
    buffer = ParquetBuffer()
    buffer.append(convert_record(json.dumps(body).encode() + b"\n"))
    table = pq.read_table(io.BytesIO(buffer.to_parquet()))
    assert table.schema.equals(arrow_schema(), check_metadata=False)
    return table.to_pylist()[0]


def test_openx_semantics() -> None:
    row = conv(
        **{"Transaction_ID": "T-UP", "transaction_id": ...},
        value="2.5",
        decimal_value="12.3456789012345678919",
        ingested_at="2026-01-02 03:04:05.5",
        properties={"a": [1, 2]},
    )
    assert row["transaction_id"] == "T-UP"  # keys matched lower-cased
    assert row["timestamp"].timestamp() * 1000 == 1767323045678  # epoch millis integer
    assert row["ingested_at"].isoformat() == "2026-01-02T03:04:05.500000+00:00"
    assert row["value"] == 2.5  # double from a numeric string
    assert row["decimal_value"] == Decimal("12.345678901234567892")  # rounded half-up to scale 18
    assert row["properties"] == '{"a":[1,2]}'  # a JSON value in a string column keeps its JSON text


def test_missing_nullable_is_null_and_numbers_become_decimals() -> None:
    row = conv(decimal_value=3, value=...)
    assert row["value"] is None
    assert row["decimal_value"] == Decimal(3)


@pytest.mark.parametrize(
    "data, reason",
    [
        (b"[1, 2]", "expected a JSON object"),
        (b'"text"', "expected a JSON object"),
        (b"{not json", "not valid JSON"),
        (json.dumps({**BASE, "timestamp": "yesterday"}).encode(), "timestamp"),
        (json.dumps({**BASE, "timestamp": True}).encode(), "timestamp"),
        (json.dumps({**BASE, "decimal_value": "1e30"}).encode(), "decimal"),
        (json.dumps({**BASE, "value": "abc"}).encode(), "double"),
        (json.dumps({k: v for k, v in BASE.items() if k != "code"}).encode(), "'code' is null or missing"),
    ],
)
def test_unconvertible_records_fail_alone(data: bytes, reason: str) -> None:
    with pytest.raises(ConversionError, match=reason) as info:
        convert_record(data)
    assert info.value.code == "DataFormatConversion.MalformedData"


def test_snappy_and_many_rows() -> None:
    buffer = ParquetBuffer()
    for i in range(500):
        buffer.append(convert_record(json.dumps({**BASE, "transaction_id": f"t{i}", "value": i}).encode()))
    parquet = pq.ParquetFile(io.BytesIO(buffer.to_parquet()))
    assert parquet.metadata.num_rows == 500
    assert parquet.metadata.row_group(0).column(0).compression == "SNAPPY"
    assert parquet.read().column("value").to_pylist() == [float(i) for i in range(500)]
