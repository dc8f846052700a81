"""``bxb-stream periods close|list``: close an organization's billing periods, and see the closes.

After ``close --until T``, every event of the organization with a timestamp before T that
is resolved from then on is late: set aside, billed only if accepted (``bxb-stream late``).
Each close is an audit record (who, when, why). Closes only move forward.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from bxb_stream.cli._parser import add_clickhouse_target, utc_time


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("periods", help="close billing periods and list the closes", description=__doc__)
    sub = parser.add_subparsers(dest="periods_command", required=True, metavar="ACTION")

    close = sub.add_parser("close", help="close an organization's periods up to a time (an audit record)")
    add_clickhouse_target(close)
    close.add_argument("--organization-id", required=True, help="the organization whose periods close")
    close.add_argument("--until", type=utc_time, required=True, help="ISO-8601: events before it are late from now")
    close.add_argument("--by", required=True, help="who closes it (recorded)")
    close.add_argument("--note", default="", help="why, e.g. the invoice run (recorded)")
    close.set_defaults(func=_close)

    history = sub.add_parser("list", help="every close recorded, oldest first, as JSON lines")
    add_clickhouse_target(history)
    history.add_argument("--organization-id", default=None, help="only this organization (default all)")
    history.set_defaults(func=_list)


def _close(args: argparse.Namespace) -> int:
    from bxb_stream.clickhouse import client as ch_client
    from bxb_stream.clickhouse import periods

    in_force = periods.close(
        ch_client.connect(args.url), args.database, args.organization_id, args.until, args.by, args.note
    )
    until, org = in_force.until.isoformat(), args.organization_id
    if in_force.until > args.until:
        print(f"recorded; periods of {org} stay closed until {until} (a later close is in force)")
    else:
        print(f"periods of {org} closed until {until}: events before it resolved from now on are late")
    return 0


def _list(args: argparse.Namespace) -> int:
    from bxb_stream.clickhouse import client as ch_client
    from bxb_stream.clickhouse import periods

    for close in periods.history(ch_client.connect(args.url), args.database, args.organization_id):
        print(
            json.dumps(
                {
                    "organization_id": close.organization_id,
                    "until": close.until.isoformat(),
                    "closed_at": close.closed_at.isoformat(),
                    "closed_by": close.closed_by,
                    "note": close.note,
                }
            )
        )
    return 0
