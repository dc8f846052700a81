"""``bxb-stream clickhouse ...`` and ``bxb-stream usage``, in-process against the shared engine."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from bxb_stream.cli import main
from bxb_stream.clickhouse import tables

T0 = datetime(2026, 5, 1, 8, tzinfo=UTC)


def test_ddl_prints_sql_and_rejects_bad_settings(capsys):
    assert main(["clickhouse", "ddl", "--bucket-url", "http://127.0.0.1:9000/bkt", "--named-collection", "nc"]) == 0
    out = capsys.readouterr().out
    assert out.count("CREATE TABLE IF NOT EXISTS bxb.") == 6 and "-- migration 0003: S3 queues" in out
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


def test_usage_command_reports_deduplicated_usage(clickhouse_db, clickhouse_engine, capsys):
    rows = [
        [f"cli-{i}", "cust_cli", "seats", T0 + timedelta(minutes=i), "{}", 2.0, Decimal("1.25"), "org_cli", T0]
        for i in range(5)
    ]
    for _ in range(2):  # delivered twice
        clickhouse_db.client.insert(
            f"{clickhouse_db.database}.{tables.EVENTS_RAW}", rows, column_names=list(tables.EVENT_COLUMNS)
        )
    clickhouse_db.wait_usage_caught_up()
    base = ["usage", "--url", clickhouse_engine.url, "--database", clickhouse_db.database]
    period = ["--organization-id", "org_cli", "--customer", "cust_cli", "--code", "seats"]
    period += ["--from", "2026-05-01T08:00:00Z", "--to", "2026-05-01T09:00:00+00:00"]
    for extra in ([], ["--raw"]):
        assert main([*base, *period, *extra]) == 0
        got = json.loads(capsys.readouterr().out)
        assert (got["event_count"], got["value_sum"], got["decimal_value_sum"]) == (5, 10.0, "6.25")
    assert main([*base, *period[:-1], "2026-05-01T09:30:00"]) == 2
    assert "hour boundary" in capsys.readouterr().err
