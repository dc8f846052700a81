"""Settings validation and what the rendered DDL promises (no engine needed)."""

from __future__ import annotations

import re

import pytest

from bxb_runtime import layout
from bxb_runtime.clickhouse import tables
from bxb_runtime.config import ConfigError
from bxb_runtime.events.schema import clickhouse_columns
from bxb_stream.clickhouse.ddl import migrations, render_sql
from bxb_stream.clickhouse.settings import ClickHouseSettings, CredentialsMode

BUCKET = "https://bxb-events.s3.eu-west-1.amazonaws.com"
ROLE = "arn:aws:iam::123456789012:role/clickhouse-s3"


def settings(**kw) -> ClickHouseSettings:
    return ClickHouseSettings(**{"bucket_url": BUCKET, "named_collection": "bxb_s3", **kw})


@pytest.mark.parametrize(
    ("kwargs", "key", "words"),
    [
        ({"bucket_url": "ftp://bucket/x"}, "bucket_url", "http(s) URL"),
        ({"bucket_url": "s3://bucket"}, "bucket_url", "http(s) URL"),
        ({"bucket_url": "bucket-name"}, "bucket_url", "http(s) URL"),
        ({"bucket_url": "https://key:secret@host/bucket"}, "bucket_url", "credentials"),
        ({"bucket_url": "https://host/bucket?x=1"}, "bucket_url", "query"),
        ({"bucket_url": "https://host/bu'cket"}, "bucket_url", "not allowed"),
        ({"database": "bxb-prod"}, "database", "identifier"),
        ({"role_arn": ROLE}, "credentials", "exactly one"),
        ({"named_collection": ""}, "credentials", "exactly one"),
        ({"named_collection": "", "role_arn": "arn:aws:iam::1:role/x"}, "role_arn", "IAM role ARN"),
        ({"events_prefix": "events"}, "events_prefix", "ending in '/'"),
        ({"events_prefix": "ev*nts/"}, "events_prefix", "glob"),
        ({"errors_prefix": "events/errors/"}, "errors_prefix", "inside events_prefix"),
        ({"events_prefix": "/events/"}, "events_prefix", "relative"),
        ({"archive_prefix": "events/archive/"}, "archive_prefix", "inside events_prefix"),
        ({"archive_prefix": "archive"}, "archive_prefix", "ending in '/'"),
        ({"tracked_files_limit": 10}, "tracked_files_limit", "integer in"),
        ({"polling_min_timeout_ms": 5000, "polling_max_timeout_ms": 1000}, "polling_min_timeout_ms", "exceed"),
        ({"refresh_seconds": 0}, "refresh_seconds", "integer in"),
        ({"grace_days": 0}, "grace_days", "integer in"),
        ({"dedup_window_days": "35"}, "dedup_window_days", "integer in"),
    ],
)
def test_bad_settings_name_the_key(kwargs, key, words):
    with pytest.raises(ConfigError) as err:
        settings(**kwargs)
    assert err.value.key == key
    assert words in str(err.value)


def test_from_env_reads_prefixed_variables_and_overrides_win():
    env = {"BXB_CLICKHOUSE_BUCKET_URL": "http://127.0.0.1:9000/b1/", "BXB_CLICKHOUSE_TRACKED_FILES_LIMIT": "5000"}
    s = ClickHouseSettings.from_env(env, named_collection="nc", database="db2")
    assert (s.bucket_url, s.tracked_files_limit, s.database) == ("http://127.0.0.1:9000/b1", 5000, "db2")
    with pytest.raises(ConfigError, match="BUCKET_URL"):
        ClickHouseSettings.from_env({}, named_collection="nc")
    with pytest.raises(ConfigError, match="integer"):
        ClickHouseSettings.from_env({**env, "BXB_CLICKHOUSE_LOADING_RETRIES": "many"}, named_collection="nc")


def _table_columns(sql: str, table: str) -> list[tuple[str, str]]:
    body = re.search(rf"CREATE TABLE IF NOT EXISTS \w+\.{table} \(\n(.*?)\n\)", sql, re.S)
    assert body, table
    columns = (re.match(r"\s*`(\w+)` (.*?),?$", line) for line in body.group(1).splitlines())
    return [m.groups() for m in columns if m]  # a PROJECTION line is not a column


def test_event_columns_come_from_the_schema():
    sql = render_sql(settings())
    schema = [(n, k) for n, k in clickhouse_columns()]
    for table, extra in ((tables.EVENTS_RAW, tables.LANDING_COLUMN_TYPES), (tables.LEDGER, tables.LEDGER_COLUMN_TYPES)):
        cols = _table_columns(sql, table)
        assert cols[: len(schema)] == schema
        assert [n for n, _ in cols[len(schema) :]][: len(extra)] == [n for n, _ in extra]
    assert _table_columns(sql, tables.EVENTS_QUEUE) == schema
    assert tuple(n for n, _ in schema) == tables.EVENT_COLUMNS


