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

Schema versions: migration N renders the event columns as of the schema version it was written
for (``events.schema.fields_at``), so an applied migration keeps its checksum when a field is
added. Each later schema version has its own migration (``SCHEMA_MIGRATIONS``): ``ADD COLUMN IF
NOT EXISTS`` on events_raw, the ledger and late_decisions; the resolver, the views and the
S3Queue table (which accepts no ALTER of its columns, and whose Keeper state records them) are
dropped and created again, the queue under a new keeper path. A queue recreated that way reads
every object still under ``events/`` once more: with ``move_processed`` those are only the
objects not yet ingested; any re-read copy is recorded as a duplicate by the resolver.

Deployments (``ClickHouseSettings.deployment``):

- ``single``: one server, as above. Its rendering never changes (tests pin the checksums).
- ``cluster``: self-managed shards x replicas. The database is ``Replicated(path, '{shard}',
  '{replica}')``, created ON CLUSTER: a refreshable view is coordinated through Keeper only in a
  Replicated database (elsewhere every replica would run the resolver and append its verdicts
  twice), and its coordination path includes ``{shard}``, so each shard runs one resolver. DDL
  inside the database is replicated by it (it refuses ON CLUSTER); tables are
  ``Replicated*MergeTree`` with the database's ``{uuid}/{shard}`` path and ``{replica}``. The
  tables keep their names and are shard-local; ``<name>_all`` are Distributed tables over them.
  Rows are sharded by ``cityHash64(organization_id, transaction_id)``, so every copy of a
  transaction lands on one shard and the dedup stays local. The S3Queue table exists on every
  replica with one keeper path, so the replicas split the files, and its view writes to
  ``events_raw_all``; the HTTP ingest must insert into ``events_raw_all`` too.
  A close is stored on the shard of the node that took it; each resolver reads
  ``billing_period_closes_all``, so a close applies to every shard. ``schema_migrations`` is
  replicated within one shard: run ``apply`` against one shard's nodes. No table names an
  explicit Keeper path (a Replicated database refuses them by default since 24.9).
- ``cloud``: ClickHouse Cloud. Plain engine names (Cloud makes every MergeTree a
  SharedMergeTree, and its Shared database coordinates refreshable views), no ON CLUSTER, no
  sharding, IAM-role credentials only.

Ordering on replicated tables: a ReplicatedMergeTree numbers blocks per partition, and a block
allocated earlier can become visible on a replica after a later one (concurrent inserts, fetch
lag). So in ``cluster`` and ``cloud`` events_raw and the ledger have one partition each (one
block sequence per shard), the resolver re-reads the last ``replica_lookback_blocks`` blocks
below its watermark on every run, and the mark anti-join (``NOT has(p.marks, f.mark)``) makes
that re-read idempotent. What changes in the dedup guarantee: a transaction is still billed at
most once per shard's ledger; among copies that become visible out of block order, the first
*resolved* copy wins instead of the lowest block; a row that becomes visible more than
``replica_lookback_blocks`` inserts late is not resolved, and ``clickhouse health`` does not
count it (its backlog is what lies above the watermark): compare landed and resolved rows.
usage_hourly is computed from ledger marks the same way and can miss a
ledger part fetched out of order: the ledger is the truth and ``usage reconcile`` repairs sums.

Credentials are referenced, never rendered: ``extra_credentials(role_arn=...)`` or a named
collection name.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

from bxb_runtime.clickhouse import tables as t
from bxb_runtime.events import schema
from bxb_runtime.events.schema import Field
from bxb_stream.clickhouse.settings import ClickHouseSettings, CredentialsMode, Deployment
from bxb_stream.clickhouse.status import queue_keeper_path

# Schema version -> the migration that brings ClickHouse to it (versions after 1; version 1 is
# migrations 1-3). Adding a field in version N adds one line here: (N, the next free number).
SCHEMA_MIGRATIONS: tuple[tuple[int, int], ...] = ()

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


