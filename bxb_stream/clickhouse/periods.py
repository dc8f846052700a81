"""Billing periods: an organization closes them; events for a closed period are late.

A close is one audit row (``billing_period_closes``: organization, until, who, when, why).
From then on the resolver gives the ``late`` verdict to every newly resolved event of that
organization whose timestamp is before ``until``: it is kept aside and billed only if an
operator accepts it (``late``). Closes only move forward: the latest ``until`` per
organization counts, and a close with an earlier ``until`` is recorded but changes nothing.
Until a period is closed, the resolver's default grace applies (``grace_days``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from bxb_runtime.clickhouse import tables as t
from bxb_runtime.config import ORG_ID_PATTERN


class PeriodError(ValueError):
    pass


@dataclass(frozen=True)
class Close:
    organization_id: str
    until: datetime
    closed_at: datetime
    closed_by: str
    note: str


def close(client: Any, database: str, organization_id: str, until: datetime, closed_by: str, note: str = "") -> Close:
    """Record a close; returns the close now in force for the organization (the latest ``until``)."""
    if not ORG_ID_PATTERN.match(organization_id):
        raise PeriodError(f"organization id {organization_id!r} must match [A-Za-z0-9][A-Za-z0-9._-]{{0,127}}")
    if until.tzinfo is None:
        raise PeriodError(f"--until must carry a UTC offset (or Z), got {until.isoformat()}")
    if not closed_by.strip():
        raise PeriodError("say who closes the period (--by): the close is an audit record")
    client.command(
        f"INSERT INTO {database}.{t.PERIOD_CLOSES} (organization_id, until, closed_at, closed_by, note) VALUES "
        "(%(org)s, fromUnixTimestamp64Milli(%(until)s, 'UTC'), now64(3), %(by)s, %(note)s)",
        parameters={"org": organization_id, "until": int(until.timestamp() * 1000), "by": closed_by, "note": note},
    )
    current = in_force(client, database, organization_id)
    assert current is not None  # the row just written
    return current


def in_force(client: Any, database: str, organization_id: str) -> Close | None:
    """The close with the latest ``until`` for the organization, if any."""
    closes = history(client, database, organization_id)
    return max(closes, key=lambda c: (c.until, c.closed_at)) if closes else None


def history(client: Any, database: str, organization_id: str | None = None) -> list[Close]:
    """Every close recorded, oldest first."""
    where = "WHERE organization_id = %(org)s" if organization_id is not None else ""
    rows = client.query(
        f"SELECT organization_id, until, closed_at, closed_by, note FROM {database}.{t.PERIOD_CLOSES} {where} "
        "ORDER BY closed_at, organization_id",
        parameters={"org": organization_id},
    ).result_rows
    return [Close(str(o), _utc(u), _utc(c), str(b), str(n)) for o, u, c, b, n in rows]


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
