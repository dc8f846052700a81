"""The ClickHouse schema, rendered from ``ClickHouseSettings`` as numbered migrations.

Tables (names in ``tables``):

``events_raw`` — every stored event, ``ReplacingMergeTree(version)``
  ORDER BY (organization_id, external_customer_id, code, timestamp, transaction_id): billing
  reads filter on organization, customer, metric and a time range, in that order. The sorting
  key is also the dedup key. A redelivered event (Firehose retry, the same Parquet file read
  again by S3Queue, an HTTP retry) repeats every key field, so its copies collapse into one
  row: idempotent by transaction_id per organization. ``FINAL`` (or usage_hourly) gives exact
  answers before background merges happen.

  Two events with the same transaction_id and *different* payloads:
  - differing only outside the key (properties, value, decimal_value): one row survives, the
    one with the highest ``version`` (= ingested_at ms; on a tie, the last inserted). Last
    write wins, as in Lago's ReplacingMergeTree tables.
  - differing in a key field (customer, code or timestamp): both rows are kept and both are
    billed, because nothing in ClickHouse can tell which is right. That is a producer bug;
    ``usage.transaction_id_conflicts`` lists both kinds so they can be corrected.

  ``non_replicated_deduplication_window`` makes ``insert_deduplication_token`` effective, so
  an HTTP retry carrying the same Firehose request id is dropped at insert.

``events_late`` — same shape, fed from the late prefix; not billed automatically.

``events_dead_letter`` — rows that reached ClickHouse but could not be stored.

``usage_hourly`` — per organization x customer x code x hour: count, sum(value),
  sum(decimal_value). Computed only from ``events_raw FINAL`` by a refreshable materialized
  view, so a duplicate can never be counted: each refresh recomputes, from deduplicated
  rows, every hour that received rows since the previous refresh (minus a lookback margin)
  and appends the result; ``ReplacingMergeTree(computed_at)`` keeps the newest computation
  of each hour. Read it with ``FINAL``. Freshness is one refresh interval.

S3 ingestion: an S3Queue table per prefix (``events/``, ``late/``) with a materialized view
into events_raw / events_late. The globs are rooted at those prefixes, and settings reject
nested prefixes, so Firehose's ``errors/`` and ``http-backup/`` objects are never read.
Each ingested object is moved to ``archive/<its key>`` (``move_processed``): the Parquet
archive lives outside the globs, so when S3Queue forgets a file (tracked-file TTL or
limit) it is not read again, and each poll lists only what is still to ingest.

Credentials are referenced, never rendered: ``extra_credentials(role_arn=...)`` or a named
collection name.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from bxb_stream.clickhouse import tables as t
from bxb_stream.clickhouse.settings import ClickHouseSettings, CredentialsMode
from bxb_stream.clickhouse.status import queue_keeper_path


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    statements: tuple[str, ...]

    @property
    def checksum(self) -> str:
        return hashlib.sha256("\n;\n".join(self.statements).encode()).hexdigest()


def quote(value: str) -> str:
    """A ClickHouse string literal."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def migrations(s: ClickHouseSettings) -> tuple[Migration, ...]:
    """Every migration, in order. Statements are idempotent (IF NOT EXISTS) so a crashed apply can rerun."""
    db = s.database
    tables = (
        Migration(1, "event tables", (_event_table(s, t.EVENTS_RAW), _event_table(s, t.EVENTS_LATE), _dead_letter(s))),
        Migration(2, "usage_hourly", (_usage_hourly(db), _usage_refresh(s))),
    )
    if not s.s3_queues:
        return tables
    queues = Migration(
        3,
        "S3 queues",
        (
            _queue(s, t.EVENTS_QUEUE, s.events_prefix),
            _queue_mv(db, t.EVENTS_QUEUE_MV, t.EVENTS_QUEUE, t.EVENTS_RAW),
            _queue(s, t.LATE_QUEUE, s.late_prefix),
            _queue_mv(db, t.LATE_QUEUE_MV, t.LATE_QUEUE, t.EVENTS_LATE),
        ),
    )
    return (*tables, queues)


def render_sql(s: ClickHouseSettings) -> str:
    """All migrations as one SQL script, for review or for running by hand."""
    out = [f"-- bxb-stream ClickHouse schema for database {s.database}", f"CREATE DATABASE IF NOT EXISTS {s.database};"]
    for m in migrations(s):
        out.append(f"\n-- migration {m.version:04d}: {m.name}")
        out.extend(stmt + ";" for stmt in m.statements)
    return "\n".join(out) + "\n"


def _columns(pairs: tuple[tuple[str, str], ...] | list[tuple[str, str]]) -> str:
    return ",\n".join(f"    `{name}` {kind}" for name, kind in pairs)


def _event_table(s: ClickHouseSettings, name: str) -> str:
    columns = _columns(t.EVENT_COLUMN_TYPES + t.EVENT_EXTRA_COLUMNS)
    return (
        f"CREATE TABLE IF NOT EXISTS {s.database}.{name} (\n{columns}\n)\n"
        "ENGINE = ReplacingMergeTree(version)\n"
        "PARTITION BY toYYYYMM(timestamp)\n"
        "ORDER BY (organization_id, external_customer_id, code, timestamp, transaction_id)\n"
        f"SETTINGS non_replicated_deduplication_window = {s.dedup_window}"
    )


