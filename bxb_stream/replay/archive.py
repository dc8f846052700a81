"""Replay the Parquet archive into ClickHouse, to rebuild billing after a fix: a time range, some organizations.

Reads the Parquet objects the S3 path wrote, under ``archive/events/`` (where S3Queue moves what
it ingested) and under ``events/`` (not moved yet: a file S3Queue gave up on, or not read yet),
whose partition (``organization_id=/date=/hour=``) overlaps the range. Their rows whose
organization matches and whose ``timestamp`` is in the range are inserted into ``events_raw``
as the S3Queue view inserts them (``source`` = the object key); then the resolver runs until
each of them has a verdict, and the report says what was read and what it became.

Idempotent: a replayed row repeats a stored payload, so the resolver records it as a duplicate
and bills nothing new. A batch repeated within the table's insert-deduplication window is even
dropped at insert (its token comes from the selection and the rows' sources).

Order: the first stored copy of a transaction is the one billed, so rows go in by arrival:
objects in the order of the oldest arrival their names record, each batch sorted by
``arrived_at``. In a fresh database, the copy billed is then the one that arrived first, as it was.

Only the S3 path writes Parquet: events that reached ClickHouse over the HTTP path alone are
not in the archive.
"""

from __future__ import annotations

import hashlib
import io
import re
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from bxb_runtime import layout
from bxb_runtime.clickhouse import tables as t
from bxb_runtime.config import ORG_ID_PATTERN
from bxb_stream.clickhouse import ledger, status
from bxb_stream.firehose.naming import object_time

# events/ first: an object S3Queue moves while we list is then still found under archive/.
ROOTS = (layout.EVENTS_PREFIX, layout.ARCHIVE_PREFIX + layout.EVENTS_PREFIX)
_PARTITION = re.compile(r"organization_id=(?P<org>[^/]+)/date=(?P<date>\d{4}-\d{2}-\d{2})/hour=(?P<hour>\d{2})/[^/]+")
SOURCES_PER_QUERY = 200  # object keys per IN list when reading back what the replay's rows became
HOUR = timedelta(hours=1)


class ReplayError(ValueError):
    """A replay that cannot run as asked."""


@dataclass(frozen=True)
class Selection:
    """Rows to replay: ``timestamp`` in [start, end), of these organizations (None: all)."""

    start: datetime
    end: datetime
    organizations: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if self.start.tzinfo is None or self.end.tzinfo is None:
            raise ReplayError("the time range must be timezone-aware")
        if self.start >= self.end:
            raise ReplayError(f"--from {self.start.isoformat()} is not before --to {self.end.isoformat()}")
        for org in self.organizations or ():
            if not ORG_ID_PATTERN.match(org):
                raise ReplayError(f"organization id {org!r} must match {ORG_ID_PATTERN.pattern}")

    def days(self) -> Iterator[date]:
        day = self.start.astimezone(UTC).date()
        last = (self.end.astimezone(UTC) - timedelta(microseconds=1)).date()
        for _ in range((last - day).days + 1):
            yield day
            day += timedelta(days=1)

    def holds_hour(self, hour: datetime) -> bool:
        return hour < self.end and hour + HOUR > self.start

    def describe(self) -> str:
        orgs = ",".join(self.organizations) if self.organizations else "*"
        return f"{orgs}|{self.start.isoformat()}|{self.end.isoformat()}"


@dataclass(frozen=True)
class ArchiveObject:
    key: str
    organization_id: str
    hour: datetime  # the partition's hour
    written: datetime | None  # the oldest arrival its name records


def parse_key(key: str) -> ArchiveObject | None:
    """An object under one of ``ROOTS`` and its partition, or None for anything else."""
    root = next((r for r in ROOTS if key.startswith(r)), None)
    match = _PARTITION.fullmatch(key[len(root) :]) if root is not None else None
    if match is None:
        return None
    hour = datetime.strptime(f"{match['date']} {match['hour']}", "%Y-%m-%d %H").replace(tzinfo=UTC)
    return ArchiveObject(key, match["org"], hour, object_time(key))


def list_objects(s3: Any, bucket: str, selection: Selection) -> list[ArchiveObject]:
    """Every Parquet object whose partition overlaps ``selection``, in arrival order; an object
    found under both roots (moved while listed) once."""
    found: dict[str, ArchiveObject] = {}
    paginator = s3.get_paginator("list_objects_v2")
    for root in ROOTS:
        for org in selection.organizations or organizations(s3, bucket, root):
            for day in selection.days():
                prefix = f"{root}organization_id={org}/date={day.isoformat()}/"
                for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
                    for item in page.get("Contents", []):
                        obj = parse_key(item["Key"])
                        relative = item["Key"].removeprefix(layout.ARCHIVE_PREFIX)
                        if obj is not None and selection.holds_hour(obj.hour) and relative not in found:
                            found[relative] = obj
    far = datetime.max.replace(tzinfo=UTC)
    return sorted(found.values(), key=lambda o: (o.written or far, o.key))


