"""Firehose records -> an Arrow table of events (and dead letters for what does not fit).

Each record is one line the transform wrote. When every line is sound the whole
request is parsed at once by pyarrow's JSON reader (``events.table.read_table``) and
inserted as Arrow: no Python object per value on the way to ClickHouse. Otherwise
each line is judged alone (``events.lines.read_line``), so every bad one becomes a
dead letter that names its problem, and the good ones still form one table.
"""

from __future__ import annotations

import binascii
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from bxb_stream.clickhouse import tables
from bxb_stream.events.errors import EventError
from bxb_stream.events.lines import read_line
from bxb_stream.events.table import from_events, read_table

if TYPE_CHECKING:
    import pyarrow as pa

DEAD_LETTER_COLUMNS: tuple[str, ...] = tuple(name for name, _ in tables.DEAD_LETTER_COLUMN_TYPES)
DEAD_LETTER_TYPES: tuple[str, ...] = tuple(kind for _, kind in tables.DEAD_LETTER_COLUMN_TYPES)


@dataclass
class Batch:
    """One request's rows: ``events`` for events_raw, ``late`` for events_late, ``dead`` for dead letters."""

    events: pa.Table | None = None
    late: pa.Table | None = None
    dead: list[list[Any]] = field(default_factory=lambda: [[] for _ in DEAD_LETTER_COLUMNS])
    dead_codes: dict[str, int] = field(default_factory=dict)

    @property
    def rows(self) -> int:
        return self.events.num_rows if self.events is not None else 0

    @property
    def late_rows(self) -> int:
        return self.late.num_rows if self.late is not None else 0

    @property
    def dead_rows(self) -> int:
        return len(self.dead[0])


def build_batch(
    request_id: str,
    records: list[str],
    default_organization: str = "",
    lateness_ms: int | None = None,
    lines: list[bytes] | None = None,
) -> Batch:
    """Records -> one table (and dead letters). One parse for the whole request when every
    record is sound; record by record only when one is not, to name each problem.

    With ``lateness_ms``, events older than that when the transform saw them go to
    ``late`` (the HTTP path's side output; the S3 path splits by prefix).
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    batch = Batch()
    if lines is None:
        try:
            lines = [binascii.a2b_base64(data, strict_mode=True) for data in records]
        except (binascii.Error, ValueError):
            lines = None
    table = read_table(lines) if lines else None
    if table is None:
        texts = records or [binascii.b2a_base64(line, newline=False).decode("ascii") for line in lines or ()]
        events = _one_by_one(batch, request_id, texts, default_organization)
        table = from_events(events) if events else None
    if table is not None and lateness_ms is not None:
        age = pc.subtract(table.column("ingested_at"), table.column("timestamp"))
        late = pc.greater(age, pa.scalar(lateness_ms, pa.duration("ms")))
        if pc.any(late).as_py():
            batch.late = table.filter(late)
            table = table.filter(pc.invert(late))
    if table is not None and table.num_rows:
        batch.events = table
    return batch


def _one_by_one(batch: Batch, request_id: str, records: list[str], org: str) -> list[Any]:
    events = []
    for index, data in enumerate(records):
        try:
            line = binascii.a2b_base64(data, strict_mode=True)
        except (binascii.Error, ValueError):
            _dead(batch, request_id, index, data, "not_base64", "record data is not valid base64", org)
            continue
        try:
            events.append(read_line(line))
        except EventError as exc:
            _dead(batch, request_id, index, _text(line), exc.code, exc.message, org)
    return events


def _dead(batch: Batch, request_id: str, index: int, raw: str, code: str, message: str, org: str) -> None:
    for column, value in zip(
        batch.dead,
        (org, request_id, index, raw, code, message, int(time.time() * 1000)),
        strict=True,
    ):
        column.append(value)
    batch.dead_codes[code] = batch.dead_codes.get(code, 0) + 1


def _text(line: bytes) -> str:
    return line.decode("utf-8", errors="backslashreplace")