def _payload_hash(added: Sequence[str]) -> str:
    """PAYLOAD_HASH with producer fields added after version 1: a copy that has none of them hashes
    as before, so a resend of an event stored before the field existed is still a duplicate."""
    if not added:
        return PAYLOAD_HASH
    absent = " AND ".join(f"isNull(`{n}`)" for n in added)
    values = ", ".join(f"isNull(`{n}`), ifNull(toString(`{n}`), '')" for n in added)
    return f"if({absent}, {PAYLOAD_HASH}, cityHash64({PAYLOAD_HASH}, {values}))"


class SchemaMigrationError(ValueError):
    """A schema version without its ClickHouse migration (or the reverse); names the field."""


@dataclass(frozen=True)
class Events:
    """The event columns as of one schema version."""

    fields: tuple[Field, ...]

    @classmethod
    def at(cls, version: int, fields: Sequence[Field] = schema.FIELDS) -> Events:
        return cls(schema.fields_at(version, fields))

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.fields)

    @property
    def types(self) -> tuple[tuple[str, str], ...]:
        return tuple(schema.clickhouse_columns(self.fields))

    @property
    def payload_hash(self) -> str:
        return _payload_hash([f.name for f in self.fields if f.added_in > 1])


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


def migrations(
    s: ClickHouseSettings,
    fields: Sequence[Field] = schema.FIELDS,
    schema_migrations: Sequence[tuple[int, int]] = SCHEMA_MIGRATIONS,
) -> tuple[Migration, ...]:
    """Every migration, in order. Statements are idempotent (IF NOT EXISTS) so a crashed apply can rerun.

    Migrations 1-3 render the event columns of schema version 1; each later schema version is
    one migration (``schema_migrations``: version -> migration number)."""
    db = s.database
    v1 = Events.at(1, fields)
    tables = (
        Migration(
            1,
            "event tables",
            (
                _landing(s, v1),
                _ledger(s, v1),
                _dead_letter(s),
                _period_closes(s),
                _late_decisions(s, v1),
                _usage_hourly(s),
                *_distributed(
                    s, (t.EVENTS_RAW, t.LEDGER, t.DEAD_LETTER, t.LATE_DECISIONS, t.USAGE_HOURLY, t.PERIOD_CLOSES)
                ),
            ),
        ),
        Migration(
            2,
            "billing: resolver, usage and views",
            (_resolver(s, v1), _usage_refresh(s), _events_view(db), _late_view(db), _conflicts_view(db, v1)),
        ),
    )
    out = list(tables)
    if s.s3_queues:
        out.append(Migration(3, "S3 queue", (_queue(s, t.EVENTS_QUEUE, s.events_prefix, v1), _queue_mv(s, v1))))
    for version, number in _schema_steps(fields, schema_migrations):
        out.append(Migration(number, f"event schema version {version}", _schema_step(s, version, fields)))
    return tuple(out)


def _schema_steps(fields: Sequence[Field], schema_migrations: Sequence[tuple[int, int]]) -> list[tuple[int, int]]:
    """(schema version, migration number) for every version after 1, checked against the fields."""
    steps = dict(schema_migrations)
    newest = schema.schema_version(fields)
    for f in fields:
        for version in (f.added_in, f.removed_in):
            if version is not None and version > 1 and version not in steps:
                raise SchemaMigrationError(
                    f"event schema, field {f.name!r}: schema version {version} has no ClickHouse migration; "
                    f"add ({version}, <next migration number>) to clickhouse.ddl.SCHEMA_MIGRATIONS"
                )
    for version, number in steps.items():
        if not 1 < version <= newest:
            raise SchemaMigrationError(f"SCHEMA_MIGRATIONS names schema version {version}, which no field has")
        if number <= 3:
            raise SchemaMigrationError(
                f"schema version {version}: migration {number} is taken (1-3 are the base schema)"
            )
    return sorted(steps.items(), key=lambda step: step[1])


