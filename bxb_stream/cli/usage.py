"""``bxb-stream usage``: one customer's usage of one metric over an hour-aligned period, as JSON.

Read from usage_hourly (duplicates excluded by construction); ``--raw`` computes the same
answer from ``events_raw FINAL`` for comparison.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from bxb_stream.cli._parser import utc_time


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "usage", help="usage for an organization, customer, metric and period", description=__doc__
    )
    parser.add_argument("--url", required=True, help="http(s)://user:pass@host:port, chdb:///path or embedded")
    parser.add_argument("--database", default="bxb", help="database of the tables (default bxb)")
    parser.add_argument("--organization-id", required=True, help="the organization whose usage to read")
    parser.add_argument("--customer", required=True, help="external_customer_id")
    parser.add_argument("--code", required=True, help="billable metric code")
    parser.add_argument(
        "--from", dest="start", type=utc_time, required=True, help="ISO-8601, on an hour (UTC if no offset)"
    )
    parser.add_argument("--to", dest="end", type=utc_time, required=True, help="ISO-8601, exclusive, on an hour")
    parser.add_argument("--raw", action="store_true", help="compute from events_raw FINAL instead of usage_hourly")
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from bxb_stream.clickhouse import client as ch_client
    from bxb_stream.clickhouse.usage import query_usage, query_usage_raw

    query = query_usage_raw if args.raw else query_usage
    # A bad period, a bad --url or ClickHouse down: bxb_stream.cli.main prints one line.
    client = ch_client.connect(args.url)
    usage = query(client, args.database, args.organization_id, args.customer, args.code, args.start, args.end)
    print(
        json.dumps(
            {
                "organization_id": args.organization_id,
                "external_customer_id": args.customer,
                "code": args.code,
                "from": args.start.isoformat(),
                "to": args.end.isoformat(),
                "source": "events_raw" if args.raw else "usage_hourly",
                **usage.as_dict(),
            }
        )
    )
    return 0
