"""What the resolver decided: verdict counts, conflicts with both payloads, late events.

Read-only; see ``ddl`` for how verdicts are given and ``late`` / ``periods`` for the
operator's side.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from bxb_runtime.clickhouse import tables as t

PAYLOAD = ("external_customer_id", "code", "timestamp", "properties", "value", "decimal_value")


def verdict_counts(client: Any, database: str, organization_id: str | None = None) -> Counter[str]:
    """Ledger rows per verdict (and per late reason, as ``late:<reason>``)."""
    where, params = _org_filter(organization_id)
    counts: Counter[str] = Counter()
    for verdict, reason, n in client.query(
        f"SELECT verdict, reason, count() FROM {database}.{t.LEDGER} {where} GROUP BY verdict, reason",
        parameters=params,
    ).result_rows:
        counts[str(verdict)] += int(n)
        if verdict == t.Verdict.LATE:
            counts[f"late:{reason}"] += int(n)
    return counts


def pending_late(client: Any, database: str, organization_id: str | None = None) -> int:
    """Late events nobody has accepted or rejected yet."""
    where, params = _org_filter(organization_id)
    rows = client.query(f"SELECT count() FROM {database}.{t.EVENTS_LATE} {where}", parameters=params).result_rows
    return int(rows[0][0])


@dataclass(frozen=True)
class Conflict:
    """A copy of a transaction whose payload differs from the kept copy's; never billed."""

    organization_id: str
    transaction_id: str
    kept_verdict: str  # billed or late
    kept: dict[str, Any]
    conflicting: dict[str, Any]
    conflict_source: str
    resolved_at: datetime

    @property
    def differs_in(self) -> list[str]:
        return [name for name in PAYLOAD if self.kept[name] != self.conflicting[name]]

    def as_dict(self) -> dict[str, Any]:
        return {
            "organization_id": self.organization_id,
            "transaction_id": self.transaction_id,
            "kept_verdict": self.kept_verdict,
            "differs_in": self.differs_in,
            "kept": {k: _jsonable(v) for k, v in self.kept.items()},
            "conflicting": {k: _jsonable(v) for k, v in self.conflicting.items()},
            "conflict_source": self.conflict_source,
            "resolved_at": self.resolved_at.isoformat(),
        }


def conflicts(client: Any, database: str, organization_id: str | None = None, limit: int = 1000) -> list[Conflict]:
    """Conflicting copies beside the copy that was kept, newest first."""
    where, params = _org_filter(organization_id)
    kept_cols = ", ".join(f"kept_{n}" for n in PAYLOAD)
    conflict_cols = ", ".join(f"conflict_{n}" for n in PAYLOAD)
    rows = client.query(
        f"SELECT organization_id, transaction_id, kept_verdict, {kept_cols}, {conflict_cols}, conflict_source, "
        f"resolved_at FROM {database}.{t.CONFLICTS} {where} "
        "ORDER BY resolved_at DESC, organization_id, transaction_id LIMIT %(limit)s",
        parameters={**params, "limit": limit},
    ).result_rows
    width = len(PAYLOAD)
    return [
        Conflict(
            str(r[0]),
            str(r[1]),
            str(r[2]),
            dict(zip(PAYLOAD, r[3 : 3 + width], strict=True)),
            dict(zip(PAYLOAD, r[3 + width : 3 + 2 * width], strict=True)),
            str(r[3 + 2 * width]),
            r[4 + 2 * width],
        )
        for r in rows
    ]


def _org_filter(organization_id: str | None) -> tuple[str, dict[str, Any]]:
    if organization_id is None:
        return "", {}
    return "WHERE organization_id = %(org)s", {"org": organization_id}


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)  # Decimal
