"""ClickHouse stage: billing-grade ingest, the cost of keeping usage current, and usage queries.

Side by side in one run, on one embedded engine, with one set of Parquet files:

- baseline: the schema before transaction-level billing (S3Queue -> MV -> a ReplacingMergeTree
  events_raw keyed by customer, code, timestamp and transaction_id; usage_hourly recomputed from
  ``events_raw FINAL`` by a refreshable view). Rendered here, as it was.
- ours: the project's schema (``bxb_stream.clickhouse.ddl``): S3Queue -> events_raw (landing) ->
  the resolver (one verdict per copy) -> events_ledger -> usage_hourly.

1. Generate N events (default 10,000,000) as Parquet files under Firehose's layout, with 2%
   duplicates (half exact resends arriving later, half resends with another timestamp) and 1%
   events past the grace. Start moto's S3 in a child process.
2. Ingest rate: upload the files to each schema's bucket; time upload start -> every row
   landed (baseline) / every copy given its verdict (ours). Target: ours >= 50% of baseline.
   Ours must bill exactly the first copies: verdict counts are checked against the generator.
3. Keeping usage current at 10,000 events/s: land one minute (600,000 events, the same shares,
   timestamps in the last minute), then run the refreshes until usage_hourly has every billed
   row; CPU-seconds of this process spent, minus its idle rate. Target: <= 6 CPU-s per minute
   (10% of one core). The baseline's refresh over the same minute is reported beside it.
4. Usage query p50 for a customer x metric x 30 days: usage_hourly against the exact query over
   the billed events, identical results required. Target: >= 10x.

The last line is one JSON object with every figure and ``targets_met``.

Run: python bench/clickhouse.py [--events N] [--files F] [--queries Q] [--customers C] [--codes K]
     [--refresh-seconds S] [--resolve-batch-rows R]
The query speedup grows with events per hourly row (printed): usage_hourly reads ~720 rows per
customer x metric x month whatever the volume, the exact query reads every billed event.
"""

from __future__ import annotations

import argparse
import atexit
import io
import json
import os
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bxb_stream.clickhouse import engine

SPEEDUP_TARGET = 10.0
INGEST_RATIO_TARGET = 0.5
CPU_PER_MINUTE_TARGET = 6.0  # CPU-seconds per minute of events at 10,000/s: 10% of one core
MINUTE_EVENTS = 600_000
DAYS = 30
START = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(days=DAYS + 1)
# One busy customer with two metrics by default: the speedup grows with events per hourly row.
ORGS, CUSTOMERS, CODES = 1, 1, 2


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_moto() -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return proc, f"http://127.0.0.1:{port}"
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise SystemExit("moto server did not start within 30 s")


