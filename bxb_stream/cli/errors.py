"""``bxb-stream errors``: list what the pipeline rejected, by error code, with decoded samples.

Reads the records Firehose wrote to the bucket's error prefixes: the S3 path's errors/ (transform
and Parquet conversion failures), the HTTP path's http-backup-errors/ (transform failures) and
http-backup/ (records the HTTP endpoint never accepted). Works against AWS (default credentials)
and against the local stand-in (--endpoint-url, e.g. the one bxb-stream local --serve prints).
For a record the transform refused, the reason column re-runs the event validator on its data at
its arrival time, with the event rules of the cdk.json given by --config.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from bxb_stream.cli._failures import UserError
from bxb_stream.cli._rejections import add_error_output_arguments, codes_json, event_rules, print_codes, when

__all__ = ["register", "run", "when"]


def register(subparsers: Any) -> None:

    p = subparsers.add_parser(
        "errors", help="list the records the pipeline rejected, by error code", description=__doc__
    )
    add_error_output_arguments(p, "whose event rules explain transform rejections")
    p.add_argument("--endpoint-url", help="S3 endpoint (moto, LocalStack); default AWS_ENDPOINT_URL, else AWS")
    p.add_argument("--samples", type=int, default=3, help="decoded samples per error code (default 3)")
    p.add_argument("--format", choices=("table", "json"), default="table", help="output format (default table)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from bxb_stream.cli._aws import client
    from bxb_stream.error_output import (
        PROJECT_PREFIXES,
        KeyPattern,
        PrefixPatternError,
        Scan,
        TimeRange,
        read_records,
        summarize,
        validator_reason,
    )

    if args.samples < 0:
        raise UserError("--samples must be zero or more")
    prefixes = tuple(args.prefixes or PROJECT_PREFIXES)
    try:
        period = TimeRange(args.since, args.until)
        for prefix in prefixes:
            KeyPattern(prefix)
    except (ValueError, PrefixPatternError) as exc:
        raise UserError(str(exc)) from None
    rules = event_rules(args.config)
    s3 = client("s3", args.endpoint_url, args.region)
    scan = Scan()
    records = read_records(s3, args.bucket, prefixes, period, scan)
    codes = summarize(records, samples=args.samples, reason=validator_reason(rules))
    report = _report(args, prefixes, scan, codes)
    if args.format == "json":
        print(json.dumps(report, indent=2))
    else:
        _print(report)
    return 0


def _report(args: argparse.Namespace, prefixes: tuple[str, ...], scan: Any, codes: list[Any]) -> dict[str, Any]:
    return {
        "bucket": args.bucket,
        "prefixes": list(prefixes),
        "since": args.since.isoformat() if args.since else None,
        "until": args.until.isoformat() if args.until else None,
        "objects_read": scan.objects,
        "unreadable_lines": scan.unreadable_lines,
        "records": sum(c.count for c in codes),
        "codes": codes_json(codes),
    }


def _print(report: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.markup import escape

    console = Console(width=160) if not sys.stdout.isatty() else Console()
    where = f"s3://{report['bucket']} under {', '.join(report['prefixes'])}"
    if not report["codes"]:
        console.print(f"no rejected records in {escape(where)} ({report['objects_read']} error objects read)")
        return
    print_codes(console, f"{report['records']:,} rejected records in {where}", report["codes"])
    if report["unreadable_lines"]:
        console.print(f"[yellow]{report['unreadable_lines']} lines were not error records[/yellow]")
