"""``bxb-stream plan``: shards, monthly cost and latency of the pipeline for a workload.

Deployable settings (delivery paths, buffers, Lambda memory, the archive's lifecycle) default to
what the CDK app deploys: its defaults, or the cdk.json given with --config. The suggested
cdk.json context is checked against the app's config before it is shown, never sets an archive
expiry unless --expiration-days asks for one, and for the HTTP path includes ClickHouse's URL.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from bxb_stream.cli._failures import UserError
from bxb_stream.deployment import PipelineConfig
from bxb_stream.plan.model import (
    DEFAULT_INGEST_RPS,
    DEFAULT_TRANSFORM_RPS,
    DEPLOYED,
    GLACIER_CLASSES,
    Pipeline,
    Workload,
    paths_of,
)
from bxb_stream.plan.prices import DEFAULT_REGION, load_prices
from bxb_stream.plan.render import make_report, render_table

# Pipeline settings that have a flag; their defaults come from the config (cdk.json or the app's).
PIPELINE_FLAGS = (
    "processor_buffer_seconds",
    "processor_buffer_mib",
    "s3_buffer_seconds",
    "s3_buffer_mib",
    "http_buffer_seconds",
    "http_buffer_mib",
    "s3queue_poll_min_ms",
    "s3queue_poll_max_ms",
    "s3queue_poll_backoff_ms",
    "refresh_seconds",
    "resolve_batch_rows",
    "usage_batch_rows",
    "parquet_ratio",
    "archive_days",
    "expiration_days",
    "glacier_class",
    "transform_rps",
    "ingest_rps",
    "transform_memory_mb",
    "ingest_memory_mb",
)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "plan",
        help="size the stream and estimate monthly cost and latency",
        description=__doc__,
        epilog=(
            "Benchmark defaults: --transform-rps comes from bench/transform.py and --ingest-rps from "
            "bench/http_ingest.py, measured at 1024 MB and scaled to the Lambda memory; pass your own "
            "measurements. Prices are list prices from a JSON sheet "
            "(bxb_stream/plan/prices/REGION.json) with each price's source and date; --prices overrides it."
        ),
    )
    d, c = Pipeline(), DEPLOYED
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

    b = p.add_argument_group("pipeline (defaults: the cdk.json given with --config, else the CDK app's defaults)")
    b.add_argument(
        "--config", type=Path, metavar="CDK_JSON", help="read the deployable settings from this cdk.json's context"
    )
    b.add_argument(
        "--paths",
        help=f"delivery paths: s3, http or s3,http (default: bxb:delivery, {c.delivery})",
    )
    b.add_argument(
        "--clickhouse-url",
        metavar="URL",
        help="ClickHouse's https:// URL; the suggested context needs it for the HTTP path (bxb:clickhouse.url)",
    )
    b.add_argument(
        "--retention-hours",
        type=int,
        metavar="H",
        help=f"stream retention (default: bxb:stream.retention_hours, {c.stream.retention_hours})",
    )
    b.add_argument(
        "--processor-buffer-seconds", type=int, help=f"transform buffer interval (default {d.processor_buffer_seconds})"
    )
    b.add_argument(
        "--processor-buffer-mib", type=float, help=f"transform buffer size (default {d.processor_buffer_mib})"
    )
    b.add_argument("--s3-buffer-seconds", type=int, help=f"S3 path buffer interval (default {d.s3_buffer_seconds})")
    b.add_argument(
        "--s3-buffer-mib", type=float, help=f"S3 path buffer size, 64-128 with Parquet (default {d.s3_buffer_mib})"
    )
    b.add_argument(
        "--http-buffer-seconds", type=int, help=f"HTTP path buffer interval (default {d.http_buffer_seconds})"
    )
    b.add_argument("--http-buffer-mib", type=float, help=f"HTTP path buffer size (default {d.http_buffer_mib})")
    b.add_argument(
        "--s3queue-poll-min-ms", type=int, help=f"S3Queue's shortest polling interval (default {d.s3queue_poll_min_ms})"
    )
    b.add_argument(
        "--s3queue-poll-max-ms", type=int, help=f"S3Queue's longest polling interval (default {d.s3queue_poll_max_ms})"
    )
    b.add_argument(
        "--s3queue-poll-backoff-ms",
        type=int,
        help=f"S3Queue's polling backoff step (default {d.s3queue_poll_backoff_ms})",
    )
    b.add_argument(
        "--refresh-seconds",
        type=int,
        help=f"how often the billing resolver and the usage refresh run (default {d.refresh_seconds})",
    )
    b.add_argument(
        "--resolve-batch-rows",
        type=int,
        help=f"landed rows one resolver run takes at most (default {d.resolve_batch_rows:,})",
    )
    b.add_argument(
        "--usage-batch-rows",
        type=int,
        help=f"billed rows one usage refresh takes at most (default {d.usage_batch_rows:,})",
    )
    b.add_argument(
        "--partitions",
        type=int,
        default=d.active_partitions,
        help="S3 partitions written per buffer interval (default 2: on-time + late)",
    )
    b.add_argument(
        "--parquet-ratio",
        type=float,
        help=f"Parquet bytes per raw JSON byte (default {d.parquet_ratio}, an assumption; measure yours)",
    )
    b.add_argument(
        "--archive-days",
        type=int,
        help=f"days of data the Parquet archive holds when its storage is costed (default {d.archive_days}); "
        "not an expiry",
    )
    b.add_argument(
        "--expiration-days",
        type=int,
        metavar="DAYS",
        help="expire the billing archive after DAYS and suggest it (default: bxb:s3.expiration_days, "
        f"{c.s3.expiration_days} = never)",
    )
    b.add_argument(
        "--glacier-class",
        choices=GLACIER_CLASSES,
        help=f"Glacier storage class of old Parquet (default {d.glacier_class}: bxb:s3.glacier_storage_class)",
    )
    b.add_argument(
        "--transform-rps",
        type=float,
        help=f"transform records/s per second of Lambda duration at 1024 MB (default {DEFAULT_TRANSFORM_RPS:,})",
    )
    b.add_argument(
        "--ingest-rps",
        type=float,
        help=f"ingest rows/s per second of Lambda duration at 1024 MB (default {DEFAULT_INGEST_RPS:,})",
    )
    b.add_argument("--transform-memory-mb", type=int, help=f"transform Lambda memory (default {d.transform_memory_mb})")
    b.add_argument("--ingest-memory-mb", type=int, help=f"ingest Lambda memory (default {d.ingest_memory_mb})")

    o = p.add_argument_group("prices and output")
    o.add_argument("--region", default=None, help=f"price sheet region (default {DEFAULT_REGION})")
    o.add_argument("--prices", default=None, metavar="FILE", help="price sheet JSON overriding the bundled one")
    o.add_argument("--format", choices=("table", "json"), default="table", help="output format (default table)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    base = _base_config(args.config)
    paths = tuple(p.strip() for p in args.paths.split(",") if p.strip()) if args.paths else paths_of(base.delivery)
    workload = Workload(
        events_per_sec=args.events_per_sec,
        avg_bytes=args.avg_bytes,
        peak_factor=args.peak_factor,
        headroom=args.headroom,
        aggregate=args.aggregate,
        aggregate_bytes=args.aggregate_bytes,
        producers=args.producers,
        paths=paths,
        retention_hours=args.retention_hours or base.stream.retention_hours,
    )
    pipeline = Pipeline.from_config(
        base, active_partitions=args.partitions, **{name: getattr(args, name) for name in PIPELINE_FLAGS}
    )
    prices = load_prices(region=args.region, path=args.prices)
    report = make_report(workload, pipeline, prices, base, clickhouse_url=args.clickhouse_url or "")
    if args.format == "json":
        print(json.dumps(report, indent=2))
    else:
        from rich.console import Console

        render_table(report, Console(width=140))
    return 0


def _base_config(path: Path | None) -> PipelineConfig:
    """The config the plan starts from: a cdk.json's (as ``cdk synth`` reads it), else the app's defaults."""
    if path is None:
        return PipelineConfig()
    try:
        return PipelineConfig.from_cdk_json(path)
    except json.JSONDecodeError as exc:
        raise UserError(f"--config {path}: not JSON ({exc})") from None
