"""``bxb-stream clickhouse ...`` and ``bxb-stream usage``, in-process against the shared engine."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from bxb_runtime.clickhouse import tables
from bxb_stream.cli import main

T0 = datetime(2026, 5, 1, 8, tzinfo=UTC)


def test_ddl_prints_sql_and_rejects_bad_settings(capsys):
    assert main(["clickhouse", "ddl", "--bucket-url", "http://127.0.0.1:9000/bkt", "--named-collection", "nc"]) == 0
    out = capsys.readouterr().out
    assert out.count("CREATE TABLE IF NOT EXISTS bxb.") == 7 and "-- migration 0003: S3 queue" in out
    assert main(["clickhouse", "ddl", "--bucket-url", "s3://bkt", "--named-collection", "nc"]) == 2
    assert "config 'bucket_url': must be an http(s) URL" in capsys.readouterr().err


def test_apply_twice_changes_nothing_the_second_time(clickhouse_engine, moto_s3, capsys):
    moto_s3.client().create_bucket(Bucket="bxb-cli-apply")
    argv = [
        "clickhouse",
        "apply",
        "--url",
        clickhouse_engine.url,
        "--bucket-url",
        f"{moto_s3.endpoint_url}/bxb-cli-apply",
        "--database",
        "bxb_cli",
        "--named-collection",
        "bxb_cli_s3",
        "--named-collection-from-env",
    ]
    client = clickhouse_engine.client()
    try:
        assert main(argv) == 0
        assert "3 applied, 0 already recorded" in capsys.readouterr().out
        assert main(argv) == 0
        assert "nothing to apply: 3 migrations already recorded" in capsys.readouterr().out
        assert main([*argv[:3], "chdb://memory", *argv[4:]]) == 2
        assert "needs a directory" in capsys.readouterr().err
    finally:
        client.command("DROP DATABASE IF EXISTS bxb_cli SYNC")


def land(db, rows) -> None:
    columns = [*tables.EVENT_COLUMNS]
    db.client.insert(f"{db.database}.{tables.EVENTS_RAW}", rows, column_names=columns)


def row(i: int, ts: datetime = T0, **over) -> list:
    values = {
        "transaction_id": f"cli-{i}",
        "external_customer_id": "cust_cli",
        "code": "seats",
        "timestamp": ts + timedelta(minutes=i),
        "properties": "{}",
        "value": 2.0,
        "decimal_value": Decimal("1.25"),
        "organization_id": "org_cli",
        "ingested_at": ts + timedelta(minutes=i, seconds=2),
        "arrived_at": ts + timedelta(minutes=i, seconds=1),
    } | over
    return [values[c] for c in tables.EVENT_COLUMNS]


@pytest.fixture
def cli_db(clickhouse_stack):
    return clickhouse_stack(s3_queues=False)


def test_usage_command_reports_usage_billed_once(cli_db, clickhouse_engine, capsys):
    land(cli_db, [row(i) for i in range(5)])
    land(cli_db, [row(i, arrived_at=T0 + timedelta(hours=1)) for i in range(5)])  # resent later: duplicates
    cli_db.wait_usage_caught_up()
    base = ["usage", "--url", clickhouse_engine.url, "--database", cli_db.database]
    period = ["--organization-id", "org_cli", "--customer", "cust_cli", "--code", "seats"]
    period += ["--from", "2026-05-01T08:00:00Z", "--to", "2026-05-01T09:00:00+00:00"]
    for extra in ([], ["--raw"]):
        assert main([*base, *period, *extra]) == 0
        got = json.loads(capsys.readouterr().out)
        assert (got["event_count"], got["value_sum"], got["decimal_value_sum"]) == (5, 10.0, "6.25")
    assert main([*base, *period[:-1], "2026-05-01T09:30:00"]) == 2
    assert "hour boundary" in capsys.readouterr().err


def test_reconcile_health_conflicts_periods_and_late_through_the_cli(cli_db, clickhouse_engine, capsys):
    target = ["--url", clickhouse_engine.url, "--database", cli_db.database]
    org = ["--organization-id", "org_cli"]
    land(cli_db, [row(0), row(1)])
    land(cli_db, [row(1, external_customer_id="someone_else")])  # a conflict
    cli_db.wait_usage_caught_up()

    assert main(["clickhouse", "conflicts", *target]) == 1
    (conflict,) = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert conflict["transaction_id"] == "cli-1" and conflict["differs_in"] == ["external_customer_id"]
    assert conflict["kept"]["external_customer_id"] == "cust_cli"

    assert main(["clickhouse", "health", *target, "--json"]) == 1  # the conflict needs attention
    report = json.loads(capsys.readouterr().out)
    assert report["verdicts"]["billed"] == 2 and report["verdicts"]["conflict"] == 1
    assert report["unresolved"] == 0 and report["unbilled_in_usage"] == 0

    reconcile = ["usage", "reconcile", *target, *org, "--from", "2026-05-01T00:00Z", "--to", "2026-05-02T00:00Z"]
    assert main(reconcile) == 0
    assert "0 of 1 hours agree" in capsys.readouterr().out

    # Close the morning, then an event of 08:30 arrives: late; accept it through the CLI.
    close = ["periods", "close", *target, *org, "--until", "2026-05-01T12:00Z", "--by", "invoice-run", "--note", "May"]
    assert main(close) == 0
    assert "closed until 2026-05-01T12:00:00+00:00" in capsys.readouterr().out
    land(cli_db, [row(30)])
    cli_db.wait_usage_caught_up()
    assert main(["late", "list", *target, *org]) == 0
    (pending,) = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert (pending["transaction_id"], pending["reason"]) == ("cli-30", "period_closed")
    assert (
        main(["late", "accept", *target, *org, "--transaction-id", "cli-30", "--transaction-id", "nope", "--by", "ops"])
        == 0
    )
    out = capsys.readouterr().out
    assert "accepted 1 late events" in out and "nope: not a late event" in out
    assert (
        "periods closed until 2026-05-01T12:00:00+00:00 (by invoice-run" in out and "2026-05-01T08:00:00+00:00" in out
    )
    cli_db.wait_usage_caught_up()
    assert main([*reconcile, "--dry-run"]) == 0
    assert main(["periods", "list", *target]) == 0
    (recorded,) = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    assert (recorded["closed_by"], recorded["note"]) == ("invoice-run", "May")
