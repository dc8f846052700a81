"""Parquet on (moto) S3 -> S3Queue -> MV -> events_raw -> resolver -> ledger -> usage_hourly, on the real engine."""

from __future__ import annotations

import random
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from bxb_runtime import layout
from bxb_stream.clickhouse import ledger
from bxb_stream.clickhouse.usage import query_usage, query_usage_raw

BASE = datetime(2026, 3, 1, 10, tzinfo=UTC)


def make_events(rng: random.Random, n: int, org: str, prefix: str = "tx") -> list[dict[str, Any]]:
    events = []
    for i in range(n):
        ts = BASE + timedelta(minutes=rng.randrange(0, 4 * 60), milliseconds=rng.randrange(1000))
        events.append(
            {
                "transaction_id": f"{prefix}-{org}-{i}",
                "external_customer_id": f"cust_{rng.randrange(3)}",
                "code": rng.choice(["api_calls", "storage_gb"]),
                "timestamp": ts,
                "properties": '{"region":"eu"}',
                # Quarters add exactly in any order, so float sums compare equal.
                "value": None if rng.random() < 0.2 else rng.randrange(0, 400) / 4,
                "decimal_value": None if rng.random() < 0.2 else Decimal(rng.randrange(10**12)) / Decimal(10**9),
                "organization_id": org,
                "ingested_at": ts + timedelta(seconds=5),
                "arrived_at": ts + timedelta(seconds=1),
            }
        )
    return events


def truth(events: list[dict[str, Any]]) -> dict[tuple[str, str, str], tuple[int, float, Decimal]]:
    out: dict[tuple[str, str, str], list[Any]] = defaultdict(lambda: [0, 0.0, Decimal(0)])
    for e in events:
        acc = out[(e["organization_id"], e["external_customer_id"], e["code"])]
        acc[0] += 1
        acc[1] += e["value"] or 0.0
        acc[2] += e["decimal_value"] or Decimal(0)
    return {k: (v[0], v[1], v[2]) for k, v in out.items()}


def partition(org: str) -> str:
    return layout.partition_prefix(org, "2026-03-01", "10")


