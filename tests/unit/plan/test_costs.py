"""Firehose, Lambda, S3 and latency: each charge follows its driver."""

from __future__ import annotations

from dataclasses import replace

import pytest

from bxb_stream.plan.compute import _poll_schedule, plan
from bxb_stream.plan.errors import PlanError
from bxb_stream.plan.model import Pipeline, Workload
from bxb_stream.plan.prices import PriceSheet

SEED = Workload(events_per_sec=10_000, avg_bytes=1024, paths=("s3", "http"))  # the seed design: both paths


def items(section: object) -> dict[str, float]:
    return {line.item: line.usd for line in section.lines}  # type: ignore[attr-defined]


def test_firehose_rounds_each_record_to_5_kb(prices: PriceSheet) -> None:
    one_kb = plan(SEED, Pipeline(), prices).firehose.lines[0]
    five_kb = plan(replace(SEED, avg_bytes=5 * 1024), Pipeline(), prices).firehose.lines[0]
    assert one_kb.quantity == pytest.approx(five_kb.quantity)
    # 2 streams x 10k records/s x 5 KiB x 2,628,000 s.
    assert one_kb.quantity == pytest.approx(2 * 10_000 * 5 * 1024 * 2_628_000 / 2**30)


def test_firehose_charges_per_path(prices: PriceSheet) -> None:
    both = items(plan(SEED, Pipeline(), prices).firehose)
    http = plan(replace(SEED, paths=("http",)), Pipeline(), prices).firehose
    assert len(http.lines) == 1  # ingestion only: no conversion, no dynamic partitioning
    assert http.total == pytest.approx(next(iter(both.values())) / 2)
    assert {"format conversion to Parquet", "dynamic partitioning, data", "dynamic partitioning, objects"} <= set(both)


def test_firehose_tiers_price_the_account_total(prices: PriceSheet) -> None:
    assert prices.tiered_cost("firehose.ingest_gb", 1000) == pytest.approx(29.0)
    assert prices.tiered_cost("firehose.ingest_gb", 512_000 + 1000) == pytest.approx(512_000 * 0.029 + 25.0)


def test_aggregation_cuts_firehose_ingestion(prices: PriceSheet) -> None:
    plain = plan(SEED, Pipeline(), prices)
    packed = plan(replace(SEED, aggregate=True), Pipeline(), prices)
    assert packed.firehose.total < plain.firehose.total / 3
    assert packed.total() < plain.total()


def test_lambda_duration_follows_the_benchmark_figure(prices: PriceSheet) -> None:
    fast = plan(SEED, Pipeline(), prices)
    slow = plan(SEED, Pipeline(transform_rps=75_000), prices)
    t_fast = next(u for u in fast.lambda_use if u.function == "transform (s3)")
    t_slow = next(u for u in slow.lambda_use if u.function == "transform (s3)")
    assert t_fast.invocations_per_month == t_slow.invocations_per_month
    per_call_work = t_fast.events_per_invocation / 150_000
    assert t_slow.gb_seconds_per_month - t_fast.gb_seconds_per_month == pytest.approx(
        t_fast.invocations_per_month * per_call_work
    )
    assert {u.function for u in fast.lambda_use} == {"transform (s3)", "transform (http)", "ingest (http)"}
    s3_only = plan(replace(SEED, paths=("s3",)), Pipeline(), prices)
    assert [u.function for u in s3_only.lambda_use] == ["transform (s3)"]


def test_s3_storage_follows_lifecycle_and_ratio(prices: PriceSheet) -> None:
    short = items(plan(SEED, Pipeline(archive_days=30), prices).s3)
    year = plan(SEED, Pipeline(), prices).s3
    assert not any("IA" in k or "Glacier" in k for k in short)
    kinds = [line.item for line in year.lines]
    assert any("Standard-IA" in k for k in kinds) and any("Glacier instant" in k for k in kinds)
    daily_gb = 10_000 * 1024 * 0.15 * 86_400 / 2**30
    assert year.lines[0].quantity == pytest.approx(30 * daily_gb)
    double = plan(SEED, Pipeline(parquet_ratio=0.3), prices).s3
    assert double.lines[0].usd == pytest.approx(2 * year.lines[0].usd)
    assert plan(replace(SEED, paths=("http",)), Pipeline(), prices).s3.total == 0


def test_s3_objects_by_size_or_interval(prices: PriceSheet) -> None:
    busy = items(plan(SEED, Pipeline(), prices).s3)["PUT requests (Parquet objects)"]
    quiet = plan(Workload(events_per_sec=10, avg_bytes=1024), Pipeline(), prices).s3
    quiet_puts = next(line for line in quiet.lines if line.item.startswith("PUT"))
    # Quiet: 2 partitions flush every 300 s -> 2 x 730 h x 12 objects.
    assert quiet_puts.quantity == pytest.approx(2 * 730 * 12)
    assert busy > quiet_puts.usd


def test_s3queue_poll_backoff() -> None:
    p = Pipeline()
    assert _poll_schedule(0.5, p) == (1, 1.0)
    assert _poll_schedule(6.5, p) == (4, 4.0)  # polls at 1, 3, 6, 10 s
    assert _poll_schedule(300, p)[1] == 10.0  # backed off to the maximum
    assert _poll_schedule(300, Pipeline(s3queue_poll_backoff_ms=0)) == (300, 1.0)


