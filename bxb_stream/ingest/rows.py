"""Firehose records -> ClickHouse columns, and dead letters for what does not fit.

Each record is one line the transform wrote. Lines are decoded with a typed
msgspec decoder (``events.lines.read_line``) straight into columns, which
clickhouse-connect inserts column-oriented: no per-row dict, no datetime
objects (timestamps go in as DateTime64(3) ticks, i.e. UTC milliseconds;
decimals as their exact text, which clickhouse-connect scales without a float).
"""

from __future__ import annotations

import binascii
import time
from dataclasses import dataclass, field
from typing import Any

import msgspec

from bxb_stream.clickhouse import tables
from bxb_stream.events.errors import EventError
from bxb_stream.events.lines import StoredEvent, read_line, read_lines
from bxb_stream.events.schema import clickhouse_columns

# Columns in StoredEvent's field order, so a decoded line is already a row.
EVENT_COLUMNS: tuple[str, ...] = tuple(f.name for f in msgspec.structs.fields(StoredEvent))
EVENT_TYPES: tuple[str, ...] = tuple(dict(clickhouse_columns())[name] for name in EVENT_COLUMNS)
DEAD_LETTER_COLUMNS: tuple[str, ...] = tuple(name for name, _ in tables.DEAD_LETTER_COLUMN_TYPES)
DEAD_LETTER_TYPES: tuple[str, ...] = tuple(kind for _, kind in tables.DEAD_LETTER_COLUMN_TYPES)


@dataclass
class Batch:
    """One request's rows: ``columns`` for events_raw, ``dead`` for the dead-letter table."""

    columns: list[Any] = field(default_factory=lambda: [[] for _ in EVENT_COLUMNS])
    late_columns: list[Any] = field(default_factory=lambda: [[] for _ in EVENT_COLUMNS])
    dead: list[list[Any]] = field(default_factory=lambda: [[] for _ in DEAD_LETTER_COLUMNS])
    dead_codes: dict[str, int] = field(default_factory=dict)

    @property
    def rows(self) -> int:
        return len(self.columns[0])

    @property
    def late_rows(self) -> int:
        return len(self.late_columns[0])

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
    """Records -> columns (and dead letters). One decode for the whole request when every
    record is sound; record by record only when one is not, to name each problem.

    With ``lateness_ms``, events older than that when the transform saw them go to
    ``late_columns`` (the HTTP path's side output; the S3 path splits by prefix).
    """
    batch = Batch()
    if lines is None:
        try:
            lines = [binascii.a2b_base64(data, strict_mode=True) for data in records]
        except (binascii.Error, ValueError):
            lines = None
    events = read_lines(lines) if lines else None
    if events is None:
        texts = records or [binascii.b2a_base64(line, newline=False).decode("ascii") for line in lines or ()]
        events = _one_by_one(batch, request_id, texts, default_organization)
    if lateness_ms is not None and events:
        late = [e for e in events if e.ingested_at - e.timestamp > lateness_ms]
        if late:
            events = [e for e in events if e.ingested_at - e.timestamp <= lateness_ms]
            batch.late_columns = _columns(late)
    if events:
        batch.columns = _columns(events)
    return batch


def _columns(events: list[Any]) -> list[Any]:
    return list(zip(*map(msgspec.structs.astuple, events), strict=True))


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