def make_files(n: int, files: int, start_ms: int, span_ms: int, arrival_ms: int | None, seed: int) -> tuple:
    """``n`` events over ``files`` Parquet objects: 97% first copies, 1% exact resends arriving
    later, 1% resends with another timestamp, 1% past the grace. Returns (files, expected verdicts)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from bxb_runtime import layout
    from bxb_runtime.events.schema import arrow_schema

    rng = np.random.default_rng(seed)
    schema = arrow_schema()
    per_file = -(-n // files)
    index = np.arange(n)
    kind = rng.random(n)  # < .01 exact resend, < .02 resend with another timestamp, < .03 late, else first
    resend = kind < 0.02
    # A resend repeats the nearest earlier first copy of its own file (stored before it).
    nearest = np.maximum.accumulate(np.where(~resend, index, -1))
    source = np.where(index > 0, nearest[np.maximum(index - 1, 0)], -1)
    orphan = resend & (source < (index // per_file) * per_file)  # nothing earlier in its file
    resend &= ~orphan
    kind[orphan] = 1.0
    ids = np.char.add(f"tx-{seed}-", index.astype(str))
    ts = start_ms + rng.integers(0, span_ms, n)
    arrived = np.full(n, arrival_ms) if arrival_ms is not None else ts + 1000
    late = (kind >= 0.02) & (kind < 0.03)
    ts[late] = arrived[late] - 40 * 86_400_000  # past the 35-day grace
    customer = rng.integers(0, CUSTOMERS, n)
    code = rng.integers(0, CODES, n)
    value = rng.integers(0, 400, n) / 4  # quarters: float sums are exact in any order
    dec = rng.integers(0, 10**9, n)
    j = source[resend]
    for column in (ids, customer, code, value, dec):
        column[resend] = column[j]
    ts[resend] = ts[j] + np.where(kind[resend] < 0.01, 0, 1000)  # an exact resend, or another timestamp
    arrived[resend] = arrived[j] + 5000  # later, in another Kinesis record
    # Every resend with another timestamp of one first copy carries the same payload: the first of
    # them is a conflict, the others duplicates of it.
    conflicts = len(np.unique(source[resend & (kind >= 0.01)]))
    expected = {
        "billed": int(np.sum(~resend & ~late)),
        "late": int(np.sum(late)),
        "duplicate": int(np.sum(resend)) - conflicts,
        "conflict": conflicts,
    }
    out = []
    for f in range(files):
        lo, hi = f * per_file, min((f + 1) * per_file, n)
        if lo >= hi:
            break
        org = f"org_{f % ORGS}"
        sl = slice(lo, hi)
        table = pa.table(
            [
                pa.array(ids[sl]),
                pa.array(np.char.add("cust_", customer[sl].astype(str))),
                pa.array(np.char.add("metric_", code[sl].astype(str))),
                pa.array(ts[sl], pa.timestamp("ms", tz="UTC")),
                pa.array(["{}"] * (hi - lo)),
                pa.array(value[sl]),
                pa.array(dec[sl], pa.int64()).cast(pa.decimal128(38, 18)),
                pa.array([org] * (hi - lo)),
                pa.array(arrived[sl] + 1000, pa.timestamp("ms", tz="UTC")),
                pa.array(arrived[sl], pa.timestamp("ms", tz="UTC")),
            ],
            schema=schema,
        )
        buf = io.BytesIO()
        pq.write_table(table, buf, compression="snappy")
        key = layout.partition_prefix(org, "2026-01-01", "00") + f"bxb-1-{seed}-{f:05d}.parquet"
        out.append((key, buf.getvalue()))
    return out, expected


def baseline_ddl(db: str, bucket_url: str, collection: str) -> list[str]:
    """The schema before transaction-level billing, as it was rendered (queue settings as ours)."""
    from bxb_runtime.clickhouse import tables as t

    cols = ",\n".join(f"`{n}` {k}" for n, k in t.EVENT_COLUMN_TYPES)
    names = ", ".join(f"`{n}`" for n in t.EVENT_COLUMNS)
    key = "organization_id, external_customer_id, code"
    hour = "toDateTime(toStartOfHour(timestamp), 'UTC')"
    return [
        f"CREATE DATABASE {db}",
        f"CREATE TABLE {db}.events_raw ({cols}, version UInt64 DEFAULT toUnixTimestamp64Milli(ingested_at), "
        "inserted_at DateTime64(3, 'UTC') DEFAULT now64(3), source String DEFAULT '') "
        "ENGINE = ReplacingMergeTree(version) PARTITION BY toYYYYMM(timestamp) "
        "ORDER BY (organization_id, external_customer_id, code, timestamp, transaction_id) "
        "SETTINGS non_replicated_deduplication_window = 10000",
        f"CREATE TABLE {db}.usage_hourly (organization_id String, external_customer_id String, code String, "
        "hour DateTime('UTC'), event_count UInt64, value_sum Float64, decimal_value_sum Decimal(38, 18), "
        "computed_at DateTime64(3, 'UTC')) ENGINE = ReplacingMergeTree(computed_at) PARTITION BY toYYYYMM(hour) "
        "ORDER BY (organization_id, external_customer_id, code, hour) SETTINGS index_granularity = 256",
        f"CREATE MATERIALIZED VIEW {db}.usage_hourly_refresh REFRESH EVERY 3600 SECOND APPEND TO {db}.usage_hourly "
        f"AS SELECT {key}, {hour} AS hour, count() AS event_count, sum(ifNull(value, 0)) AS value_sum, "
        "sum(ifNull(decimal_value, toDecimal128(0, 18))) AS decimal_value_sum, now64(3, 'UTC') AS computed_at "
        f"FROM {db}.events_raw FINAL WHERE ({key}, {hour}) IN (SELECT {key}, {hour} FROM {db}.events_raw "
        f"WHERE inserted_at >= (SELECT max(computed_at) FROM {db}.usage_hourly) - INTERVAL 600 SECOND) "
        f"GROUP BY {key}, hour",
        f"CREATE TABLE {db}.events_queue ({cols}) ENGINE = S3Queue({collection}, url = '{bucket_url}/events/**', "
        f"format = 'Parquet') SETTINGS mode = 'unordered', after_processing = 'move', "
        "after_processing_move_prefix = 'archive/', after_processing_move_preserve_path = 1, "
        f"keeper_path = '/clickhouse/bxb/s3queue/{db}/events_queue', loading_retries = 10, "
        "polling_min_timeout_ms = 100, polling_max_timeout_ms = 500, polling_backoff_ms = 100, s3_retry_attempts = 3",
        f"CREATE MATERIALIZED VIEW {db}.events_queue_mv TO {db}.events_raw AS SELECT {names}, _path AS source "
        f"FROM {db}.events_queue",
    ]


def wait(predicate: Any, timeout: float, what: str, interval: float = 0.1) -> float:
    t0 = time.monotonic()
    for _ in range(int(timeout / interval) + 1):
        if predicate():
            return time.monotonic() - t0
        if time.monotonic() - t0 > timeout:
            break
        time.sleep(interval)
    raise SystemExit(f"timed out after {timeout}s waiting for {what}")


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def idle_rate(seconds: float = 3.0) -> float:
    """CPU-seconds per second this process spends doing nothing of ours (engine threads, polling)."""
    c0, t0 = cpu_seconds(), time.monotonic()
    time.sleep(seconds)
    return (cpu_seconds() - c0) / (time.monotonic() - t0)


def timed(fn: Any) -> tuple[float, Any]:
    t0 = time.perf_counter()
    result = fn()
    return (time.perf_counter() - t0) * 1000, result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--files", type=int, default=100)
    parser.add_argument("--queries", type=int, default=40)
    parser.add_argument("--customers", type=int, default=CUSTOMERS, help="customers (all in one organization)")
    parser.add_argument("--codes", type=int, default=CODES, help="metric codes per customer")
    parser.add_argument("--data-parent", default="/dev/shm" if Path("/dev/shm").is_dir() else None)
    parser.add_argument("--refresh-seconds", type=int, default=2, help="the resolver's and usage refresh's interval")
    parser.add_argument("--resolve-batch-rows", type=int, default=2_000_000, help="rows one resolver run takes")
    args = parser.parse_args()
    globals().update(CUSTOMERS=args.customers, CODES=args.codes)  # the data shape used below

    data_dir = tempfile.mkdtemp(prefix="bxb-bench-ch-", dir=args.data_parent)
    # Registered first, so it runs after the engine closes: a 10M run leaves ~1 GB in /dev/shm otherwise.
    atexit.register(shutil.rmtree, data_dir, True)
    eng = engine.start(data_dir)
    moto, endpoint = start_moto()
    os.environ.update(AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench", AWS_DEFAULT_REGION="us-east-1")
    try:
        return run(args, eng, endpoint)
    finally:
        client = eng.client()
        for db in ("bxb_bench", "bxb_bench_baseline"):
            client.command(f"DROP DATABASE IF EXISTS {db} SYNC")  # stop the queues before moto goes
        moto.terminate()
        moto.wait(timeout=10)


def run(args: argparse.Namespace, eng: engine.Engine, endpoint: str) -> int:
    import boto3

    from bxb_runtime.clickhouse import tables as t
    from bxb_stream.clickhouse import ledger, migrations, status
    from bxb_stream.clickhouse.settings import ClickHouseSettings
    from bxb_stream.clickhouse.usage import query_usage, query_usage_raw

    s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
    client = eng.client()
    ours, base = "bxb_bench", "bxb_bench_baseline"
    for bucket in (ours, base):
        s3.create_bucket(Bucket=bucket.replace("_", "-"))
    settings = ClickHouseSettings(
        bucket_url=f"{endpoint}/{ours.replace('_', '-')}",
        database=ours,
        named_collection="bxb_bench_s3",
        polling_min_timeout_ms=100,
        polling_max_timeout_ms=500,
        polling_backoff_ms=100,
        s3_retry_attempts=3,
        refresh_seconds=args.refresh_seconds,
        resolve_batch_rows=args.resolve_batch_rows,
        usage_batch_rows=max(args.resolve_batch_rows, 1_000_000),
    )
    migrations.ensure_named_collection_from_env(client, settings)
    for statement in baseline_ddl(base, f"{endpoint}/{base.replace('_', '-')}", "bxb_bench_s3"):
        client.command(statement)
    migrations.apply(client, settings)

    t0 = time.perf_counter()
    start_ms = int(START.timestamp() * 1000)
    files, expected = make_files(args.events, args.files, start_ms, DAYS * 86_400_000, None, seed=1)
    print(f"generated {args.events:,} events in {len(files)} Parquet files in {time.perf_counter() - t0:.1f} s")

    def landed(db: str) -> int:
        return int(client.command(f"SELECT count() FROM {db}.events_raw"))

    def ingest(db: str, done: Any) -> float:
        t_upload = time.monotonic()
        for key, body in files:
            s3.put_object(Bucket=db.replace("_", "-"), Key=key, Body=body)
        wait(done, 1800, f"{db} to take {args.events:,} events")
        return time.monotonic() - t_upload

    # The baseline's ReplacingMergeTree may collapse copies while it ingests: done is every file processed.
    base_s = ingest(base, lambda: len(status.queue_files(client, base, "Processed")) >= len(files))
    ours_s = ingest(ours, lambda: landed(ours) >= args.events and status.backlog(client, ours).unresolved == 0)
    verdicts = ledger.verdict_counts(client, ours)
    exact = all(verdicts[k] == v for k, v in expected.items())
    ratio = base_s / ours_s
    print(
        f"ingest, upload start -> stored: baseline {args.events / base_s:,.0f} events/s ({base_s:.1f} s); "
        f"ours, every copy given its verdict: {args.events / ours_s:,.0f} events/s ({ours_s:.1f} s) -> "
        f"{ratio:.2f} of baseline; verdicts {dict(verdicts)} (expected {expected}: {'exact' if exact else 'DIFF'})"
    )
    status.refresh_now(client, ours)
    client.command(f"SYSTEM REFRESH VIEW {base}.usage_hourly_refresh")
    client.command(f"SYSTEM WAIT VIEW {base}.usage_hourly_refresh")

    # -- one minute at 10,000 events/s, landed, then the refreshes that bill it
    now_ms = int(time.time() * 1000)
    minute, minute_expected = make_files(MINUTE_EVENTS, 6, now_ms - 60_000, 60_000, now_ms, seed=2)
    # Only the refreshes below may bill the minute, so their CPU is all of it.
    for view in (t.RESOLVER, t.USAGE_REFRESH_MV):
        client.command(f"ALTER TABLE {ours}.{view} MODIFY REFRESH EVERY 3600 SECOND APPEND")
    for db in (ours, base):
        for key, body in minute:
            s3.put_object(Bucket=db.replace("_", "-"), Key=key, Body=body)
        processed = len(files) + len(minute)
        wait(lambda db=db, n=processed: len(status.queue_files(client, db, "Processed")) >= n, 600, f"{db}: the minute")
    idle = idle_rate()
    c0, t0 = cpu_seconds(), time.monotonic()
    for _ in range(100):  # bounded: the resolver takes resolve_batch_rows a run
        status.refresh_now(client, ours)
        if status.backlog(client, ours).caught_up:
            break
    ours_cpu = cpu_seconds() - c0 - idle * (time.monotonic() - t0)
    c0, t0 = cpu_seconds(), time.monotonic()
    client.command(f"SYSTEM REFRESH VIEW {base}.usage_hourly_refresh")
    client.command(f"SYSTEM WAIT VIEW {base}.usage_hourly_refresh")
    base_cpu = cpu_seconds() - c0 - idle * (time.monotonic() - t0)
    print(
        f"keeping usage_hourly current, one minute at 10,000/s ({MINUTE_EVENTS:,} events): ours {ours_cpu:.2f} "
        f"CPU-s ({ours_cpu / 60:.1%} of a core), baseline refresh {base_cpu:.2f} CPU-s; idle {idle:.2f} CPU-s/s"
    )
    after = ledger.verdict_counts(client, ours)
    exact &= all(after[k] == expected[k] + minute_expected[k] for k in expected)

    # -- usage queries: usage_hourly against the billed events themselves
    import random

    rng = random.Random(3)
    period = (START, START + timedelta(days=DAYS))
    keys = [
        (f"org_{rng.randrange(ORGS)}", f"cust_{rng.randrange(CUSTOMERS)}", f"metric_{rng.randrange(CODES)}")
        for _ in range(args.queries)
    ]
    for org, cust, code in keys[:3]:  # warm both
        query_usage(client, ours, org, cust, code, *period)
        query_usage_raw(client, ours, org, cust, code, *period)
    hourly_ms, raw_ms, identical = [], [], True
    for org, cust, code in keys:
        ms_h, got_h = timed(lambda: query_usage(client, ours, org, cust, code, *period))  # noqa: B023
        ms_r, got_r = timed(lambda: query_usage_raw(client, ours, org, cust, code, *period))  # noqa: B023
        hourly_ms.append(ms_h)
        raw_ms.append(ms_r)
        identical &= got_h == got_r and got_h.event_count > 0
    total = int(client.command(f"SELECT sum(event_count) FROM {ours}.usage_hourly"))
    identical &= total == after["billed"]
    p50_h, p50_r = statistics.median(hourly_ms), statistics.median(raw_ms)
    speedup = p50_r / p50_h
    rows = int(client.command(f"SELECT count() FROM (SELECT 1 FROM {ours}.usage_hourly GROUP BY ALL)"))
    print(
        f"usage query p50 over {len(keys)} queries (customer x metric x {DAYS} days): usage_hourly {p50_h:.2f} ms, "
        f"billed events {p50_r:.2f} ms -> {speedup:.1f}x; identical: {identical}; "
        f"{after['billed'] / max(rows, 1):,.0f} billed events per hourly row"
    )
    figures = {
        "events": args.events,
        "refresh_seconds": args.refresh_seconds,
        "resolve_batch_rows": args.resolve_batch_rows,
        "files": len(files),
        "baseline_ingest_events_per_second": round(args.events / base_s),
        "ingest_events_per_second": round(args.events / ours_s),
        "ingest_ratio": round(ratio, 2),
        "verdicts": dict(after),
        "verdicts_exact": exact,
        "cpu_seconds_per_minute_at_10k_per_second": round(ours_cpu, 2),
        "baseline_refresh_cpu_seconds_same_minute": round(base_cpu, 2),
        "idle_cpu_seconds_per_second": round(idle, 3),
        "queries": len(keys),
        "usage_hourly_p50_ms": round(p50_h, 3),
        "billed_events_p50_ms": round(p50_r, 3),
        "speedup": round(speedup, 1),
        "identical_results": identical,
        "events_per_hourly_row": round(after["billed"] / max(rows, 1), 1),
        "targets": {
            "ingest_ratio_min": INGEST_RATIO_TARGET,
            "cpu_seconds_per_minute_max": CPU_PER_MINUTE_TARGET,
            "speedup_min": SPEEDUP_TARGET,
            "identical_results": True,
            "verdicts_exact": True,
        },
    }
    figures["targets_met"] = bool(
        ratio >= INGEST_RATIO_TARGET
        and ours_cpu <= CPU_PER_MINUTE_TARGET
        and speedup >= SPEEDUP_TARGET
        and identical
        and exact
    )
    print(json.dumps(figures))
    return 0 if figures["targets_met"] else 1


if __name__ == "__main__":
    sys.exit(main())