def _schema_step(s: ClickHouseSettings, version: int, fields: Sequence[Field]) -> tuple[str, ...]:
    """ClickHouse as of schema ``version``: new columns where rows are stored, then everything that
    lists columns made again from the new list. A removed field changes no column (it stays, null)."""
    db, now, before = s.database, Events.at(version, fields), Events.at(version - 1, fields)
    added = [f for f in now.fields if f.added_in == version]
    statements: list[str] = []
    for table in (t.EVENTS_RAW, t.LEDGER, t.LATE_DECISIONS):
        after = before.names[-1]
        for f in added:
            column = f"`{f.name}` {schema.clickhouse_type(f)} AFTER `{after}`"
            statements.append(f"ALTER TABLE {db}.{table} ADD COLUMN IF NOT EXISTS {column}")
            after = f.name
    if not added:
        return (f"SELECT 'schema version {version}: no column changes'",)
    if s.deployment is Deployment.CLUSTER:  # the Distributed tables list the columns too
        for table in (t.EVENTS_RAW, t.LEDGER, t.LATE_DECISIONS):
            statements.append(f"DROP TABLE IF EXISTS {db}.{table}{DISTRIBUTED_SUFFIX} SYNC")
            statements.extend(_distributed(s, (table,)))
    statements += [
        # Dropping a refreshable view loses no state: its watermark is read from the ledger.
        f"DROP TABLE IF EXISTS {db}.{t.RESOLVER} SYNC",
        _resolver(s, now),
        _events_view(db).replace("CREATE VIEW IF NOT EXISTS", "CREATE OR REPLACE VIEW"),
        _late_view(db).replace("CREATE VIEW IF NOT EXISTS", "CREATE OR REPLACE VIEW"),
        _conflicts_view(db, now).replace("CREATE VIEW IF NOT EXISTS", "CREATE OR REPLACE VIEW"),
    ]
    if s.s3_queues:
        statements += [
            f"DROP TABLE IF EXISTS {db}.{t.EVENTS_QUEUE_MV} SYNC",  # stops consumption first
            f"DROP TABLE IF EXISTS {db}.{t.EVENTS_QUEUE} SYNC",
            _queue(s, t.EVENTS_QUEUE, s.events_prefix, now, keeper_suffix=f"_v{version}"),
            _queue_mv(s, now),
        ]
    return tuple(statements)


def render_sql(s: ClickHouseSettings, fields: Sequence[Field] = schema.FIELDS) -> str:
    """All migrations as one SQL script, for review or for running by hand."""
    out = [f"-- bxb-stream ClickHouse schema for database {s.database}", f"{create_database(s)};"]
    for m in migrations(s, fields):
        out.append(f"\n-- migration {m.version:04d}: {m.name}")
        out.extend(stmt + ";" for stmt in m.statements)
    return "\n".join(out) + "\n"


DISTRIBUTED_SUFFIX = "_all"


def create_database(s: ClickHouseSettings) -> str:
    if s.deployment is Deployment.CLUSTER:
        path = quote(f"/clickhouse/bxb/databases/{s.database}")
        return (
            f"CREATE DATABASE IF NOT EXISTS {s.database} ON CLUSTER {s.cluster_name} "
            f"ENGINE = Replicated({path}, '{{shard}}', '{{replica}}')"
        )
    return f"CREATE DATABASE IF NOT EXISTS {s.database}"


def migrations_table(s: ClickHouseSettings) -> str:
    """Where ``migrations.apply`` records what ran (replicated with the database in a cluster)."""
    # Cluster: replicated within the shard of the node apply runs on (run apply against one shard;
    # the database replicates the DDL itself to every shard).
    return (
        f"CREATE TABLE IF NOT EXISTS {s.database}.{t.MIGRATIONS} (version UInt32, name String, checksum String, "
        f"applied_at DateTime64(3, 'UTC') DEFAULT now64(3)) ENGINE = {_engine(s, 'ReplacingMergeTree(applied_at)')} "
        "ORDER BY version"
    )


def _replicated(s: ClickHouseSettings) -> bool:
    return s.deployment is not Deployment.SINGLE


