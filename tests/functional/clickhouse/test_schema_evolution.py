"""A field added to the event schema, end to end on the embedded engine: Parquet written before
the change (v1) and after it (v2) sit in one bucket and both ingest through S3Queue; the new
column takes its default (null) for v1 rows; the migration applies without being refused as drift."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta
from typing import Any

from bxb_runtime import layout
from bxb_runtime.clickhouse import tables as t
from bxb_runtime.events.schema import FIELDS, Field, Kind, arrow_schema
from bxb_stream.clickhouse import migrations

V2 = (*FIELDS, Field("region", Kind.STRING, "Where it happened.", nullable=True, max_length=64, added_in=2))
STEPS = ((2, 4),)
BASE = datetime(2026, 3, 1, 10, tzinfo=UTC)


def events(prefix: str, n: int, region: str | None = None) -> list[dict[str, Any]]:
    out = []
    for i in range(n):
        ts = BASE + timedelta(minutes=i)
        event = {
            "transaction_id": f"{prefix}-{i}",
            "external_customer_id": "cust_1",
            "code": "api_calls",
            "timestamp": ts,
            "properties": "{}",
            "value": 1.0,
            "decimal_value": None,
            "organization_id": "acme",
            "ingested_at": ts + timedelta(seconds=5),
            "arrived_at": ts + timedelta(seconds=1),
        }
        if region is not None:
            event["region"] = region
        out.append(event)
    return out


def put(stack: Any, rows: list[dict[str, Any]], fields: Any, name: str) -> str:
    import pyarrow as pa
    import pyarrow.parquet as pq

    buf = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(rows, schema=arrow_schema(fields)), buf)
    key = f"{layout.partition_prefix('acme', '2026-03-01', '10')}bxb-events-1-2026-03-01-10-00-00-{name}.parquet"
    stack.s3.put_object(Bucket=stack.bucket, Key=key, Body=buf.getvalue())
    return key


def ledger_rows(stack: Any) -> dict[str, tuple[str, str | None]]:
    rows = stack.client.query(
        f"SELECT transaction_id, toString(verdict), region FROM {stack.database}.{t.LEDGER}"
    ).result_rows
    return {tid: (verdict, region) for tid, verdict, region in rows}


def test_v1_and_v2_parquet_ingest_side_by_side_after_adding_a_field(clickhouse_stack):
    stack = clickhouse_stack()  # applied with today's schema (version 1)
    before = put(stack, events("old", 5), FIELDS, "v1-before")
    stack.wait_processed([before])
    stack.wait_count(t.EVENTS_RAW, 5)

    result = migrations.apply(stack.client, stack.settings, V2, STEPS)
    assert [m.version for m in result.applied] == [4] and [m.version for m in result.already] == [1, 2, 3]

    # A v1 object that reached the bucket before the change but is read after it, a v2 object,
    # and a resend of an event stored before the change (same payload, no region).
    late_v1 = put(stack, events("late", 4), FIELDS, "v1-after")
    v2 = put(stack, events("new", 3, region="eu-west-1"), V2, "v2")
    resend = put(stack, events("old", 1), FIELDS, "v1-resend")
    stack.wait_processed([late_v1, v2, resend])
    stack.wait_count(t.EVENTS_RAW, 5 + 4 + 3 + 1)
    stack.wait_usage_caught_up()

    rows = stack.client.query(
        f"SELECT transaction_id, toString(verdict), region FROM {stack.database}.{t.LEDGER} ORDER BY landing_mark"
    ).result_rows
    verdicts = [(tid, verdict) for tid, verdict, _ in rows]
    assert sorted(tid for tid, v in verdicts if v == "billed") == sorted(
        [f"old-{i}" for i in range(5)] + [f"late-{i}" for i in range(4)] + [f"new-{i}" for i in range(3)]
    )
    # The resend hashes as before the field existed: a duplicate, not a conflict.
    assert [v for tid, v in verdicts if tid == "old-0"] == ["billed", "duplicate"]
    regions = {tid: region for tid, verdict, region in rows if verdict == "billed"}
    assert {regions[f"new-{i}"] for i in range(3)} == {"eu-west-1"}
    assert all(regions[tid] is None for tid in regions if not tid.startswith("new-"))
    # The views list the new column too.
    assert stack.client.query(
        f"SELECT count() FROM {stack.database}.{t.EVENTS} WHERE region = 'eu-west-1'"
    ).result_rows == [(3,)]

    # A second apply changes nothing and refuses nothing.
    again = migrations.apply(stack.client, stack.settings, V2, STEPS)
    assert again.applied == [] and [m.version for m in again.already] == [1, 2, 3, 4]


def test_removing_a_field_changes_no_column():
    from bxb_stream.clickhouse.ddl import migrations as render
    from bxb_stream.clickhouse.settings import ClickHouseSettings

    removed = (*FIELDS, Field("region", Kind.STRING, "Where it happened.", nullable=True, added_in=2, removed_in=3))
    s = ClickHouseSettings(bucket_url="https://bxb-events.s3.eu-west-1.amazonaws.com", named_collection="nc")
    step = render(s, removed, ((2, 4), (3, 5)))[-1]
    assert (step.version, step.statements) == (5, ("SELECT 'schema version 3: no column changes'",))
