"""``bxb-stream replay archive``: the Parquet the local pipeline wrote (archive/events/ after S3Queue's
move, and events/ not yet moved) re-inserted into ClickHouse: a fresh database is rebuilt exactly, a
second replay bills nothing new, and the embedded engine, the local relay and the CLI all take it."""

from __future__ import annotations

import io
import json
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from bxb_runtime import layout
from bxb_runtime.clickhouse import tables as t
from bxb_stream.cli import main
from bxb_stream.clickhouse import ledger, migrations, status
from bxb_stream.local import settings as local_settings
from bxb_stream.local.pipeline import LocalPipeline
from bxb_stream.local.reconcile import HOUR_MS, compare_usage
from bxb_stream.local.relay import RelayClient, RelayServer
from bxb_stream.producer.synthetic import Expect, Expectation
from bxb_stream.replay.archive import ReplayError, Selection, list_objects, parse_key, replay

ORG = "default"  # the local pipeline's organization


def fresh_database(pipeline: LocalPipeline, name: str) -> str:
    """The project's schema without queues (nothing reads the bucket but the replay)."""
    assert pipeline.targets is not None
    database = f"{pipeline.paths['s3'].database}_{name}"
    migrations.apply(pipeline.client, local_settings.clickhouse_settings(database, pipeline.targets, s3_queues=False))
    return database


def usage_rows(client: Any, database: str) -> list[tuple[Any, ...]]:
    """usage_hourly once it has every billed row, as LocalPipeline.usage_rows reads it."""
    for _ in range(100):
        status.refresh_now(client, database)
        if status.usage_caught_up(client, database):
            break
        time.sleep(0.1)
    return client.query(
        "SELECT organization_id, external_customer_id, code, toUnixTimestamp(hour) * 1000, sum(event_count), "
        f"sum(value_sum), toString(sum(decimal_value_sum)) FROM {database}.{t.USAGE_HOURLY} GROUP BY ALL"
    ).result_rows


def billed(client: Any, database: str) -> set[str]:
    return {tid for (tid,) in client.query(f"SELECT transaction_id FROM {database}.{t.EVENTS}").result_rows}