def organizations(s3: Any, bucket: str, root: str) -> list[str]:
    """The organizations with a partition under ``root``."""
    out = []
    paginator = s3.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=bucket, Prefix=f"{root}organization_id=", Delimiter="/"):
        for common in page.get("CommonPrefixes", []):
            out.append(common["Prefix"][len(root) + len("organization_id=") : -1])
    return out


# --------------------------------------------------------------------------- rows


def read_rows(s3: Any, bucket: str, obj: ArchiveObject) -> tuple[str, Any]:
    """(the key read, its rows as an Arrow table in the event schema). An object moved to the
    archive since it was listed is read there."""
    import pyarrow.parquet as pq
    from botocore.exceptions import ClientError

    key = obj.key
    try:
        body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") not in ("NoSuchKey", "404") or key.startswith(ROOTS[1]):
            raise
        key = layout.ARCHIVE_PREFIX + key
        body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    return key, _event_columns(pq.read_table(io.BytesIO(body)))


def _event_columns(table: Any) -> Any:
    """The event columns the object has, in the project's Arrow types (Firehose may write
    timestamps in another unit)."""
    import pyarrow as pa

    from bxb_runtime.events.schema import arrow_schema

    wanted = [f for f in arrow_schema() if f.name in table.column_names]
    return table.select([f.name for f in wanted]).cast(pa.schema(wanted))


def select_rows(table: Any, selection: Selection) -> Any:
    """The rows of ``selection``: its organizations, ``timestamp`` in [start, end)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    stamp = table.schema.field("timestamp").type
    keep = pc.and_(
        pc.greater_equal(table["timestamp"], pa.scalar(selection.start, stamp)),
        pc.less(table["timestamp"], pa.scalar(selection.end, stamp)),
    )
    if selection.organizations is not None:
        keep = pc.and_(keep, pc.is_in(table["organization_id"], pa.array(selection.organizations, pa.string())))
    return table.filter(keep)


# --------------------------------------------------------------------------- the replay


@dataclass
class ArchiveReplayReport:
    dry_run: bool
    selection: Selection
    objects: int = 0
    objects_by_root: Counter[str] = field(default_factory=Counter)
    rows_read: int = 0  # in the objects read
    rows_selected: int = 0  # of the organizations and time range: inserted (or, dry, would be)
    landed: int = 0  # rows of this replay now in events_raw (a repeated batch is dropped at insert)
    outcome: Counter[str] = field(default_factory=Counter)  # the resolver's verdicts for the landed rows
    before: Counter[str] = field(default_factory=Counter)  # ledger verdicts for the organizations
    after: Counter[str] = field(default_factory=Counter)
    sources: list[str] = field(default_factory=list)  # keys of the objects whose rows were inserted

    @property
    def newly_billed(self) -> int:
        return self.outcome[t.Verdict.BILLED]


Progress = Callable[[int, int], None]  # (objects read, rows selected)


def replay(
    client: Any,
    database: str,
    s3: Any,
    bucket: str,
    selection: Selection,
    *,
    dry_run: bool = False,
    batch_rows: int = 200_000,
    timeout_s: float = 600.0,
    on_listed: Callable[[int], None] | None = None,
    on_progress: Progress | None = None,
) -> ArchiveReplayReport:
    """Insert the archive's rows of ``selection`` into ``database``.events_raw, resolve them, report."""
    objects = list_objects(s3, bucket, selection)
    if on_listed is not None:
        on_listed(len(objects))
    report = ArchiveReplayReport(dry_run, selection)
    report.before = _verdicts(client, database, selection)
    first_block = max_block(client, database) + 1  # this replay's rows land in this block or later
    batch = _Batch(client, database, selection, batch_rows)
    for obj in objects:
        key, rows = read_rows(s3, bucket, obj)
        selected = select_rows(rows, selection)
        report.objects += 1
        report.objects_by_root[next(r for r in reversed(ROOTS) if key.startswith(r))] += 1
        report.rows_read += rows.num_rows
        report.rows_selected += selected.num_rows
        if selected.num_rows:
            report.sources.append(key)
            if not dry_run:
                batch.add(key, selected)
        if on_progress is not None:
            on_progress(report.objects, report.rows_selected)
    if dry_run:
        report.after = report.before
        return report
    batch.flush()
    wait_resolved(client, database, max_block(client, database), timeout_s)
    report.landed, report.outcome = _outcome(client, database, first_block, report.sources)
    report.after = _verdicts(client, database, selection)
    return report


