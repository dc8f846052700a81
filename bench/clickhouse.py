"""ClickHouse stage: S3Queue ingest and usage-query latency on the embedded engine.

1. Start moto's S3 server on 127.0.0.1 in a child process, and the embedded engine
   (``bxb_stream.clickhouse.engine``) in a fresh temp dir; apply the schema.
2. Write N events (default 1,000,000) as Parquet files with the project's Arrow schema
   under Firehose's partition layout, and time upload-start -> all N rows queryable in
   events_raw (S3Queue -> MV), then -> usage_hourly refreshed after the last insert.
3. Run Q usage queries (organization x customer x code x 30 days) from usage_hourly FINAL and
   the same from events_raw FINAL; results must be identical. Report medians and the speedup.
4. Last line: one JSON object with every figure, the targets and ``targets_met``.

Targets: usage_hourly answers >= 10x faster than events_raw FINAL, with identical results.

Run: /work/venv/bin/python bench/clickhouse.py [--events N] [--files F] [--queries Q] [--customers C] [--codes K]

The speedup grows with events per hourly row (printed): usage_hourly reads ~720 rows per
customer x metric x month whatever the volume, events_raw FINAL reads every event.
"""

from __future__ import annotations

import argparse
import io
import json
import os
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
# Local inserts commit within milliseconds; production uses 600 s. After this much quiet the
# refresh stops re-appending the last hours, so usage_hourly is measured in its steady state.
LOOKBACK_S = 10
START = datetime(2026, 1, 1, tzinfo=UTC)
DAYS = 30
# One busy customer with two metrics: 1M events a month is ~700 events an hour per metric to
# roll up (~0.4 events/s: modest for the customers usage-based billing is built for). With
# --customers 5 (10 pairs, ~140 an hour) the speedup falls to ~4x: it grows with events per row.
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


