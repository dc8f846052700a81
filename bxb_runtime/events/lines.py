"""The transform's output line: one normalised event as newline-terminated JSON.

``OutputEvent`` is what the transform writes (and Firehose's OpenX SerDe turns into
Parquet); ``StoredEvent`` is the same line read back strictly (the HTTP ingest, the
local Firehose's Parquet conversion). Both are derived from ``schema.FIELDS``.
"""

from __future__ import annotations

from collections.abc import Sequence
from operator import itemgetter
from typing import Annotated, Any

import msgspec

from bxb_runtime.events.errors import EventError
from bxb_runtime.events.schema import FIELDS, Kind

MIN_TIMESTAMP_MS = 946_684_800_000  # 2000-01-01T00:00:00Z

# How each kind travels in the JSON line (Python types); events.table derives the reader's schema from it.
LINE_TYPES: dict[Kind, Any] = {
    Kind.STRING: str,
    Kind.TIMESTAMP_MS: int,
    Kind.JSON: str,
    Kind.FLOAT: float,
    Kind.DECIMAL: str,
}

# Nullable fields go last with a None default, and are left out of the JSON line
# when null (OpenX reads a missing key as null): shorter lines, faster base64.
OutputEvent = msgspec.defstruct(
    "OutputEvent",
    [(f.name, LINE_TYPES[f.kind]) for f in FIELDS if not f.nullable]
    + [(f.name, LINE_TYPES[f.kind] | None, None) for f in FIELDS if f.nullable],
    omit_defaults=True,
    gc=False,  # scalars only: no cycles, so no GC tracking (less collector work per batch)
)


# What parse_decimal writes: at most 20 integer and 18 fractional digits.
STORED_DECIMAL_PATTERN = r"\A-?\d{1,20}(\.\d{1,18})?\Z"  # \Z: no trailing newline


def _stored_field(f: Any) -> tuple[Any, ...]:
    kind: Any = LINE_TYPES[f.kind]
    if f.kind is Kind.DECIMAL:
        kind = Annotated[str, msgspec.Meta(pattern=STORED_DECIMAL_PATTERN)]  # checked in the decode, in C
    elif f.kind is Kind.STRING:
        kind = Annotated[str, msgspec.Meta(min_length=1, max_length=f.max_length)]
    elif f.kind is Kind.TIMESTAMP_MS:
        kind = Annotated[int, msgspec.Meta(ge=MIN_TIMESTAMP_MS)]
    return (f.name, kind | None, None) if f.nullable else (f.name, kind)


# A transformed line read back (the HTTP ingest): the same fields, strictly typed.
StoredEvent = msgspec.defstruct(
    "StoredEvent",
    [_stored_field(f) for f in FIELDS if not f.nullable] + [_stored_field(f) for f in FIELDS if f.nullable],
    forbid_unknown_fields=True,
    gc=False,
)
_stored_decoder = msgspec.json.Decoder(StoredEvent)
_stored_list_decoder = msgspec.json.Decoder(list[StoredEvent])
line_encoder = msgspec.json.Encoder()  # OutputEvent -> JSON, schema field order


def to_line(event: Any) -> bytes:
    """Normalised ``OutputEvent`` -> one newline-terminated JSON line for Firehose's OpenX SerDe."""
    return line_encoder.encode(event) + b"\n"


def read_line(line: bytes) -> Any:
    """One transformed JSON line -> ``StoredEvent``, or EventError naming what is wrong."""
    try:
        event = _stored_decoder.decode(line)
    except msgspec.ValidationError as exc:
        if str(exc).endswith("at `$.decimal_value`"):
            raise EventError("bad_decimal", f"decimal_value does not fit Decimal(38, 18): {exc}") from None
        raise EventError("bad_line", f"line does not match the event schema: {exc}") from None
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError) as exc:
        raise EventError("not_json", f"line is not JSON: {exc}") from None
    return event


_FIRST, _LAST = itemgetter(slice(0, 1)), itemgetter(slice(-1, None))  # b"" for an empty line


def framed(lines: Sequence[bytes]) -> bool:
    """Every line starts with ``{`` and ends with a newline, as the transform writes them.

    With that, and a schema without array or object fields, no object can run on from one
    line into the next when lines are joined: the next line's ``{`` would have to open a
    nested value. Checked in C over the first and last bytes, not line by line in Python.
    """
    count = len(lines)
    return b"".join(map(_FIRST, lines)) == b"{" * count and b"".join(map(_LAST, lines)) == b"\n" * count


def read_lines(lines: list[bytes]) -> list[Any] | None:
    """Many lines in one decode: the whole list, or None if any line needs ``read_line``'s verdict.

    The lines are joined into one JSON array. They are the transform's own output; a line
    that is not exactly one framed JSON object (``framed``) changes the count, fails the
    frame check or fails the parse, and then every line is judged on its own.
    """
    if not framed(lines):
        return None
    try:
        events = _stored_list_decoder.decode(b"[" + b",".join(lines) + b"]")
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):
        return None
    if len(events) != len(lines):
        return None
    return events
