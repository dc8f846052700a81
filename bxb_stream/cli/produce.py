"""``bxb-stream produce``: send events to a Kinesis stream from a file, stdin or the synthetic generator."""

from __future__ import annotations

import argparse
import collections
import sys
import time
from collections.abc import Iterator
from typing import IO, Any

import msgspec

from bxb_stream.config import EventRules
from bxb_stream.events.validate import EventError
from bxb_stream.producer import LEGACY, DeliveryFailure, Limits, Producer
from bxb_stream.producer import limits as L


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("produce", help="send billing events to a Kinesis stream", description=__doc__)
    p.add_argument("--stream", required=True, help="stream name or ARN")
    p.add_argument("--endpoint-url", help="Kinesis endpoint (LocalStack, moto); default AWS_ENDPOINT_URL or AWS")
    p.add_argument("--region", help="AWS region (default: AWS_REGION, AWS_DEFAULT_REGION, or us-east-1)")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--file", help="JSON Lines file of events, or - for stdin")
    src.add_argument("--synthetic", type=int, metavar="N", help="generate N synthetic events")
    p.add_argument("--aggregate", action="store_true", help="KPL-aggregate events into fewer records")
    p.add_argument("--aggregate-max-bytes", type=int, default=L.KPL_DEFAULT_AGGREGATE_BYTES)
    p.add_argument("--rate", type=float, help="cap on events per second")
    p.add_argument("--no-validate", action="store_true", help="send invalid events too (pipeline tests)")
    p.add_argument("--linger-ms", type=int, default=200, help="send a partial batch after this long")
    p.add_argument("--legacy-limits", action="store_true", help="1 MiB record / 5 MiB request (moto, old emulators)")
    p.add_argument(
        "--max-record-bytes",
        type=int,
        default=L.DEFAULT_STREAM_MAX_RECORD_BYTES,
        help="the stream's MaxRecordSize in bytes (default 1 MiB; up to 10 MiB if the stream was raised)",
    )
    p.add_argument("--failed-file", help="write undeliverable and rejected events here as JSON Lines")
    g = p.add_argument_group("synthetic workload")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--customers", type=int, default=1_000)
    g.add_argument("--organization-id", help="send this organization_id on every event")
    g.add_argument("--duplicate-share", type=float, default=0.0)
    g.add_argument("--invalid-share", type=float, default=0.0)
    g.add_argument("--late-share", type=float, default=0.0)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def _file_events(stream: IO[bytes]) -> Iterator[bytes]:
    for line in stream:
        line = line.strip()
        if line:
            yield line


def run(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
    from rich.table import Table

    console = Console(stderr=True)
    if args.rate is not None and args.rate <= 0:
        console.print("[red]--rate must be positive[/red]")
        return 2
    try:
        limits = LEGACY if args.legacy_limits else Limits(max_record_bytes=args.max_record_bytes)
        if args.legacy_limits and args.max_record_bytes != L.DEFAULT_STREAM_MAX_RECORD_BYTES:
            limits = Limits(max_request_bytes=LEGACY.max_request_bytes, max_record_bytes=args.max_record_bytes)
        rules = EventRules.from_env()
    except ValueError as exc:
        console.print(f"[red]{exc}[/red]")
        return 2

    rejected_codes: collections.Counter[str] = collections.Counter()
    failed_codes: collections.Counter[str] = collections.Counter()
    failed_out = open(args.failed_file, "wb") if args.failed_file else None  # noqa: SIM115 - closed below

    def dump(event: Any, code: str) -> None:
        if failed_out is not None:
            raw = event if isinstance(event, bytes) else msgspec.json.encode(event)
            failed_out.write(msgspec.json.encode({"error": code, "event": raw.decode("utf-8", "replace")}) + b"\n")

    def on_invalid(event: Any, err: EventError) -> None:
        rejected_codes[err.code] += 1
        dump(event, err.code)

    def on_failure(failures: list[DeliveryFailure]) -> None:
        for f in failures:
            failed_codes[f.error_code] += 1
            dump(f.event, f.error_code)

    total: int | None
    events: Iterator[Any]
    infile = None
    if args.synthetic is not None:
        from bxb_stream.producer.synthetic import generate

        try:
            gen = generate(
                args.synthetic,
                seed=args.seed,
                organization_id=args.organization_id,
                customers=args.customers,
                duplicate_share=args.duplicate_share,
                invalid_share=args.invalid_share,
                late_share=args.late_share,
                allowed_lateness_seconds=rules.allowed_lateness_seconds,
            )
            events = (event for event, _expect in gen)
            next_event = next(events, None)  # surface argument errors before connecting
        except ValueError as exc:
            console.print(f"[red]{exc}[/red]")
            return 2
        events = iter(()) if next_event is None else _chain(next_event, events)
        total = args.synthetic
    else:
        try:
            infile = sys.stdin.buffer if args.file == "-" else open(args.file, "rb")  # noqa: SIM115
        except OSError as exc:
            console.print(f"[red]cannot read {args.file}: {exc}[/red]")
            return 2
        events = _file_events(infile)
        total = None

    started = time.monotonic()
    try:
        producer = Producer(
            args.stream,
            endpoint_url=args.endpoint_url,
            region=args.region,
            rules=rules,
            validate=not args.no_validate,
            aggregate=args.aggregate,
            aggregate_max_bytes=args.aggregate_max_bytes,
            limits=limits,
            linger_ms=args.linger_ms,
            on_invalid=on_invalid,
            on_failure=on_failure,
        )
    except ValueError as exc:
        console.print(f"[red]{exc}[/red]")
        return 2
    columns = [TextColumn("producing"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()]
    try:
        with producer, Progress(*columns, console=console, disable=args.quiet) as progress:
            task = progress.add_task("events", total=total)
            for i, event in enumerate(events):
                if args.rate is not None:
                    ahead = started + i / args.rate - time.monotonic()
                    if ahead > 0:
                        time.sleep(ahead)
                producer.put(event)
                if i % 256 == 0:
                    progress.update(task, completed=i + 1)
            progress.update(task, completed=producer.stats.events + producer.stats.rejected)
    finally:
        if infile is not None and infile is not sys.stdin.buffer:
            infile.close()
        if failed_out is not None:
            failed_out.close()
    elapsed = time.monotonic() - started
    stats = producer.stats

    table = Table(title=f"bxb-stream produce → {args.stream}")
    table.add_column("metric")
    table.add_column("value", justify="right")
    seen = stats.events + stats.rejected
    for name, value in (
        ("events read", seen),
        ("accepted", stats.events),
        ("rejected at the edge", stats.rejected),
        ("delivered", stats.delivered),
        ("undeliverable", stats.failures),
        ("Kinesis records", stats.records),
        ("bytes written", stats.bytes),
        ("PutRecords calls", stats.requests),
        ("entries retried", stats.retries),
        ("seconds", f"{elapsed:.2f}"),
        ("events/s", f"{seen / elapsed:,.0f}" if elapsed > 0 else "-"),
    ):
        table.add_row(name, f"{value:,}" if isinstance(value, int) else value)
    for code, count in rejected_codes.most_common():
        table.add_row(f"  rejected: {code}", f"{count:,}")
    for code, count in failed_codes.most_common():
        table.add_row(f"  failed: {code}", f"{count:,}")
    console.print(table)
    return 1 if stats.failures else 0


def _chain(first: Any, rest: Iterator[Any]) -> Iterator[Any]:
    yield first
    yield from rest
