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
import re
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bxb_stream.cli._failures import UserError
from bxb_stream.cli._parser import utc_time

_AGE = re.compile(r"^(\d+)([smhd])$")
_AGE_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}
SAMPLE_CHARS = 300


def when(text: str) -> datetime:
    """An argparse type: ISO-8601 (UTC without an offset), or an age before now: 90m, 24h, 7d."""
    age = _AGE.match(text.strip())
    if age:
        return datetime.now(UTC) - timedelta(**{_AGE_UNITS[age.group(2)]: int(age.group(1))})
    return utc_time(text)


def register(subparsers: Any) -> None:
    from bxb_stream.error_output import PROJECT_PREFIXES

    p = subparsers.add_parser(
        "errors", help="list the records the pipeline rejected, by error code", description=__doc__
    )
    p.add_argument("--bucket", required=True, help="the pipeline's bucket (the archive bucket)")
    p.add_argument("--endpoint-url", help="S3 endpoint (moto, LocalStack); default AWS_ENDPOINT_URL, else AWS")
    p.add_argument("--region", help="AWS region (default: AWS_REGION, AWS_DEFAULT_REGION, or us-east-1)")
    p.add_argument(
        "--since", type=when, help="records that arrived at or after this: ISO-8601 or an age (90m, 24h, 7d)"
    )
    p.add_argument("--until", type=when, help="records that arrived before this: ISO-8601 or an age (90m, 24h, 7d)")
    p.add_argument(
        "--prefix",
        action="append",
        dest="prefixes",
        metavar="PREFIX",
        help="an error or backup prefix as configured on a delivery stream, expressions and all (repeatable; "
        f"default the project's: {', '.join(PROJECT_PREFIXES)})",
    )
    p.add_argument("--samples", type=int, default=3, help="decoded samples per error code (default 3)")
    p.add_argument(
        "--config",
        type=Path,
        help="cdk.json whose event rules explain transform rejections (default ./cdk.json if present)",
    )
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
    rules = _rules(args.config)
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


def _rules(path: Path | None) -> Any:
    """The event rules the transform runs with: the given cdk.json's, ./cdk.json's, or the defaults."""
    from bxb_stream.config import EventRules
    from bxb_stream.deployment import PipelineConfig

    if path is None:
        path = Path("cdk.json")
        if not path.exists():
            return EventRules()
    try:
        return PipelineConfig.from_cdk_json(path).rules
    except json.JSONDecodeError as exc:
        raise UserError(f"--config {path}: not JSON ({exc})") from None


def _iso(ms: int | None) -> str | None:
    return None if ms is None else datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat(timespec="milliseconds")


def _report(args: argparse.Namespace, prefixes: tuple[str, ...], scan: Any, codes: list[Any]) -> dict[str, Any]:
    return {
        "bucket": args.bucket,
        "prefixes": list(prefixes),
        "since": args.since.isoformat() if args.since else None,
        "until": args.until.isoformat() if args.until else None,
        "objects_read": scan.objects,
        "unreadable_lines": scan.unreadable_lines,
        "records": sum(c.count for c in codes),
        "codes": [
            {
                "error_code": c.error_code,
                "count": c.count,
                "output_types": dict(c.output_types.most_common()),
                "reasons": dict(c.reasons.most_common()),
                "first_arrival": _iso(c.first_arrival_ms),
                "last_arrival": _iso(c.last_arrival_ms),
                "samples": [
                    {
                        "key": r.source.key,
                        "arrival": _iso(r.arrival_ms),
                        "attempts": r.attempts,
                        "error_message": r.error_message,
                        "data": r.raw.decode("utf-8", "replace"),
                    }
                    for r in c.samples
                ],
            }
            for c in codes
        ],
    }


def _print(report: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    console = Console(width=160) if not sys.stdout.isatty() else Console()
    where = f"s3://{report['bucket']} under {', '.join(report['prefixes'])}"
    if not report["codes"]:
        console.print(f"no rejected records in {escape(where)} ({report['objects_read']} error objects read)")
        return
    table = Table(title=f"{report['records']:,} rejected records in {where}", title_justify="left")
    for column in ("error code", "records", "output type", "reasons (the validator's)", "first arrival", "last"):
        table.add_column(column, justify="right" if column == "records" else "left")
    for c in report["codes"]:
        table.add_row(
            escape(c["error_code"]),
            f"{c['count']:,}",
            escape(", ".join(f"{k} {v:,}" for k, v in c["output_types"].items())),
            escape(", ".join(f"{k} {v:,}" for k, v in list(c["reasons"].items())[:3])),
            c["first_arrival"] or "",
            c["last_arrival"] or "",
        )
    console.print(table)
    if any(c["samples"] for c in report["codes"]):
        console.print("samples, decoded:")
    for c in report["codes"]:
        for sample in c["samples"]:
            data = sample["data"] if len(sample["data"]) <= SAMPLE_CHARS else sample["data"][:SAMPLE_CHARS] + "..."
            console.print(f"[bold]{escape(c['error_code'])}[/bold] {sample['arrival'] or ''}  {escape(sample['key'])}")
            console.print(f"  message: {escape(sample['error_message'])}", highlight=False)
            console.print(f"  data:    {escape(data)}", highlight=False)
    if report["unreadable_lines"]:
        console.print(f"[yellow]{report['unreadable_lines']} lines were not error records[/yellow]")
