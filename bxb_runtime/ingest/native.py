"""Event columns -> one ClickHouse ``Native`` block: the body the ingest inserts into events_raw.

Native is ClickHouse's own columnar layout: ClickHouse copies each column in rather than parsing
text (https://clickhouse.com/docs/interfaces/formats/Native). A block is the column and row
counts (LEB128), then per column its name, its type and its values:

- ``String``: each value's UTF-8 length (LEB128), then its bytes;
- ``DateTime64(3, 'UTC')``: Int64 ticks (milliseconds), little-endian; ``Float64`` likewise;
- ``Nullable(T)``: one byte per row (1 = null), then T's values with a placeholder for each null.

``decimal_value`` is sent as ``Nullable(String)``, the validated text; ClickHouse converts it to
``Decimal(38, 18)`` exactly on insert (``input_format_native_allow_types_conversion``, pinned in
the insert's settings). Everything is built with whole-column operations in C; a column of
ASCII text, the common case, is assembled as one ``str`` and encoded in one go.

clickhouse-connect writes Native too, but from Python rows, far slower than this
(bench/http_ingest.py's history in README.md).
"""

from __future__ import annotations

import sys
from array import array
from collections.abc import Callable, Mapping
from itertools import repeat
from operator import is_
from typing import Any

from bxb_runtime.events.schema import FIELDS, Field, Kind

FORMAT = "Native"
# The insert settings this body needs (decimal text -> Decimal): the default since ClickHouse 23.3,
# pinned whatever the server's profile says.
# https://clickhouse.com/docs/operations/settings/formats#input_format_native_allow_types_conversion
SETTINGS = {"input_format_native_allow_types_conversion": 1}


def leb128(n: int) -> bytes:
    """``n`` >= 0 as an unsigned LEB128 varint (7 bits a byte, low first): Native's lengths and counts."""
    out = bytearray()
    while n > 0x7F:
        out.append(n & 0x7F | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


class _Prefixes(dict[int, Any]):
    """Each length's LEB128 prefix, computed the first time it is seen and kept (below 16 KiB): a
    request has few distinct lengths, so the table stays small and costs nothing at import."""

    def __init__(self, convert: Callable[[bytes], Any]) -> None:
        super().__init__()
        self._convert = convert

    def __missing__(self, length: int) -> Any:
        prefix = self._convert(leb128(length))
        if length < 1 << 14:
            self[length] = prefix
        return prefix


_PREFIXES = _Prefixes(bytes)
# As latin-1 text, whose characters are the prefix's bytes: an ASCII column joins with them into one str.
_TEXT_PREFIXES = _Prefixes(lambda prefix: prefix.decode("latin-1"))


def strings(values: list[str]) -> bytes:
    """A ``String`` column."""
    count = len(values)
    if count and values[0] == values[-1] and values.count(values[0]) == count:  # one tenant's organization_id
        one = values[0].encode()
        return (_PREFIXES[len(one)] + one) * count
    parts: list[Any] = [""] * (2 * count)
    parts[1::2] = values
    parts[::2] = map(_TEXT_PREFIXES.__getitem__, map(len, values))
    text = "".join(parts)
    if text.isascii():  # ASCII values, all shorter than 128 (isascii is O(1) on a str)
        return text.encode("ascii")
    if "".join(values).isascii():  # ASCII values: as many bytes as characters
        return text.encode("latin-1")
    encoded = [value.encode() for value in values]
    parts[1::2] = encoded
    parts[::2] = map(_PREFIXES.__getitem__, map(len, encoded))
    return b"".join(parts)


def _numbers(typecode: str) -> Callable[[list[Any]], bytes]:
    def column(values: list[Any]) -> bytes:
        numbers = array(typecode, values)
        if sys.byteorder == "big":  # Native is little-endian
            numbers.byteswap()
        return numbers.tobytes()

    return column


int64s = _numbers("q")
float64s = _numbers("d")


# How each kind travels: (Native type, column writer, placeholder for a null).
_KINDS: dict[Kind, tuple[str, Callable[[list[Any]], bytes], Any]] = {
    Kind.STRING: ("String", strings, ""),
    Kind.JSON: ("String", strings, ""),
    Kind.TIMESTAMP_MS: (Kind.TIMESTAMP_MS.clickhouse, int64s, 0),  # ticks: the milliseconds as they are
    Kind.FLOAT: ("Float64", float64s, 0.0),
    # Converted by ClickHouse (SETTINGS); a null's placeholder is a number too, so no conversion,
    # in any version, can stumble on it.
    Kind.DECIMAL: ("String", strings, "0"),
}


def native_type(f: Field) -> str:
    sent = _KINDS[f.kind][0]
    return f"Nullable({sent})" if f.nullable else sent


def _column(f: Field, values: list[Any]) -> bytes:
    _, write, placeholder = _KINDS[f.kind]
    if not f.nullable:
        return write(values)
    if None not in values:
        return bytes(len(values)) + write(values)
    nulls = bytes(map(is_, values, repeat(None)))
    return nulls + write([placeholder if value is None else value for value in values])


_BY_NAME = {f.name: f for f in FIELDS}


def block(columns: Mapping[str, list[Any]]) -> bytes:
    """Columns of validated event values (named as ``FIELDS``, any subset, equal lengths) -> one Native block."""
    counts = {len(values) for values in columns.values()}
    if len(counts) > 1:
        raise ValueError(f"columns of different lengths: {sorted(counts)}")
    parts = [leb128(len(columns)), leb128(counts.pop() if counts else 0)]
    for name, values in columns.items():
        f = _BY_NAME[name]
        parts += (strings([name, native_type(f)]), _column(f, values))
    return b"".join(parts)
