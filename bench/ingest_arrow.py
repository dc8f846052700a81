"""The ingest's former Arrow path, kept as the benchmark's baseline (bench/http_ingest.py): records -> an Arrow
table of events (and dead letters for what does not fit), inserted with ``insert_arrow``.

Each record is one line the transform wrote. When every line is sound the whole
request is parsed at once by pyarrow's JSON reader (``events.table.read_table``) and
inserted as Arrow: no Python object per value on the way to ClickHouse. Otherwise
each line is judged alone (``events.lines.read_line``), so every bad one becomes a
dead letter that names its problem, and the good ones still form one table.

The transform is not trusted blindly: the fields it sets are checked again here
(``Trust``), column-wise, and a row that fails goes to the dead letters too.
A dead letter keeps the record's data exactly as received (base64), so it can be replayed.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from bxb_runtime.events.errors import EventError
from bxb_runtime.events.lines import read_line
from bxb_runtime.ingest.rows import DEAD_LETTER_COLUMNS, Trust
from bxb_stream.event_table import from_events, read_table

if TYPE_CHECKING:
    import pyarrow as pa


@dataclass
class Batch:
    """One request's rows: ``events`` for events_raw, ``dead`` for dead letters."""

    events: pa.Table | None = None
    dead: list[list[Any]] = field(default_factory=lambda: [[] for _ in DEAD_LETTER_COLUMNS])
    dead_codes: dict[str, int] = field(default_factory=dict)

    @property
    def rows(self) -> int:
        return self.events.num_rows if self.events is not None else 0

    @property
    def dead_rows(self) -> int:
        return len(self.dead[0])


def build_batch(
    request_id: str,
    texts: Sequence[str],
    lines: Sequence[bytes | None],
    trust: Trust,
    *,
    now_ms: int | None = None,
) -> Batch:
    """Records -> one table (and dead letters).

    ``lines`` are the records decoded once by the request parser (None where a record is not
    base64); ``texts`` the records as received, for dead letters."""
    batch = Batch()
    table = read_table(lines) if lines and None not in lines else None  # type: ignore[arg-type]
    if table is None:
        indexed = _one_by_one(batch, request_id, texts, lines, trust.organization_id)
        if indexed:
            table = from_events([event for _, event in indexed])
            rows = [index for index, _ in indexed]
        else:
            rows = []
    else:
        rows = list(range(table.num_rows))
    if table is not None:
        table = _trusted(batch, request_id, table, rows, texts, trust, now_ms)
    if table is not None and table.num_rows:
        batch.events = table
    return batch


def _one_by_one(
    batch: Batch, request_id: str, texts: Sequence[str], lines: Sequence[bytes | None], org: str
) -> list[tuple[int, Any]]:
    """(record index, event) of every sound line; a dead letter for each of the others."""
    events = []
    for index, line in enumerate(lines):
        if line is None:
            _dead(batch, request_id, index, texts[index], "not_base64", "record data is not valid base64", org)
            continue
        try:
            events.append((index, read_line(line)))
        except EventError as exc:
            _dead(batch, request_id, index, texts[index], exc.code, exc.message, org)
    return events


def _trusted(
    batch: Batch,
    request_id: str,
    table: pa.Table,
    rows: list[int],
    texts: Sequence[str],
    trust: Trust,
    now_ms: int | None,
) -> pa.Table | None:
    """The table without the rows whose transform-set fields cannot be right (each a dead letter)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    now = int(time.time() * 1000) if now_ms is None else now_ms
    ingested = table.column("ingested_at").cast(pa.int64())
    arrived = table.column("arrived_at").cast(pa.int64())
    checks = [
        ("ingested_at_out_of_range", "ingested_at is not within the transform's possible time",
         pc.or_(pc.less(ingested, now - trust.max_age_ms), pc.greater(ingested, now + trust.skew_ms))),
        ("arrived_after_ingested", "arrived_at is after ingested_at", pc.greater(arrived, ingested)),
    ]  # fmt: skip
    if not trust.multi_tenant:
        checks.append(
            (
                "organization_mismatch",
                "organization_id does not match this deployment",
                pc.not_equal(table.column("organization_id"), trust.organization_id),
            )
        )
    bad = None
    for code, message, mask in checks:
        mask = pc.fill_null(mask, True)
        if not pc.any(mask).as_py():
            continue
        flagged = pc.and_not(mask, bad) if bad is not None else mask  # one dead letter per row: its first problem
        for position in pc.indices_nonzero(flagged).to_pylist():
            index = rows[position]
            _dead(batch, request_id, index, texts[index], code, message, trust.organization_id)
        bad = mask if bad is None else pc.or_(bad, mask)
    return table if bad is None else table.filter(pc.invert(bad))


def _dead(batch: Batch, request_id: str, index: int, raw: str, code: str, message: str, org: str) -> None:
    for column, value in zip(
        batch.dead,
        (org, request_id, index, raw, code, message, int(time.time() * 1000)),
        strict=True,
    ):
        column.append(value)
    batch.dead_codes[code] = batch.dead_codes.get(code, 0) + 1


def insert_events(service: Any, client: Any, batch: Batch, settings: dict[str, Any]) -> None:
    client.insert_arrow(service._table(service.settings.events_table), batch.events, settings=settings)
