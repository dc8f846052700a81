"""Transformed lines -> one Arrow table in ``arrow_schema()``.

``read_table`` is the columnar fast path of ``events.lines.read_lines``: pyarrow's
JSON reader parses the lines in C++, so there is no Python object per value. It
accepts the same lines or fewer, with the same values, and returns None when any
line needs ``read_line``'s verdict; ``from_events`` then builds the table from the
lines judged one by one.

Why a line cannot leak into its neighbour: every line must start with ``{`` and end
with a newline, and the reader keeps an object on one text line, so each line's
first text line gives it at least one row of its own; when the row count equals the
line count, each line is exactly one object (and whitespace, as ``read_line`` allows).

Checks the reader does not do (it is laxer than msgspec there): UTF-8 inside
strings, nulls in non-nullable fields, string lengths, the 2000-01-01 floor,
NaN/Infinity literals, and the decimal text. Duplicate keys, which msgspec
resolves last-wins, the reader refuses, so such a batch takes the per-line path.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from operator import itemgetter
from typing import TYPE_CHECKING, Any

from bxb_runtime.events.lines import LINE_TYPES, MAX_TIMESTAMP_MS, MIN_TIMESTAMP_MS, STORED_DECIMAL_PATTERN
from bxb_runtime.events.schema import FIELDS, Kind, arrow_schema

if TYPE_CHECKING:
    import pyarrow as pa

# The reader's type for each of the line's JSON types (events.lines.LINE_TYPES).
_ARROW_NAME = {str: "string", int: "int64", float: "float64"}
# RE2 syntax: $ is the end of the text (no trailing-newline exception as in Python's re).
_DECIMAL_RE2 = STORED_DECIMAL_PATTERN.replace("\\A", "^").replace("\\Z", "$")
_options: Any = None

_FIRST, _LAST = itemgetter(slice(0, 1)), itemgetter(slice(-1, None))  # b"" for an empty line


def framed(lines: Sequence[bytes]) -> bool:
    """Every line starts with ``{`` and ends with a newline, as the transform writes them.

    With that, and a schema without array or object fields, no object can run on from one
    line into the next when lines are joined: the next line's ``{`` would have to open a
    nested value. Checked in C over the first and last bytes, not line by line in Python.
    """
    count = len(lines)
    return b"".join(map(_FIRST, lines)) == b"{" * count and b"".join(map(_LAST, lines)) == b"\n" * count


def _parse_options() -> Any:
    global _options
    if _options is None:
        import pyarrow as pa
        import pyarrow.json as pj

        wire = pa.schema([pa.field(f.name, _wire_type(f)) for f in FIELDS])
        _options = pj.ParseOptions(explicit_schema=wire, unexpected_field_behavior="error")
    return _options


def _wire_type(f: Any) -> Any:
    import pyarrow as pa

    return getattr(pa, _ARROW_NAME[LINE_TYPES[f.kind]])()


def read_table(lines: Sequence[bytes]) -> pa.Table | None:
    """Transformed lines -> table in ``arrow_schema()``, or None if any line needs ``read_line``."""
    import pyarrow as pa
    import pyarrow.json as pj

    count = len(lines)
    if not count:
        return None
    if not framed(lines):
        return None
    body = b"".join(lines)
    try:
        wire = pj.read_json(io.BytesIO(body), parse_options=_parse_options())
        wire.validate(full=True)  # the reader leaves invalid UTF-8 inside strings unchecked
    except (pa.ArrowException, ValueError):
        return None
    if wire.num_rows != count:
        return None
    columns = []
    for f, target in zip(FIELDS, arrow_schema(), strict=True):
        column = wire.column(f.name)
        if not _sound(f, column):
            return None
        columns.append(column.cast(target.type))
    return pa.Table.from_arrays(columns, schema=arrow_schema())


def _sound(f: Any, column: Any) -> bool:
    """What ``StoredEvent`` checks and the JSON reader does not."""
    if column.null_count:
        return f.nullable and (column.null_count == len(column) or _sound_values(f, column.drop_null()))
    return _sound_values(f, column)


def _sound_values(f: Any, column: Any) -> bool:
    import pyarrow.compute as pc

    if f.kind is Kind.STRING:  # 1 to max_length characters
        # Byte lengths come from the offsets; characters <= bytes, so count characters only past the limit.
        low, high = pc.min_max(pc.binary_length(column)).values()
        if low.as_py() < 1:
            return False
        if f.max_length is None or high.as_py() <= f.max_length:
            return True
        return pc.max(pc.utf8_length(column)).as_py() <= f.max_length
    if f.kind is Kind.TIMESTAMP_MS:
        low, high = pc.min_max(column).values()
        return low.as_py() >= MIN_TIMESTAMP_MS and high.as_py() <= MAX_TIMESTAMP_MS
    if f.kind is Kind.FLOAT:  # the reader takes NaN and Infinity literals; JSON has neither
        return pc.all(pc.is_finite(column)).as_py()
    if f.kind is Kind.DECIMAL:
        return pc.all(pc.match_substring_regex(column, _DECIMAL_RE2)).as_py()
    return True


def from_events(events: Sequence[Any]) -> pa.Table:
    """``StoredEvent``s (``read_line``'s results) -> the same table ``read_table`` gives."""
    import pyarrow as pa

    columns = []
    for f, target in zip(FIELDS, arrow_schema(), strict=True):
        values = [getattr(e, f.name) for e in events]
        columns.append(pa.array(values, type=_wire_type(f)).cast(target.type))
    return pa.Table.from_arrays(columns, schema=arrow_schema())
