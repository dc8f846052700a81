"""Usage queries: what an organization's customer consumed of a metric over a period.

``query_usage`` reads ``usage_hourly`` (deduplicated by construction, see ``ddl``), so a
period must start and end on hour boundaries. ``query_usage_raw`` computes the same answer
from ``events_raw FINAL``; it is the reference the hourly table is checked against.
Usage is as fresh as the last usage_hourly refresh (``usage_refresh_seconds``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from bxb_stream.clickhouse import tables as t


class UsageQueryError(ValueError):
    pass


@dataclass(frozen=True)
class Usage:
    event_count: int
    value_sum: float
    decimal_value_sum: Decimal

    def as_dict(self) -> dict[str, Any]:
        return {
            "event_count": self.event_count,
            "value_sum": self.value_sum,
            "decimal_value_sum": str(self.decimal_value_sum),
        }


@dataclass(frozen=True)
class Conflict:
    """One transaction_id stored with more than one payload."""

    organization_id: str
    transaction_id: str
    variants: int  # distinct (customer, code, timestamp, properties, value, decimal_value)
    rows: int  # stored rows, before background merges collapse same-key copies
    billed_twice: bool  # variants differ in a key field, so FINAL keeps (and bills) more than one


def _period(start: datetime, end: datetime, *, hourly: bool) -> tuple[int, int]:
    for name, value in (("start", start), ("end", end)):
        if value.tzinfo is None:
            raise UsageQueryError(f"{name} must be timezone-aware (UTC), got naive {value.isoformat()}")
        if hourly and (value.minute or value.second or value.microsecond):
            raise UsageQueryError(
                f"{name} must be on an hour boundary (usage_hourly is hourly), got {value.isoformat()}"
            )
    if start >= end:
        raise UsageQueryError(f"start {start.isoformat()} must be before end {end.isoformat()}")
    return int(start.astimezone(UTC).timestamp() * 1000), int(end.astimezone(UTC).timestamp() * 1000)


def _params(org: str, customer: str, code: str, start_ms: int, end_ms: int) -> dict[str, Any]:
    return {"org": org, "customer": customer, "code": code, "start": start_ms, "end": end_ms}


# One organization's customer and metric; both usage queries start their WHERE with it.
_ONE_METRIC = "WHERE organization_id = %(org)s AND external_customer_id = %(customer)s AND code = %(code)s "


def _usage(row: tuple[Any, ...]) -> Usage:
    count, value_sum, decimal_sum = row
    return Usage(int(count), float(value_sum), Decimal(decimal_sum).normalize() if decimal_sum else Decimal(0))


def query_usage(
    client: Any,
    database: str,
    organization_id: str,
    external_customer_id: str,
    code: str,
    start: datetime,
    end: datetime,
) -> Usage:
    """Usage over [start, end) from usage_hourly; each hour's newest computation counts once (FINAL)."""
    start_ms, end_ms = _period(start, end, hourly=True)
    row = client.query(
        "SELECT sum(event_count), sum(value_sum), sum(decimal_value_sum) "
        f"FROM {database}.{t.USAGE_HOURLY} FINAL {_ONE_METRIC}"
        "AND hour >= toDateTime(intDiv(%(start)s, 1000), 'UTC') AND hour < toDateTime(intDiv(%(end)s, 1000), 'UTC')",
        parameters=_params(organization_id, external_customer_id, code, start_ms, end_ms),
    ).result_rows[0]
    return _usage(row)


def query_usage_raw(
    client: Any,
    database: str,
    organization_id: str,
    external_customer_id: str,
    code: str,
    start: datetime,
    end: datetime,
) -> Usage:
    """The same answer from deduplicated raw events (any millisecond period)."""
    start_ms, end_ms = _period(start, end, hourly=False)
    row = client.query(
        "SELECT count(), sum(ifNull(value, 0)), sum(ifNull(decimal_value, toDecimal128(0, 18))) "
        f"FROM {database}.{t.EVENTS_RAW} FINAL {_ONE_METRIC}"
        "AND timestamp >= fromUnixTimestamp64Milli(%(start)s, 'UTC') "
        "AND timestamp < fromUnixTimestamp64Milli(%(end)s, 'UTC')",
        parameters=_params(organization_id, external_customer_id, code, start_ms, end_ms),
    ).result_rows[0]
    return _usage(row)


def transaction_id_conflicts(
    client: Any, database: str, organization_id: str | None = None, limit: int = 1000
) -> list[Conflict]:
    """transaction_ids stored with different payloads (see ``ddl`` for what each case bills)."""
    where = "WHERE organization_id = %(org)s" if organization_id is not None else ""
    rows = client.query(
        "SELECT organization_id, transaction_id, "
        "uniqExact(tuple(external_customer_id, code, timestamp, properties, value, decimal_value)) AS variants, "
        "count() AS rows, uniqExact(external_customer_id, code, timestamp) > 1 AS billed_twice "
        f"FROM {database}.{t.EVENTS_RAW} {where} "
        "GROUP BY organization_id, transaction_id HAVING variants > 1 "
        "ORDER BY organization_id, transaction_id LIMIT %(limit)s",
        parameters={"org": organization_id, "limit": limit},
    ).result_rows
    return [Conflict(str(o), str(x), int(v), int(n), bool(b)) for o, x, v, n, b in rows]
