"""The ClickHouse schema, rendered from ``ClickHouseSettings`` as numbered migrations.

How an event becomes billable (one charge per organization_id + transaction_id):

``events_raw`` — landing. Every copy either path delivers (the S3Queue MV, the HTTP ingest)
  lands here as it came, replays and resends included. Plain MergeTree with the block-number
  and block-offset columns: a non-replicated table hands out block numbers in commit order,
  so ``mark = block << 64 | offset`` orders every landed row by when it became visible.

``events_resolver`` — a refreshable materialized view, the only writer of ``events_ledger``.
  Each run takes the landed rows above the highest mark already resolved (at most
  ``resolve_batch_rows``, written as one part, so a run is all or nothing) and gives each one
  verdict:
  - the first stored copy of its (organization_id, transaction_id) within the dedup window is
    ``billed``, or ``late`` if its hour is in a closed billing period (``billing_period_closes``)
    or more than ``grace_days`` older than its Kinesis arrival;
  - a later copy is a ``duplicate`` when its payload hash equals that of a copy stored before
    it (the kept one or an earlier conflict), else a ``conflict`` (a new variant); neither is
    ever billed.
  "First stored": lowest block; within one block (one insert), earliest Kinesis arrival, then the
  row written first (the transform keeps a batch's records in stream order). The winner never
  changes once resolved, so billing is append-only.
  A landed row whose mark is already in the ledger is skipped, so a repeated run stores
  nothing twice. Operators' decisions on late events (``late_decisions``) become ``accepted``
  (billed into the event's own hour) or ``rejected`` ledger rows in the same runs.

``usage_hourly`` — sums of billed ledger rows per organization x customer x code x hour,
  added by the ``usage_hourly_refresh`` view from the ledger rows above the highest mark it
  has added (again one part per run). Rows are partial sums: read with ``sum() ... GROUP BY``.
  A row is counted once whatever its timestamps, insert timing or clock skew, because
  progress is measured in ledger marks; ``usage.reconcile`` compares with the ledger and adds
  corrections (a restore of old parts is the one way around the marks).

Watermarks ("highest mark resolved / added") are read from part metadata: the mark column
appears in the partition key through an expression that is always 0, so every part keeps its
min/max and ``max(mark)`` never reads the column.

Views: ``events`` (billed rows), ``events_late`` (late, not yet decided),
``transaction_conflicts`` (each conflicting copy beside the kept one).

``events_dead_letter`` — HTTP-path records that reached the ingest but were not events.

S3 ingestion: an S3Queue table on ``events/`` with a materialized view into events_raw. The
glob is rooted at that prefix, and settings reject nested prefixes, so Firehose's ``errors/``
and ``http-backup/`` objects are never read. Each ingested object is moved to
``archive/<its key>`` (``move_processed``): when S3Queue forgets a file (tracked-file TTL or
limit) it is not read again, and if it is, the resolver records its rows as duplicates.

Sharding: every table that decides billing is keyed by (organization_id, transaction_id)
through the resolver's lookup; shard by ``cityHash64(organization_id, transaction_id)`` and
each shard resolves its own transactions (see README, "Billing guarantees").

Credentials are referenced, never rendered: ``extra_credentials(role_arn=...)`` or a named
collection name.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from bxb_runtime.clickhouse import tables as t
from bxb_stream.clickhouse.settings import ClickHouseSettings, CredentialsMode
from bxb_stream.clickhouse.status import queue_keeper_path

# A row's position in its table: block number (commit order) << 64 | offset within the block.
MARK = "bitOr(bitShiftLeft(toUInt128(_block_number), 64), toUInt128(_block_offset))"
# The highest block number in a part, from its name (<partition>_<min>_<max>_<level>[_<mutation>];
# partition ids here never contain '_'): parts that end below a watermark are never opened.
PART_MAX_BLOCK = "toUInt64(splitByChar('_', _part)[3])"
# Partition-key term that is always 0 but makes every part record the column's min and max.
_TWO_127 = "toUInt128('170141183460469231731687303715884105728')"
# The payload a duplicate repeats: every field a producer sends, where a timestamp that
# defaulted to the record's arrival counts as absent (an identical resend without one matches).
KEY_HASH = "cityHash64(organization_id, transaction_id)"
# Numbers are hashed as their bytes (equal values, equal bytes: the validator stores -0.0 as 0.0,
# and decimals have one scale); a null and a zero differ by the isNull flag.
PAYLOAD_HASH = (
    "cityHash64(external_customer_id, code, if(timestamp = arrived_at, 0, toUnixTimestamp64Milli(timestamp)), "
    "properties, isNull(value), ifNull(value, 0), isNull(decimal_value), ifNull(decimal_value, 0))"
)


def _one_part(rows: int) -> str:
    """Settings that squash a refresh's whole output (at most ``rows`` rows) into one block, so
    it is written as one part: the run is all or nothing, and its watermark never skips a row."""
    return f"min_insert_block_size_rows = {rows + 1}, min_insert_block_size_bytes = 0, max_insert_threads = 1"


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
        Migration(
            1,
            "event tables",
            (
                _landing(s),
                _ledger(db),
                _dead_letter(s),
                _period_closes(db),
                _late_decisions(db),
                _usage_hourly(db),
            ),
        ),
        Migration(
            2,
            "billing: resolver, usage and views",
            (_resolver(s), _usage_refresh(s), _events_view(db), _late_view(db), _conflicts_view(db)),
        ),
    )
    if not s.s3_queues:
        return tables
    queues = Migration(
        3,
        "S3 queue",
        (_queue(s, t.EVENTS_QUEUE, s.events_prefix), _queue_mv(db, t.EVENTS_QUEUE_MV, t.EVENTS_QUEUE, t.EVENTS_RAW)),
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


def _names(names: tuple[str, ...] | list[str], alias: str = "") -> str:
    """Quoted column names; with ``alias``, each as ``alias.`name` AS `name```."""
    if not alias:
        return ", ".join(f"`{n}`" for n in names)
    return ", ".join(f"{alias}.`{n}` AS `{n}`" for n in names)


# Event columns a decision carries from its late copy (organization and transaction are its key).
_DECISION_CARRIED = tuple(c for c in t.EVENT_COLUMNS if c not in ("organization_id", "transaction_id"))
_DECISION_OWN = ("decision", "decided_by", "note", "payload_hash", "late_reason", "late_inserted_at", "late_source")


def _landing(s: ClickHouseSettings) -> str:
    return (
        f"CREATE TABLE IF NOT EXISTS {s.database}.{t.EVENTS_RAW} (\n"
        f"{_columns(t.EVENT_COLUMN_TYPES + t.LANDING_COLUMN_TYPES)}\n)\n"
        "ENGINE = MergeTree\n"
        "PARTITION BY toYYYYMM(inserted_at)\n"
        "ORDER BY (organization_id, transaction_id)\n"
        "SETTINGS enable_block_number_column = 1, enable_block_offset_column = 1,\n"
        # An HTTP retry carries the same insert_deduplication_token: dropped at insert.
        f"    non_replicated_deduplication_window = {s.insert_dedup_window}"
    )


def _ledger(db: str) -> str:
    return (
        f"CREATE TABLE IF NOT EXISTS {db}.{t.LEDGER} (\n{_columns(t.EVENT_COLUMN_TYPES + t.LEDGER_COLUMN_TYPES)},\n"
        # The resolver looks up earlier copies of each new transaction_id here.
        "    PROJECTION by_key (SELECT key_hash, organization_id, transaction_id, verdict, payload_hash, "
        "landing_mark, resolved_at ORDER BY key_hash)\n)\n"
        "ENGINE = MergeTree\n"
        f"PARTITION BY (toYYYYMM(resolved_at), intDiv(landing_mark, {_TWO_127}))\n"
        # Billing reads filter on organization, customer, metric and a time range, in that order.
        "ORDER BY (organization_id, external_customer_id, code, timestamp, transaction_id)\n"
        "SETTINGS enable_block_number_column = 1, enable_block_offset_column = 1"
    )


def _dead_letter(s: ClickHouseSettings) -> str:
    return (
        f"CREATE TABLE IF NOT EXISTS {s.database}.{t.DEAD_LETTER} (\n{_columns(t.DEAD_LETTER_COLUMN_TYPES)}\n)\n"
        "ENGINE = MergeTree\n"
        "PARTITION BY toYYYYMM(failed_at)\n"
        "ORDER BY (organization_id, failed_at, request_id, record_index)\n"
        # The HTTP path retries whole requests with the same token; keep one copy.
        f"SETTINGS non_replicated_deduplication_window = {s.insert_dedup_window}"
    )


def _period_closes(db: str) -> str:
    return (
        f"CREATE TABLE IF NOT EXISTS {db}.{t.PERIOD_CLOSES} (\n{_columns(t.PERIOD_CLOSE_COLUMN_TYPES)}\n)\n"
        "ENGINE = MergeTree\nORDER BY (organization_id, closed_at)"
    )


def _late_decisions(db: str) -> str:
    # The late copy itself rides along, so applying a decision never reads the ledger's rows.
    columns = _columns(t.EVENT_COLUMN_TYPES + t.DECISION_COLUMN_TYPES)
    return (
        f"CREATE TABLE IF NOT EXISTS {db}.{t.LATE_DECISIONS} (\n{columns},\n    `payload_hash` UInt64,\n"
        "    `late_mark` UInt128,\n    `late_reason` LowCardinality(String),\n"
        "    `late_inserted_at` DateTime64(3, 'UTC'),\n    `late_source` String\n)\n"
        "ENGINE = MergeTree\nORDER BY (organization_id, transaction_id, decided_at)"
    )


def _usage_hourly(db: str) -> str:
    return (
        f"CREATE TABLE IF NOT EXISTS {db}.{t.USAGE_HOURLY} (\n{_columns(t.USAGE_HOURLY_COLUMN_TYPES)}\n)\n"
        "ENGINE = AggregatingMergeTree\n"
        f"PARTITION BY intDiv(version, {_TWO_127})\n"
        "ORDER BY (organization_id, external_customer_id, code, hour)\n"
        # A customer x metric has ~720 rows a month; small granules let one customer's read skip the rest.
        "SETTINGS index_granularity = 256"
    )


def _resolver(s: ClickHouseSettings) -> str:
    db = s.database
    ledger, raw = f"{db}.{t.LEDGER}", f"{db}.{t.EVENTS_RAW}"
    kept = ", ".join(f"'{v}'" for v in t.KEPT)
    decided = ", ".join(f"'{v}'" for v in t.DECIDED)
    event_cols = _names(t.EVENT_COLUMNS)
    decision_columns = ", ".join(f"argMin(`{n}`, decided_at) AS `{n}`" for n in (*_DECISION_CARRIED, *_DECISION_OWN))
    return f"""CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.{t.RESOLVER}