def test_queues_read_only_their_prefix_and_never_errors_or_backup():
    s = settings()
    sql = render_sql(s)
    urls = re.findall(r"url = '([^']+)'", sql)
    assert urls == [f"{BUCKET}/{layout.EVENTS_PREFIX}**"]
    for url in urls:
        assert layout.ERRORS_PREFIX not in url and layout.HTTP_BACKUP_PREFIX not in url
    assert sql.count("mode = 'unordered'") == 1
    for setting in (
        "tracked_files_limit = 2000000",
        "tracked_file_ttl_sec = 3024000",
        "polling_max_timeout_ms = 10000",
    ):
        assert sql.count(setting) == 1
    # Tracking outlives the objects: a forgotten file that still exists would be read again.
    assert s.tracked_file_ttl_sec > layout.DATA_RETENTION_DAYS * 86_400


def test_ingested_objects_move_out_of_the_queues_reach():
    moved = render_sql(settings())
    assert moved.count("after_processing = 'move'") == 1
    assert moved.count(f"after_processing_move_prefix = '{layout.ARCHIVE_PREFIX}'") == 1
    assert moved.count("after_processing_move_preserve_path = 1") == 1
    assert "after_processing = 'keep'" not in moved
    kept = render_sql(settings(move_processed=False))  # for servers older than 25.x
    assert kept.count("after_processing = 'keep'") == 1 and "after_processing_move" not in kept


def test_an_http_only_schema_has_no_queues():
    sql = render_sql(settings(s3_queues=False))
    assert "S3Queue" not in sql and tables.EVENTS_QUEUE not in sql
    assert [m.version for m in migrations(settings(s3_queues=False))] == [1, 2]
    assert f"TABLE IF NOT EXISTS bxb.{tables.EVENTS_RAW}" in sql


def test_from_env_reads_booleans():
    env = {"BXB_CLICKHOUSE_BUCKET_URL": "http://127.0.0.1:9000/b1", "BXB_CLICKHOUSE_MOVE_PROCESSED": "false"}
    assert ClickHouseSettings.from_env(env, named_collection="nc").move_processed is False
    with pytest.raises(ConfigError, match="true or false"):
        ClickHouseSettings.from_env({**env, "BXB_CLICKHOUSE_MOVE_PROCESSED": "maybe"}, named_collection="nc")


def test_credentials_are_referenced_never_rendered(monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAEXAMPLEKEY123456")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY")
    named = render_sql(settings())
    role = render_sql(settings(named_collection="", role_arn=ROLE))
    for sql in (named, role):
        assert "AKIAEXAMPLEKEY123456" not in sql and "wJalrXUtnFEMI" not in sql
        assert "access_key" not in sql.lower() and "secret" not in sql.lower()
    assert "S3Queue(bxb_s3, url = " in named
    assert f"extra_credentials(role_arn = '{ROLE}')" in role
    assert settings(named_collection="", role_arn=ROLE).credentials_mode is CredentialsMode.ROLE


def _statement(sql: str, head: str) -> str:
    return sql.split(head)[1].split(";\n")[0]


def test_landing_keeps_every_copy_in_commit_order_and_drops_retried_inserts():
    sql = render_sql(settings(insert_dedup_window=777))
    for table in (tables.EVENTS_RAW, tables.DEAD_LETTER):
        assert "non_replicated_deduplication_window = 777" in _statement(sql, f"TABLE IF NOT EXISTS bxb.{table} ")
    raw = _statement(sql, f"TABLE IF NOT EXISTS bxb.{tables.EVENTS_RAW} ")
    assert "ENGINE = MergeTree\n" in raw  # nothing collapses copies: the resolver sees them all
    assert "enable_block_number_column = 1, enable_block_offset_column = 1" in raw


def test_the_resolver_is_the_only_writer_of_the_ledger_and_reads_by_mark_not_clock():
    s = settings(grace_days=40, dedup_window_days=30, resolve_batch_rows=12345, refresh_seconds=7)
    sql = render_sql(s)
    resolver = _statement(sql, f"VIEW IF NOT EXISTS bxb.{tables.RESOLVER}\n")
    assert f"REFRESH EVERY 7 SECOND APPEND TO bxb.{tables.LEDGER}" in resolver
    assert "LIMIT 12345" in resolver and "INTERVAL 40 DAY" in resolver and "INTERVAL 30 DAY" in resolver
    assert "_block_number" in resolver and "inserted_at >" not in resolver and "now64(3) -" in resolver
    # One refresh writes one part: all or nothing.
    assert f"min_insert_block_size_rows = {2 * 12345 + 1}, min_insert_block_size_bytes = 0" in resolver
    assert sql.count(f"APPEND TO bxb.{tables.LEDGER}") == 1
    usage = _statement(sql, f"VIEW IF NOT EXISTS bxb.{tables.USAGE_REFRESH_MV}\n")
    assert f"FROM bxb.{tables.LEDGER}" in usage and "verdict IN ('billed', 'accepted')" in usage
    assert "inserted_at" not in usage and "computed_at)" not in usage  # progress is a mark, never a clock


def test_migrations_are_numbered_and_checksums_follow_the_settings():
    a, b = migrations(settings()), migrations(settings(bucket_url="http://127.0.0.1:9000/other"))
    assert [m.version for m in a] == [1, 2, 3]
    assert [m.checksum for m in a[:2]] == [m.checksum for m in b[:2]]
    assert a[2].checksum != b[2].checksum