def test_latency_paths(prices: PriceSheet) -> None:
    lat = {p.path: p for p in plan(SEED, Pipeline(), prices).latency}
    assert set(lat) == {"s3", "http"}
    assert lat["http"].worst_s < lat["s3"].p50_s  # the HTTP path is the fast one
    for path in lat.values():
        assert 0 < path.p50_s <= path.worst_s
    quiet = {p.path: p for p in plan(Workload(events_per_sec=1, avg_bytes=200), Pipeline(), prices).latency}
    s3_buffer = next(s for s in quiet["s3"].stages if s.name.startswith("Firehose S3 buffer"))
    assert s3_buffer.worst_s == 300  # a trickle waits for the interval, not the size
    assert quiet["s3"].worst_s > 300 + 60  # plus the processor's 60 s interval


def test_headroom_note(prices: PriceSheet) -> None:
    def headroom_notes(workload: Workload) -> list[str]:
        return [n for n in plan(workload, Pipeline(), prices).notes if "--headroom" in n]

    assert headroom_notes(SEED)
    assert not headroom_notes(replace(SEED, headroom=0.3))


def test_usage_follows_the_resolver_and_the_usage_refresh(prices: PriceSheet) -> None:
    for every in (10, 60):
        for path in plan(SEED, Pipeline(refresh_seconds=every), prices).latency:
            billing = path.stages[-1]  # the last stage on both paths
            assert billing.name == "resolver, then usage refresh"
            assert (billing.p50_s, billing.worst_s) == (every, 2 * every)


def test_billing_capacity_notes(prices: PriceSheet) -> None:
    def capacity_notes(workload: Workload, **pipeline: int) -> list[str]:
        return [n for n in plan(workload, Pipeline(**pipeline), prices).notes if "falls further behind" in n]

    # 500,000 rows per 10 s run: 50,000 landed rows/s. Both paths land a copy each.
    assert not capacity_notes(replace(SEED, events_per_sec=25_000))
    (resolver,) = capacity_notes(replace(SEED, events_per_sec=30_000))
    assert "resolver" in resolver and "60,000 rows/s" in resolver and "BXB_CLICKHOUSE_RESOLVE_BATCH_ROWS" in resolver
    assert not capacity_notes(replace(SEED, events_per_sec=30_000, paths=("s3",)))
    assert not capacity_notes(replace(SEED, events_per_sec=30_000), resolve_batch_rows=600_000)
    assert capacity_notes(replace(SEED, events_per_sec=30_000, paths=("s3",), peak_factor=2.0))  # the peak counts
    both = capacity_notes(replace(SEED, events_per_sec=30_000), refresh_seconds=40)  # 12,500 and 25,000 rows/s
    assert [n.split(" takes")[0] for n in both] == ["The resolver", "The usage refresh"]


def test_resolver_settings_are_checked_as_clickhouse_checks_them() -> None:
    with pytest.raises(PlanError, match=r"--refresh-seconds must be an integer in \[1, 3600\], got 0"):
        Pipeline(refresh_seconds=0)
    with pytest.raises(PlanError, match="--resolve-batch-rows"):
        Pipeline(resolve_batch_rows=10)


def test_lambda_throughput_follows_memory(prices: PriceSheet) -> None:
    # Lambda's CPU share grows with memory up to one vCPU at 1,769 MB; the rps figures stand for 1024 MB.
    def transform(memory: int) -> tuple[float, float]:
        p = plan(SEED, Pipeline(transform_memory_mb=memory), prices)
        use = next(u for u in p.lambda_use if u.function == "transform (s3)")
        stage = next(s for lat in p.latency if lat.path == "s3" for s in lat.stages if s.name == "transform Lambda")
        return use.gb_seconds_per_month, stage.p50_s

    gbs_512, lat_512 = transform(512)
    gbs_1024, lat_1024 = transform(1024)
    gbs_3538, lat_3538 = transform(3538)
    overhead_s = Pipeline().lambda_overhead_ms / 1000
    assert lat_512 - overhead_s == pytest.approx(2 * (lat_1024 - overhead_s))  # half the CPU: twice as long
    assert lat_3538 - overhead_s == pytest.approx((lat_1024 - overhead_s) * 1024 / 1769)  # capped at one vCPU
    assert gbs_512 < gbs_1024 < gbs_3538  # only the fixed per-invocation overhead scales with memory below 1769


def test_a_dynamodb_idempotency_table_would_cost_more_than_the_whole_pipeline(prices: PriceSheet) -> None:
    """The design not built, priced from the sheet: one conditional write per event, keys kept for
    the dedup window. At the seed's 10k events/s it costs more than everything the pipeline runs."""
    p = plan(SEED, Pipeline(), prices)
    writes, storage = p.idempotency_table.lines
    assert writes.quantity == pytest.approx(10_000 * 2_628_000)  # every event, every second of a month
    assert writes.usd == pytest.approx(10_000 * 2_628_000 / 1e6 * 0.625)
    assert storage.quantity == pytest.approx(10_000 * 35 * 86_400 * 200 / 2**30)  # 35 days of 200 B items
    assert p.idempotency_table.total > p.total()
    shorter = plan(SEED, Pipeline(dedup_window_days=7), prices).idempotency_table
    assert shorter.lines[1].quantity == pytest.approx(storage.quantity / 5)