def unmoved_object(pipeline: LocalPipeline, count: int) -> tuple[str, list[dict[str, Any]]]:
    """A Parquet object under events/ that no queue will read (its queue is detached): a file
    S3Queue gave up on. Its events are new, so they are billed only by a replay."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from bxb_runtime.events.schema import arrow_schema

    assert pipeline.targets is not None
    pipeline.client.command(f"DETACH TABLE {pipeline.paths['s3'].database}.{t.EVENTS_QUEUE_MV}")
    now = datetime.now(UTC).replace(microsecond=0)
    rows = [
        {
            "transaction_id": f"unmoved-{i}",
            "external_customer_id": "cus_unmoved",
            "code": "seats",
            "timestamp": now - timedelta(minutes=5),
            "properties": "{}",
            "value": float(i + 1),
            "decimal_value": None,
            "organization_id": ORG,
            "ingested_at": now,
            "arrived_at": now,
        }
        for i in range(count)
    ]
    buffer = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(rows, schema=arrow_schema()), buffer)
    hour = rows[0]["timestamp"]
    key = layout.partition_prefix(ORG, f"{hour:%Y-%m-%d}", f"{hour:%H}")
    key += f"replay-test-1-{now:%Y-%m-%d-%H-%M-%S}-{uuid.uuid4()}.parquet"
    pipeline.aws.client("s3").put_object(Bucket=pipeline.targets.bucket, Key=key, Body=buffer.getvalue())
    for row in rows:
        expect = Expectation(Expect.STORED, row["transaction_id"], row["external_customer_id"], row["code"],
                             int(row["timestamp"].timestamp() * 1000))  # fmt: skip
        pipeline.expected.add({"value": row["value"]}, expect)
    return key, rows


def test_partition_keys_and_selection() -> None:
    obj = parse_key("archive/events/organization_id=acme/date=2026-05-01/hour=08/s-1-2026-05-01-08-09-10-"
                    "00000000-0000-4000-8000-000000000007.parquet")  # fmt: skip
    assert obj is not None and (obj.organization_id, obj.hour) == ("acme", datetime(2026, 5, 1, 8, tzinfo=UTC))
    assert obj.written == datetime(2026, 5, 1, 8, 9, 10, tzinfo=UTC)
    assert parse_key("errors/processing-failed/2026/05/01/x") is None
    assert parse_key("redriven/events/organization_id=a/date=2026-05-01/hour=08/x") is None
    selection = Selection(datetime(2026, 5, 1, 8, 30, tzinfo=UTC), datetime(2026, 5, 3, 0, 0, tzinfo=UTC), ("acme",))
    assert [d.isoformat() for d in selection.days()] == ["2026-05-01", "2026-05-02"]  # the end is exclusive
    assert selection.holds_hour(datetime(2026, 5, 1, 8, tzinfo=UTC))  # 08:30 is inside the 08 partition
    assert not selection.holds_hour(datetime(2026, 5, 1, 7, tzinfo=UTC))
    with pytest.raises(ReplayError, match="is not before"):
        Selection(selection.end, selection.start)
    with pytest.raises(ReplayError, match="must match"):
        Selection(selection.start, selection.end, ("a/b",))


def test_replay_rebuilds_a_database_and_bills_nothing_twice(make_s3_pipeline: Any) -> None:
    pipeline = make_s3_pipeline(
        events=1_200, duplicate_share=0.04, invalid_share=0.02, late_share=0.03, backdated_share=0.05
    )
    pipeline.produce()
    assert pipeline.wait_settled()
    assert pipeline.targets is not None
    client, s3, bucket, own = pipeline.client, pipeline.aws.client("s3"), pipeline.targets.bucket, None
    own = pipeline.paths["s3"].database
    landed_once = int(client.command(f"SELECT count() FROM {own}.{t.EVENTS_RAW}"))
    unmoved_key, unmoved = unmoved_object(pipeline, 5)
    expected = pipeline.expected
    now = datetime.now(UTC)
    everything = Selection(now - timedelta(days=60), now + timedelta(hours=1), (ORG,))

    # A fresh database, rebuilt from the archive and the object never moved.
    fresh = fresh_database(pipeline, "rebuilt")
    report = replay(client, fresh, s3, bucket, everything)
    assert report.objects_by_root[layout.EVENTS_PREFIX] == 1 and report.objects_by_root["archive/events/"] > 10
    assert report.rows_read == report.rows_selected == report.landed == landed_once + len(unmoved)
    stored = expected.kinds[Expect.STORED.value]
    assert report.newly_billed == stored and report.outcome[t.Verdict.LATE] == expected.kinds[Expect.LATE.value]
    assert report.outcome[t.Verdict.DUPLICATE] == report.landed - stored - expected.kinds[Expect.LATE.value]
    assert not report.before and report.after[t.Verdict.BILLED] == stored
    assert billed(client, fresh) == billed(client, own) | {r["transaction_id"] for r in unmoved}
    assert not compare_usage(expected.usage, usage_rows(client, fresh))

    # Again: nothing new (the same batch is even dropped at insert).
    again = replay(client, fresh, s3, bucket, everything)
    assert again.rows_selected == report.rows_selected and again.newly_billed == 0
    assert sum(again.outcome.values()) == again.landed and set(again.outcome) <= {t.Verdict.DUPLICATE}
    assert again.after == report.after
    assert not compare_usage(expected.usage, usage_rows(client, fresh))

    # Into the pipeline's own database: only the file S3Queue never read is new.
    before = ledger.verdict_counts(client, own)
    into_own = replay(client, own, s3, bucket, everything)
    assert into_own.newly_billed == len(unmoved) and into_own.landed == into_own.rows_selected
    assert into_own.outcome[t.Verdict.DUPLICATE] == into_own.landed - len(unmoved)
    assert into_own.after[t.Verdict.BILLED] - before[t.Verdict.BILLED] == len(unmoved)
    assert not compare_usage(expected.usage, usage_rows(client, own))
    assert unmoved_key in {o.key for o in list_objects(s3, bucket, everything)}


def test_replay_through_the_relay_one_hour_and_a_dry_run(make_s3_pipeline: Any) -> None:
    pipeline = make_s3_pipeline(events=600, duplicate_share=0.02, backdated_share=0.2)
    pipeline.produce()
    assert pipeline.wait_settled()
    assert pipeline.targets is not None
    s3, bucket = pipeline.aws.client("s3"), pipeline.targets.bucket
    # The busiest hour alone.
    hour_ms, _ = max(
        ((key[3], row[0]) for key, row in pipeline.expected.usage.items()), key=lambda pair: pair[1]
    )  # fmt: skip
    in_hour = sum(row[0] for key, row in pipeline.expected.usage.items() if key[3] == hour_ms)
    start = datetime.fromtimestamp(hour_ms / 1000, tz=UTC)
    one_hour = Selection(start, start + timedelta(milliseconds=HOUR_MS), (ORG,))
    fresh = fresh_database(pipeline, "hour")
    dry = replay(pipeline.client, fresh, s3, bucket, one_hour, dry_run=True)
    assert dry.rows_selected >= in_hour and dry.landed == 0
    assert int(pipeline.client.command(f"SELECT count() FROM {fresh}.{t.EVENTS_RAW}")) == 0
    with RelayServer(pipeline.client) as relay:
        report = replay(RelayClient(relay.url), fresh, s3, bucket, one_hour)
    assert report.newly_billed == in_hour and report.rows_selected == dry.rows_selected
    ((low, high),) = pipeline.client.query(
        f"SELECT toUnixTimestamp64Milli(min(timestamp)), toUnixTimestamp64Milli(max(timestamp)) FROM {fresh}.{t.EVENTS}"
    ).result_rows
    assert hour_ms <= low <= high < hour_ms + HOUR_MS  # nothing outside the hour


def test_replay_archive_command(make_s3_pipeline: Any, clickhouse_engine: Any, capsys: Any) -> None:
    pipeline = make_s3_pipeline(events=300)
    pipeline.produce()
    assert pipeline.wait_settled()
    assert pipeline.targets is not None
    fresh = fresh_database(pipeline, "cli")
    now = datetime.now(UTC)
    start, end = (now - timedelta(days=60)).isoformat(), (now + timedelta(hours=1)).isoformat()
    base = [
        "replay",
        "archive",
        "--bucket",
        pipeline.targets.bucket,
        "--endpoint-url",
        str(pipeline.aws.endpoint_url),
        "--url",
        clickhouse_engine.url,
        "--database",
        fresh,
        "--organization-id",
        ORG,
        "--from",
        start,
        "--to",
        end,
    ]
    assert main([*base, "--format", "json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["newly_billed"] == pipeline.expected.kinds[Expect.STORED.value] == doc["ledger_after"]["billed"]
    assert main(base) == 0
    out = capsys.readouterr().out
    assert "newly billed: 0" in out and "ledger verdicts" in out
    assert main([*base[:-4], "--from", now.isoformat(), "--to", (now - timedelta(hours=1)).isoformat()]) == 2
    assert "is not before" in capsys.readouterr().err
    assert main([*base[:2], "--bucket", "b", "--url", "nope://x", "--all-organizations", "--from", "2026-01-01",
                 "--to", "2026-01-02"]) == 2  # fmt: skip
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--url must be" in err
