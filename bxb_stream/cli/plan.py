"""``bxb-stream plan``: shards, monthly cost and latency of the pipeline for a workload."""

from __future__ import annotations

import argparse
import json
import sys

from bxb_stream.plan.errors import PlanError
from bxb_stream.plan.model import DEFAULT_INGEST_RPS, DEFAULT_TRANSFORM_RPS, Pipeline, Workload
from bxb_stream.plan.prices import DEFAULT_REGION, load_prices
from bxb_stream.plan.render import make_report, render_table


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "plan",
        help="size the stream and estimate monthly cost and latency",
        description=__doc__,
        epilog=(
            "Benchmark defaults: --transform-rps comes from bench/transform.py and --ingest-rps from "
            "bench/http_ingest.py; pass your own measurements. Prices are list prices from a JSON sheet "
            "(bxb_stream/plan/prices/REGION.json) with each price's source and date; --prices overrides it."
        ),
    )
    w = p.add_argument_group("workload")
    w.add_argument("--events-per-sec", type=float, required=True, metavar="R", help="average events per second")
    w.add_argument(
        "--avg-bytes",
        type=float,
        required=True,
        metavar="B",
        help="average event size in bytes as written to Kinesis (data + partition key)",
    )
    w.add_argument("--peak-factor", type=float, default=1.0, metavar="F", help="peak rate over average (default 1)")
    w.add_argument(
        "--headroom",
        type=float,
        default=0.0,
        metavar="H",
        help="spare shard capacity above the peak, as a fraction (default 0; 0.2 = 20%%)",
    )
    w.add_argument(
        "--aggregate",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="KPL-style aggregation of events into records (default off)",
    )
    w.add_argument("--aggregate-bytes", type=int, default=51_200, help="aggregated record size (default 51200)")
    w.add_argument("--producers", type=int, default=1, help="producer processes sharing the rate (default 1)")
    w.add_argument("--paths", default="s3,http", help="delivery paths: s3, http or s3,http (default both)")
    w.add_argument("--retention-hours", type=int, default=24, metavar="H", help="stream retention (default 24)")

    b = p.add_argument_group("pipeline")
    d = Pipeline()
    b.add_argument("--processor-buffer-seconds", type=int, default=d.processor_buffer_seconds)
    b.add_argument("--processor-buffer-mib", type=float, default=d.processor_buffer_mib)
    b.add_argument("--s3-buffer-seconds", type=int, default=d.s3_buffer_seconds)
    b.add_argument("--s3-buffer-mib", type=float, default=d.s3_buffer_mib, help="64-128 with Parquet conversion")
    b.add_argument("--http-buffer-seconds", type=int, default=d.http_buffer_seconds)
    b.add_argument("--http-buffer-mib", type=float, default=d.http_buffer_mib)
    b.add_argument("--s3queue-poll-min-ms", type=int, default=d.s3queue_poll_min_ms)
    b.add_argument("--s3queue-poll-max-ms", type=int, default=d.s3queue_poll_max_ms)
    b.add_argument("--s3queue-poll-backoff-ms", type=int, default=d.s3queue_poll_backoff_ms)
    b.add_argument(
        "--partitions",
        type=int,
        default=d.active_partitions,
        help="S3 partitions written per buffer interval (default 2: on-time + late)",
    )
    b.add_argument(
        "--parquet-ratio",
        type=float,
        default=d.parquet_ratio,
        help="Parquet bytes per raw JSON byte (default 0.15, an assumption; measure yours)",
    )
    b.add_argument("--archive-days", type=int, default=d.archive_days, help="days the Parquet archive is kept")
    b.add_argument("--glacier-class", choices=("instant", "flexible"), default=d.glacier_class)
    b.add_argument(
        "--transform-rps",
        type=float,
        default=DEFAULT_TRANSFORM_RPS,
        help="transform records/s per second of Lambda duration (default from bench/transform.py)",
    )
    b.add_argument(
        "--ingest-rps",
        type=float,
        default=DEFAULT_INGEST_RPS,
        help="ingest rows/s per second of Lambda duration (default from bench/http_ingest.py)",
    )
    b.add_argument("--transform-memory-mb", type=int, default=d.transform_memory_mb)
    b.add_argument("--ingest-memory-mb", type=int, default=d.ingest_memory_mb)

    o = p.add_argument_group("prices and output")
    o.add_argument("--region", default=None, help=f"price sheet region (default {DEFAULT_REGION})")
    o.add_argument("--prices", default=None, metavar="FILE", help="price sheet JSON overriding the bundled one")
    o.add_argument("--format", choices=("table", "json"), default="table")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        workload = Workload(
            events_per_sec=args.events_per_sec,
            avg_bytes=args.avg_bytes,
            peak_factor=args.peak_factor,
            headroom=args.headroom,
            aggregate=args.aggregate,
            aggregate_bytes=args.aggregate_bytes,
            producers=args.producers,
            paths=tuple(p.strip() for p in args.paths.split(",") if p.strip()),
            retention_hours=args.retention_hours,
        )
        pipeline = Pipeline(
            processor_buffer_seconds=args.processor_buffer_seconds,
            processor_buffer_mib=args.processor_buffer_mib,
            s3_buffer_seconds=args.s3_buffer_seconds,
            s3_buffer_mib=args.s3_buffer_mib,
            http_buffer_seconds=args.http_buffer_seconds,
            http_buffer_mib=args.http_buffer_mib,
            s3queue_poll_min_ms=args.s3queue_poll_min_ms,
            s3queue_poll_max_ms=args.s3queue_poll_max_ms,
            s3queue_poll_backoff_ms=args.s3queue_poll_backoff_ms,
            active_partitions=args.partitions,
            parquet_ratio=args.parquet_ratio,
            archive_days=args.archive_days,
            glacier_class=args.glacier_class,
            transform_rps=args.transform_rps,
            ingest_rps=args.ingest_rps,
            transform_memory_mb=args.transform_memory_mb,
            ingest_memory_mb=args.ingest_memory_mb,
        )
        prices = load_prices(region=args.region, path=args.prices)
        report = make_report(workload, pipeline, prices)
    except PlanError as exc:
        print(f"bxb-stream plan: error: {exc}", file=sys.stderr)
        return 2
    if args.format == "json":
        print(json.dumps(report, indent=2))
    else:
        from rich.console import Console

        render_table(report, Console(width=140))
    return 0
