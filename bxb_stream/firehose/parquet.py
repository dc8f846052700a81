"""Record format conversion: JSON lines -> Parquet (Snappy), reading JSON as the OpenX JSON SerDe does.

OpenX semantics followed here:
- one JSON object per record (a trailing newline is fine); an array or scalar is malformed;
- keys are matched case-insensitively (lower-cased); keys without a column are ignored;
- a missing key or JSON null is null;
- timestamp columns take epoch milliseconds (integer, or a string of digits) or a
  timestamp string (``yyyy-MM-dd HH:mm:ss[.fff]`` or ISO 8601), UTC;
- decimal columns take numbers or numeric strings, rounded half-up to the scale;
- string columns take strings; other JSON values are stored as their JSON text;
- double columns take numbers or numeric strings.
A value that cannot convert fails that record only (``format-conversion-failed``).

Fast paths, same values: ``convert_record`` first tries one typed decode of the
transform's own line shape; ``convert_lines`` decodes a whole batch of the
transform's lines at once (``events.lines.read_lines``) into columns, and
returns None when any line needs the per-record path, which then decides each
record alone.

One deliberate difference: the Glue table makes every column nullable, but our
Arrow schema (the one ClickHouse reads) does not, so a null in a non-nullable
column fails the record here instead of being written as null.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from operator import attrgetter
from typing import Any

import msgspec

from bxb_runtime.events.lines import read_lines
from bxb_runtime.events.schema import FIELDS, Kind, arrow_schema

_DECIMAL_QUANTUM = Decimal(1).scaleb(-18)
_DECIMAL_LIMIT = Decimal(10) ** 20
_decode = msgspec.json.Decoder()
_encode = msgspec.json.Encoder()


class ConversionError(ValueError):
    """The record cannot be converted; ``code`` is Firehose's error code."""

    def __init__(self, message: str, code: str = "DataFormatConversion.MalformedData") -> None:
        super().__init__(message)
        self.code = code


def _json_text(value: Any) -> str:
    return value if type(value) is str else _encode.encode(value).decode()


def _timestamp(value: Any) -> int:
    kind = type(value)
    if kind is int:
        return value
    if kind is float:
        if not math.isfinite(value):
            raise ConversionError(f"timestamp {value!r} is not finite")
        return int(value)
    if kind is str:
        text = value.strip()
        if text.lstrip("-").isdigit():
            return int(text)
        try:
            parsed = datetime.fromisoformat(text.replace(" ", "T", 1) if "T" not in text else text)
        except ValueError:
            raise ConversionError(f"cannot parse {value!r} as a timestamp") from None
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        return int(parsed.timestamp() * 1000)
    raise ConversionError(f"a {kind.__name__} cannot be a timestamp")


def _double(value: Any) -> float:
    kind = type(value)
    if kind is float or kind is int:
        return float(value)
    if kind is str:
        try:
            return float(value)
        except ValueError:
            raise ConversionError(f"cannot parse {value!r} as a double") from None
    raise ConversionError(f"a {kind.__name__} cannot be a double")


def _decimal(value: Any) -> Decimal:
    kind = type(value)
    if kind not in (str, int, float):
        raise ConversionError(f"a {kind.__name__} cannot be a decimal")
    try:
        number = Decimal(value.strip() if kind is str else repr(value))
        if not number.is_finite():
            raise InvalidOperation
        number = number.quantize(_DECIMAL_QUANTUM, rounding=ROUND_HALF_UP)
    except InvalidOperation:
        raise ConversionError(f"cannot parse {value!r} as decimal(38,18)") from None
    if abs(number) >= _DECIMAL_LIMIT:
        raise ConversionError(f"{value!r} does not fit decimal(38,18)")
    return number


_CONVERT = {
    Kind.STRING: _json_text,
    Kind.JSON: _json_text,
    Kind.TIMESTAMP_MS: _timestamp,
    Kind.FLOAT: _double,
    Kind.DECIMAL: _decimal,
}
_COLUMNS = tuple((f.name, _CONVERT[f.kind], f.nullable) for f in FIELDS)