def _engine(s: ClickHouseSettings, engine: str) -> str:
    """``engine`` as this deployment writes it. Cluster: the Replicated database supplies the Keeper
    path ({uuid}/{shard}) and {replica}. Cloud: plain names, which Cloud makes SharedMergeTree."""
    return f"Replicated{engine}" if s.deployment is Deployment.CLUSTER else engine


def _dedup_window(s: ClickHouseSettings) -> str:
    """Inserts remembered per table, so a retried HTTP request (same insert_deduplication_token)
    stores nothing twice: non_replicated_* on one server, the replicated window elsewhere."""
    if _replicated(s):
        return f"replicated_deduplication_window = {s.insert_dedup_window}"
    return f"non_replicated_deduplication_window = {s.insert_dedup_window}"


def _distributed(s: ClickHouseSettings, names: Sequence[str]) -> tuple[str, ...]:
    """Cluster only: ``<name>_all`` over each shard-local table, sharded by the transaction key."""
    if s.deployment is not Deployment.CLUSTER:
        return ()
    db = s.database
    return tuple(
        f"CREATE TABLE IF NOT EXISTS {db}.{name}{DISTRIBUTED_SUFFIX} AS {db}.{name}\n"
        f"ENGINE = Distributed({s.cluster_name}, {db}, {name}"
        + (f", {_SHARDING.get(name, '')})" if name in _SHARDING else ", rand())")
        for name in names
    )


# Every copy of a transaction goes to one shard, where the resolver sees them all.
_SHARDING = {
    t.EVENTS_RAW: KEY_HASH,
    t.LEDGER: KEY_HASH,
    t.LATE_DECISIONS: KEY_HASH,
    t.USAGE_HOURLY: "cityHash64(organization_id, external_customer_id)",
}


def _columns(pairs: tuple[tuple[str, str], ...] | list[tuple[str, str]]) -> str:
    return ",\n".join(f"    `{name}` {kind}" for name, kind in pairs)


def _names(names: tuple[str, ...] | list[str], alias: str = "") -> str:
    """Quoted column names; with ``alias``, each as ``alias.`name` AS `name```."""
    if not alias:
        return ", ".join(f"`{n}`" for n in names)
    return ", ".join(f"{alias}.`{n}` AS `{n}`" for n in names)


_DECISION_OWN = ("decision", "decided_by", "note", "payload_hash", "late_reason", "late_inserted_at", "late_source")


def _decision_carried(ev: Events) -> tuple[str, ...]:
    """Event columns a decision carries from its late copy (organization and transaction are its key)."""
    return tuple(c for c in ev.names if c not in ("organization_id", "transaction_id"))


def _landing(s: ClickHouseSettings, ev: Events) -> str:
    # Replicated: one partition, so one block-number sequence per shard (see the module docstring).
    partition = "tuple()" if _replicated(s) else "toYYYYMM(inserted_at)"
    return (
        f"CREATE TABLE IF NOT EXISTS {s.database}.{t.EVENTS_RAW} (\n"
        f"{_columns(ev.types + t.LANDING_COLUMN_TYPES)}\n)\n"
        f"ENGINE = {_engine(s, 'MergeTree')}\n"
        f"PARTITION BY {partition}\n"
        "ORDER BY (organization_id, transaction_id)\n"
        "SETTINGS enable_block_number_column = 1, enable_block_offset_column = 1,\n"
        # An HTTP retry carries the same insert_deduplication_token: dropped at insert.
        f"    {_dedup_window(s)}"
    )


def _ledger(s: ClickHouseSettings, ev: Events) -> str:
    partition = (
        f"intDiv(landing_mark, {_TWO_127})"
        if _replicated(s)
        else f"(toYYYYMM(resolved_at), intDiv(landing_mark, {_TWO_127}))"
    )
    return (
        f"CREATE TABLE IF NOT EXISTS {s.database}.{t.LEDGER} (\n{_columns(ev.types + t.LEDGER_COLUMN_TYPES)},\n"
        # The resolver looks up earlier copies of each new transaction_id here.
        "    PROJECTION by_key (SELECT key_hash, organization_id, transaction_id, verdict, payload_hash, "
        "landing_mark, resolved_at ORDER BY key_hash)\n)\n"
        f"ENGINE = {_engine(s, 'MergeTree')}\n"
        f"PARTITION BY {partition}\n"
        # Billing reads filter on organization, customer, metric and a time range, in that order.
        "ORDER BY (organization_id, external_customer_id, code, timestamp, transaction_id)\n"
        "SETTINGS enable_block_number_column = 1, enable_block_offset_column = 1"
    )


