"""``bxb-stream produce``: send events to a Kinesis stream from a file, stdin or the synthetic generator.

Events without a timestamp are stamped when they are read (see the Producer). A failure that
every further call would repeat (no credentials, unknown host, connection refused, a missing
stream, access denied) stops the run: one line names the cause, and the events already read
but not delivered go to --failed-file. Other failures are retried, then counted in the summary.
For an endpoint on loopback (moto, LocalStack) placeholder credentials are used when none are
configured.
"""

from __future__ import annotations

import argparse
import collections
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import IO, Any

import msgspec

from bxb_runtime.config import EventRules
from bxb_runtime.events.validate import EventError
from bxb_stream.cli._failures import UserError
from bxb_stream.producer import LEGACY, AggregationPolicy, DeliveryFailure, Limits, Producer
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
    p.add_argument(
        "--aggregate-max-bytes",
        type=int,
        default=L.KPL_DEFAULT_AGGREGATE_BYTES,
        metavar="B",
        help=f"largest aggregated record (default {L.KPL_DEFAULT_AGGREGATE_BYTES}, the KPL's)",
    )
    p.add_argument("--rate", type=float, help="cap on events per second")
    p.add_argument("--no-validate", action="store_true", help="send invalid events too (pipeline tests)")
    p.add_argument("--linger-ms", type=int, default=200, help="send a partial batch after this long (default 200)")
    p.add_argument("--legacy-limits", action="store_true", help="1 MiB record / 5 MiB request (moto, old emulators)")
    p.add_argument(
        "--max-record-bytes",
        type=int,
        default=L.DEFAULT_STREAM_MAX_RECORD_BYTES,
        help="the stream's MaxRecordSize in bytes (default 1 MiB; up to 10 MiB if the stream was raised)",
    )
    p.add_argument(
        "--failed-file", help="write undeliverable and rejected events here as JSON Lines, with their error code"
    )
    g = p.add_argument_group("synthetic workload")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--customers", type=int, default=1_000)
    g.add_argument("--organization-id", help="send this organization_id on every event")
    g.add_argument("--duplicate-share", type=float, default=0.0)
    g.add_argument("--invalid-share", type=float, default=0.0)
    g.add_argument("--late-share", type=float, default=0.0)
    g.add_argument("--conflict-share", type=float, default=0.0)
    g.add_argument("--backdated-share", type=float, default=0.0)
    g.add_argument(
        "--grace-days", type=int, default=35, help="late events are older than this (ClickHouse grace_days; default 35)"
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar (there is none when stderr is not a terminal)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from rich.console import Console

    console = Console(stderr=True)
    limits = _limits(args)
    rules = EventRules.from_env()
    events, total = _events(args)
    with _Outcome(args.failed_file) as outcome:
        producer = _producer(args, rules, limits, outcome)
        started = time.monotonic()
        _send(producer, events, total, args, outcome, console)
        elapsed = time.monotonic() - started
    if outcome.stopped_by is not None:
        raise UserError(_stop_line(args, outcome, producer), exit_code=1)
    _print_summary(console, args.stream, producer, outcome, elapsed)
    return 1 if producer.stats.failures else 0


# --------------------------------------------------------------------------- setup


def _limits(args: argparse.Namespace) -> Limits:
    if args.rate is not None and args.rate <= 0:
        raise UserError("--rate must be positive")
    try:
        if not args.legacy_limits:
            return Limits(max_record_bytes=args.max_record_bytes)
        if args.max_record_bytes == L.DEFAULT_STREAM_MAX_RECORD_BYTES:
            return LEGACY
        return Limits(max_request_bytes=LEGACY.max_request_bytes, max_record_bytes=args.max_record_bytes)
    except ValueError as exc:
        raise UserError(f"--max-record-bytes: {exc}") from None


def _events(args: argparse.Namespace) -> tuple[Iterator[Any], int | None]:
    """The events to send, and how many there are when known. Argument errors surface here,
    before anything connects."""
    if args.synthetic is None:
        return _file_events(args.file), None
    from bxb_stream.producer.synthetic import generate

    generated = generate(
        args.synthetic,
        seed=args.seed,
        organization_id=args.organization_id,
        customers=args.customers,
        duplicate_share=args.duplicate_share,
        invalid_share=args.invalid_share,
        late_share=args.late_share,
        conflict_share=args.conflict_share,
        backdated_share=args.backdated_share,
        grace_days=args.grace_days,
    )
    try:
        first = next(generated, None)  # the generator checks its arguments on the first event
    except ValueError as exc:
        raise UserError(f"synthetic workload: {exc}") from None
    if first is None:
        return iter(()), 0
    return _chain(first[0], (event for event, _expect in generated)), args.synthetic


def _file_events(path: str) -> Iterator[bytes]:
    """Non-blank lines of ``path`` (``-`` for stdin). Opened now, so a missing file fails before connecting."""
    stream: IO[bytes] = sys.stdin.buffer if path == "-" else open(path, "rb")  # noqa: SIM115 - closed below

    def lines() -> Iterator[bytes]:
        try:
            for line in stream:
                line = line.strip()
                if line:
                    yield line
        finally:
            if stream is not sys.stdin.buffer:
                stream.close()

    return lines()


def _producer(args: argparse.Namespace, rules: EventRules, limits: Limits, outcome: _Outcome) -> Producer:
    from bxb_stream.cli._aws import credentials_for
    from bxb_stream.producer import kinesis_endpoint, make_client

    endpoint = kinesis_endpoint(args.endpoint_url)
    try:
        aggregate = AggregationPolicy(max_bytes=args.aggregate_max_bytes) if args.aggregate else False
        if aggregate:
            aggregate.check(limits)
        if args.linger_ms < 0:
            raise ValueError("--linger-ms must be >= 0")
    except ValueError as exc:
        raise UserError(str(exc)) from None
    return Producer(
        args.stream,
        client=make_client(endpoint, args.region, credentials_for(endpoint)),
        rules=rules,
        validate=not args.no_validate,
        aggregate=aggregate,
        limits=limits,
        linger_ms=args.linger_ms,
        on_invalid=outcome.rejected,
        on_failure=outcome.failed,
    )


# --------------------------------------------------------------------------- sending


@dataclass
class _Outcome:
    """What went wrong, by code; the --failed-file writer; the failure that stopped the run."""

    path: str | None
    rejected_codes: collections.Counter[str] = field(default_factory=collections.Counter)
    failed_codes: collections.Counter[str] = field(default_factory=collections.Counter)
    stopped_by: DeliveryFailure | None = None
    _out: IO[bytes] | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)  # callbacks come from the linger thread too

    def __enter__(self) -> _Outcome:
        self._out = open(self.path, "wb") if self.path else None
        return self

    def __exit__(self, *exc: object) -> None:
        if self._out is not None:
            self._out.close()

    def rejected(self, event: Any, err: EventError) -> None:
        raw = event if isinstance(event, bytes) else msgspec.json.encode(event)
        with self._lock:
            self.rejected_codes[err.code] += 1
            self._write(err.code, str(err), raw)

    def failed(self, failures: list[DeliveryFailure]) -> None:
        from bxb_stream.aws_errors import fails_every_call

        with self._lock:
            for f in failures:
                self.failed_codes[f.error_code] += 1
                self._write(f.error_code, f.error_message, f.data or msgspec.json.encode(f.event))
                if self.stopped_by is None and fails_every_call(f.error_code):
                    self.stopped_by = f

    def _write(self, code: str, message: str, raw: bytes) -> None:
        if self._out is not None:
            line = {"error": code, "message": message, "event": raw.decode("utf-8", "replace")}
            self._out.write(msgspec.json.encode(line) + b"\n")