REFRESH EVERY {s.refresh_seconds} SECOND APPEND TO {ledger}
AS WITH
    (SELECT max(landing_mark) FROM {ledger}) AS wm,
    -- This run resolves the landed rows in (wm, upto]: the next resolve_batch_rows marks.
    (SELECT max(mark) FROM (
        SELECT {MARK} AS mark FROM {raw}
        WHERE {PART_MAX_BLOCK} >= toUInt64(bitShiftRight(wm, 64)) AND mark > wm
        ORDER BY mark LIMIT {s.resolve_batch_rows})) AS upto,
    fresh AS (
        SELECT {event_cols}, inserted_at, source, {MARK} AS mark, _block_number AS block, {PAYLOAD_HASH} AS hash,
            {KEY_HASH} AS key_hash
        FROM {raw}
        WHERE {PART_MAX_BLOCK} >= toUInt64(bitShiftRight(wm, 64)) AND mark > wm AND mark <= upto
    ),
    -- Copies of transactions that come more than once in this run: which came first, per
    -- transaction and per payload (a repeat of any stored payload is a duplicate, not a conflict).
    repeats AS (
        SELECT organization_id, transaction_id, hash, (block, arrived_at, mark) AS position
        FROM fresh
        WHERE key_hash IN (SELECT key_hash FROM fresh GROUP BY key_hash HAVING count() > 1)
    ),
    first_copy AS (
        SELECT organization_id, transaction_id, min(position) AS first FROM repeats GROUP BY ALL
    ),
    first_variant AS (
        SELECT organization_id, transaction_id, hash, min(position) AS first FROM repeats GROUP BY ALL
    ),
    prior AS (
        SELECT organization_id, transaction_id,
            countIf(verdict IN ({kept})) > 0 AS has_kept,
            groupUniqArray(payload_hash) AS hashes,
            groupArray(landing_mark) AS marks
        FROM {ledger}
        WHERE key_hash IN (SELECT key_hash FROM fresh)
            AND resolved_at >= now64(3) - INTERVAL {s.dedup_window_days} DAY
        GROUP BY organization_id, transaction_id
    ),
    closes AS (
        SELECT organization_id, max(until) AS closed_until FROM {db}.{t.PERIOD_CLOSES} GROUP BY organization_id
    ),
    decisions AS (
        -- The first decision on a late transaction is the one that counts.
        SELECT organization_id, transaction_id, {decision_columns}
        FROM {db}.{t.LATE_DECISIONS} GROUP BY organization_id, transaction_id
    ),
    decided_state AS (
        SELECT organization_id, transaction_id,
            countIf(verdict = 'late') > 0 AS is_late, countIf(verdict IN ({decided})) > 0 AS is_decided
        FROM {ledger}
        WHERE key_hash IN (SELECT {KEY_HASH} FROM decisions)
        GROUP BY organization_id, transaction_id
    ),
    pending AS (
        SELECT d.* FROM decisions AS d
        INNER JOIN decided_state AS ds
            ON d.organization_id = ds.organization_id AND d.transaction_id = ds.transaction_id
        WHERE ds.is_late AND NOT ds.is_decided
        ORDER BY d.organization_id, d.transaction_id
        LIMIT {s.resolve_batch_rows}
    )
