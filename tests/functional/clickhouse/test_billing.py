"""The billing truth on the real engine: one charge per (organization_id, transaction_id),
duplicates and conflicts counted but never billed, late usage in its own hour, and a
usage_hourly that cannot miss a row. Rows are written to events_raw as either path lands them."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from bxb_runtime.clickhouse import tables as t
from bxb_stream.clickhouse import late, ledger, periods, status
from bxb_stream.clickhouse.ddl import _resolver
from bxb_stream.clickhouse.usage import query_usage, query_usage_raw, reconcile

NOW = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=1)
HOUR = timedelta(hours=1)
LANDING = [*t.EVENT_COLUMNS, "source"]


def event(tid: str, **changes: Any) -> dict[str, Any]:
    """A normalised event as the transform writes it, arriving a second after its time."""
    at = changes.pop("at", NOW + timedelta(minutes=10))
    base = {
        "transaction_id": tid,
        "external_customer_id": "c1",
        "code": "calls",
        "timestamp": at,
        "properties": "{}",
        "value": 1.0,
        "decimal_value": None,
        "organization_id": "o",
        "ingested_at": at + timedelta(seconds=2),
        "arrived_at": at + timedelta(seconds=1),
        "source": "test",
    }
    base.update(changes)
    return base


def land(db: Any, *events: dict[str, Any], token: str | None = None) -> None:
    """One insert into events_raw (one block), as the HTTP ingest or the S3Queue view does."""
    settings = {"insert_deduplication_token": token} if token else {}
    db.client.insert(
        f"{db.database}.{t.EVENTS_RAW}",
        [[e[c] for c in LANDING] for e in events],
        column_names=LANDING,
        settings=settings,
    )


def verdicts(db: Any) -> list[tuple[str, str, str]]:
    return [
        (str(tid), str(customer), str(verdict))
        for tid, customer, verdict in db.client.query(
            f"SELECT transaction_id, external_customer_id, verdict FROM {db.database}.{t.LEDGER} "
            "WHERE verdict NOT IN ('accepted', 'rejected') ORDER BY landing_mark"
        ).result_rows
    ]


def usage(db: Any, customer: str = "c1", code: str = "calls", start: datetime = NOW, hours: int = 1) -> tuple:
    got = query_usage(db.client, db.database, "o", customer, code, start, start + hours * HOUR)
    assert query_usage_raw(db.client, db.database, "o", customer, code, start, start + hours * HOUR) == got
    return got.event_count, got.value_sum, got.decimal_value_sum


@pytest.fixture
def db(clickhouse_stack):
    """A fresh database per test: verdicts depend on everything stored before."""
    return clickhouse_stack(s3_queues=False)


# ------------------------------------------------------------------ one charge per transaction


def test_an_exact_resend_is_a_duplicate_and_billed_once(db):
    land(db, event("a"), event("b"))
    land(db, event("a"))  # a producer retry after a lost PutRecords response, stored later
    db.refresh()
    assert verdicts(db) == [("a", "c1", "billed"), ("b", "c1", "billed"), ("a", "c1", "duplicate")]
    assert usage(db) == (2, 2.0, Decimal(0))


def test_a_resend_without_timestamp_after_a_delay_is_a_duplicate(db):
    # Without a timestamp the transform uses the arrival time, so the copies' timestamps differ;
    # what was sent is identical, and that is what is compared.
    first = NOW + timedelta(minutes=1)
    land(db, event("a", timestamp=first, arrived_at=first))
    land(db, event("a", timestamp=first + timedelta(seconds=5), arrived_at=first + timedelta(seconds=5)))
    db.refresh()
    assert [v for _, _, v in verdicts(db)] == ["billed", "duplicate"]
    assert usage(db) == (1, 1.0, Decimal(0))


def test_one_transaction_id_for_two_customers_is_a_conflict_stored_with_both_payloads(db):
    land(db, event("a", external_customer_id="c1"))
    land(db, event("a", external_customer_id="c2", value=5.0))
    db.refresh()
    assert verdicts(db) == [("a", "c1", "billed"), ("a", "c2", "conflict")]
    assert usage(db, "c1") == (1, 1.0, Decimal(0)) and usage(db, "c2") == (0, 0.0, Decimal(0))
    (found,) = ledger.conflicts(db.client, db.database, "o")
    assert found.kept["external_customer_id"] == "c1" and found.conflicting["external_customer_id"] == "c2"
    assert found.differs_in == ["external_customer_id", "value"] and found.kept_verdict == "billed"


def test_a_different_value_sent_later_is_a_conflict_and_a_repeat_of_it_a_duplicate(db):
    land(db, event("a", value=1.0))
    db.refresh()
    land(db, event("a", value=2.0))
    # The conflicting copy resent: nothing new, so a duplicate. (A byte-identical insert would be
    # dropped by the table's insert deduplication; a resend is a new Kinesis record, arriving later.)
    land(db, event("a", value=2.0, arrived_at=NOW + timedelta(minutes=20)))
    db.refresh()
    assert [v for _, _, v in verdicts(db)] == ["billed", "conflict", "duplicate"]
    assert usage(db) == (1, 1.0, Decimal(0))
    assert ledger.verdict_counts(db.client, db.database)["conflict"] == 1


def test_copies_in_one_insert_are_ordered_by_arrival_then_as_written(db):
    early, later = NOW + timedelta(minutes=5), NOW + timedelta(minutes=6)
    land(
        db,
        event("a", external_customer_id="late-arrival", arrived_at=later),
        event("a", external_customer_id="early-arrival", arrived_at=early),
        event("b", external_customer_id="written-first", arrived_at=early),
        event("b", external_customer_id="written-second", arrived_at=early),
    )
    db.refresh()
    billed = {tid: customer for tid, customer, v in verdicts(db) if v == "billed"}
    assert billed == {"a": "early-arrival", "b": "written-first"}


def test_a_transaction_id_is_per_organization(db):
    land(db, event("a", organization_id="o"), event("a", organization_id="p"))
    db.refresh()
    assert [v for _, _, v in verdicts(db)] == ["billed", "billed"]


def test_resolving_again_stores_nothing_twice(db):
    land(db, event("a"), event("a", value=3.0), event("b"))
    db.refresh()
    before = verdicts(db)
    db.refresh()
    assert verdicts(db) == before
    # Even from a watermark of zero (as if the highest resolved mark were lost), the run adds nothing:
    # a landed row whose mark is in the ledger is skipped.
    select = _resolver(db.settings).split("AS WITH", 1)[1]
    select = select.replace(f"(SELECT max(landing_mark) FROM {db.database}.{t.LEDGER}) AS wm", "toUInt128(0) AS wm")
    assert int(db.client.command(f"SELECT count() FROM (WITH {select})")) == 0


def test_copies_landing_concurrently_from_both_paths_are_billed_once(db):
    tids = [f"tx-{i}" for i in range(200)]
    errors: list[BaseException] = []

    def path(name: str) -> None:
        try:
            for start in range(0, len(tids), 20):
                land(db, *(event(tid, source=name) for tid in tids[start : start + 20]))
        except BaseException as exc:  # reported below: a thread's failure must fail the test
            errors.append(exc)

    threads = [threading.Thread(target=path, args=(name,)) for name in ("s3", "http", "s3-replay")]
    for thread in threads:
        thread.start()
    for _ in range(5):  # resolve while the copies still land
        db.refresh()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors and not any(thread.is_alive() for thread in threads)
    db.wait_usage_caught_up()
    counts = ledger.verdict_counts(db.client, db.database)
    assert (counts["billed"], counts["duplicate"], counts["conflict"]) == (200, 400, 0)
    assert usage(db) == (200, 200.0, Decimal(0))


# ------------------------------------------------------------------ late usage and billing periods


def test_an_event_three_days_late_in_an_open_period_is_billed_into_its_hour(db):
    three_days_ago = NOW - timedelta(days=3)
    land(db, event("a", timestamp=three_days_ago + timedelta(minutes=7), arrived_at=NOW + timedelta(minutes=30)))
    db.refresh()
    assert [v for _, _, v in verdicts(db)] == ["billed"]
    assert usage(db, start=three_days_ago) == (1, 1.0, Decimal(0))


def test_past_the_grace_an_event_is_late_until_accepted_then_billed_into_its_hour(db):
    old = NOW - timedelta(days=40)
    land(db, event("a", timestamp=old, value=4.0, decimal_value=Decimal("1.5")))
    db.refresh()
    assert [v for _, _, v in verdicts(db)] == ["late"]
    assert ledger.verdict_counts(db.client, db.database)["late:grace_exceeded"] == 1
    assert usage(db, start=old) == (0, 0.0, Decimal(0))
    (pending,) = late.pending(db.client, db.database, "o")
    assert (pending.transaction_id, pending.reason) == ("a", "grace_exceeded")

    decision = late.decide(
        db.client, db.database, "o", "accept", "ops@bxb", "customer was offline", transaction_ids=["a"]
    )
    assert [e.transaction_id for e in decision.events] == ["a"] and decision.closed_hours == []
    db.wait_usage_caught_up()
    assert usage(db, start=old) == (1, 4.0, Decimal("1.5"))
    assert late.pending(db.client, db.database, "o") == []
    audit = db.client.query(
        f"SELECT verdict, decided_by, note FROM {db.database}.{t.LEDGER} WHERE verdict = 'accepted'"
    ).result_rows
    assert audit == [("accepted", "ops@bxb", "customer was offline")]


def test_a_closed_period_sets_later_events_aside_and_an_accept_names_the_closed_hour(db):
    hour = NOW - 2 * HOUR
    land(db, event("before-close", timestamp=hour + timedelta(minutes=1)))
    db.refresh()
    close = periods.close(db.client, db.database, "o", NOW - HOUR, closed_by="billing-run-42", note="November")
    assert close.until == NOW - HOUR and close.closed_by == "billing-run-42"
    land(
        db,
        event("after-close", timestamp=hour + timedelta(minutes=2)),  # in the closed period
        event("open", timestamp=NOW + timedelta(minutes=3)),  # after it
    )
    db.refresh()
    assert verdicts(db) == [("before-close", "c1", "billed"), ("after-close", "c1", "late"), ("open", "c1", "billed")]
    assert ledger.verdict_counts(db.client, db.database)["late:period_closed"] == 1
    assert usage(db, start=hour) == (1, 1.0, Decimal(0))

    decision = late.decide(db.client, db.database, "o", "accept", "ops", transaction_ids=["after-close"])
    assert decision.closed_hours == [hour] and decision.close == close
    db.wait_usage_caught_up()
    assert usage(db, start=hour) == (2, 2.0, Decimal(0))
    # An earlier until is recorded, but closes only move forward.
    assert periods.close(db.client, db.database, "o", NOW - 5 * HOUR, closed_by="someone").until == NOW - HOUR
    assert len(periods.history(db.client, db.database, "o")) == 2


def test_a_rejected_late_event_stays_visible_and_unbilled_and_a_decision_counts_once(db):
    old = NOW - timedelta(days=50)
    land(db, event("r", timestamp=old), event("s", timestamp=old + timedelta(minutes=1)))
    db.refresh()
    late.decide(db.client, db.database, "o", "reject", "ops", "test traffic", start=old, end=old + timedelta(seconds=1))
    # Deciding again selects nothing: r has a decision, and s is outside the range.
    assert late.decide(db.client, db.database, "o", "accept", "ops", transaction_ids=["r"]).events == []
    db.wait_usage_caught_up()
    db.refresh()
    counts = ledger.verdict_counts(db.client, db.database)
    assert (counts["rejected"], counts["accepted"], counts["late"]) == (1, 0, 2)
    assert [e.transaction_id for e in late.pending(db.client, db.database, "o")] == ["s"]
    assert usage(db, start=old) == (0, 0.0, Decimal(0))


def test_a_decision_needs_a_selection_and_a_name(db):
    with pytest.raises(late.LateError, match="no 'all'"):
        late.decide(db.client, db.database, "o", "accept", "ops")
    with pytest.raises(late.LateError, match="--by"):
        late.decide(db.client, db.database, "o", "accept", " ", transaction_ids=["a"])
    with pytest.raises(periods.PeriodError, match="UTC offset"):
        periods.close(db.client, db.database, "o", datetime(2026, 1, 1), closed_by="x")


# ------------------------------------------------------------------ usage_hourly cannot miss a row


def test_usage_counts_a_row_inserted_with_an_old_inserted_at(db):
    land(db, event("a"))
    db.wait_usage_caught_up()
    # A restore or a copy between tables keeps inserted_at: days before the last refresh.
    row = event("b")
    db.client.insert(
        f"{db.database}.{t.EVENTS_RAW}",
        [[row[c] for c in LANDING] + [NOW - timedelta(days=2)]],
        column_names=[*LANDING, "inserted_at"],
    )
    db.wait_usage_caught_up()
    assert usage(db) == (2, 2.0, Decimal(0))


def test_usage_counts_a_row_that_commits_after_a_refresh_started(db):
    land(db, event("first"))
    db.wait_usage_caught_up()
    # A slow insert: its rows get inserted_at when it starts, and commit seconds later, while
    # refreshes run. Progress is measured in commit order, so they are taken when they commit.
    columns = ", ".join(f"`{c}`" for c in LANDING)
    slow = threading.Thread(
        target=db.client.command,
        args=(
            f"INSERT INTO {db.database}.{t.EVENTS_RAW} ({columns}) SELECT concat('slow-', toString(number)), 'c1', "
            f"'calls', toDateTime64('{NOW + timedelta(minutes=20):%Y-%m-%d %H:%M:%S}', 3, 'UTC'), '{{}}', 1.0, NULL, "
            f"'o', now64(3), now64(3), 'slow' FROM numbers(3) WHERE sleepEachRow(0.5) = 0",
        ),
    )
    slow.start()
    db.refresh()  # runs while the insert is in flight
    slow.join(timeout=30)
    assert not slow.is_alive()
    db.wait_usage_caught_up()
    assert usage(db) == (4, 4.0, Decimal(0))


def test_reconcile_finds_and_repairs_an_hour_that_differs(db):
    land(db, event("a", decimal_value=Decimal("2.25")), event("b", timestamp=NOW - HOUR))
    db.wait_usage_caught_up()
    assert reconcile(db.client, db.database, "o", NOW - 3 * HOUR, NOW + HOUR).differences == []
    # Damage one hour (as a bad restore or a manual insert would).
    db.client.insert(
        f"{db.database}.{t.USAGE_HOURLY}",
        [["o", "c1", "calls", NOW, 5, 7.5, Decimal("1"), 0, datetime.now(UTC)]],
        column_names=[name for name, _ in t.USAGE_HOURLY_COLUMN_TYPES],
    )
    dry = reconcile(db.client, db.database, "o", NOW - 3 * HOUR, NOW + HOUR, repair=False)
    assert [(d.hour, d.stored.event_count, d.exact.event_count) for d in dry.differences] == [(NOW, 6, 1)]
    assert not dry.repaired
    fixed = reconcile(db.client, db.database, "o", NOW - 3 * HOUR, NOW + HOUR)
    assert fixed.repaired and len(fixed.differences) == 1
    assert reconcile(db.client, db.database, "o", NOW - 3 * HOUR, NOW + HOUR).differences == []
    assert usage(db) == (1, 1.0, Decimal("2.25"))
    # The refresh goes on from where it was: a new event is added once.
    land(db, event("c"))
    db.wait_usage_caught_up()
    assert usage(db) == (2, 2.0, Decimal("2.25"))


def test_decimal_sums_are_exact_and_cannot_overflow(db):
    big = Decimal("99999999999999999999.999999999999999999")  # the largest Decimal(38, 18)
    land(db, *(event(f"d{i}", decimal_value=big) for i in range(3)))
    db.wait_usage_caught_up()
    assert usage(db)[2] == big * 3
    assert status.refresh_errors(db.client, db.database) == {}