def _dead_letter(s: ClickHouseSettings) -> str:
    return (
        f"CREATE TABLE IF NOT EXISTS {s.database}.{t.DEAD_LETTER} (\n{_columns(t.DEAD_LETTER_COLUMN_TYPES)}\n)\n"
        "ENGINE = MergeTree\n"
        "PARTITION BY toYYYYMM(failed_at)\n"
        "ORDER BY (organization_id, failed_at, request_id, record_index)\n"
        # The HTTP path retries whole requests with the same token; keep one copy.
        f"SETTINGS non_replicated_deduplication_window = {s.dedup_window}"
    )


def _usage_hourly(db: str) -> str:
    return (
        f"CREATE TABLE IF NOT EXISTS {db}.{t.USAGE_HOURLY} (\n{_columns(t.USAGE_HOURLY_COLUMN_TYPES)}\n)\n"
        "ENGINE = ReplacingMergeTree(computed_at)\n"
        "PARTITION BY toYYYYMM(hour)\n"
        "ORDER BY (organization_id, external_customer_id, code, hour)\n"
        # A customer x metric has ~720 rows a month; small granules let one customer's read skip the rest.
        "SETTINGS index_granularity = 256"
    )


def _usage_refresh(s: ClickHouseSettings) -> str:
    db, key = s.database, "organization_id, external_customer_id, code"
    hour = "toDateTime(toStartOfHour(timestamp), 'UTC')"
    # Hours that got rows since the newest computation (0 on the first run: everything).
    touched = (
        f"SELECT {key}, {hour} FROM {db}.{t.EVENTS_RAW} "
        f"WHERE inserted_at >= (SELECT max(computed_at) FROM {db}.{t.USAGE_HOURLY}) "
        f"- INTERVAL {s.usage_lookback_seconds} SECOND"
    )
    return (
        f"CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.{t.USAGE_REFRESH_MV}\n"
        f"REFRESH EVERY {s.usage_refresh_seconds} SECOND APPEND TO {db}.{t.USAGE_HOURLY}\n"
        f"AS SELECT {key}, {hour} AS hour,\n"
        "    count() AS event_count,\n"
        "    sum(ifNull(value, 0)) AS value_sum,\n"
        "    sum(ifNull(decimal_value, toDecimal128(0, 18))) AS decimal_value_sum,\n"
        "    now64(3, 'UTC') AS computed_at\n"
        f"FROM {db}.{t.EVENTS_RAW} FINAL\n"
        f"WHERE ({key}, {hour}) IN ({touched})\n"
        f"GROUP BY {key}, hour"
    )


def _credentials_args(s: ClickHouseSettings, url: str) -> str:
    if s.credentials_mode is CredentialsMode.ROLE:
        return f"{quote(url)}, 'Parquet', extra_credentials(role_arn = {quote(s.role_arn)})"
    # The collection holds only the keys; url and format are given here.
    return f"{s.named_collection}, url = {quote(url)}, format = 'Parquet'"


def _queue(s: ClickHouseSettings, name: str, prefix: str) -> str:
    queue_settings = ["mode = 'unordered'"]  # Firehose object keys do not sort in arrival order
    if s.move_processed:
        # Out of the glob into the archive, same key below archive/: a forgotten file is never
        # read again, and listings stay small. (Not 'delete': issue 114421 re-ingests.)
        queue_settings += [
            "after_processing = 'move'",
            f"after_processing_move_prefix = {quote(s.archive_prefix)}",
            "after_processing_move_preserve_path = 1",
        ]
    else:
        queue_settings.append("after_processing = 'keep'")
    queue_settings += [
        f"keeper_path = {quote(queue_keeper_path(s.database, name))}",
        f"loading_retries = {s.loading_retries}",
        f"tracked_files_limit = {s.tracked_files_limit}",
        f"tracked_file_ttl_sec = {s.tracked_file_ttl_sec}",
        f"polling_min_timeout_ms = {s.polling_min_timeout_ms}",
        f"polling_max_timeout_ms = {s.polling_max_timeout_ms}",
        f"polling_backoff_ms = {s.polling_backoff_ms}",
    ]
    if s.s3_retry_attempts:
        queue_settings.append(f"s3_retry_attempts = {s.s3_retry_attempts}")
    return (
        f"CREATE TABLE IF NOT EXISTS {s.database}.{name} (\n{_columns(t.EVENT_COLUMN_TYPES)}\n)\n"
        f"ENGINE = S3Queue({_credentials_args(s, s.url_for(prefix))})\n"
        "SETTINGS " + ",\n    ".join(queue_settings)
    )


def _queue_mv(db: str, name: str, queue: str, target: str) -> str:
    cols = ", ".join(f"`{c}`" for c in t.EVENT_COLUMNS)
    # Attaching the view starts consumption, so it is created after its queue and target.
    return (
        f"CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.{name} TO {db}.{target}\n"
        f"AS SELECT {cols}, _path AS source FROM {db}.{queue}"
    )
