"""Decode, validate and normalise one billing event.

The rules come from ``events.schema.FIELDS``; every rejection is an
``EventError`` with a stable, specific ``code`` (for metrics and error output)
and a human message.

Hot path: the transform calls ``decode`` then ``normalize`` once per record, so
both avoid per-call allocation beyond the output dict.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any

import msgspec

from bxb_runtime.config import ORG_ID_PATTERN, EventRules
from bxb_runtime.events.errors import EventError
from bxb_runtime.events.lines import MIN_TIMESTAMP_MS, OutputEvent
from bxb_runtime.events.schema import (
    FIELD_BY_NAME,
    FIELDS,
    INPUT_FIELDS,
    REMOVED_FIELDS,
    REQUIRED_FIELDS,
    Field,
    Kind,
    Origin,
)

# KPL aggregated records start with these bytes (aws/amazon-kinesis-producer aggregation-format.md).
KPL_MAGIC = b"\xf3\x89\x9a\xc2"
# Decimal(38, 18): 20 integer digits, 18 fractional digits.
DECIMAL_SCALE = 18
DECIMAL_LIMIT = Decimal(10) ** 20

_NUMERIC = re.compile(r"^\s*-?\d+(\.\d+)?\s*$")
# Unix seconds beyond this cannot be a valid timestamp (year ~33658); checked before any
# multiplication, so no float overflows and no huge integer is built.
_MAX_TIMESTAMP_S = 10**12
_STRING_FIELDS = tuple((f.name, f.max_length) for f in FIELDS if f.required)
_INPUT_FIELDS = INPUT_FIELDS
_PIPELINE_FIELDS = tuple(f.name for f in FIELDS if f.origin is Origin.PIPELINE)
# Fields added after version 1 (optional, nullable: events.schema.check_history) and removed ones:
# both come after decimal_value in OutputEvent, in schema order, so they are passed last.
_LATER_FIELDS = tuple(f for f in FIELDS if f.added_in > 1 or f.removed_in is not None)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


# --------------------------------------------------------------------------- decode

# The fast path: one typed msgspec decode does the structural checks (types,
# lengths, required and unknown fields) in C. The structs are derived from FIELDS.
# Properties decode as a *flat* object here; nested ones take the slow path and its depth check.
_INPUT_TYPES: dict[Kind, Any] = {
    Kind.STRING: str,
    Kind.TIMESTAMP_MS: int | float | str,
    Kind.JSON: dict[str, str | int | float | bool | None],
    Kind.FLOAT: float,
    Kind.DECIMAL: Decimal,
}


def _input_field(f: Any) -> tuple[Any, ...]:
    kind = _INPUT_TYPES[f.kind]
    if f.required:
        return (f.name, Annotated[kind, msgspec.Meta(min_length=1, max_length=f.max_length)])
    return (f.name, kind | None, None)


InputEvent = msgspec.defstruct(
    "InputEvent",
    [_input_field(f) for f in FIELDS if f.name in INPUT_FIELDS],
    forbid_unknown_fields=True,
    gc=False,  # scalars and a flat dict: no cycles
)
_typed_decoder = msgspec.json.Decoder(InputEvent)
_any_decoder = msgspec.json.Decoder()
_exact_decoder = msgspec.json.Decoder(float_hook=Decimal)
_canonical_encoder = msgspec.json.Encoder(order="sorted")


def decode(data: bytes, max_bytes: int) -> Any:
    """JSON bytes -> Python object, with ``decimal_value`` kept exact."""
    _check_envelope(data, max_bytes)
    try:
        obj = _any_decoder.decode(data)
    except UnicodeDecodeError as err:
        raise EventError("not_utf8", f"record is not UTF-8 (byte {err.start})") from None
    except RecursionError:
        raise EventError("too_deep", "JSON nesting is too deep") from None
    except msgspec.ValidationError as exc:
        raise EventError("number_out_of_range", f"a number is out of range ({exc})") from None
    except msgspec.DecodeError as exc:
        try:
            data.decode("utf-8")
        except UnicodeDecodeError as err:
            raise EventError("not_utf8", f"record is not UTF-8 (byte {err.start})") from None
        raise EventError("not_json", f"record is not JSON ({exc})") from None
    if type(obj) is dict and type(obj.get("decimal_value")) is float:
        # The generic decoder made a float of it: read that one field again, exactly.
        obj["decimal_value"] = _exact_decoder.decode(data)["decimal_value"]
    return obj


def _check_envelope(data: bytes, max_bytes: int) -> None:
    if len(data) > max_bytes:
        raise EventError("too_large", f"record is {len(data)} bytes, limit {max_bytes}")
    if data[:4] == KPL_MAGIC:
        raise EventError(
            "kpl_aggregate_not_expected",
            "KPL aggregated record reached the transform; Firehose should have de-aggregated it",
        )


# --------------------------------------------------------------------------- normalise


def normalize_bytes(data: bytes, rules: EventRules, *, arrival_ms: int, ingested_ms: int) -> Any:
    """JSON bytes -> normalised ``OutputEvent``; same result as ``normalize(decode(data))``, faster.

    ``arrival_ms`` is the Firehose/Kinesis arrival time: the default timestamp
    and the reference for the future-skew check (so a retry decides the same).
    """
    return make_normalizer(rules)(data, arrival_ms, ingested_ms)


@functools.lru_cache(maxsize=16)
def make_normalizer(rules: EventRules) -> Callable[[bytes, int, int], Any]:
    """``normalize_bytes`` for fixed rules, with every limit bound once: the transform's hot path.

    One typed msgspec decode does the structural checks in C; what is left
    here is what msgspec cannot express. Anything msgspec refuses goes to the
    field-by-field ``normalize`` so the rejection names its exact problem.
    """
    max_bytes = rules.max_record_bytes
    skew_ms = rules.future_skew_ms
    max_props = rules.max_properties_bytes
    default_org = rules.organization_id
    typed_decode = _typed_decoder.decode
    canonical = _canonical_encoder.encode
    output = OutputEvent
    later = _LATER_FIELDS

    def normalize_fast(data: bytes, arrival_ms: int, ingested_ms: int) -> Any:
        if len(data) > max_bytes:
            _check_envelope(data, max_bytes)
        try:
            ev = typed_decode(data)  # a KPL aggregate is not JSON: the slow path names it
        except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):
            return normalize(decode(data, max_bytes), rules, arrival_ms=arrival_ms, ingested_ms=ingested_ms)
        tid, customer, code = ev.transaction_id, ev.external_customer_id, ev.code
        if tid.isspace() or customer.isspace() or code.isspace():
            _reject_string(*_first_blank(("transaction_id", tid), ("external_customer_id", customer), ("code", code)))
        ts = ev.timestamp
        if ts is None:
            ts_ms = arrival_ms
        elif type(ts) is float and -_MAX_TIMESTAMP_S < ts < _MAX_TIMESTAMP_S:  # msgspec refuses non-finite ones
            ts_ms = int(ts * 1000 + 0.5)
        else:
            ts_ms = parse_timestamp(ts)
        if ts_ms < MIN_TIMESTAMP_MS or ts_ms > arrival_ms + skew_ms:
            _check_time(ts, ts_ms, arrival_ms, rules)
        props = ev.properties
        if props:
            text = canonical(props).decode()
            if len(text) > max_props:
                text = canonical_properties(props, rules)  # names the error
        else:
            text = "{}"
        dec = ev.decimal_value
        org = ev.organization_id
        # Fields added after version 1 follow the first ones (none today: an empty tuple).
        added = [_later_value(f, getattr(ev, f.name, None)) for f in later] if later else ()
        return output(
            tid,
            customer,
            code,
            ts_ms,
            text,
            default_org if org is None and default_org else _organization(org, rules),
            ingested_ms,
            arrival_ms,
            # msgspec refuses non-finite numbers already; + 0.0 makes -0.0 plain 0.0 (one spelling per value)
            None if ev.value is None else ev.value + 0.0,
            None if dec is None else parse_decimal(dec),
            *added,
        )

    return normalize_fast


def normalize(raw: Any, rules: EventRules, *, arrival_ms: int, ingested_ms: int) -> Any:
    """Validate a decoded event and return it as a normalised ``OutputEvent``.

    Checks field by field, so each rejection names its exact problem.
    """
    if type(raw) is not dict:
        raise EventError("not_object", f"event must be a JSON object, got {_json_type(raw)}")
    if not raw.keys() <= _INPUT_FIELDS:
        _reject_unknown(raw)
    for name, max_length in _STRING_FIELDS:
        value = raw.get(name)
        if type(value) is not str or len(value) > max_length or not value.strip():
            _reject_string(name, value)
    ts = raw.get("timestamp")
    ts_ms = arrival_ms if ts is None else parse_timestamp(ts)
    _check_time(ts, ts_ms, arrival_ms, rules)
    props = raw.get("properties")
    if props is not None and type(props) is not dict:
        raise EventError("wrong_type:properties", f"properties must be an object, got {_json_type(props)}")
    value = raw.get("value")
    dec = raw.get("decimal_value")
    return OutputEvent(
        transaction_id=raw["transaction_id"],
        external_customer_id=raw["external_customer_id"],
        code=raw["code"],
        timestamp=ts_ms,
        properties=canonical_properties(props, rules),
        organization_id=_organization(raw.get("organization_id"), rules),
        ingested_at=ingested_ms,
        arrived_at=arrival_ms,
        value=None if value is None else _float(value),
        decimal_value=None if dec is None else parse_decimal(dec),
        **{f.name: _later_value(f, raw.get(f.name)) for f in _LATER_FIELDS},
    )


def _later_value(f: Field, value: Any) -> Any:
    """A field added after version 1 (always optional) -> its stored value, or None."""
    if value is None or f.removed_in is not None:
        return None  # a removed field is refused before this (unknown to InputEvent), or left null
    kind = f.kind
    if kind is Kind.STRING:
        if type(value) is not str or len(value) > (f.max_length or len(value)) or not value.strip():
            _reject_string(f.name, value)
        return value
    if kind is Kind.FLOAT:
        try:
            return _float(value)
        except EventError as exc:
            raise EventError(exc.code.replace("value", f.name), exc.message.replace("value", f.name, 1)) from None
    if kind is Kind.DECIMAL:
        try:
            return parse_decimal(value)
        except EventError as exc:
            raise EventError(
                exc.code.replace("decimal_value", f.name), exc.message.replace("decimal_value", f.name)
            ) from None
    ms = parse_timestamp(value)  # Kind.TIMESTAMP_MS (schema.ADDABLE_KINDS)
    if ms < MIN_TIMESTAMP_MS:
        raise EventError(f"bad_timestamp:{f.name}", f"{f.name} {show(value)} is before 2000-01-01")
    return ms


def canonical_properties(props: dict[str, Any] | None, rules: EventRules) -> str:
    """Properties -> canonical JSON text (sorted keys, compact), within size and depth limits."""
    if not props:
        return "{}"
    text = _canonical_encoder.encode(props).decode()
    if len(text) > rules.max_properties_bytes:
        raise EventError(
            "properties_too_large",
            f"properties are {len(text)} bytes as JSON, limit {rules.max_properties_bytes}",
        )
    if "{" in text[1:] or "[" in text:  # only nested (or bracket-bearing) properties need the walk
        # The depth of what is stored: the text read back, whatever containers produced it.
        _check_depth(_any_decoder.decode(text), rules.max_properties_depth)
    return text


def to_dict(event: Any) -> dict[str, Any]:
    """``OutputEvent`` -> dict in schema order, ``properties`` as a dict (the hook interface)."""
    out = {f.name: getattr(event, f.name) for f in FIELDS}
    out["properties"] = _any_decoder.decode(out["properties"])
    return out


def from_dict(event: Any, original: Any, rules: EventRules) -> Any:
    """A hook's returned dict -> ``OutputEvent``, re-checked against the schema and the rules.

    ``original`` is the event the hooks started from: pipeline-set fields must come back
    unchanged, and the timestamp is judged against the same arrival time."""
    if type(event) is not dict:
        raise EventError("not_object", f"hook returned {_json_type(event)}, not an object")
    if event.keys() != FIELD_BY_NAME.keys():
        extra = sorted(map(str, event.keys() - FIELD_BY_NAME.keys()))
        missing = sorted(FIELD_BY_NAME.keys() - event.keys())
        raise EventError(
            f"unknown_field:{extra[0]}" if extra else f"missing_field:{missing[0]}",
            "hook changed the event's fields",
        )
    for name in _PIPELINE_FIELDS:
        if event[name] != getattr(original, name):
            raise EventError(f"reserved_field:{name}", f"hook changed {name}, which the pipeline sets")
    for name, max_length in _STRING_FIELDS:
        value = event[name]
        if type(value) is not str or len(value) > max_length or not value.strip():
            _reject_string(name, value)
    ts = event["timestamp"]
    if type(ts) is not int:
        raise EventError("wrong_type:timestamp", f"hook left timestamp={show(ts)}, not UTC milliseconds")
    _check_time(ts, ts, original.arrived_at, rules)
    props = event["properties"]
    if type(props) is not dict:
        raise EventError("wrong_type:properties", f"hook left properties as {_json_type(props)}, not an object")
    try:
        text = canonical_properties(props, rules)
    except (TypeError, ValueError, OverflowError) as exc:  # values JSON cannot carry (sets, bytes, NaN, ...)
        raise EventError("wrong_type:properties", f"hook left properties that are not JSON: {exc}") from None
    value, dec = event["value"], event["decimal_value"]
    return OutputEvent(
        transaction_id=event["transaction_id"],
        external_customer_id=event["external_customer_id"],
        code=event["code"],
        timestamp=ts,
        properties=text,
        organization_id=_organization(event["organization_id"], rules),
        ingested_at=original.ingested_at,
        arrived_at=original.arrived_at,
        value=None if value is None else _float(value),
        decimal_value=None if dec is None else parse_decimal(dec),
        **{f.name: _hook_later_value(f, event[f.name]) for f in _LATER_FIELDS},
    )


def _hook_later_value(f: Field, value: Any) -> Any:
    if f.removed_in is not None and value is not None:
        raise EventError(f"removed_field:{f.name}", f"hook set {f.name}, which is no longer written")
    return _later_value(f, value)


def _check_time(ts: Any, ts_ms: int, arrival_ms: int, rules: EventRules) -> None:
    if ts_ms < MIN_TIMESTAMP_MS:
        raise EventError("timestamp_before_2000", f"timestamp {show(ts)} is before 2000-01-01")
    if ts_ms > arrival_ms + rules.future_skew_ms:
        raise EventError(
            "timestamp_in_future",
            f"timestamp {show(ts)} is more than {rules.future_skew_seconds}s after arrival",
        )


def _first_blank(*pairs: tuple[str, str]) -> tuple[str, str]:
    return next(pair for pair in pairs if pair[1].isspace())


# --------------------------------------------------------------------------- field parsers


def parse_timestamp(ts: Any) -> int:
    """Unix seconds (int, float, numeric string) or ISO-8601 with offset -> UTC ms.

    Seconds far outside any valid range come back clamped (still invalid), so the caller's
    range check names them, and nothing overflows on the way."""
    kind = type(ts)
    if kind is int:
        return _seconds_to_ms(ts)
    if kind is float or kind is Decimal:
        if not (math.isfinite(ts) if kind is float else ts.is_finite()):
            raise EventError("bad_timestamp", f"timestamp {show(ts)} is not finite")
        return _seconds_to_ms(ts)
    if kind is str:
        if _NUMERIC.match(ts):
            return _seconds_to_ms(Decimal(ts))
        try:
            parsed = datetime.fromisoformat(ts)
        except ValueError:
            raise EventError("bad_timestamp", f"timestamp {show(ts)} is neither Unix seconds nor ISO-8601") from None
        if parsed.tzinfo is None:
            raise EventError("bad_timestamp", f"timestamp {show(ts)} has no UTC offset")
        delta = parsed - _EPOCH
        return (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000
    raise EventError("bad_timestamp", f"timestamp must be a number or string, got {_json_type(ts)}")


def _seconds_to_ms(seconds: int | float | Decimal) -> int:
    """Finite seconds -> ms, rounding half up; beyond +-_MAX_TIMESTAMP_S clamped to it (compared, never scaled)."""
    if seconds > _MAX_TIMESTAMP_S:
        return _MAX_TIMESTAMP_S * 1000
    if seconds < -_MAX_TIMESTAMP_S:
        return -_MAX_TIMESTAMP_S * 1000
    if type(seconds) is int:
        return seconds * 1000
    if type(seconds) is float:
        return round(seconds * 1000)
    return int((seconds * 1000).to_integral_value())


def show(value: Any, limit: int = 60) -> str:
    """``repr`` for an error message: bounded, and safe for integers too long to print."""
    try:
        text = repr(value)
    except ValueError:  # int beyond sys.get_int_max_str_digits()
        return "<an integer too long to show>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def parse_decimal(value: Any) -> str:
    """Exact decimal that fits Decimal(38, 18) -> its plain string form."""
    kind = type(value)
    if kind is str:
        try:
            dec = Decimal(value.strip())
        except InvalidOperation:
            raise EventError("bad_decimal", f"decimal_value {show(value)} is not a decimal number") from None
    elif kind is int or kind is Decimal:
        dec = Decimal(value)
    elif kind is float:
        # Only reached from in-process callers; str() is the shortest exact repr.
        dec = Decimal(repr(value)) if math.isfinite(value) else Decimal("NaN")
    else:
        raise EventError(
            "wrong_type:decimal_value", f"decimal_value must be a string or number, got {_json_type(value)}"
        )
    if not dec.is_finite():
        raise EventError("bad_decimal", "decimal_value must be finite")
    # copy_abs and comparison never round, so a huge exponent cannot overflow the context.
    if dec.copy_abs() >= DECIMAL_LIMIT:
        raise EventError("decimal_out_of_range", "decimal_value must be below 10^20 in magnitude")
    exponent = dec.as_tuple().exponent
    if isinstance(exponent, int) and exponent < -DECIMAL_SCALE:
        raise EventError("decimal_too_precise", f"decimal_value has more than {DECIMAL_SCALE} fractional digits")
    return format(dec, "f")


def _float(value: Any) -> float:
    kind = type(value)
    if kind is float:
        if math.isfinite(value):
            return value + 0.0  # -0.0 becomes 0.0: one spelling per value
        raise EventError("bad_value", "value must be finite")
    if kind is int:
        try:
            return float(value)
        except OverflowError:
            raise EventError("bad_value", "value is too large for a float") from None
    if kind is Decimal:
        if value.is_finite() and value.copy_abs() < Decimal("1e308"):
            return float(value) + 0.0  # Decimal("-0") too: one spelling per value
        raise EventError("bad_value", "value must be finite")
    raise EventError("wrong_type:value", f"value must be a number, got {_json_type(value)}")


def _organization(sent: Any, rules: EventRules) -> str:
    if sent is None:
        if not rules.organization_id:
            raise EventError("missing_field:organization_id", "multi-tenant mode needs organization_id on each event")
        return rules.organization_id
    if type(sent) is not str:
        raise EventError("wrong_type:organization_id", f"organization_id must be a string, got {_json_type(sent)}")
    if not rules.multi_tenant:
        if sent != rules.organization_id:
            raise EventError("organization_mismatch", "organization_id does not match this deployment")
        return sent
    if not ORG_ID_PATTERN.match(sent):
        raise EventError("bad_organization_id", "organization_id must match [A-Za-z0-9][A-Za-z0-9._-]{0,127}")
    return sent


def _check_depth(obj: Any, limit: int) -> None:
    """Reject properties nested deeper than ``limit`` (a flat object is depth 1)."""
    stack = [(obj, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > limit:
            raise EventError("properties_too_deep", f"properties nest deeper than {limit} levels")
        children = node.values() if type(node) is dict else node
        for child in children:
            if type(child) is dict or type(child) is list:
                stack.append((child, depth + 1))


def _reject_unknown(raw: dict[str, Any]) -> None:
    unknown = sorted(k for k in raw if k not in _INPUT_FIELDS)
    name = unknown[0]
    if name in REMOVED_FIELDS:
        raise EventError(f"removed_field:{name}", f"{name} was removed from the event schema and may not be sent")
    if name in FIELD_BY_NAME:
        raise EventError(f"reserved_field:{name}", f"{name} is set by the pipeline and may not be sent")
    raise EventError(f"unknown_field:{name}", f"unknown field {name!r} (allowed: {', '.join(sorted(_INPUT_FIELDS))})")


def _reject_string(name: str, value: Any) -> None:
    if value is None:
        raise EventError(f"missing_field:{name}", f"{name} is required")
    if type(value) is not str:
        raise EventError(f"wrong_type:{name}", f"{name} must be a string, got {_json_type(value)}")
    if not value.strip():
        raise EventError(f"empty_field:{name}", f"{name} must not be empty")
    limit = FIELD_BY_NAME[name].max_length
    raise EventError(f"field_too_long:{name}", f"{name} is {len(value)} characters, limit {limit}")


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float, Decimal)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


assert set(REQUIRED_FIELDS) == {name for name, _ in _STRING_FIELDS}