def _dead_letter(s: ClickHouseSettings) -> str:
    return (
        f"CREATE TABLE IF NOT EXISTS {s.database}.{t.DEAD_LETTER} (\n{_columns(t.DEAD_LETTER_COLUMN_TYPES)}\n)\n"
        f"ENGINE = {_engine(s, 'MergeTree')}\n"
        "PARTITION BY toYYYYMM(failed_at)\n"
        "ORDER BY (organization_id, failed_at, request_id, record_index)\n"
        # The HTTP path retries whole requests with the same token; keep one copy.
        f"SETTINGS {_dedup_window(s)}"
    )


def _period_closes(s: ClickHouseSettings) -> str:
    engine = _engine(s, "MergeTree")
    return (
        f"CREATE TABLE IF NOT EXISTS {s.database}.{t.PERIOD_CLOSES} (\n{_columns(t.PERIOD_CLOSE_COLUMN_TYPES)}\n)\n"
        f"ENGINE = {engine}\nORDER BY (organization_id, closed_at)"
    )


def _late_decisions(s: ClickHouseSettings, ev: Events) -> str:
    # The late copy itself rides along, so applying a decision never reads the ledger's rows.
    columns = _columns(ev.types + t.DECISION_COLUMN_TYPES)
    return (
        f"CREATE TABLE IF NOT EXISTS {s.database}.{t.LATE_DECISIONS} (\n{columns},\n    `payload_hash` UInt64,\n"
        "    `late_mark` UInt128,\n    `late_reason` LowCardinality(String),\n"
        "    `late_inserted_at` DateTime64(3, 'UTC'),\n    `late_source` String\n)\n"
        f"ENGINE = {_engine(s, 'MergeTree')}\nORDER BY (organization_id, transaction_id, decided_at)"
    )


def _usage_hourly(s: ClickHouseSettings) -> str:
    return (
        f"CREATE TABLE IF NOT EXISTS {s.database}.{t.USAGE_HOURLY} (\n{_columns(t.USAGE_HOURLY_COLUMN_TYPES)}\n)\n"
        f"ENGINE = {_engine(s, 'AggregatingMergeTree')}\n"
        f"PARTITION BY intDiv(version, {_TWO_127})\n"
        "ORDER BY (organization_id, external_customer_id, code, hour)\n"
        # A customer x metric has ~720 rows a month; small granules let one customer's read skip the rest.
        "SETTINGS index_granularity = 256"
    )