SELECT {event_cols}, inserted_at, source, landing_mark, payload_hash, {KEY_HASH} AS key_hash, verdict, reason,
    now64(3) AS resolved_at, decided_by, note
FROM (
    SELECT {_names(t.EVENT_COLUMNS, "f")}, f.inserted_at AS inserted_at, f.source AS source,
        f.mark AS landing_mark, f.hash AS payload_hash,
        multiIf(has(p.hashes, f.hash) OR (v.first.1 != 0 AND (f.block, f.arrived_at, f.mark) != v.first), 'duplicate',
                p.has_kept OR (r.first.1 != 0 AND (f.block, f.arrived_at, f.mark) != r.first), 'conflict',
                f.timestamp < c.closed_until, 'late',
                f.timestamp < f.arrived_at - INTERVAL {s.grace_days} DAY, 'late',
                'billed') AS verdict,
        multiIf(verdict != 'late', '', f.timestamp < c.closed_until, 'period_closed', 'grace_exceeded') AS reason,
        '' AS decided_by, '' AS note
    FROM fresh AS f
    LEFT JOIN first_copy AS r ON f.organization_id = r.organization_id AND f.transaction_id = r.transaction_id
    LEFT JOIN first_variant AS v
        ON f.organization_id = v.organization_id AND f.transaction_id = v.transaction_id AND f.hash = v.hash
    LEFT JOIN prior AS p ON f.organization_id = p.organization_id AND f.transaction_id = p.transaction_id
    LEFT JOIN closes AS c ON f.organization_id = c.organization_id
    WHERE NOT has(p.marks, f.mark)
    UNION ALL
    SELECT {_names(t.EVENT_COLUMNS, "d")}, d.late_inserted_at AS inserted_at, d.late_source AS source,
        wm AS landing_mark, d.payload_hash AS payload_hash,
        if(d.decision = 'accept', 'accepted', 'rejected') AS verdict, d.late_reason AS reason,
        d.decided_by AS decided_by, d.note AS note
    FROM pending AS d
)
SETTINGS {_one_part(2 * s.resolve_batch_rows)}, use_index_for_in_with_subqueries_max_values = 100000"""


def _usage_refresh(s: ClickHouseSettings) -> str:
    db = s.database
    billable = ", ".join(f"'{v}'" for v in t.BILLABLE)
    names = _names([name for name, _ in t.USAGE_HOURLY_COLUMN_TYPES])
    return f"""CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.{t.USAGE_REFRESH_MV}
