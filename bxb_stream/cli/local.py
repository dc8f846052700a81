"""``bxb-stream local``: the whole pipeline on this machine, with the real handlers and DDL.

Starts moto (Kinesis, S3, Secrets Manager), chDB with the project's DDL, the ingest
Lambda behind a loopback function-URL adapter, and a Firehose runner per path; produces
a seeded synthetic workload (duplicates, invalid and late events included); waits until
everything is delivered; prints a reconciliation per path, end-to-end latency and hourly
usage; exits 1 on any difference. ``--serve`` keeps it running for other terminals.
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path
from typing import Any

from bxb_stream.config import ConfigError

SERVE_MAX_SECONDS = 7 * 86_400


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("local", help="run the whole pipeline locally and reconcile", description=__doc__)
    p.add_argument("--events", type=int, default=200_000, help="synthetic events to produce (default 200000)")
    p.add_argument("--rate", type=float, help="cap on events per second")
    p.add_argument("--path", choices=("s3", "http", "both"), default="both", help="delivery path(s) to run")
    p.add_argument(
        "--aggregate",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="KPL-aggregate events into Kinesis records (default on, as recommended for production)",
    )
    p.add_argument("--data-dir", type=Path, default=Path(".bxb/local"), help="state of this run (wiped first)")
    p.add_argument("--endpoint-url", help="an AWS-compatible endpoint instead of moto (default: AWS_ENDPOINT_URL)")
    p.add_argument("--config", type=Path, default=Path("cdk.json"), help="the CDK app's cdk.json to mirror")
    p.add_argument(
        "--buffer-seconds", type=float, default=2.0, help="every Firehose buffer interval, locally (deployed: >= 60)"
    )
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--duplicate-share", type=float, default=0.02)
    p.add_argument("--invalid-share", type=float, default=0.01)
    p.add_argument("--late-share", type=float, default=0.01)
    p.add_argument("--conflict-share", type=float, default=0.005)
    p.add_argument("--backdated-share", type=float, default=0.01)
    p.add_argument("--timeout", type=float, default=900.0, help="seconds to wait for delivery after producing")
    p.add_argument("--serve", action="store_true", help="keep running after the report, until Ctrl-C")
    p.add_argument("--serve-seconds", type=float, default=SERVE_MAX_SECONDS, help=argparse.SUPPRESS)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import os
    import sys

    from rich.console import Console

    from bxb_stream.deployment import PipelineConfig
    from bxb_stream.local.pipeline import LocalOptions, LocalPipeline

    console = Console() if sys.stdout.isatty() else Console(width=140)  # tables stay readable in logs
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's request log
    try:
        config = PipelineConfig.from_cdk_json(args.config) if args.config.exists() else PipelineConfig()
        options = LocalOptions(
            events=args.events,
            rate=args.rate,
            paths=("s3", "http") if args.path == "both" else (args.path,),
            aggregate=args.aggregate,
            data_dir=args.data_dir,
            endpoint_url=args.endpoint_url or os.environ.get("AWS_ENDPOINT_URL"),
            buffer_seconds=args.buffer_seconds,
            seed=args.seed,
            duplicate_share=args.duplicate_share,
            invalid_share=args.invalid_share,
            late_share=args.late_share,
            conflict_share=args.conflict_share,
            backdated_share=args.backdated_share,
            timeout_s=args.timeout,
        )
    except (ConfigError, ValueError) as exc:
        console.print(f"[red]bxb-stream local: {exc}[/red]")
        return 2

    tune_gc()
    pipeline = LocalPipeline(config, options)
    try:
        with console.status("starting stand-ins (moto, chDB, ingest adapter, Firehose runners)"):
            pipeline.start()
        settled = _produce_and_wait(pipeline, console)
        ok = _report(pipeline, console, settled)
        if args.serve:
            _serve(pipeline, console, args.serve_seconds)
        return 0 if ok else 1
    finally:
        pipeline.stop()


def tune_gc() -> None:
    """A batch process that allocates millions of short-lived objects and builds few cycles:
    collect the young generation less often (measured: +37% Firehose runner throughput)."""
    import gc

    gc.set_threshold(100_000, 50, 100)


def _produce_and_wait(pipeline: Any, console: Any) -> bool:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    n = pipeline.options.events
    with console.status(f"generating {n:,} synthetic events"):
        workload = pipeline.prepare()
    columns = (
        TextColumn("{task.description:<22}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console) as progress:
        started = time.monotonic()
        produce = progress.add_task("produce", total=n, rate="")

        def produced(done: int) -> None:
            progress.update(produce, completed=done, rate=f"{done / max(time.monotonic() - started, 1e-9):,.0f}/s")

        first_wave, resends = pipeline.resends(workload)
        pipeline.produce(first_wave, on_progress=produced)
        tasks = {path: progress.add_task(f"{path}: read by Firehose", total=n, rate="") for path in pipeline.paths}
        stored = {
            path: progress.add_task(f"{path}: billed", total=pipeline.expected.kinds["stored"], rate="")
            for path in pipeline.paths
        }

        def delivered(counts: dict[str, Any]) -> None:
            elapsed = max(time.monotonic() - started, 1e-9)
            for path, c in counts.items():
                progress.update(tasks[path], completed=c.read, rate=f"{c.read / elapsed:,.0f}/s")
                progress.update(stored[path], completed=c.billed, rate=f"{c.billed / elapsed:,.0f}/s")

        if resends:  # a client's later resends: sent once the first wave is stored
            if not pipeline.wait_settled(delivered):
                return False
            pipeline.produce(resends, on_progress=lambda done: produced(len(first_wave) + done))
        return pipeline.wait_settled(delivered)


def _report(pipeline: Any, console: Any, settled: bool) -> bool:
    from rich.table import Table

    from bxb_stream.local.reconcile import reconcile

    ok = settled
    if not settled:
        console.print(f"[red]not everything was delivered within {pipeline.options.timeout_s:.0f}s[/red]")
    produced = pipeline.produced
    elapsed = time.time() - produced.first_put
    console.print(
        f"produced {produced.events:,} events in {produced.records:,} Kinesis records "
        f"({produced.failures} undeliverable); all queryable after {elapsed:.1f}s "
        f"({produced.events / max(elapsed, 1e-9):,.0f} events/s end to end)"
    )
    for path in pipeline.paths:
        counts = pipeline.counts(path)
        usage_rows = pipeline.usage_rows(path)
        result = reconcile(pipeline.expected, produced.events, counts, usage_rows)
        ok &= result.ok
        table = Table(title=f"{path} path: reconciliation (database {pipeline.paths[path].database})")
        for column in ("", "expected", "measured", ""):
            table.add_column(column, justify="right" if column in ("expected", "measured") else "left")
        table.add_row("produced", f"{result.produced:,}", f"{result.produced:,}", "")
        for line in result.lines:
            table.add_row(
                line.category, f"{line.expected:,}", f"{line.measured:,}", "ok" if line.ok else "[red]DIFF[/red]"
            )
        verdict = "ok" if not result.usage_mismatches else f"[red]{len(result.usage_mismatches)} differ[/red]"
        table.add_row("usage_hourly rows vs truth", "", f"{result.usage_rows:,}", verdict)
        console.print(table)
        for problem in result.usage_mismatches[:5]:
            console.print(f"  [red]{problem}[/red]")
        latencies = pipeline.latencies_ms(path)
        if latencies:
            p50, p99 = latencies[len(latencies) // 2], latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
            console.print(f"{path} end-to-end latency (put -> queryable): p50 {p50 / 1000:.2f}s, p99 {p99 / 1000:.2f}s")
        _usage_table(console, path, usage_rows)
    console.print(
        "[green]reconciled: nothing lost, nothing counted twice[/green]" if ok else "[red]differences found[/red]"
    )
    return ok


def _usage_table(console: Any, path: str, rows: list[tuple[Any, ...]], top: int = 5) -> None:
    from collections import Counter
    from datetime import UTC, datetime

    from rich.table import Table

    totals: Counter[str] = Counter()
    for _, customer, _, _, count, _, _ in rows:
        totals[customer] += count
    leaders = {customer for customer, _ in totals.most_common(top)}
    table = Table(title=f"{path} path: hourly usage of the top {top} customers (usage_hourly)")
    for column in ("customer", "code", "hour (UTC)", "events", "sum(value)", "sum(decimal_value)"):
        table.add_column(column)
    shown = sorted((r for r in rows if r[1] in leaders), key=lambda r: (-totals[r[1]], r[1], r[2], r[3]))
    for _, customer, code, hour_ms, count, value_sum, decimal_sum in shown[:25]:
        hour = datetime.fromtimestamp(hour_ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:00")
        table.add_row(customer, code, hour, f"{count:,}", f"{value_sum:,.2f}", decimal_sum)
    console.print(table)


def _serve(pipeline: Any, console: Any, max_seconds: float) -> None:
    from bxb_stream.local.relay import RelayServer

    relay = RelayServer(pipeline.client).start()
    targets = pipeline.targets
    db = next(iter(pipeline.paths.values())).database
    console.print(
        "\n[bold]serving[/bold] (Ctrl-C to stop)\n"
        f"  Kinesis/S3 endpoint : {targets.endpoint_url}   stream {targets.stream}, bucket {targets.bucket}\n"
        f"  ClickHouse (read)   : {relay.url}   databases {', '.join(r.database for r in pipeline.paths.values())}\n"
        f"  try : bxb-stream produce --endpoint-url {targets.endpoint_url} --stream {targets.stream} "
        "--synthetic 1000 --legacy-limits\n"
        f"        bxb-stream usage --url {relay.url} --database {db} --organization-id "
        f"{pipeline.config.rules.organization_id} --customer <id> --code <code> --from <hour> --to <hour>"
    )
    deadline = time.monotonic() + max_seconds
    try:
        while time.monotonic() < deadline:
            time.sleep(min(1.0, max(deadline - time.monotonic(), 0)))
    except KeyboardInterrupt:
        console.print("stopping")
    finally:
        relay.stop()
