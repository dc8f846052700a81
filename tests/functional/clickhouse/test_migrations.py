"""apply: versioned, idempotent, refuses drift; credentials stay out of the catalog."""

from __future__ import annotations

import pytest

from bxb_stream.clickhouse import migrations
from bxb_stream.clickhouse.settings import ClickHouseSettings


def _catalog(client, db: str) -> list[tuple]:
    return client.query(
        "SELECT name, engine, create_table_query FROM system.tables WHERE database = %(db)s ORDER BY name",
        parameters={"db": db},
    ).result_rows


def test_apply_is_idempotent_and_recorded(clickhouse_db):
    client, s = clickhouse_db.client, clickhouse_db.settings
    before = _catalog(client, s.database)
    recorded = migrations.applied_versions(client, s.database)
    assert sorted(recorded) == [1, 2, 3]
    result = migrations.apply(client, s)
    assert result.applied == [] and [m.version for m in result.already] == [1, 2, 3]
    assert _catalog(client, s.database) == before
    assert migrations.applied_versions(client, s.database) == recorded
    names = {row[0] for row in before}
    assert {
        "events_raw", "events_ledger", "events", "events_late", "transaction_conflicts", "events_dead_letter",
        "usage_hourly", "billing_period_closes", "late_decisions", "events_resolver", "usage_hourly_refresh",
        "events_queue", "events_queue_mv",
    } <= names  # fmt: skip


def test_changed_settings_are_refused_not_applied(clickhouse_db):
    changed = ClickHouseSettings(**{**clickhouse_db.settings.__dict__, "tracked_files_limit": 5000})
    with pytest.raises(migrations.MigrationError, match=r"0003 'S3 queue'.*different SQL"):
        migrations.apply(clickhouse_db.client, changed)


def test_keys_never_reach_the_table_definitions(clickhouse_db):
    for _, _engine, create in _catalog(clickhouse_db.client, clickhouse_db.database):
        assert "testing" not in create, create  # the fake keys in the environment


def test_named_collection_needs_keys_in_the_environment(clickhouse_db):
    with pytest.raises(migrations.MigrationError, match="AWS_SECRET_ACCESS_KEY unset"):
        migrations.ensure_named_collection_from_env(
            clickhouse_db.client, clickhouse_db.settings, environ={"AWS_ACCESS_KEY_ID": "x"}
        )


def test_role_based_settings_apply(clickhouse_engine):
    client = clickhouse_engine.client()
    s = ClickHouseSettings(
        bucket_url="http://127.0.0.1:9/unreachable",  # chDB accepts the role clause; nothing is read
        database="bxb_role_mode",
        role_arn="arn:aws:iam::123456789012:role/clickhouse-s3",
        s3_retry_attempts=1,
        polling_min_timeout_ms=1000,
        polling_max_timeout_ms=60000,
    )
    try:
        assert [m.version for m in migrations.apply(client, s).applied] == [1, 2, 3]
        create = client.query(f"SHOW CREATE TABLE {s.database}.events_queue").result_rows[0][0]
        assert "extra_credentials('role_arn' = 'arn:aws:iam::123456789012:role/clickhouse-s3')" in create
    finally:
        client.command(f"DROP DATABASE IF EXISTS {s.database} SYNC")
