"""``bxb-stream usage [reconcile]``: usage as billed, and a check that usage_hourly agrees.

``usage``: one customer's usage of one metric over an hour-aligned period, as JSON, read
from usage_hourly; ``--raw`` computes the same from the billed events themselves.

``usage reconcile``: compares usage_hourly with the billed events, hour by hour, for one
organization over a period, adds a correction to every hour that differs (unless
``--dry-run``), and exits 1 if anything differed.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from bxb_stream.cli._failures import UserError
from bxb_stream.cli._parser import add_clickhouse_target, utc_time


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "usage", help="usage as billed, for a customer and metric; 'usage reconcile' checks it", description=__doc__
    )
    parser.add_argument(
        "action", nargs="?", choices=["reconcile"], help="reconcile: compare usage_hourly with the events, repair"
    )
    add_clickhouse_target(parser)
    parser.add_argument("--organization-id", required=True, help="the organization whose usage to read")
    parser.add_argument("--customer", help="external_customer_id (usage)")
    parser.add_argument("--code", help="billable metric code (usage)")
    parser.add_argument(
        "--from", dest="start", type=utc_time, required=True, help="ISO-8601, on an hour (UTC if no offset)"
    )
    parser.add_argument("--to", dest="end", type=utc_time, required=True, help="ISO-8601, exclusive, on an hour")
    parser.add_argument("--raw", action="store_true", help="usage: compute from the billed events, not usage_hourly")
    parser.add_argument("--dry-run", action="store_true", help="reconcile: report differences, repair nothing")
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from bxb_stream.clickhouse import client as ch_client

    if args.action == "reconcile":
        return _reconcile(args, ch_client.connect(args.url))
    if not args.customer or not args.code:
        raise UserError("usage needs --customer and --code (or 'usage reconcile' for a whole organization)")
    return _usage(args, ch_client.connect(args.url))


def _usage(args: argparse.Namespace, client: Any) -> int:
    from bxb_stream.clickhouse.usage import query_usage, query_usage_raw

    query = query_usage_raw if args.raw else query_usage
    usage = query(client, args.database, args.organization_id, args.customer, args.code, args.start, args.end)
    print(
        json.dumps(
            {
                "organization_id": args.organization_id,
                "external_customer_id": args.customer,
                "code": args.code,
                "from": args.start.isoformat(),
                "to": args.end.isoformat(),
                "source": "events" if args.raw else "usage_hourly",
                **usage.as_dict(),
            }
        )
    )
    return 0


def _reconcile(args: argparse.Namespace, client: Any) -> int:
    from bxb_stream.clickhouse.usage import reconcile

    result = reconcile(client, args.database, args.organization_id, args.start, args.end, repair=not args.dry_run)
    for d in result.differences:
        print(
            json.dumps(
                {
                    "external_customer_id": d.external_customer_id,
                    "code": d.code,
                    "hour": d.hour.isoformat(),
                    "usage_hourly": d.stored.as_dict(),
                    "events": d.exact.as_dict(),
                    "repaired": result.repaired,
                }
            )
        )
    verdict = "repaired" if result.repaired else "differ" if result.differences else "agree"
    print(
        f"{len(result.differences)} of {result.hours_compared} hours {verdict} "
        f"({args.organization_id}, {args.start.isoformat()} to {args.end.isoformat()})"
    )
    return 1 if result.differences else 0
