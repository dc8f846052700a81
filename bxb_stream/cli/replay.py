"""``bxb-stream replay archive|kinesis``: reprocess history after a fix; safe to run again.

archive: the Parquet archive (archive/events/, and events/ not yet moved) into ClickHouse for a
time range and organizations; rows are inserted as S3Queue inserts them, the resolver runs, and
the report says how many rows were newly billed and how many were recorded as duplicates.

kinesis: the stream from --at-timestamp (within its retention) through the in-repo Firehose
runner, which writes Parquet to the bucket as the S3 delivery stream does; ClickHouse's S3Queue
then ingests it. Uses the usual AWS credentials, or --endpoint-url for a stand-in.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from bxb_stream.cli._failures import UserError
from bxb_stream.cli._parser import CLICKHOUSE_URL_HELP, utc_time
from bxb_stream.cli._progress import ProgressBar
from bxb_stream.cli._rejections import pipeline_config, when


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("replay", help="reprocess history: the Parquet archive, or Kinesis from a time")
    sub = parser.add_subparsers(dest="replay_command", required=True, metavar="SOURCE")

    archive = sub.add_parser(
        "archive", help="re-insert archived Parquet rows into ClickHouse and resolve them (idempotent)"
    )
    archive.add_argument("--bucket", required=True, help="the pipeline's bucket (the archive bucket)")
    archive.add_argument("--url", required=True, help=CLICKHOUSE_URL_HELP)
    archive.add_argument("--database", default="bxb", help="database of the tables (default bxb)")
    orgs = archive.add_mutually_exclusive_group(required=True)
    orgs.add_argument(
        "--organization-id", action="append", dest="organizations", metavar="ORG", help="an organization (repeatable)"
    )
    orgs.add_argument("--all-organizations", action="store_true", help="every organization in the bucket")
    archive.add_argument("--from", dest="start", required=True, type=utc_time, help="events at or after (ISO-8601)")
    archive.add_argument("--to", dest="end", required=True, type=utc_time, help="events before this (ISO-8601)")
    archive.add_argument("--dry-run", action="store_true", help="list and read; insert nothing")
    archive.add_argument("--timeout", type=float, default=600.0, help="seconds to wait for the resolver (default 600)")
    _add_aws(archive)
    archive.set_defaults(func=_archive)

    kinesis = sub.add_parser("kinesis", help="read a stream from a time through the Firehose runner into S3")
    kinesis.add_argument("--stream", required=True, help="the Kinesis stream (name)")
    kinesis.add_argument("--bucket", required=True, help="the bucket the S3 delivery stream writes (Parquet)")
    kinesis.add_argument(
        "--at-timestamp", required=True, type=when, help="first arrival to replay: ISO-8601, or an age (90m, 24h)"
    )
    kinesis.add_argument("--config", type=Path, help="cdk.json: rules, hooks and buffers (default ./cdk.json, if any)")
    kinesis.add_argument("--timeout", type=float, default=3600.0, help="seconds to reach the tip (default 3600)")
    _add_aws(kinesis)
    kinesis.set_defaults(func=_kinesis)

    for p in (archive, kinesis):
        p.add_argument("--format", choices=("table", "json"), default="table", help="output format (default table)")
        p.add_argument("--quiet", action="store_true", help="no progress bar (none when stderr is not a terminal)")


def _add_aws(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--endpoint-url", help="AWS endpoint (moto, LocalStack); default AWS_ENDPOINT_URL or AWS")
    parser.add_argument("--region", help="AWS region (default: AWS_REGION, AWS_DEFAULT_REGION, or us-east-1)")


# --------------------------------------------------------------------------- archive


def _archive(args: argparse.Namespace) -> int:
    from rich.console import Console

    from bxb_stream.cli._aws import client as aws_client
    from bxb_stream.clickhouse import client as ch_client
    from bxb_stream.replay import archive

    try:
        organizations = None if args.all_organizations else tuple(args.organizations)
        selection = archive.Selection(args.start, args.end, organizations)
    except archive.ReplayError as exc:
        raise UserError(str(exc)) from None
    s3 = aws_client("s3", args.endpoint_url, args.region)
    client = ch_client.connect(args.url)
    with ProgressBar(Console(stderr=True), "Parquet objects", args.quiet) as bar:
        try:
            report = archive.replay(
                client, args.database, s3, args.bucket, selection, dry_run=args.dry_run, timeout_s=args.timeout,
                on_listed=bar.total, on_progress=lambda objects, rows: bar.update(objects, f"{rows:,} rows"),
            )  # fmt: skip
        except archive.ReplayError as exc:
            raise UserError(str(exc)) from None
    document = {
        "bucket": args.bucket,
        "database": args.database,
        "dry_run": report.dry_run,
        "organizations": list(selection.organizations) if selection.organizations else "all",
        "from": selection.start.isoformat(),
        "to": selection.end.isoformat(),
        "objects": report.objects,
        "objects_by_prefix": dict(report.objects_by_root),
        "rows_read": report.rows_read,
        "rows_selected": report.rows_selected,
        "rows_landed": report.landed,
        "outcome": dict(report.outcome.most_common()),
        "newly_billed": report.newly_billed,
        "ledger_before": dict(sorted(report.before.items())),
        "ledger_after": dict(sorted(report.after.items())),
    }
    if args.format == "json":
        print(json.dumps(document, indent=2))
        return 0
    where = f"s3://{args.bucket} ({', '.join(f'{k} {v:,}' for k, v in report.objects_by_root.items()) or 'none'})"
    print(f"read {report.objects:,} Parquet objects from {where}: {report.rows_read:,} rows")
    span = f"[{document['from']}, {document['to']})"
    print(f"selected {report.rows_selected:,} rows of {document['organizations']} in {span}")
    if report.dry_run:
        print("dry run: nothing inserted")
        return 0
    dropped = report.rows_selected - report.landed
    print(
        f"inserted into {args.database}.events_raw: {report.landed:,} rows landed"
        + (f", {dropped:,} dropped at insert (a batch replayed before)" if dropped else "")
    )
    print("the resolver decided: " + (", ".join(f"{k} {v:,}" for k, v in report.outcome.most_common()) or "nothing"))
    print(f"newly billed: {report.newly_billed:,}")
    _print_ledger(report.before, report.after)
    return 0


def _print_ledger(before: Any, after: Any) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="ledger verdicts of the organizations", title_justify="left")
    for column in ("verdict", "before", "after", "change"):
        table.add_column(column, justify="left" if column == "verdict" else "right")
    for verdict in sorted(set(before) | set(after)):
        table.add_row(verdict, f"{before[verdict]:,}", f"{after[verdict]:,}", f"{after[verdict] - before[verdict]:+,}")
    Console(width=160 if not sys.stdout.isatty() else None).print(table)


# --------------------------------------------------------------------------- kinesis


def _kinesis(args: argparse.Namespace) -> int:
    from rich.console import Console

    from bxb_stream.cli._aws import client as aws_client
    from bxb_stream.replay import kinesis

    config = pipeline_config(args.config)
    region = args.region or _region()
    kinesis_client = aws_client("kinesis", args.endpoint_url, region)
    s3 = aws_client("s3", args.endpoint_url, region)
    with ProgressBar(Console(stderr=True), "records read", args.quiet) as bar:
        try:
            report = kinesis.replay(
                config, stream=args.stream, bucket=args.bucket, at=args.at_timestamp, kinesis=kinesis_client, s3=s3,
                region=region, timeout_s=args.timeout,
                on_progress=lambda stats: bar.update(stats.records_read, f"{stats.objects_written:,} objects"),
            )  # fmt: skip
        except kinesis.KinesisReplayError as exc:
            raise UserError(str(exc)) from None
    document = {
        "stream": report.stream,
        "bucket": report.bucket,
        "at_timestamp": report.at.isoformat(),
        "records_read": report.records_read,
        "kinesis_records": report.kinesis_records,
        "delivered_to_parquet": report.delivered,
        "dropped_in_batch": report.dropped,
        "rejected": dict(report.rejected.most_common()),
        "data_objects": len(report.data_objects),
        "error_objects": len(report.error_objects),
        "seconds": round(report.seconds, 1),
    }
    if args.format == "json":
        print(json.dumps({**document, "data_object_keys": report.data_objects}, indent=2))
        return 0
    print(
        f"read {report.records_read:,} records ({report.kinesis_records:,} Kinesis records) of {report.stream} "
        f"since {document['at_timestamp']} in {document['seconds']} s"
    )
    print(
        f"wrote {report.delivered:,} rows in {len(report.data_objects):,} Parquet objects to s3://{report.bucket}/events/"
    )
    if report.dropped:
        print(f"dropped within a batch (copies of one already passed on): {report.dropped:,}")
    for code, n in report.rejected.most_common():
        print(f"refused by the transform, written to errors/: {code} {n:,}")
    print("ClickHouse's S3Queue ingests them: stored events come back as duplicates, never billed twice.")
    return 0


def _region() -> str:
    import os

    return os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