def _resolver(s: ClickHouseSettings, ev: Events | None = None) -> str:
    """The resolver's SQL, by default for today's schema (what runs once every migration applied)."""
    ev = ev or Events.at(schema.SCHEMA_VERSION)
    db = s.database
    # Cluster: a close is stored on one shard and applies to all, so every shard reads them all.
    closes = t.PERIOD_CLOSES + (DISTRIBUTED_SUFFIX if s.deployment is Deployment.CLUSTER else "")
    ledger, raw = f"{db}.{t.LEDGER}", f"{db}.{t.EVENTS_RAW}"
    kept = ", ".join(f"'{v}'" for v in t.KEPT)
    decided = ", ".join(f"'{v}'" for v in t.DECIDED)
    event_cols = _names(ev.names)
    decision_columns = ", ".join(
        f"argMin(`{n}`, decided_at) AS `{n}`" for n in (*_decision_carried(ev), *_DECISION_OWN)
    )
    # Replicated: re-read the last replica_lookback_blocks blocks below the watermark too (rows that
    # became visible out of block order); the mark anti-join below skips those already resolved.
    # A replicated table's first block is number 0 (mark 0): until the ledger has a row, take it too.
    since, since_block, lookback, above = "mark > wm", "toUInt64(bitShiftRight(wm, 64))", "", "mark > wm"
    if _replicated(s):
        since, since_block = "mark >= since", "toUInt64(bitShiftRight(since, 64))"
        back = f"bitShiftLeft(toUInt128({s.replica_lookback_blocks}), 64)"
        lookback = (
            f"\n    (SELECT count() = 0 FROM {ledger}) AS unstarted,"
            f"\n    if(wm > {back}, wm - {back}, toUInt128(0)) AS since,"
        )
        above = "(mark > wm OR unstarted)"
    return f"""CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.{t.RESOLVER}
REFRESH EVERY {s.refresh_seconds} SECOND APPEND TO {ledger}
AS WITH
    (SELECT max(landing_mark) FROM {ledger}) AS wm,{lookback}
    -- This run resolves the landed rows in (wm, upto]: the next resolve_batch_rows marks.
    (SELECT max(mark) FROM (
        SELECT {MARK} AS mark FROM {raw}
        PREWHERE {above.replace("mark", MARK)}
        WHERE {PART_MAX_BLOCK} >= toUInt64(bitShiftRight(wm, 64))
        ORDER BY mark LIMIT {s.resolve_batch_rows})) AS upto,
    fresh AS (
        SELECT {event_cols}, inserted_at, source, {MARK} AS mark, _block_number AS block, {ev.payload_hash} AS hash,
            {KEY_HASH} AS key_hash
        FROM {raw}
        -- Of rows resolved before (in a merged part, or the last block), only the mark is read.
        PREWHERE {since.replace("mark", MARK)} AND {MARK} <= upto
        WHERE {PART_MAX_BLOCK} >= {since_block}
    ),
    -- Transactions that come more than once in this run, with each copy's position: which came
    -- first, per transaction and per payload (a repeat of any stored payload is a duplicate, not a
    -- conflict). Grouped and joined by key hash (a number, not two strings); the transaction
    -- itself is matched below, so a hash collision never mixes two transactions.
    repeats AS (
        SELECT key_hash, groupArray((organization_id, transaction_id, hash, (block, arrived_at, mark))) AS copies
        FROM fresh
        WHERE key_hash IN (SELECT key_hash FROM fresh GROUP BY key_hash HAVING count() > 1)
        GROUP BY key_hash
    ),
    -- Copies resolved in earlier runs, within the dedup window.
    prior AS (
        SELECT key_hash,
            groupArray((organization_id, transaction_id, verdict IN ({kept}), payload_hash, landing_mark)) AS copies
        FROM {ledger}
        WHERE key_hash IN (SELECT key_hash FROM fresh)
            AND resolved_at >= now64(3) - INTERVAL {s.dedup_window_days} DAY
        GROUP BY key_hash
    ),
    closes AS (
        SELECT organization_id, max(until) AS closed_until FROM {db}.{closes} GROUP BY organization_id
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
    SELECT {event_cols}, inserted_at, source, landing_mark, payload_hash, verdict, reason, decided_by, note
    FROM (
    SELECT {_names(ev.names, "f")}, f.inserted_at AS inserted_at, f.source AS source,
        f.mark AS landing_mark, f.hash AS payload_hash,
        (f.block, f.arrived_at, f.mark) AS position,
        arrayFilter(x -> x.1 = f.organization_id AND x.2 = f.transaction_id, r.copies) AS here,
        arrayFilter(x -> x.1 = f.organization_id AND x.2 = f.transaction_id, p.copies) AS before,
        -- (here holds this copy too whenever it is not empty)
        arrayMin(arrayMap(x -> x.4, here)) AS first_copy,
        arrayMin(arrayMap(x -> x.4, arrayFilter(x -> x.3 = f.hash, here))) AS first_of_payload,
        multiIf(arrayExists(x -> x.4 = f.hash, before) OR (notEmpty(here) AND position != first_of_payload),
                    'duplicate',
                arrayExists(x -> x.3, before) OR (notEmpty(here) AND position != first_copy), 'conflict',
                f.timestamp < c.closed_until, 'late',
                f.timestamp < f.arrived_at - INTERVAL {s.grace_days} DAY, 'late',
                'billed') AS verdict,
        multiIf(verdict != 'late', '', f.timestamp < c.closed_until, 'period_closed', 'grace_exceeded') AS reason,
        '' AS decided_by, '' AS note
    FROM fresh AS f
    LEFT JOIN repeats AS r ON f.key_hash = r.key_hash
    LEFT JOIN prior AS p ON f.key_hash = p.key_hash
    LEFT JOIN closes AS c ON f.organization_id = c.organization_id
    WHERE NOT arrayExists(x -> x.5 = f.mark, before)
    )
    UNION ALL
    SELECT {_names(ev.names, "d")}, d.late_inserted_at AS inserted_at, d.late_source AS source,
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
    PREWHERE {MARK} > wm
    WHERE {PART_MAX_BLOCK} >= toUInt64(bitShiftRight(wm, 64)) AND verdict IN ({billable})
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


def _conflicts_view(db: str, ev: Events) -> str:
    kept = ", ".join(f"'{v}'" for v in t.KEPT)
    ledger = f"{db}.{t.LEDGER}"
    added = tuple(f.name for f in ev.fields if f.added_in > 1)
    payload = ("external_customer_id", "code", "timestamp", "properties", "value", "decimal_value", *added)
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


def _queue(s: ClickHouseSettings, name: str, prefix: str, ev: Events, keeper_suffix: str = "") -> str:
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
    # Replicas of the queue share this path, so they split the files between them. Keeper records the
    # columns too: a queue with other columns needs another path (a schema migration adds a suffix).
    queue_settings += [
        f"keeper_path = {quote(queue_keeper_path(s.database, name) + keeper_suffix)}",
        f"loading_retries = {s.loading_retries}",
        f"tracked_files_limit = {s.tracked_files_limit}",
        f"tracked_file_ttl_sec = {s.tracked_file_ttl_sec}",
        f"polling_min_timeout_ms = {s.polling_min_timeout_ms}",
        f"polling_max_timeout_ms = {s.polling_max_timeout_ms}",
        f"polling_backoff_ms = {s.polling_backoff_ms}",
    ]
    if s.s3_retry_attempts:
        queue_settings.append(f"s3_retry_attempts = {s.s3_retry_attempts}")
    if _replicated(s):
        # clickhouse.com/docs/engines/table-engines/integrations/s3queue: processing_threads_num is the
        # threads per server; with several replicas on one keeper path, buckets should be at least
        # the replicas, best replicas x processing_threads_num (the docs state it for ordered mode;
        # it is the unit of work replicas lock).
        threads = s.queue_processing_threads
        queue_settings += [
            f"processing_threads_num = {threads}",
            f"buckets = {threads * s.queue_replicas}",
        ]
    return (
        f"CREATE TABLE IF NOT EXISTS {s.database}.{name} (\n{_columns(ev.types)}\n)\n"
        f"ENGINE = S3Queue({_credentials_args(s, s.url_for(prefix))})\n"
        "SETTINGS " + ",\n    ".join(queue_settings)
    )


def _queue_mv(s: ClickHouseSettings, ev: Events) -> str:
    db = s.database
    cols = ", ".join(f"`{c}`" for c in ev.names)
    # Cluster: through the Distributed table, so each row lands on its transaction's shard.
    target = t.EVENTS_RAW + (DISTRIBUTED_SUFFIX if s.deployment is Deployment.CLUSTER else "")
    # Attaching the view starts consumption, so it is created after its queue and target.
    return (
        f"CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.{t.EVENTS_QUEUE_MV} TO {db}.{target}\n"
        f"AS SELECT {cols}, _path AS source FROM {db}.{t.EVENTS_QUEUE}"
    )
