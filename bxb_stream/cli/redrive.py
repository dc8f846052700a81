"""``bxb-stream redrive``: send what the pipeline rejected through it again, once the rule or hook is fixed.

Reads the error objects of both delivery streams (errors/, http-backup-errors/, http-backup/ by
default), decodes each record and puts it to the Kinesis stream through the producer, which
checks it with the pipeline's rules (--config): it then takes the whole path again. Each object
whose records were all acknowledged by Kinesis is moved to redriven/<its key>: kept, never
deleted, and outside the error prefixes, so a second redrive does not send it again (and events
sent twice are duplicates in ClickHouse, never a second charge). --dry-run reads, groups by error
code and checks what the producer would refuse, and sends and moves nothing.

Objects usually mix records that now pass with records that never will; --split-refused writes
the still-refused lines to a new error object beside the original and moves the original, so
the next redrive reads only those.

Exit status: 0 when everything read was sent and moved (a dry run: would be), 1 when records are
still refused or undelivered or objects stay in place, 2 for a usage or access error.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from bxb_stream.cli._failures import UserError
from bxb_stream.cli._progress import ProgressBar
from bxb_stream.cli._rejections import add_error_output_arguments, codes_json, event_rules, print_codes, shorten

KEPT_LISTED = 10  # objects left in place named in the text report


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "redrive", help="re-submit rejected records to the stream, then move their objects to redriven/",
        description=__doc__,
    )  # fmt: skip
    add_error_output_arguments(p, "whose event rules the producer checks with")
    p.add_argument("--stream", help="the Kinesis stream to put the records to (name or ARN; not needed with --dry-run)")
    p.add_argument("--dry-run", action="store_true", help="read, group and check; send and move nothing")
    p.add_argument(
        "--endpoint-url", help="S3 and Kinesis endpoint (moto, LocalStack); default AWS_ENDPOINT_URL, else AWS"
    )
    p.add_argument(
        "--split-refused",
        action="store_true",
        help="write the lines the producer still refuses to a new error object beside the original, then move "
        "the original (only when some of its records went through): the next redrive reads only those",
    )
    p.add_argument("--aggregate", action="store_true", help="KPL-aggregate the records (fewer, larger PutRecords)")
    p.add_argument("--legacy-limits", action="store_true", help="1 MiB record / 5 MiB request (moto, old emulators)")
    p.add_argument("--samples", type=int, default=3, help="decoded samples per error code (default 3)")
    p.add_argument("--format", choices=("table", "json"), default="table", help="output format (default table)")
    p.add_argument("--quiet", action="store_true", help="no progress bar (there is none when stderr is not a terminal)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from rich.console import Console

    from bxb_stream import redrive
    from bxb_stream.cli._aws import client
    from bxb_stream.error_output import PROJECT_PREFIXES, PrefixPatternError, TimeRange

    if args.samples < 0:
        raise UserError("--samples must be zero or more")
    if not args.dry_run and not args.stream:
        raise UserError("--stream is required (the Kinesis stream to put the records to), unless --dry-run")
    prefixes = tuple(args.prefixes or PROJECT_PREFIXES)
    try:
        period = TimeRange(args.since, args.until)
        redrive.patterns_for(prefixes)
    except (ValueError, PrefixPatternError) as exc:
        raise UserError(str(exc)) from None
    rules = event_rules(args.config)
    s3 = client("s3", args.endpoint_url, args.region)
    target = None if args.dry_run else _target(args)
    console = Console(stderr=True)
    try:
        with ProgressBar(console, "error objects", args.quiet) as bar:
            report = redrive.redrive(
                s3, args.bucket, target, prefixes=prefixes, period=period, rules=rules, samples=args.samples,
                split_refused=args.split_refused, on_listed=bar.total,
                on_progress=lambda objects, records: bar.update(objects, f"{records:,} records"),
            )  # fmt: skip
    except redrive.RedriveStopped as stopped:
        done = stopped.report
        raise UserError(
            f"{stopped}; stopped after {done.sent:,} records sent and {len(done.moved):,} objects moved "
            "(the rest stays in place; run again once fixed)"
        ) from None
    document = _document(args, prefixes, report)
    if args.format == "json":
        print(json.dumps(document, indent=2))
    else:
        _print(document)
    return 0 if report.complete else 1


def _target(args: argparse.Namespace) -> Any:
    from bxb_stream.cli._aws import credentials_for
    from bxb_stream.producer import LEGACY, kinesis_endpoint, make_client
    from bxb_stream.producer import limits as L
    from bxb_stream.redrive import StreamTarget

    endpoint = kinesis_endpoint(args.endpoint_url)
    kinesis = make_client(endpoint, args.region, credentials_for(endpoint))
    return StreamTarget(args.stream, kinesis, LEGACY if args.legacy_limits else L.CURRENT, args.aggregate)


def _document(args: argparse.Namespace, prefixes: tuple[str, ...], report: Any) -> dict[str, Any]:
    kept = report.kept
    return {
        "bucket": args.bucket,
        "stream": args.stream,
        "dry_run": report.dry_run,
        "prefixes": list(prefixes),
        "since": args.since.isoformat() if args.since else None,
        "until": args.until.isoformat() if args.until else None,
        "objects_listed": report.listed,
        "records": report.records,
        "sent": report.sent,
        "sent_once_for_identical_records": report.identical,
        "refused": dict(report.refused.most_common()),
        "undelivered": dict(report.undelivered.most_common()),
        "moved": len(report.moved),
        "split": [{"key": o.key, "refused_lines_to": o.split_to} for o in report.objects if o.split_to],
        "kept": [{"key": o.key, "reason": o.problem} for o in kept if o.problem],
        "unreadable_lines": sum(o.unreadable_lines for o in report.objects),
        "refusal_samples": [
            {"key": r.key, "code": r.code, "message": r.message, "data": r.data.decode("utf-8", "replace")}
            for r in report.refusals
        ],
        "codes": codes_json(report.codes),
    }


def _print(doc: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.markup import escape

    console = Console(width=160) if not sys.stdout.isatty() else Console()
    where = f"s3://{doc['bucket']} under {', '.join(doc['prefixes'])}"
    if not doc["codes"] and not doc["kept"]:
        console.print(f"nothing to redrive in {escape(where)} ({doc['objects_listed']} error objects listed)")
        return
    verb = "would be re-submitted" if doc["dry_run"] else f"read for {doc['stream']}"
    print_codes(console, f"{doc['records']:,} rejected records {verb}, from {where}", doc["codes"])
    if doc["dry_run"]:
        refused = sum(doc["refused"].values())
        console.print(
            f"dry run: {doc['records'] - refused:,} records would be sent, {refused:,} refused by the producer"
        )
    else:
        console.print(
            f"sent {doc['sent']:,} records ({doc['sent_once_for_identical_records']:,} identical to one already sent "
            f"this run); moved {doc['moved']:,} of {doc['objects_listed']:,} objects to redriven/"
        )
    for code, n in doc["refused"].items():
        console.print(f"[yellow]still refused at the producer: {escape(code)} {n:,}[/yellow]")
    for sample in doc["refusal_samples"]:
        console.print(f"  {escape(sample['code'])}  {escape(sample['key'])}", highlight=False)
        console.print(f"    {escape(sample['message'])}", highlight=False)
        console.print(f"    data: {escape(shorten(sample['data']))}", highlight=False)
    if doc["split"]:
        console.print(f"{len(doc['split']):,} objects moved after writing their still-refused lines to a new object")
    for code, n in doc["undelivered"].items():
        console.print(f"[yellow]not delivered to Kinesis: {escape(code)} {n:,}[/yellow]")
    if doc["kept"]:
        console.print(f"[yellow]{len(doc['kept']):,} objects stay in place:[/yellow]")
    for item in doc["kept"][:KEPT_LISTED]:
        console.print(f"  {escape(item['key'])}: {escape(item['reason'])}", highlight=False)
    if len(doc["kept"]) > KEPT_LISTED:
        console.print(f"  ... and {len(doc['kept']) - KEPT_LISTED:,} more (--format json lists them all)")
    if doc["unreadable_lines"]:
        console.print(f"[yellow]{doc['unreadable_lines']} lines were not error records[/yellow]")