# Fast path: the transform's own lines (lower-case keys, epoch-ms integers, decimals as strings) decode
# in one typed msgspec pass. Anything else takes the general OpenX path below, which decides the same.
_FAST_TYPES = {Kind.STRING: str, Kind.JSON: str, Kind.TIMESTAMP_MS: int, Kind.FLOAT: float, Kind.DECIMAL: str}
_FastRow = msgspec.defstruct(
    "_FastRow",
    [(f.name, _FAST_TYPES[f.kind]) for f in FIELDS if not f.nullable]
    + [(f.name, _FAST_TYPES[f.kind] | None, None) for f in FIELDS if f.nullable],
)
_fast_decode = msgspec.json.Decoder(_FastRow).decode
_FAST_ORDER = tuple(f.name for f in FIELDS)
_DECIMAL_INDEXES = tuple(i for i, f in enumerate(FIELDS) if f.kind is Kind.DECIMAL)


def convert_record(data: bytes) -> tuple[Any, ...]:
    """One record -> one row of column values, or ``ConversionError``."""
    try:
        fast = _fast_decode(data)
    except (msgspec.DecodeError, UnicodeDecodeError):
        fast = None
    if fast is not None:
        row = list(map(fast.__getattribute__, _FAST_ORDER))
        for i in _DECIMAL_INDEXES:
            if row[i] is not None:
                row[i] = _decimal(row[i])
        return tuple(row)
    try:
        obj = _decode.decode(data)
    except msgspec.DecodeError as exc:
        raise ConversionError(f"not valid JSON: {exc}") from None
    if type(obj) is not dict:
        raise ConversionError(f"expected a JSON object, got a JSON {type(obj).__name__}")
    if any(not k.islower() and k != k.lower() for k in obj):  # OpenX matches keys lower-cased
        obj = {k.lower(): v for k, v in obj.items()}
    row = []
    for name, convert, nullable in _COLUMNS:
        value = obj.get(name)
        if value is None:
            if not nullable:
                raise ConversionError(f"column {name!r} is null or missing")
            row.append(None)
            continue
        try:
            row.append(convert(value))
        except ConversionError as exc:
            raise ConversionError(f"column {name!r}: {exc}", exc.code) from None
    return tuple(row)


_GETTERS = tuple(attrgetter(f.name) for f in FIELDS)


def convert_lines(lines: Sequence[bytes]) -> list[list[Any]] | None:
    """Many records -> columns (one list per schema field), or None if any record needs ``convert_record``.

    Accepts only what ``read_lines`` accepts: the transform's exact line shape, strictly typed,
    decimals already within decimal(38,18). For those lines every value is what ``convert_record``
    gives (its typed fast path reads the same fields the same way), so the two paths write
    identical rows.
    """
    events = read_lines(list(lines))
    if events is None:
        return None
    columns = [list(map(getter, events)) for getter in _GETTERS]
    for i in _DECIMAL_INDEXES:
        columns[i] = [None if v is None else _decimal(v) for v in columns[i]]
    return columns


class ParquetBuffer:
    """Converted rows of one future object, kept column-wise."""

    __slots__ = ("columns", "rows")

    def __init__(self) -> None:
        self.columns: list[list[Any]] = [[] for _ in _COLUMNS]
        self.rows = 0

    def append(self, row: tuple[Any, ...]) -> None:
        for column, value in zip(self.columns, row, strict=True):
            column.append(value)
        self.rows += 1

    def extend(self, columns: list[list[Any]]) -> None:
        """Append rows given column-wise (``convert_lines``' result)."""
        for column, values in zip(self.columns, columns, strict=True):
            column.extend(values)
        self.rows += len(columns[0])

    def to_parquet(self) -> bytes:
        import pyarrow as pa
        import pyarrow.parquet as pq

        schema = arrow_schema()
        arrays = [pa.array(column, type=f.type) for column, f in zip(self.columns, schema, strict=True)]
        table = pa.Table.from_arrays(arrays, schema=schema)
        sink = io.BytesIO()
        pq.write_table(table, sink, compression="snappy")
        return sink.getvalue()
