"""``bxb-stream transform``: run the Firehose transform over events on this machine and reconcile.

Events come from a JSON Lines file (or stdin) or from the synthetic generator.
They go through the real transform in Firehose-sized invocations (1 MiB each
by default), and the command prints what came back: Ok,
Dropped and ProcessingFailed by reason. With ``--synthetic`` it also checks
every event against what the generator says should happen, and exits 1 on any
difference.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import msgspec

from bxb_runtime.config import EventRules
from bxb_runtime.transform import Transformer, load_hooks
from bxb_runtime.transform.process import CONFLICT, is_rejection
from bxb_stream.firehose.invocation import SourceRecord, firehose_event


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("transform", help="run the Firehose transform locally over events", description=__doc__)
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--file", help="JSON Lines file of events, or - for stdin")
    source.add_argument("--synthetic", type=int, metavar="N", help="generate N synthetic events")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--organization-id", default="org_demo", help="this deployment's organization (default org_demo)")
    p.add_argument("--hooks", default="", help="module:function entries, comma separated")
    p.add_argument(
        "--buffer-bytes", type=int, default=1024 * 1024, help="processor buffer hint per invocation (default 1 MiB)"
    )
    p.add_argument("--output", help="write the Ok lines (newline-delimited JSON) here")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    rules = EventRules(organization_id=args.organization_id, hooks=args.hooks)
    transformer = Transformer(rules, load_hooks(rules.hooks))
    now_ms = int(time.time() * 1000)
    expectations: list[Any] = []
    if args.synthetic is not None:
        events = _synthetic(args, now_ms, expectations)
    else:
        events = _lines(sys.stdin.buffer if args.file == "-" else open(args.file, "rb"))  # noqa: SIM115

    results: Counter[str] = Counter()
    reasons: Counter[str] = Counter()
    invocations = 0
    verdicts: list[tuple[str, str]] = []  # (result, reason or stream) per event, in order
    output = open(args.output, "wb") if args.output else None  # noqa: SIM115
    started = time.perf_counter()
    for batch in _batches(events, now_ms, args.buffer_bytes):
        request = firehose_event(batch)
        response, stats = transformer.process(request)
        invocations += 1
        results.update(stats.results)
        reasons.update(stats.reasons)
        codes = iter(stats.rejections)
        for answer in response["records"]:
            verdicts.append(_verdict(answer, codes, stats))
            if output and answer["result"] == "Ok":
                output.write(msgspec.json.decode(b'"' + answer["data"].encode() + b'"', type=bytes))
    elapsed = time.perf_counter() - started
    if output:
        output.close()

    total = sum(results.values())
    table = Table(title=f"transform: {total} events in {invocations} invocations, {total / max(elapsed, 1e-9):,.0f}/s")
    table.add_column("result")
    table.add_column("reason")
    table.add_column("events", justify="right")
    table.add_row("Ok", "to ClickHouse (billing and lateness are decided there)", str(results["Ok"]))
    for reason, count in sorted(reasons.items()):
        # conflict_in_batch is within the Ok row too: passed on, and stored as a conflict.
        result = "ProcessingFailed" if is_rejection(reason) else "Ok" if reason == CONFLICT else "Dropped"
        table.add_row(result, reason, str(count))
    console.print(table)

    if not expectations:
        return 0
    mismatches = [
        (i, expect, got)
        for i, (expect, got) in enumerate(zip(expectations, verdicts, strict=True))
        if not _agrees(expect, got)
    ]
    if mismatches:
        console.print(f"[red]{len(mismatches)} events did not match the generator's expectation[/red]")
        for i, expect, got in mismatches[:10]:
            console.print(f"  event {i}: expected {expect.kind.value} {expect.error_code or ''}, got {got}")
        return 1
    console.print(f"[green]reconciled: all {total} events did what the generator expected[/green]")
    return 0


def _verdict(answer: dict[str, Any], rejections: Iterator[Any], stats: Any) -> tuple[str, str]:
    result = answer["result"]
    if result == "Ok":
        return result, "ok"
    if result == "ProcessingFailed":
        return result, next(r.code for r in rejections if r.record_id == answer["recordId"])
    return result, "dropped"


def _agrees(expect: Any, got: tuple[str, str]) -> bool:
    kind = expect.kind.value
    if kind in ("stored", "late", "conflict"):  # ClickHouse's resolver bills, sets aside or keeps them apart
        return got == ("Ok", "ok")
    if kind == "duplicate":
        # Within one invocation the transform drops it; across invocations it passes
        # here and ClickHouse's resolver records it as a duplicate.
        return got[0] in ("Dropped", "Ok")
    return got == ("ProcessingFailed", expect.error_code)


def _synthetic(args: argparse.Namespace, now_ms: int, expectations: list[Any]) -> Iterator[bytes]:
    from bxb_stream.producer.synthetic import generate

    for event, expect in generate(
        args.synthetic,
        seed=args.seed,
        duplicate_share=0.02,
        invalid_share=0.02,
        late_share=0.02,
        now_ms=now_ms,
    ):
        expectations.append(expect)
        yield event if isinstance(event, bytes) else msgspec.json.encode(event)


def _lines(stream: Any) -> Iterator[bytes]:
    with stream:
        for line in stream:
            if line.strip():
                yield line.rstrip(b"\r\n")


def _batches(events: Iterator[bytes], arrival_ms: int, buffer_bytes: int) -> Iterator[list[SourceRecord]]:
    batch: list[SourceRecord] = []
    size = 0
    for i, data in enumerate(events):
        if batch and size + len(data) > buffer_bytes:
            yield batch
            batch, size = [], 0
        batch.append(SourceRecord(data, arrival_ms, sequence_number=str(i)))
        size += len(data)
    if batch:
        yield batch
