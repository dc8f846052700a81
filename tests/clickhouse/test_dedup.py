"""What the HTTP path relies on: dedup tokens, the dead-letter table, and conflict reporting."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from bxb_stream.clickhouse import tables
from bxb_stream.clickhouse.usage import UsageQueryError, query_usage, query_usage_raw, transaction_id_conflicts

T0 = datetime(2026, 4, 1, 12, tzinfo=UTC)


def row(tx: str, customer: str = "c1", value: float | None = 1.0, ts: datetime = T0, org: str = "o_dedup") -> list:
    return [tx, customer, "calls", ts, "{}", value, Decimal("0.5"), org, ts + timedelta(seconds=1)]


def insert(db, rows, token: str | None = None, table: str = tables.EVENTS_RAW) -> None:
    settings = {"insert_deduplication_token": token} if token else {}
    db.client.insert(f"{db.database}.{table}", rows, column_names=list(tables.EVENT_COLUMNS), settings=settings)


def test_an_insert_retried_with_the_same_token_is_stored_once(clickhouse_db):
    rows = [row("tok-a"), row("tok-b")]
    insert(clickhouse_db, rows, token="firehose-request-1")
    insert(clickhouse_db, rows, token="firehose-request-1")  # Firehose retried the request
    n = "SELECT count() FROM {db}.events_raw WHERE transaction_id LIKE 'tok-%'"
    assert int(clickhouse_db.client.command(n.format(db=clickhouse_db.database))) == 2  # no FINAL needed


def test_dead_letter_table_takes_the_documented_columns(clickhouse_db):
    dead = [["o1", "req-1", 3, '{"bad": ', "invalid_json", "unexpected end", T0]]
    for _ in range(2):
        clickhouse_db.client.insert(
            f"{clickhouse_db.database}.{tables.DEAD_LETTER}",
            dead,
            column_names=list(tables.DEAD_LETTER_COLUMNS),
            settings={"insert_deduplication_token": "req-1:dead"},
        )
    got = clickhouse_db.client.query(f"SELECT * FROM {clickhouse_db.database}.{tables.DEAD_LETTER}").result_rows
    assert [r[:6] for r in got] == [tuple(dead[0][:6])]


def test_conflicting_payloads_are_reported(clickhouse_db):
    db = clickhouse_db
    insert(db, [row("conf-same", org="o_conf"), row("conf-key", org="o_conf"), row("conf-ok", org="o_conf")])
    # Same key, other value: replaced (last write wins). Other customer: a second billed event.
    insert(db, [row("conf-same", value=9.0, org="o_conf"), row("conf-key", customer="c2", org="o_conf")])
    insert(db, [row("conf-ok", org="o_conf")])  # a plain redelivery is not a conflict
    conflicts = {c.transaction_id: c for c in transaction_id_conflicts(db.client, db.database, "o_conf")}
    assert set(conflicts) == {"conf-same", "conf-key"}
    assert not conflicts["conf-same"].billed_twice and conflicts["conf-key"].billed_twice
    final = db.client.query(
        f"SELECT transaction_id, external_customer_id, value FROM {db.database}.events_raw FINAL "
        "WHERE organization_id = 'o_conf' ORDER BY ALL"
    ).result_rows
    assert final == [("conf-key", "c1", 1.0), ("conf-key", "c2", 1.0), ("conf-ok", "c1", 1.0), ("conf-same", "c1", 9.0)]


def test_usage_periods_are_checked(clickhouse_db):
    c, db = clickhouse_db.client, clickhouse_db.database
    with pytest.raises(UsageQueryError, match="hour boundary"):
        query_usage(c, db, "o", "c", "x", T0 + timedelta(minutes=5), T0 + timedelta(hours=1))
    with pytest.raises(UsageQueryError, match="timezone-aware"):
        query_usage(c, db, "o", "c", "x", T0.replace(tzinfo=None), T0 + timedelta(hours=1))
    with pytest.raises(UsageQueryError, match="before end"):
        query_usage_raw(c, db, "o", "c", "x", T0, T0)
    empty = query_usage(c, db, "nobody", "c", "x", T0, T0 + timedelta(hours=1))
    assert (empty.event_count, empty.value_sum, empty.decimal_value_sum) == (0, 0.0, Decimal(0))
