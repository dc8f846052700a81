"""Late events: list them, and accept or reject them with an audit record.

A late event is the kept copy of its transaction whose period was closed (or that came more
than ``grace_days`` after its time). Nothing bills it until an operator decides:
- ``accept``: billed into its own hour, as if on time; the report names the closed period it
  changes, so an issued invoice can be amended;
- ``reject``: stays visible, never billed.
Each decision is a row in ``late_decisions`` (the event, the decision, who, when, why); the
resolver turns it into an ``accepted`` or ``rejected`` ledger row on its next run, once per
transaction (the first decision counts; a repeated command changes nothing).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from bxb_runtime.clickhouse import tables as t
from bxb_stream.clickhouse import periods

DECISIONS = ("accept", "reject")
_COLUMNS = ("transaction_id", "external_customer_id", "code", "timestamp", "value", "decimal_value", "reason")


class LateError(ValueError):
    pass


@dataclass(frozen=True)
class LateEvent:
    organization_id: str
    transaction_id: str
    external_customer_id: str
    code: str
    timestamp: datetime
    value: float | None
    decimal_value: Any
    reason: str  # period_closed | grace_exceeded

    @property
    def hour(self) -> datetime:
        return self.timestamp.replace(minute=0, second=0, microsecond=0)


@dataclass(frozen=True)
class Decision:
    decision: str
    events: list[LateEvent]  # what this command decided (already decided ones are left out)
    closed_hours: list[datetime]  # hours of accepted events that lie in a closed period
    close: periods.Close | None  # the close in force for the organization


def pending(
    client: Any,
    database: str,
    organization_id: str,
    *,
    transaction_ids: list[str] | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    limit: int = 10_000,
) -> list[LateEvent]:
    """Late events of one organization with no decision yet (neither applied nor requested)."""
    where, params = _selection(organization_id, transaction_ids, start, end)
    rows = client.query(
        f"SELECT {', '.join(_COLUMNS)} FROM {database}.{t.EVENTS_LATE} {where} "
        f"AND transaction_id NOT IN (SELECT transaction_id FROM {database}.{t.LATE_DECISIONS} "
        "WHERE organization_id = %(org)s) ORDER BY timestamp, transaction_id LIMIT %(limit)s",
        parameters={**params, "limit": limit},
    ).result_rows
    return [
        LateEvent(organization_id, str(r[0]), str(r[1]), str(r[2]), _utc(r[3]), r[4], r[5], str(r[6])) for r in rows
    ]


def decide(
    client: Any,
    database: str,
    organization_id: str,
    decision: str,
    decided_by: str,
    note: str = "",
    *,
    transaction_ids: list[str] | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
) -> Decision:
    """Record ``decision`` for the selected pending late events (by id, or by time range)."""
    if decision not in DECISIONS:
        raise LateError(f"decision must be one of {', '.join(DECISIONS)}, got {decision!r}")
    if not decided_by.strip():
        raise LateError("say who decides (--by): each decision is an audit record")
    if not transaction_ids and start is None and end is None:
        raise LateError("select late events by --transaction-id or by --from/--to; there is no 'all'")
    events = pending(client, database, organization_id, transaction_ids=transaction_ids, start=start, end=end)
    if events:
        where, params = _selection(organization_id, [e.transaction_id for e in events], None, None)
        event_cols = ", ".join(f"`{c}`" for c in t.EVENT_COLUMNS)
        client.command(
            f"INSERT INTO {database}.{t.LATE_DECISIONS} ({event_cols}, decision, decided_by, note, payload_hash, "
            "late_mark, late_reason, late_inserted_at, late_source) "
            f"SELECT {event_cols}, %(decision)s, %(by)s, %(note)s, "
            "payload_hash, landing_mark, reason, inserted_at, source "
            f"FROM {database}.{t.EVENTS_LATE} {where}",
            parameters={**params, "decision": decision, "by": decided_by, "note": note},
        )
    close = periods.in_force(client, database, organization_id)
    closed_hours = sorted(
        {e.hour for e in events if close is not None and e.timestamp < close.until} if decision == "accept" else set()
    )
    return Decision(decision, events, closed_hours, close)


def _selection(
    organization_id: str, transaction_ids: list[str] | None, start: datetime | None, end: datetime | None
) -> tuple[str, dict[str, Any]]:
    clauses, params = ["WHERE organization_id = %(org)s"], {"org": organization_id}
    if transaction_ids:
        clauses.append("transaction_id IN %(ids)s")
        params["ids"] = list(transaction_ids)
    for name, value, op in (("start", start, ">="), ("end", end, "<")):
        if value is not None:
            if value.tzinfo is None:
                raise LateError(f"--{'from' if name == 'start' else 'to'} must carry a UTC offset, got {value}")
            clauses.append(f"timestamp {op} fromUnixTimestamp64Milli(%({name})s, 'UTC')")
            params[name] = int(value.timestamp() * 1000)
    return " AND ".join(clauses), params


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
