"""Usage queries: what an organization's customer consumed of a metric over a period.

``query_usage`` reads ``usage_hourly`` (sums of billed events, added by the usage refresh),
so a period must start and end on hour boundaries. ``query_usage_raw`` computes the same
answer from the billed ledger rows, counting each (organization_id, transaction_id) once; it
is the reference the hourly table is checked against, and ``reconcile`` repairs any hour
where the two differ.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from bxb_runtime.clickhouse import tables as t
from bxb_stream.clickhouse.ddl import MARK


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

    def matches(self, other: Usage) -> bool:
        """Equal counts and decimals; float sums equal up to summation order."""
        return (
            self.event_count == other.event_count
            and self.decimal_value_sum == other.decimal_value_sum
            and math.isclose(self.value_sum, other.value_sum, rel_tol=1e-9, abs_tol=1e-6)
        )


def period_ms(start: datetime, end: datetime, *, hourly: bool) -> tuple[int, int]:
    """[start, end) as UTC milliseconds; both timezone-aware, on hours when ``hourly``."""
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
_BILLABLE = ", ".join(f"'{v}'" for v in t.BILLABLE)


def billed_rows(database: str, where: str, columns: str = "*") -> str:
    """SQL for the billed ledger rows matching ``where``: each (organization_id, transaction_id)
    once, even if a row were ever stored twice (the resolver never does; this makes it a fact)."""
    return (
        f"SELECT {columns} FROM {database}.{t.LEDGER} {where} AND verdict IN ({_BILLABLE}) "
        "LIMIT 1 BY organization_id, transaction_id"
    )


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
    """Usage over [start, end) from usage_hourly: the sum of its partial sums."""
    start_ms, end_ms = period_ms(start, end, hourly=True)
    row = client.query(
        "SELECT sum(event_count), sum(value_sum), sum(decimal_value_sum) "
        f"FROM {database}.{t.USAGE_HOURLY} {_ONE_METRIC}"
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
    """The same answer from the billed events themselves (any millisecond period)."""
    start_ms, end_ms = period_ms(start, end, hourly=False)
    rows = billed_rows(
        database,
        _ONE_METRIC + "AND timestamp >= fromUnixTimestamp64Milli(%(start)s, 'UTC') "
        "AND timestamp < fromUnixTimestamp64Milli(%(end)s, 'UTC')",
        "value, decimal_value",
    )
    row = client.query(
        f"SELECT count(), sum(ifNull(value, 0)), sum(toDecimal256(ifNull(decimal_value, 0), 18)) FROM ({rows})",
        parameters=_params(organization_id, external_customer_id, code, start_ms, end_ms),
    ).result_rows[0]
    return _usage(row)


# ------------------------------------------------------------------ reconcile


@dataclass(frozen=True)
class HourDifference:
    external_customer_id: str
    code: str
    hour: datetime
    stored: Usage  # usage_hourly
    exact: Usage  # the billed events


@dataclass(frozen=True)
class Reconciliation:
    organization_id: str
    hours_compared: int
    differences: list[HourDifference]
    repaired: bool


def reconcile(
    client: Any, database: str, organization_id: str, start: datetime, end: datetime, *, repair: bool = True
) -> Reconciliation:
    """Compare usage_hourly with the billed events, hour by hour, for one organization over
    [start, end); with ``repair``, add a correction to every hour that differs.

    The usage refresh is paused meanwhile, so both sides describe the same billed rows: those
    at or below usage_hourly's watermark. Corrections carry version 0, so the watermark (and
    what the refresh adds next) is unchanged."""
    start_ms, end_ms = period_ms(start, end, hourly=True)
    view = f"{database}.{t.USAGE_REFRESH_MV}"
    client.command(f"SYSTEM STOP VIEW {view}")
    try:
        client.command(f"SYSTEM WAIT VIEW {view}")  # a refresh that had started finishes first
        params = {"org": organization_id, "start": start_ms, "end": end_ms}
        hours = "hour >= toDateTime(intDiv(%(start)s, 1000), 'UTC') AND hour < toDateTime(intDiv(%(end)s, 1000), 'UTC')"
        watermark = int(client.command(f"SELECT max(version) FROM {database}.{t.USAGE_HOURLY}") or 0)
        stored = _by_hour(
            client.query(
                "SELECT external_customer_id, code, hour, sum(event_count), sum(value_sum), sum(decimal_value_sum) "
                f"FROM {database}.{t.USAGE_HOURLY} WHERE organization_id = %(org)s AND {hours} GROUP BY ALL",
                parameters=params,
            ).result_rows
        )
        rows = billed_rows(
            database,
            "WHERE organization_id = %(org)s AND timestamp >= fromUnixTimestamp64Milli(%(start)s, 'UTC') "
            # A literal above UInt64 would be read as a float: the mark goes in as text.
            f"AND timestamp < fromUnixTimestamp64Milli(%(end)s, 'UTC') AND {MARK} <= toUInt128('{watermark}')",
            "external_customer_id, code, timestamp, value, decimal_value",
        )
        exact = _by_hour(
            client.query(
                "SELECT external_customer_id, code, toStartOfHour(timestamp) AS hour, count(), sum(ifNull(value, 0)), "
                f"sum(toDecimal256(ifNull(decimal_value, 0), 18)) FROM ({rows}) GROUP BY ALL",
                parameters=params,
            ).result_rows
        )
        zero = Usage(0, 0.0, Decimal(0))
        differences = [
            HourDifference(*key, stored.get(key, zero), exact.get(key, zero))
            for key in sorted(stored.keys() | exact.keys())
            if not stored.get(key, zero).matches(exact.get(key, zero))
        ]
        if repair and differences:
            _add_corrections(client, database, organization_id, differences)
        compared = len(stored.keys() | exact.keys())
        return Reconciliation(organization_id, compared, differences, repair and bool(differences))
    finally:
        client.command(f"SYSTEM START VIEW {view}")


def _by_hour(rows: list[tuple[Any, ...]]) -> dict[tuple[str, str, datetime], Usage]:
    return {
        (str(customer), str(code), _utc(hour)): _usage((count, value, dec))
        for customer, code, hour, count, value, dec in rows
    }


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _add_corrections(client: Any, database: str, organization_id: str, differences: list[HourDifference]) -> None:
    """One insert (one part) of exact - stored for each hour; version 0 moves no watermark."""
    values, params = [], {"org": organization_id}
    for i, d in enumerate(differences):
        values.append(
            f"(%(org)s, %(c{i})s, %(k{i})s, toDateTime(%(h{i})s, 'UTC'), %(n{i})s, %(v{i})s, "
            f"toDecimal256(%(d{i})s, 18), 0, now64(3))"
        )
        params |= {
            f"c{i}": d.external_customer_id,
            f"k{i}": d.code,
            f"h{i}": int(d.hour.timestamp()),
            f"n{i}": d.exact.event_count - d.stored.event_count,
            f"v{i}": d.exact.value_sum - d.stored.value_sum,
            f"d{i}": str(d.exact.decimal_value_sum - d.stored.decimal_value_sum),
        }
    columns = ", ".join(name for name, _ in t.USAGE_HOURLY_COLUMN_TYPES)
    client.command(f"INSERT INTO {database}.{t.USAGE_HOURLY} ({columns}) VALUES {', '.join(values)}", parameters=params)
