"""The transform's output line: one normalised event as newline-terminated JSON.

``OutputEvent`` is what the transform writes (and Firehose's OpenX SerDe turns into
Parquet); ``StoredEvent`` is the same line read back strictly (the HTTP ingest, the
local Firehose's Parquet conversion). Both are derived from ``schema.FIELDS``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from operator import attrgetter
from typing import Annotated, Any

import msgspec

from bxb_runtime.events.errors import EventError
from bxb_runtime.events.schema import FIELDS, Kind

MIN_TIMESTAMP_MS = 946_684_800_000  # 2000-01-01T00:00:00Z
# 2299-12-31T23:59:59.999Z: the end of ClickHouse's DateTime64 range in every version. The
# transform never writes a later one (future skew); a line that does is refused, not inserted.
MAX_TIMESTAMP_MS = 10_413_791_999_999

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


# What parse_decimal writes: at most 20 integer and 18 fractional digits, ASCII ones (``\d``
# would take any Unicode digit, which ClickHouse cannot parse: one such line would fail an insert).
_DECIMAL_TEXT = r"-?[0-9]{1,20}(?:\.[0-9]{1,18})?"
STORED_DECIMAL_PATTERN = rf"\A{_DECIMAL_TEXT}\Z"  # \Z: no trailing newline
_DECIMAL = re.compile(STORED_DECIMAL_PATTERN)
# Many decimals at once, each followed by a newline (checked after the decode, not in it: one
# regex over a request's decimals costs a fraction of one per line).
_DECIMALS = re.compile(rf"(?:{_DECIMAL_TEXT}\n)*")
_decimal_of = attrgetter("decimal_value")


def _stored_field(f: Any) -> tuple[Any, ...]:
    kind: Any = LINE_TYPES[f.kind]
    if f.kind is Kind.STRING:
        kind = Annotated[str, msgspec.Meta(min_length=1, max_length=f.max_length)]
    elif f.kind is Kind.TIMESTAMP_MS:
        kind = Annotated[int, msgspec.Meta(ge=MIN_TIMESTAMP_MS, le=MAX_TIMESTAMP_MS)]
    return (f.name, kind | None, None) if f.nullable else (f.name, kind)


# A transformed line read back (the HTTP ingest): the same fields, strictly typed.
StoredEvent = msgspec.defstruct(
    "StoredEvent",
    [_stored_field(f) for f in FIELDS if not f.nullable] + [_stored_field(f) for f in FIELDS if f.nullable],
    forbid_unknown_fields=True,
    gc=False,
)
_stored_decoder = msgspec.json.Decoder(StoredEvent)
line_encoder = msgspec.json.Encoder()  # OutputEvent -> JSON, schema field order


def to_line(event: Any) -> bytes:
    """Normalised ``OutputEvent`` -> one newline-terminated JSON line for Firehose's OpenX SerDe."""
    return line_encoder.encode(event) + b"\n"


def read_line(line: bytes) -> Any:
    """One transformed JSON line -> ``StoredEvent``, or EventError naming what is wrong."""
    try:
        event = _stored_decoder.decode(line)
    except msgspec.ValidationError as exc:
        if str(exc).endswith("at `$.decimal_value`"):  # not a string
            raise EventError("bad_decimal", f"decimal_value does not fit Decimal(38, 18): {exc}") from None
        raise EventError("bad_line", f"line does not match the event schema: {exc}") from None
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError) as exc:
        raise EventError("not_json", f"line is not JSON: {exc}") from None
    decimal = event.decimal_value
    if decimal is not None and not _DECIMAL.match(decimal):
        raise EventError(
            "bad_decimal",
            f"decimal_value {decimal[:48]!r} does not fit Decimal(38, 18): "
            "at most 20 integer and 18 fractional digits, 0-9",
        )
    return event


def read_lines(lines: Sequence[bytes | None]) -> list[Any] | None:
    """Every line decoded, or None if any line needs ``read_line``'s verdict.

    One strict decode per line, mapped in C (faster than decoding the lines joined into one
    array, and simpler): a decode must consume exactly one object, so no record can run into
    the next. On None (a line is not sound, or is None: not base64) the caller judges each
    line alone, to name what is wrong with it.
    """
    try:
        events = list(map(_stored_decoder.decode, lines))
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError, TypeError):  # TypeError: a None line
        return None
    decimals = [d for d in map(_decimal_of, events) if d is not None]
    return events if _sound_decimals(decimals) else None


def _sound_decimals(decimals: list[str]) -> bool:
    """Every text matches ``STORED_DECIMAL_PATTERN``: one regex over all of them (none may hold a newline)."""
    if not decimals:
        return True
    text = "\n".join(decimals) + "\n"
    return text.count("\n") == len(decimals) and _DECIMALS.fullmatch(text) is not None
