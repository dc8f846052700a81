"""``bxb-stream clickhouse ddl|apply|conflicts``: render, apply and inspect the ClickHouse schema.

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

SETTING_FLAGS = {
    "bucket_url": "the archive bucket's URL, https://BUCKET.s3.REGION.amazonaws.com (BXB_CLICKHOUSE_BUCKET_URL)",
    "database": "database for the tables (default bxb; BXB_CLICKHOUSE_DATABASE)",
    "role_arn": "IAM role ClickHouse assumes to read the bucket (BXB_CLICKHOUSE_ROLE_ARN)",
    "named_collection": "named collection holding S3 keys, instead of a role (BXB_CLICKHOUSE_NAMED_COLLECTION)",
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

    conflicts = sub.add_parser("conflicts", help="list transaction_ids stored with different payloads")
    conflicts.add_argument("--url", required=True, help="http(s)://user:pass@host:port, chdb:///path or embedded")
    conflicts.add_argument("--database", default="bxb", help="database of the tables (default bxb)")
    conflicts.add_argument("--organization-id", default=None, help="only this organization (default all)")
    conflicts.set_defaults(func=_conflicts)


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
    from bxb_stream.clickhouse.usage import transaction_id_conflicts

    client = ch_client.connect(args.url)
    found = transaction_id_conflicts(client, args.database, args.organization_id)
    for c in found:
        print(json.dumps(c.__dict__))
    return 1 if found else 0
