"""What ``bxb-stream errors`` and ``bxb-stream redrive`` share: time arguments, the event rules
of a cdk.json, and the table of rejected records by error code."""

from __future__ import annotations

import re
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


def add_error_output_arguments(parser: Any, config_help: str) -> None:
    """The options that say which error and backup objects to read: bucket, where, when, which prefixes."""
    from bxb_stream.error_output import PROJECT_PREFIXES

    parser.add_argument("--bucket", required=True, help="the pipeline's bucket (the archive bucket)")
    parser.add_argument("--region", help="AWS region (default: AWS_REGION, AWS_DEFAULT_REGION, or us-east-1)")
    parser.add_argument(
        "--since", type=when, help="records that arrived at or after this: ISO-8601 or an age (90m, 24h, 7d)"
    )
    parser.add_argument(
        "--until", type=when, help="records that arrived before this: ISO-8601 or an age (90m, 24h, 7d)"
    )
    parser.add_argument(
        "--prefix",
        action="append",
        dest="prefixes",
        metavar="PREFIX",
        help="an error or backup prefix as configured on a delivery stream, expressions and all (repeatable; "
        f"default the project's: {', '.join(PROJECT_PREFIXES)})",
    )
    parser.add_argument("--config", type=Path, help=f"cdk.json {config_help} (default ./cdk.json if present)")


def pipeline_config(path: Path | None) -> Any:
    """The given cdk.json's PipelineConfig, ./cdk.json's if present, else the defaults."""
    import json

    from bxb_stream.deployment import PipelineConfig

    if path is None:
        path = Path("cdk.json")
        if not path.exists():
            return PipelineConfig()
    try:
        return PipelineConfig.from_cdk_json(path)
    except json.JSONDecodeError as exc:
        raise UserError(f"--config {path}: not JSON ({exc})") from None


def event_rules(path: Path | None) -> Any:
    """The event rules the transform runs with: the given cdk.json's, ./cdk.json's, or the defaults."""
    return pipeline_config(path).rules


def iso(ms: int | None) -> str | None:
    return None if ms is None else datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat(timespec="milliseconds")


def codes_json(codes: list[Any]) -> list[dict[str, Any]]:
    """``error_output.summarize``'s groups as JSON-ready dicts."""
    return [
        {
            "error_code": c.error_code,
            "count": c.count,
            "output_types": dict(c.output_types.most_common()),
            "reasons": dict(c.reasons.most_common()),
            "first_arrival": iso(c.first_arrival_ms),
            "last_arrival": iso(c.last_arrival_ms),
            "samples": [
                {
                    "key": r.source.key,
                    "arrival": iso(r.arrival_ms),
                    "attempts": r.attempts,
                    "error_message": r.error_message,
                    "data": r.raw.decode("utf-8", "replace"),
                }
                for r in c.samples
            ],
        }
        for c in codes
    ]


def print_codes(console: Any, title: str, codes: list[dict[str, Any]]) -> None:
    """The table of ``codes_json`` groups, then their decoded samples."""
    from rich.markup import escape
    from rich.table import Table

    table = Table(title=title, title_justify="left")
    for column in ("error code", "records", "output type", "reasons (the validator's)", "first arrival", "last"):
        table.add_column(column, justify="right" if column == "records" else "left")
    for c in codes:
        table.add_row(
            escape(c["error_code"]),
            f"{c['count']:,}",
            escape(", ".join(f"{k} {v:,}" for k, v in c["output_types"].items())),
            escape(", ".join(f"{k} {v:,}" for k, v in list(c["reasons"].items())[:3])),
            c["first_arrival"] or "",
            c["last_arrival"] or "",
        )
    console.print(table)
    if any(c["samples"] for c in codes):
        console.print("samples, decoded:")
    for c in codes:
        for sample in c["samples"]:
            console.print(f"[bold]{escape(c['error_code'])}[/bold] {sample['arrival'] or ''}  {escape(sample['key'])}")
            console.print(f"  message: {escape(sample['error_message'])}", highlight=False)
            console.print(f"  data:    {escape(shorten(sample['data']))}", highlight=False)


def shorten(text: str) -> str:
    return text if len(text) <= SAMPLE_CHARS else text[:SAMPLE_CHARS] + "..."