REFRESH EVERY {s.refresh_seconds} SECOND APPEND TO {db}.{t.USAGE_HOURLY} ({names})
AS WITH (SELECT max(version) FROM {db}.{t.USAGE_HOURLY}) AS wm
SELECT organization_id, external_customer_id, code, toStartOfHour(timestamp) AS hour,
    toInt64(count()) AS event_count,
    sum(ifNull(value, 0)) AS value_sum,
    sum(toDecimal256(ifNull(decimal_value, 0), 18)) AS decimal_value_sum,
    max(mark) AS version,
    now64(3) AS computed_at
FROM (
    SELECT organization_id, external_customer_id, code, timestamp, value, decimal_value, {MARK} AS mark
    FROM {db}.{t.LEDGER}
    WHERE {PART_MAX_BLOCK} >= toUInt64(bitShiftRight(wm, 64)) AND {MARK} > wm AND verdict IN ({billable})
    ORDER BY mark
    LIMIT {s.usage_batch_rows}
)
GROUP BY organization_id, external_customer_id, code, hour
SETTINGS {_one_part(s.usage_batch_rows)}"""


def _events_view(db: str) -> str:
    billable = ", ".join(f"'{v}'" for v in t.BILLABLE)
    return f"CREATE VIEW IF NOT EXISTS {db}.{t.EVENTS} AS SELECT * FROM {db}.{t.LEDGER} WHERE verdict IN ({billable})"


def _late_view(db: str) -> str:
    decided = ", ".join(f"'{v}'" for v in t.DECIDED)
    return (
        f"CREATE VIEW IF NOT EXISTS {db}.{t.EVENTS_LATE} AS SELECT * FROM {db}.{t.LEDGER} "
        f"WHERE verdict = 'late' AND (organization_id, transaction_id) NOT IN "
        f"(SELECT organization_id, transaction_id FROM {db}.{t.LEDGER} WHERE verdict IN ({decided}))"
    )


def _conflicts_view(db: str) -> str:
    kept = ", ".join(f"'{v}'" for v in t.KEPT)
    ledger = f"{db}.{t.LEDGER}"
    payload = ("external_customer_id", "code", "timestamp", "properties", "value", "decimal_value")
    return (
        f"CREATE VIEW IF NOT EXISTS {db}.{t.CONFLICTS} AS\n"
        f"SELECT c.organization_id AS organization_id, c.transaction_id AS transaction_id,\n"
        f"    k.verdict AS kept_verdict, {', '.join(f'k.{n} AS kept_{n}' for n in payload)},\n"
        f"    {', '.join(f'c.{n} AS conflict_{n}' for n in payload)},\n"
        "    k.landing_mark AS kept_mark, c.landing_mark AS conflict_mark, c.source AS conflict_source,\n"
        "    c.resolved_at AS resolved_at\n"
        f"FROM (SELECT * FROM {ledger} WHERE verdict = 'conflict') AS c\n"
        f"INNER JOIN (SELECT * FROM {ledger} WHERE verdict IN ({kept})) AS k\n"
        "    ON c.organization_id = k.organization_id AND c.transaction_id = k.transaction_id"
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