def _send(
    producer: Producer,
    events: Iterator[Any],
    total: int | None,
    args: argparse.Namespace,
    outcome: _Outcome,
    console: Any,
) -> None:
    """Put every event (at most ``--rate`` per second) until done or a failure stops the run."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    columns = [TextColumn("producing"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()]
    started = time.monotonic()
    quiet = args.quiet or not console.is_terminal  # a progress bar in a log file is noise
    with producer, Progress(*columns, console=console, disable=quiet) as progress:
        task = progress.add_task("events", total=total)
        for i, event in enumerate(events):
            if outcome.stopped_by is not None:
                break
            if args.rate is not None:
                ahead = started + i / args.rate - time.monotonic()
                if ahead > 0:
                    time.sleep(ahead)
            producer.put(event)
            if i % 256 == 0:
                progress.update(task, completed=i + 1)
        progress.update(task, completed=producer.stats.events + producer.stats.rejected)


def _stop_line(args: argparse.Namespace, outcome: _Outcome, producer: Producer) -> str:
    assert outcome.stopped_by is not None
    stats = producer.stats
    where = f" (written to {args.failed_file})" if args.failed_file else ""
    return (
        f"{outcome.stopped_by.error_message} [{outcome.stopped_by.error_code}]; stopped after "
        f"{stats.events + stats.rejected:,} events: {stats.delivered:,} delivered, "
        f"{stats.failures:,} not delivered{where}"
    )


def _print_summary(console: Any, stream: str, producer: Producer, outcome: _Outcome, elapsed: float) -> None:
    from rich.table import Table

    stats = producer.stats
    table = Table(title=f"bxb-stream produce → {stream}")
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
    for code, count in outcome.rejected_codes.most_common():
        table.add_row(f"  rejected: {code}", f"{count:,}")
    for code, count in outcome.failed_codes.most_common():
        table.add_row(f"  failed: {code}", f"{count:,}")
    console.print(table)


def _chain(first: Any, rest: Iterator[Any]) -> Iterator[Any]:
    yield first
    yield from rest
