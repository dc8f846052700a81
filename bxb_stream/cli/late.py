"""``bxb-stream late list|accept|reject``: the events set aside as late, and the decision on them.

A late event belongs to a closed billing period (``bxb-stream periods close``) or came more
than the grace after its time. ``accept`` bills it into its own hour and names the closed
period it changes; ``reject`` keeps it, unbilled. Each decision is recorded (who, when, why)
and applied once, within one refresh interval.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from bxb_stream.cli._failures import UserError
from bxb_stream.cli._parser import add_clickhouse_target, utc_time


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("late", help="list late events, accept or reject them", description=__doc__)
    sub = parser.add_subparsers(dest="late_command", required=True, metavar="ACTION")

    listing = sub.add_parser("list", help="late events waiting for a decision, as JSON lines")
    _selection(listing)
    listing.add_argument("--limit", type=int, default=1000, help="at most this many, oldest first (default 1000)")
    listing.set_defaults(func=_list)

    for decision, help_text in (
        ("accept", "bill the selected late events into their own hours"),
        ("reject", "keep the selected late events unbilled, for good"),
    ):
        action = sub.add_parser(decision, help=help_text)
        _selection(action)
        action.add_argument("--transaction-id", action="append", default=[], help="a late event, by id (repeatable)")
        action.add_argument("--by", required=True, help="who decides (recorded)")
        action.add_argument("--note", default="", help="why (recorded)")
        action.set_defaults(func=_decide, decision=decision)


def _selection(parser: argparse.ArgumentParser) -> None:
    add_clickhouse_target(parser)
    parser.add_argument("--organization-id", required=True, help="the organization")
    parser.add_argument("--from", dest="start", type=utc_time, help="events at or after this time (ISO-8601)")
    parser.add_argument("--to", dest="end", type=utc_time, help="events before this time (ISO-8601)")


def _list(args: argparse.Namespace) -> int:
    from bxb_stream.clickhouse import client as ch_client
    from bxb_stream.clickhouse import late

    client = ch_client.connect(args.url)
    found = late.pending(client, args.database, args.organization_id, start=args.start, end=args.end, limit=args.limit)
    for event in found:
        print(
            json.dumps(
                {
                    "transaction_id": event.transaction_id,
                    "external_customer_id": event.external_customer_id,
                    "code": event.code,
                    "timestamp": event.timestamp.isoformat(),
                    "value": event.value,
                    "decimal_value": None if event.decimal_value is None else str(event.decimal_value),
                    "reason": event.reason,
                }
            )
        )
    return 0


def _decide(args: argparse.Namespace) -> int:
    from bxb_stream.clickhouse import client as ch_client
    from bxb_stream.clickhouse import late

    if not args.transaction_id and args.start is None and args.end is None:
        raise UserError("select the late events: --transaction-id ID (repeatable), or --from/--to")
    decision = late.decide(
        ch_client.connect(args.url),
        args.database,
        args.organization_id,
        args.decision,
        args.by,
        args.note,
        transaction_ids=args.transaction_id or None,
        start=args.start,
        end=args.end,
    )
    verb = "accepted" if args.decision == "accept" else "rejected"
    print(f"{verb} {len(decision.events)} late events of {args.organization_id} (applied within one refresh interval)")
    if args.transaction_id:
        missing = sorted(set(args.transaction_id) - {e.transaction_id for e in decision.events})
        for tid in missing:
            print(f"  {tid}: not a late event waiting for a decision (billed, decided already, or unknown)")
    if decision.closed_hours and decision.close is not None:
        close = decision.close
        print(
            f"this changes periods closed until {close.until.isoformat()} (by {close.closed_by} at "
            f"{close.closed_at.isoformat()}{', ' + close.note if close.note else ''}); hours now billed more:"
        )
        for hour in decision.closed_hours:
            print(f"  {hour.isoformat()}")
    return 0