class _Batch:
    """Rows gathered across objects, inserted in arrival order once ``limit`` rows are held."""

    def __init__(self, client: Any, database: str, selection: Selection, limit: int) -> None:
        self.client, self.database, self.selection, self.limit = client, database, selection, limit
        self.tables: list[Any] = []
        self.sources: list[tuple[str, int]] = []
        self.rows = 0

    def add(self, key: str, rows: Any) -> None:
        import pyarrow as pa

        self.tables.append(rows.append_column("source", pa.array([key] * rows.num_rows, pa.string())))
        self.sources.append((key, rows.num_rows))
        self.rows += rows.num_rows
        if self.rows >= self.limit:
            self.flush()

    def flush(self) -> None:
        import pyarrow as pa

        from bxb_runtime.ingest.service import INSERT_SETTINGS

        if not self.tables:
            return
        rows = pa.concat_tables(self.tables).sort_by([("arrived_at", "ascending")])  # stable: ties keep object order
        digest = hashlib.sha256(f"{self.database}|{self.selection.describe()}".encode())
        for key, count in self.sources:
            digest.update(f"\n{key}:{count}".encode())
        settings = {**INSERT_SETTINGS, "insert_deduplication_token": f"replay:{digest.hexdigest()}"}
        self.client.insert_arrow(f"{self.database}.{t.EVENTS_RAW}", rows, settings=settings)
        self.tables, self.sources, self.rows = [], [], 0


# --------------------------------------------------------------------------- ClickHouse's side


def max_block(client: Any, database: str) -> int:
    """The highest block number in events_raw (0 when empty): later inserts get higher ones."""
    rows = client.query(
        "SELECT max(toUInt64(splitByChar('_', name)[3])) FROM system.parts "
        "WHERE database = %(db)s AND table = %(table)s AND active",
        parameters={"db": database, "table": t.EVENTS_RAW},
    ).result_rows
    return int(rows[0][0] or 0) if rows else 0


def unresolved_through(client: Any, database: str, block: int) -> int:
    """Landed rows in blocks up to ``block`` that the resolver has not decided yet."""
    from bxb_stream.clickhouse.ddl import MARK, PART_MAX_BLOCK

    rows = client.query(
        f"WITH (SELECT max(landing_mark) FROM {database}.{t.LEDGER}) AS wm "
        f"SELECT count() FROM {database}.{t.EVENTS_RAW} "
        f"WHERE {PART_MAX_BLOCK} >= toUInt64(bitShiftRight(wm, 64)) AND {MARK} > wm "
        "AND _block_number <= %(block)s",
        parameters={"block": block},
    ).result_rows
    return int(rows[0][0])


def wait_resolved(client: Any, database: str, block: int, timeout_s: float) -> None:
    """Run the resolver until every row landed up to ``block`` has a verdict (bounded)."""
    deadline = time.monotonic() + timeout_s
    for _ in range(int(timeout_s / 0.2) + 2):
        status.refresh_now(client, database)
        if not unresolved_through(client, database, block):
            return
        if time.monotonic() > deadline:
            break
        time.sleep(0.2)
    left = unresolved_through(client, database, block)
    raise ReplayError(
        f"the resolver has not decided {left:,} replayed rows after {timeout_s:.0f}s (see bxb-stream clickhouse "
        "health); they are stored and will be decided by its next runs"
    )


def _outcome(client: Any, database: str, first_block: int, sources: list[str]) -> tuple[int, Counter[str]]:
    """How many of the replay's rows landed, and the resolver's verdicts for them."""
    from bxb_stream.clickhouse.ddl import PART_MAX_BLOCK

    landed = 0
    verdicts: Counter[str] = Counter()
    for i in range(0, len(sources), SOURCES_PER_QUERY):
        chunk = {"sources": sources[i : i + SOURCES_PER_QUERY], "first": first_block}
        landed += int(
            client.query(
                f"SELECT count() FROM {database}.{t.EVENTS_RAW} "
                f"WHERE {PART_MAX_BLOCK} >= %(first)s AND _block_number >= %(first)s AND has(%(sources)s, source)",
                parameters=chunk,
            ).result_rows[0][0]
        )
        for verdict, n in client.query(
            f"SELECT verdict, count() FROM {database}.{t.LEDGER} "
            "WHERE toUInt64(bitShiftRight(landing_mark, 64)) >= %(first)s AND has(%(sources)s, source) "
            "GROUP BY verdict",
            parameters=chunk,
        ).result_rows:
            verdicts[str(verdict)] += int(n)
    return landed, verdicts


def _verdicts(client: Any, database: str, selection: Selection) -> Counter[str]:
    if selection.organizations is None:
        return ledger.verdict_counts(client, database)
    return sum((ledger.verdict_counts(client, database, org) for org in selection.organizations), Counter())