def make_files(n: int, files: int, seed: int = 1) -> list[tuple[str, bytes]]:
    """N events split over ``files`` Parquet objects, each one org's partition like Firehose writes."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from bxb_runtime import layout
    from bxb_runtime.events.schema import arrow_schema

    rng = np.random.default_rng(seed)
    schema = arrow_schema()
    per_file = -(-n // files)
    out = []
    start_ms = int(START.timestamp() * 1000)
    for f in range(files):
        m = min(per_file, n - f * per_file)
        if m <= 0:
            break
        org = f"org_{f % ORGS}"
        ts = start_ms + rng.integers(0, DAYS * 86_400_000, m)
        value = rng.integers(0, 400, m) / 4  # quarters: float sums are exact in any order
        value_null = rng.random(m) < 0.1
        dec = rng.integers(0, 10**9, m)
        table = pa.table(
            [
                pa.array([f"tx-{f}-{i}" for i in range(m)]),
                pa.array(np.char.add("cust_", rng.integers(0, CUSTOMERS, m).astype(str))),
                pa.array(np.char.add("metric_", rng.integers(0, CODES, m).astype(str))),
                pa.array(ts, pa.timestamp("ms", tz="UTC")),
                pa.array(["{}"] * m),
                pa.array(value, mask=value_null),
                pa.array(dec, pa.int64()).cast(pa.decimal128(38, 18)),
                pa.array([org] * m),
                pa.array(ts + 5000, pa.timestamp("ms", tz="UTC")),
            ],
            schema=schema,
        )
        buf = io.BytesIO()
        pq.write_table(table, buf, compression="snappy")
        key = layout.partition_prefix(layout.EVENTS_STREAM, org, "2026-01-01", "00") + f"bxb-1-{f:05d}.parquet"
        out.append((key, buf.getvalue()))
    return out


def wait(predicate: Any, timeout: float, what: str) -> float:
    t0 = time.monotonic()
    for _ in range(int(timeout / 0.05) + 1):
        if predicate():
            return time.monotonic() - t0
        if time.monotonic() - t0 > timeout:
            break
        time.sleep(0.05)
    raise SystemExit(f"timed out after {timeout}s waiting for {what}")


def timed(fn: Any) -> tuple[float, Any]:
    t0 = time.perf_counter()
    result = fn()
    return (time.perf_counter() - t0) * 1000, result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--files", type=int, default=40)
    parser.add_argument("--queries", type=int, default=40)
    parser.add_argument("--customers", type=int, default=CUSTOMERS, help="customers (all in one organization)")
    parser.add_argument("--codes", type=int, default=CODES, help="metric codes per customer")
    args = parser.parse_args()
    globals().update(CUSTOMERS=args.customers, CODES=args.codes)  # the data shape used below

    data_dir = tempfile.mkdtemp(prefix="bxb-bench-ch-")
    eng = engine.start(data_dir)
    moto, endpoint = start_moto()
    os.environ.update(AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench", AWS_DEFAULT_REGION="us-east-1")
    try:
        return run(args, eng, endpoint)
    finally:
        eng.client().command("DROP DATABASE IF EXISTS bxb_bench SYNC")  # stop the queue before moto goes
        moto.terminate()
        moto.wait(timeout=10)


def run(args: argparse.Namespace, eng: engine.Engine, endpoint: str) -> int:
    import boto3

    from bxb_stream.clickhouse import migrations, status
    from bxb_stream.clickhouse.settings import ClickHouseSettings
    from bxb_stream.clickhouse.usage import query_usage, query_usage_raw

    s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
    s3.create_bucket(Bucket="bxb-bench")
    settings = ClickHouseSettings(
        bucket_url=f"{endpoint}/bxb-bench",
        database="bxb_bench",
        named_collection="bxb_bench_s3",
        polling_min_timeout_ms=100,
        polling_max_timeout_ms=500,
        polling_backoff_ms=100,
        s3_retry_attempts=3,
        usage_refresh_seconds=1,
        usage_lookback_seconds=LOOKBACK_S,
    )
    client = eng.client()
    migrations.ensure_named_collection_from_env(client, settings)
    migrations.apply(client, settings)
    db = settings.database

    t0 = time.perf_counter()
    files = make_files(args.events, args.files)
    generate_s = time.perf_counter() - t0
    print(f"generated {args.events:,} events in {len(files)} Parquet files in {generate_s:.1f} s")

    t_upload = time.monotonic()
    for key, body in files:
        s3.put_object(Bucket="bxb-bench", Key=key, Body=body)
    upload_s = time.monotonic() - t_upload

    def rows() -> int:
        return int(client.command(f"SELECT count() FROM {db}.events_raw"))

    wait(lambda: rows() >= args.events, 600, f"{args.events} rows in events_raw")
    ingest_s = time.monotonic() - t_upload
    assert rows() == args.events
    print(
        f"upload {upload_s:.2f} s; S3Queue ingest, upload start -> queryable: {ingest_s:.2f} s "
        f"({args.events / ingest_s:,.0f} events/s)"
    )

    wait(lambda: status.usage_caught_up(client, db), 300, "usage_hourly to catch up")
    usage_ready_s = time.monotonic() - t_upload
    print(f"usage_hourly refreshed after the last insert: {usage_ready_s:.2f} s after upload start")

    # Steady state: the refresh has stopped re-appending recent hours.
    time.sleep(LOOKBACK_S + 2)  # bounded: one lookback window
    parts = {
        table: int(
            client.command(f"SELECT count() FROM system.parts WHERE database = '{db}' AND table = '{table}' AND active")
        )
        for table in ("usage_hourly", "events_raw")
    }
    print(f"active parts: {parts}")

    import random

    rng = random.Random(3)
    period = (START, START + timedelta(days=DAYS))
    keys = [
        (f"org_{rng.randrange(ORGS)}", f"cust_{rng.randrange(CUSTOMERS)}", f"metric_{rng.randrange(CODES)}")
        for _ in range(args.queries)
    ]
    for org, cust, code in keys[:3]:  # warm both paths
        query_usage(client, db, org, cust, code, *period)
        query_usage_raw(client, db, org, cust, code, *period)
    hourly_ms, raw_ms, identical = [], [], True
    for org, cust, code in keys:
        ms_h, got_h = timed(lambda: query_usage(client, db, org, cust, code, *period))  # noqa: B023
        ms_r, got_r = timed(lambda: query_usage_raw(client, db, org, cust, code, *period))  # noqa: B023
        hourly_ms.append(ms_h)
        raw_ms.append(ms_r)
        identical &= got_h == got_r and got_h.event_count > 0
    total = int(client.command(f"SELECT sum(event_count) FROM {db}.usage_hourly FINAL"))
    identical &= total == args.events
    p50_h, p50_r = statistics.median(hourly_ms), statistics.median(raw_ms)
    speedup = p50_r / p50_h
    print(
        f"usage query p50 over {len(keys)} queries (customer x metric x {DAYS} days): "
        f"usage_hourly {p50_h:.2f} ms, events_raw FINAL {p50_r:.2f} ms -> {speedup:.1f}x; identical: {identical}"
    )
    figures = {
        "events": args.events,
        "files": len(files),
        "generate_seconds": round(generate_s, 2),
        "upload_seconds": round(upload_s, 2),
        "ingest_seconds": round(ingest_s, 2),
        "ingest_events_per_second": round(args.events / ingest_s),
        "usage_ready_seconds": round(usage_ready_s, 2),
        "queries": len(keys),
        "usage_hourly_p50_ms": round(p50_h, 3),
        "events_raw_final_p50_ms": round(p50_r, 3),
        "usage_hourly_p95_ms": round(statistics.quantiles(hourly_ms, n=20)[-1], 3),
        "events_raw_final_p95_ms": round(statistics.quantiles(raw_ms, n=20)[-1], 3),
        "usage_hourly_parts": parts["usage_hourly"],
        "events_raw_parts": parts["events_raw"],
        "events_per_hourly_row": round(
            args.events / int(client.command(f"SELECT count() FROM {db}.usage_hourly FINAL")), 1
        ),
        "customer_metric_pairs": CUSTOMERS * CODES * ORGS,
        "speedup": round(speedup, 1),
        "identical_results": identical,
        "targets": {"speedup_min": SPEEDUP_TARGET, "identical_results": True},
    }
    figures["targets_met"] = bool(speedup >= SPEEDUP_TARGET and identical)
    print(json.dumps(figures))
    return 0 if figures["targets_met"] else 1


if __name__ == "__main__":
    sys.exit(main())
