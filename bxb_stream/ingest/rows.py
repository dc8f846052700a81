"""Firehose records -> ClickHouse columns, and dead letters for what does not fit.

Each record is one line the transform wrote. Lines are decoded with a typed
msgspec decoder (``events.validate.read_line``) straight into columns, which
clickhouse-connect inserts column-oriented: no per-row dict, no datetime
objects (timestamps go in as DateTime64(3) ticks, i.e. UTC milliseconds).
"""

from __future__ import annotations

import binascii
import time
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import msgspec

from bxb_stream.events.schema import clickhouse_columns
from bxb_stream.events.validate import EventError, StoredEvent, read_line

# Columns in StoredEvent's field order, so a decoded line is already a row.
EVENT_COLUMNS: tuple[str, ...] = tuple(f.name for f in msgspec.structs.fields(StoredEvent))
EVENT_TYPES: tuple[str, ...] = tuple(dict(clickhouse_columns())[name] for name in EVENT_COLUMNS)
DEAD_LETTER_COLUMNS = (
    "organization_id",
    "request_id",
    "record_index",
    "raw",
    "error_code",
    "error_message",
    "failed_at",
)
DEAD_LETTER_TYPES = ("String", "String", "UInt32", "String", "String", "String", "DateTime64(3, 'UTC')")
_DECIMAL_INDEX = EVENT_COLUMNS.index("decimal_value")


@dataclass
class Batch:
    """One request's rows: ``columns`` for events_raw, ``dead`` for the dead-letter table."""

    columns: list[Any] = field(default_factory=lambda: [[] for _ in EVENT_COLUMNS])
    dead: list[list[Any]] = field(default_factory=lambda: [[] for _ in DEAD_LETTER_COLUMNS])
    dead_codes: dict[str, int] = field(default_factory=dict)

    @property
    def rows(self) -> int:
        return len(self.columns[0])

    @property
    def dead_rows(self) -> int:
        return len(self.dead[0])


def build_batch(request_id: str, records: list[str], default_organization: str = "") -> Batch:
    batch = Batch()
    rows = []
    astuple = msgspec.structs.astuple
    for index, data in enumerate(records):
        try:
            line = binascii.a2b_base64(data, strict_mode=True)
        except (binascii.Error, ValueError):
            _dead(batch, request_id, index, data, "not_base64", "record data is not valid base64", default_organization)
            continue
        try:
            event = read_line(line)
        except EventError as exc:
            _dead(batch, request_id, index, _text(line), exc.code, exc.message, default_organization)
            continue
        rows.append(astuple(event))
    if rows:
        batch.columns = [list(column) for column in zip(*rows, strict=True)]
        decimals = batch.columns[_DECIMAL_INDEX]
        if any(d is not None for d in decimals):
            batch.columns[_DECIMAL_INDEX] = [None if d is None else Decimal(d) for d in decimals]
    return batch


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