def test_s3_files_flow_to_the_ledger_and_usage_with_duplicates_and_late_events_apart(clickhouse_stack, ch_wait):
    stack = clickhouse_stack()
    rng = random.Random(7)
    acme, globex = make_events(rng, 300, "acme"), make_events(rng, 200, "globex")
    late = make_events(rng, 40, "acme", prefix="late")
    for e in late:  # they arrived 40 days after their time: past the 35-day grace
        e["arrived_at"] = e["ingested_at"] = e["timestamp"] + timedelta(days=40)

    for i in range(0, 300, 100):
        stack.put_events(partition("acme"), acme[i : i + 100])
    stack.put_events(partition("globex"), globex)
    stack.put_events(partition("acme"), late)
    # Firehose's error output and the HTTP backup hold valid-looking Parquet; they must be ignored.
    stack.put_events(f"{layout.ERRORS_PREFIX}processing-failed/2026/03/01/", make_events(rng, 25, "acme", "err"))
    stack.put_events(f"{layout.HTTP_BACKUP_PREFIX}2026/03/01/", make_events(rng, 25, "acme", "bak"))

    stack.wait_count("events_raw", 540)
    stack.wait_usage_caught_up()

    # Redeliveries: Firehose retries part of a batch into a new object, and a whole file is
    # read a second time (as S3Queue does after a lost Keeper entry).
    again = [stack.put_events(partition("acme"), acme[:150])]
    again.append(stack.put_events(partition("globex"), globex))
    stack.wait_processed(again)
    stack.wait_usage_caught_up()
    landed = stack.count("events_raw")
    assert landed >= 540  # identical blocks may be dropped at insert; whatever landed is judged
    counts = ledger.verdict_counts(stack.client, stack.database)
    assert (counts["billed"], counts["late"], counts["duplicate"], counts["conflict"]) == (500, 40, landed - 540, 0)

    db = stack.database
    sources = stack.client.query(f"SELECT DISTINCT source FROM {db}.events_raw").result_rows
    assert all(s.startswith(layout.EVENTS_PREFIX) for (s,) in sources), sources

    # Every ingested object now lives under archive/, the same key below it; errors and backups stay.
    def bucket_keys() -> set[str]:
        pages = stack.s3.get_paginator("list_objects_v2").paginate(Bucket=stack.bucket)
        return {o["Key"] for page in pages for o in page.get("Contents", [])}

    def data_left() -> set[str]:
        return {k for k in bucket_keys() if k.startswith(layout.EVENTS_PREFIX)}

    ch_wait(lambda: not data_left(), what="ingested objects moved to archive/")  # the move follows the commit
    keys = bucket_keys()
    archived = {k.removeprefix(layout.ARCHIVE_PREFIX) for k in keys if k.startswith(layout.ARCHIVE_PREFIX)}
    assert {s for (s,) in sources} <= archived
    assert any(k.startswith(layout.ERRORS_PREFIX) for k in keys) and any(
        k.startswith(layout.HTTP_BACKUP_PREFIX) for k in keys
    )
    stray = f"SELECT count() FROM {db}.events_raw WHERE transaction_id LIKE 'err-%' OR transaction_id LIKE 'bak-%'"
    assert int(stack.client.command(stray)) == 0
    late_ids = stack.client.query(f"SELECT DISTINCT substring(transaction_id, 1, 5) FROM {db}.events_late").result_rows
    assert late_ids == [("late-",)]

    expected = truth(acme + globex)
    start, end = BASE, BASE + timedelta(hours=4)
    for (org, customer, code), (count, value_sum, decimal_sum) in expected.items():
        got = query_usage(stack.client, db, org, customer, code, start, end)
        assert (got.event_count, got.value_sum, got.decimal_value_sum) == (count, value_sum, decimal_sum)
        assert query_usage_raw(stack.client, db, org, customer, code, start, end) == got
    hourly_total = int(stack.client.command(f"SELECT sum(event_count) FROM {db}.usage_hourly"))
    assert hourly_total == 500  # late events are not billed until accepted

    # One hour on its own equals the ground truth of that hour.
    hour = BASE + timedelta(hours=2)
    in_hour = [e for e in acme if hour <= e["timestamp"] < hour + timedelta(hours=1)]
    key = ("acme", in_hour[0]["external_customer_id"], in_hour[0]["code"])
    want = truth([e for e in in_hour if (e["organization_id"], e["external_customer_id"], e["code"]) == key])[key]
    got = query_usage(stack.client, db, *key, hour, hour + timedelta(hours=1))
    assert (got.event_count, got.value_sum, got.decimal_value_sum) == want


def test_a_redelivery_after_usage_was_computed_changes_nothing(clickhouse_stack):
    stack = clickhouse_stack()
    events = make_events(random.Random(11), 120, "initech")
    stack.put_events(partition("initech"), events)
    stack.wait_count("events_raw", 120)
    stack.wait_usage_caught_up()
    db = stack.database
    hourly = (
        "SELECT external_customer_id, code, hour, sum(event_count), sum(value_sum), sum(decimal_value_sum) "
        f"FROM {db}.usage_hourly GROUP BY ALL ORDER BY ALL"
    )
    before = stack.client.query(hourly).result_rows

    # The same Parquet file read twice more: as a copy of the file and split differently.
    again = [stack.put_events(partition("initech"), events)]
    again.append(stack.put_events(partition("initech"), events[::-1]))
    stack.wait_processed(again)
    stack.wait_usage_caught_up()
    landed = stack.count("events_raw")
    assert landed >= 240
    assert ledger.verdict_counts(stack.client, db)["duplicate"] == landed - 120
    after = stack.client.query(hourly).result_rows
    assert after == before
    assert sum(r[3] for r in after) == 120
