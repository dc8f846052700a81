"""``bxb-stream clickhouse ddl|apply|conflicts|health``: render, apply and inspect the ClickHouse schema.

Settings come from flags, then ``BXB_CLICKHOUSE_<FIELD>`` variables (see
``bxb_stream.clickhouse.settings``). Credentials are a role ARN or a named collection name;
``apply --named-collection-from-env`` fills that collection from AWS_ACCESS_KEY_ID /
AWS_SECRET_ACCESS_KEY without printing them.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from bxb_stream.cli._parser import add_clickhouse_target

SETTING_FLAGS = {
    "bucket_url": "the archive bucket's URL, https://BUCKET.s3.REGION.amazonaws.com (BXB_CLICKHOUSE_BUCKET_URL)",
    "database": "database for the tables (default bxb; BXB_CLICKHOUSE_DATABASE)",
    "role_arn": "IAM role ClickHouse assumes to read the bucket (BXB_CLICKHOUSE_ROLE_ARN)",
    "named_collection": "named collection holding S3 keys, instead of a role (BXB_CLICKHOUSE_NAMED_COLLECTION)",
    "deployment": "single, cluster or cloud (default single; BXB_CLICKHOUSE_DEPLOYMENT)",
    "cluster_name": "the cluster's name in remote_servers, for --deployment cluster (BXB_CLICKHOUSE_CLUSTER_NAME)",
}


def add_settings_flags(parser: argparse.ArgumentParser) -> None:
    for name, text in SETTING_FLAGS.items():
        parser.add_argument(f"--{name.replace('_', '-')}", dest=name, default=None, help=text)


def settings_from(args: argparse.Namespace) -> Any:
    from bxb_stream.clickhouse.settings import ClickHouseSettings

    return ClickHouseSettings.from_env(**{name: getattr(args, name) for name in SETTING_FLAGS})


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("clickhouse", help="render, apply and inspect the ClickHouse schema")
    sub = parser.add_subparsers(dest="clickhouse_command", required=True, metavar="ACTION")

    ddl = sub.add_parser("ddl", help="print the rendered SQL")
    add_settings_flags(ddl)
    ddl.set_defaults(func=_ddl)

    apply = sub.add_parser("apply", help="apply migrations not yet recorded (idempotent)")
    add_settings_flags(apply)
    apply.add_argument("--url", required=True, help="http(s)://user:pass@host:port, chdb:///path or embedded")
    apply.add_argument("--named-collection-from-env", action="store_true", help="create/update the named collection")
    apply.set_defaults(func=_apply)

    conflicts = sub.add_parser(
        "conflicts", help="list copies of a transaction that differ from the kept one (never billed), JSON lines"
    )
    add_clickhouse_target(conflicts)
    conflicts.add_argument("--organization-id", default=None, help="only this organization (default all)")
    conflicts.add_argument("--limit", type=int, default=1000, help="at most this many, newest first (default 1000)")
    conflicts.set_defaults(func=_conflicts)

    health = sub.add_parser(
        "health", help="everything that stopped short of billing, and whether billing keeps up; exit 1 if any"
    )
    add_clickhouse_target(health)
    health.add_argument("--bucket", help="also count Firehose's error output and the HTTP backup in this bucket")
    health.add_argument("--endpoint-url", help="S3 endpoint for --bucket (moto, LocalStack); default AWS")
    health.add_argument("--region", help="AWS region for --bucket (default: the environment's, or us-east-1)")
    health.add_argument("--json", action="store_true", help="one JSON object instead of text")
    health.set_defaults(func=_health)


# Errors (bad settings, a bad --url, ClickHouse unreachable) reach bxb_stream.cli.main, which prints one line.


def _ddl(args: argparse.Namespace) -> int:
    from bxb_stream.clickhouse.ddl import render_sql

    sys.stdout.write(render_sql(settings_from(args)))
    return 0


def _apply(args: argparse.Namespace) -> int:
    from bxb_stream.clickhouse import client as ch_client
    from bxb_stream.clickhouse import migrations

    settings = settings_from(args)
    client = ch_client.connect(args.url)
    if args.named_collection_from_env:
        migrations.ensure_named_collection_from_env(client, settings)
    result = migrations.apply(client, settings)
    target = f"{ch_client.redact(args.url)} database {settings.database}"
    for m in result.applied:
        print(f"applied {m.version:04d} {m.name}")
    if not result.applied:
        print(f"nothing to apply: {len(result.already)} migrations already recorded in {target}")
    else:
        print(f"{len(result.applied)} applied, {len(result.already)} already recorded in {target}")
    return 0


def _conflicts(args: argparse.Namespace) -> int:
    from bxb_stream.clickhouse import client as ch_client
    from bxb_stream.clickhouse import ledger

    found = ledger.conflicts(ch_client.connect(args.url), args.database, args.organization_id, args.limit)
    for conflict in found:
        print(json.dumps(conflict.as_dict()))
    return 1 if found else 0


def _health(args: argparse.Namespace) -> int:
    from bxb_stream.clickhouse import client as ch_client
    from bxb_stream.clickhouse import health

    report = health.check(ch_client.connect(args.url), args.database)
    if args.bucket:
        from bxb_stream.cli._aws import client as aws_client
        from bxb_stream.error_output import read_records

        s3 = aws_client("s3", args.endpoint_url, args.region)
        report.error_output.update(r.error_code for r in read_records(s3, args.bucket))
    if args.json:
        print(json.dumps(report.as_dict()))
    else:
        _print_health(report)
    return 1 if report.attention else 0


def _print_health(report: Any) -> None:
    v = report.verdicts
    print(f"database {report.database}")
    print(f"  billed {v['billed']:,} (of which accepted late {v['accepted']:,})")
    print(f"  duplicates {v['duplicate']:,}, conflicts {v['conflict']:,} (counted, never billed)")
    print(
        f"  late {report.pending_late:,} waiting for a decision "
        f"(period closed {v['late:period_closed']:,}, past the grace {v['late:grace_exceeded']:,} in all), "
        f"rejected {v['rejected']:,}"
    )
    print(f"  dead letters {sum(report.dead_letters.values()):,} {dict(report.dead_letters) or ''}".rstrip())
    print(f"  S3Queue files given up {len(report.failed_files):,}")
    if report.error_output:
        total = sum(report.error_output.values())
        print(f"  Firehose error output and HTTP backup {total:,} {dict(report.error_output)}")
    backlog = report.backlog
    print(f"  waiting: {backlog.unresolved:,} landed to resolve, {backlog.unbilled:,} billed to add to usage")
    for org, until in report.closes.items():
        print(f"  periods of {org} closed until {until}")
    for item in report.attention:
        print(f"attention: {item}")
    if not report.attention:
        print("healthy: nothing waits for a decision, nothing is stuck")
