"""A reader of ClickHouse Native blocks, written apart from ``bxb_runtime.ingest.native`` (and
slow, value by value), so tests can check what the ingest sends without an engine."""

from __future__ import annotations

import struct
from typing import Any

_FIXED = {"Float64": "<d", "Int64": "<q"}


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data, self.at = data, 0

    def take(self, n: int) -> bytes:
        if self.at + n > len(self.data):
            raise ValueError(f"block ends at byte {len(self.data)}, {n} more wanted at {self.at}")
        chunk = self.data[self.at : self.at + n]
        self.at += n
        return chunk

    def varint(self) -> int:
        value, shift = 0, 0
        while True:
            byte = self.take(1)[0]
            value |= (byte & 0x7F) << shift
            shift += 7
            if byte < 0x80:
                return value

    def text(self) -> str:
        return self.take(self.varint()).decode()

    def values(self, kind: str, rows: int) -> list[Any]:
        if kind.startswith("Nullable("):
            nulls = self.take(rows)
            inner = self.values(kind[len("Nullable(") : -1], rows)
            return [None if null else value for null, value in zip(nulls, inner, strict=True)]
        if kind == "String":
            return [self.text() for _ in range(rows)]
        fmt = _FIXED["Int64" if kind.startswith("DateTime64(3") else kind]
        return [struct.unpack(fmt, self.take(8))[0] for _ in range(rows)]


def read_block(data: bytes) -> dict[str, tuple[str, list[Any]]]:
    """One Native block -> {column name: (type, values)}; ValueError if anything is left over or missing."""
    reader = _Reader(data)
    columns, rows = reader.varint(), reader.varint()
    block = {}
    for _ in range(columns):
        name, kind = reader.text(), reader.text()
        block[name] = (kind, reader.values(kind, rows))
    if reader.at != len(data):
        raise ValueError(f"{len(data) - reader.at} bytes after the block")
    return block
