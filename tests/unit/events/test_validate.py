"""The validator: every kind of bad input gets its own code; good input is normalised exactly."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import hypothesis
import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from bxb_runtime.config import EventRules
from bxb_runtime.events.lines import to_line
from bxb_runtime.events.validate import (
    KPL_MAGIC,
    EventError,
    decode,
    normalize,
    normalize_bytes,
)

NOW_MS = 1_790_000_000_000
BASE = {"transaction_id": "tx_1", "external_customer_id": "cust_1", "code": "api_calls"}


def with_(**changes) -> bytes:
    event = {**BASE, **changes}
    return json.dumps({k: v for k, v in event.items() if v is not ...}).encode()


def raw_event(text: str) -> bytes:
    return text.encode()


# (input bytes, expected code). Each is a distinct way an event can be wrong.
BAD_INPUTS = [
    (b"not json", "not_json"),
    (b"", "not_json"),
    (b'{"transaction_id":"a"} trailing', "not_json"),
    (b"\xff\xfe{}", "not_utf8"),
    (b'{"transaction_id":"\xc3\x28"}', "not_utf8"),
    (b"[" * 5000 + b"]" * 5000, "too_deep"),
    (b"[1,2]", "not_object"),
    (b'"just a string"', "not_object"),
    (b"null", "not_object"),
    (b"42", "not_object"),
    (KPL_MAGIC + b"\x0a\x01a", "kpl_aggregate_not_expected"),
    (with_(properties={"blob": "x" * 70_000}), "too_large"),
    (with_(transaction_id=...), "missing_field:transaction_id"),
    (with_(external_customer_id=...), "missing_field:external_customer_id"),
    (with_(code=...), "missing_field:code"),
    (with_(code=None), "missing_field:code"),
    (with_(timestmap=1_700_000_000), "unknown_field:timestmap"),
    (with_(Code="x"), "unknown_field:Code"),
    (with_(ingested_at=NOW_MS), "reserved_field:ingested_at"),
    (with_(transaction_id=""), "empty_field:transaction_id"),
    (with_(external_customer_id="   "), "empty_field:external_customer_id"),
    (with_(code="\t\n"), "empty_field:code"),
    (with_(transaction_id="t" * 257), "field_too_long:transaction_id"),
    (with_(transaction_id=123), "wrong_type:transaction_id"),
    (with_(external_customer_id=["a"]), "wrong_type:external_customer_id"),
    (with_(code={"a": 1}), "wrong_type:code"),
    (with_(timestamp="yesterday"), "bad_timestamp"),
    (with_(timestamp=True), "bad_timestamp"),
    (with_(timestamp=[1_700_000_000]), "bad_timestamp"),
    (with_(timestamp="2026-01-01T00:00:00"), "bad_timestamp"),
    (with_(timestamp="NaN"), "bad_timestamp"),
    (with_(timestamp=946_684_799), "timestamp_before_2000"),
    (with_(timestamp="1999-12-31T23:59:59Z"), "timestamp_before_2000"),
    (with_(timestamp=NOW_MS / 1000 + 301), "timestamp_in_future"),
    (with_(timestamp=NOW_MS), "timestamp_in_future"),  # milliseconds sent as seconds
    (with_(properties=[1, 2]), "wrong_type:properties"),
    (with_(properties="a=b"), "wrong_type:properties"),
    (with_(properties={"k": "v" * 17_000}), "properties_too_large"),
    (with_(properties={"a": {"b": {"c": {"d": {"e": {"f": {"g": {"h": {"i": 1}}}}}}}}}), "properties_too_deep"),
    (with_(value="12"), "wrong_type:value"),
    (with_(value=True), "wrong_type:value"),
    (raw_event('{"transaction_id":"a","external_customer_id":"b","code":"c","value":1' + "0" * 399 + "}"), "bad_value"),
    (
        raw_event('{"transaction_id":"a","external_customer_id":"b","code":"c","value":-1' + "0" * 399 + "}"),
        "bad_value",
    ),
    (raw_event('{"transaction_id":"a","external_customer_id":"b","code":"c","value":1e400}'), "number_out_of_range"),
    (with_(decimal_value="twelve"), "bad_decimal"),
    (with_(decimal_value="NaN"), "bad_decimal"),
    (with_(decimal_value="Infinity"), "bad_decimal"),
    (with_(decimal_value=1e25), "decimal_out_of_range"),
    (with_(decimal_value="-100000000000000000000"), "decimal_out_of_range"),
    (with_(decimal_value="0.1234567890123456789"), "decimal_too_precise"),
    (with_(decimal_value=False), "wrong_type:decimal_value"),
    (with_(decimal_value={"v": 1}), "wrong_type:decimal_value"),
    (with_(organization_id="org_2"), "organization_mismatch"),
    (with_(organization_id=7), "wrong_type:organization_id"),
]


def test_there_are_at_least_thirty_distinct_kinds_of_bad_input():
    assert len({code for _, code in BAD_INPUTS}) >= 30


@pytest.mark.parametrize(("data", "code"), BAD_INPUTS, ids=[f"{i:02d}-{c}" for i, (_, c) in enumerate(BAD_INPUTS)])
def test_bad_input_gets_its_specific_code_on_both_paths(data, code, rules):
    with pytest.raises(EventError) as fast:
        normalize_bytes(data, rules, arrival_ms=NOW_MS, ingested_ms=NOW_MS)
    assert fast.value.code == code
    assert fast.value.message and fast.value.message != code  # a human sentence, not just the code
    assert " " in fast.value.message
    with pytest.raises(EventError) as slow:
        normalize(decode(data, rules.max_record_bytes), rules, arrival_ms=NOW_MS, ingested_ms=NOW_MS)
    assert slow.value.code == code


def test_multi_tenant_rules():
    rules = EventRules(organization_id="", multi_tenant=True)
    with pytest.raises(EventError, match="missing_field:organization_id"):
        normalize_bytes(with_(), rules, arrival_ms=NOW_MS, ingested_ms=NOW_MS)
    with pytest.raises(EventError, match="bad_organization_id"):
        normalize_bytes(with_(organization_id="acme/../x"), rules, arrival_ms=NOW_MS, ingested_ms=NOW_MS)
    event = normalize_bytes(with_(organization_id="acme"), rules, arrival_ms=NOW_MS, ingested_ms=NOW_MS)
    assert event.organization_id == "acme"


@pytest.mark.parametrize(
    ("sent", "expected_ms"),
    [
        (1_789_999_000, 1_789_999_000_000),
        (1_789_999_000.5, 1_789_999_000_500),
        (1_789_999_000.1234, 1_789_999_000_123),
        ("1789999000", 1_789_999_000_000),
        ("1789999000.250", 1_789_999_000_250),
        ("2026-09-21T14:13:20Z", 1_790_000_000_000),
        ("2026-09-21T16:13:20+02:00", 1_790_000_000_000),
        ("2026-09-21T09:13:19.999-05:00", 1_789_999_999_999),
        (..., NOW_MS),  # absent: the Firehose arrival time
    ],
)
def test_timestamps_normalise_to_utc_milliseconds(sent, expected_ms, rules):
    event = normalize_bytes(with_(timestamp=sent), rules, arrival_ms=NOW_MS, ingested_ms=NOW_MS + 5)
    assert event.timestamp == expected_ms
    assert event.ingested_at == NOW_MS + 5


def test_future_skew_is_configurable():
    strict = EventRules(organization_id="org_1", future_skew_seconds=0)
    with pytest.raises(EventError, match="timestamp_in_future"):
        normalize_bytes(with_(timestamp=NOW_MS / 1000 + 1), strict, arrival_ms=NOW_MS, ingested_ms=NOW_MS)
    loose = EventRules(organization_id="org_1", future_skew_seconds=3600)
    event = normalize_bytes(with_(timestamp=NOW_MS / 1000 + 1800), loose, arrival_ms=NOW_MS, ingested_ms=0)
    assert event.timestamp == NOW_MS + 1_800_000


def test_decimal_value_keeps_every_digit_from_a_json_number(rules):
    data = (
        b'{"transaction_id":"a","external_customer_id":"b","code":"c",'
        b'"decimal_value":12345678901234567890.123456789012345678}'
    )
    for event in (
        normalize_bytes(data, rules, arrival_ms=NOW_MS, ingested_ms=NOW_MS),
        normalize(decode(data, 65536), rules, arrival_ms=NOW_MS, ingested_ms=NOW_MS),
    ):
        assert event.decimal_value == "12345678901234567890.123456789012345678"
        assert Decimal(event.decimal_value) == Decimal("12345678901234567890.123456789012345678")
    line = to_line(normalize_bytes(data, rules, arrival_ms=NOW_MS, ingested_ms=NOW_MS))
    assert b'"decimal_value":"12345678901234567890.123456789012345678"' in line


@pytest.mark.parametrize(
    ("sent", "stored"), [("1.50", "1.50"), (7, "7"), ("-0.000000000000000001", "-0.000000000000000001")]
)
def test_decimal_value_from_string_or_number(sent, stored, rules):
    assert normalize_bytes(with_(decimal_value=sent), rules, arrival_ms=NOW_MS, ingested_ms=0).decimal_value == stored


def test_properties_become_canonical_json(rules):
    a = normalize_bytes(with_(properties={"b": 1, "a": [1, {"z": 2, "y": 1}]}), rules, arrival_ms=NOW_MS, ingested_ms=0)
    b = normalize_bytes(
        raw_event(
            '{"properties": {"a": [1, {"y": 1, "z": 2}], "b": 1}, "code": "api_calls", '
            '"external_customer_id": "cust_1", "transaction_id": "tx_1"}'
        ),
        rules,
        arrival_ms=NOW_MS,
        ingested_ms=0,
    )
    assert a.properties == b.properties == '{"a":[1,{"y":1,"z":2}],"b":1}'
    assert normalize_bytes(with_(), rules, arrival_ms=NOW_MS, ingested_ms=0).properties == "{}"


def test_normalised_line_is_one_json_object_with_a_newline(rules, valid_event):
    line = to_line(normalize_bytes(json.dumps(valid_event).encode(), rules, arrival_ms=NOW_MS, ingested_ms=NOW_MS))
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    row = json.loads(line)
    assert row["organization_id"] == "org_1"
    assert row["value"] == 3.5 and isinstance(row["timestamp"], int)
    assert "decimal_value" not in row  # null fields are left out; OpenX reads them as null


def test_organization_sent_equal_to_config_is_accepted(rules):
    event = normalize_bytes(with_(organization_id="org_1"), rules, arrival_ms=NOW_MS, ingested_ms=0)
    assert event.organization_id == "org_1"


# ----------------------------------------------------------------------------- fast path == slow path
# The strategies build VALID events, so every example reaches the comparison of normalised values;
# the rejections are the explicit BAD_INPUTS cases above, and one mutation each in the mixed test below.
# `hypothesis.event` labels show the shares (pytest --hypothesis-show-statistics).

NOW_S = NOW_MS // 1000
MIN_S = 946_684_800  # 2000-01-01T00:00:00Z
MAX_FUTURE_S = NOW_S + 300  # EventRules.future_skew_seconds

ids = st.text(min_size=1, max_size=256).filter(str.strip)
_ts_seconds = st.integers(MIN_S, MAX_FUTURE_S)
_iso_times = st.datetimes(
    min_value=datetime(2000, 1, 1, 0, 0, 1), max_value=datetime(2026, 9, 21, 12, 0, 0), timezones=st.just(UTC)
)
# (label, sent value, expected ms or None where the float rounding decides the last millisecond)
timestamps = st.one_of(
    _ts_seconds.map(lambda s: ("int", s, s * 1000)),
    _ts_seconds.map(lambda s: ("numeric string", str(s), s * 1000)),
    st.floats(MIN_S, MAX_FUTURE_S).map(lambda s: ("float", s, None)),
    _iso_times.map(lambda d: ("iso z", d.isoformat().replace("+00:00", "Z"), _utc_ms(d))),
    st.tuples(_iso_times, st.integers(-14, 14)).map(
        lambda dt: ("iso offset", dt[0].astimezone(timezone(timedelta(hours=dt[1]))).isoformat(), _utc_ms(dt[0]))
    ),
    st.just(("absent", ..., NOW_MS)),
)
prop_scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
)
prop_values = st.recursive(
    prop_scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=10,
)
decimals = st.integers(0, 18).flatmap(
    lambda places: st.decimals(
        min_value=Decimal("-99999999999999999999"), max_value=Decimal("99999999999999999999"), places=places
    )
)
valid_events = st.fixed_dictionaries(
    {"transaction_id": ids, "external_customer_id": ids, "code": ids, "timestamp": timestamps},
    optional={
        "properties": st.dictionaries(st.text(max_size=10), prop_values, max_size=5),
        "value": st.floats(allow_nan=False, allow_infinity=False) | st.integers(-(2**53), 2**53),
        "decimal_value": decimals.map(lambda d: format(d, "f")) | decimals.map(str) | st.integers(-(10**19), 10**19),
        "organization_id": st.just("org_1"),
    },
)


def _utc_ms(d: datetime) -> int:
    return int(d.timestamp()) * 1000 + d.microsecond // 1000


def _send(event: dict) -> tuple[bytes, str, int | None]:
    label, sent, expected_ms = event["timestamp"]
    body = {k: v for k, v in event.items() if k != "timestamp"}
    if sent is not ...:
        body["timestamp"] = sent
    return json.dumps(body).encode(), label, expected_ms


def outcome(fn):
    try:
        return ("ok", msgspec.structs.asdict(fn()))
    except EventError as exc:
        return ("error", exc.code)


def both_paths(data: bytes, rules: EventRules):
    fast = outcome(lambda: normalize_bytes(data, rules, arrival_ms=NOW_MS, ingested_ms=NOW_MS))
    slow = outcome(lambda: normalize(decode(data, 65536), rules, arrival_ms=NOW_MS, ingested_ms=NOW_MS))
    return fast, slow


@given(valid_events)
def test_valid_events_normalise_alike_on_both_paths(event):
    rules = EventRules(organization_id="org_1")
    data, label, expected_ms = _send(event)
    fast, slow = both_paths(data, rules)
    hypothesis.event(f"timestamp: {label}")
    hypothesis.event("nested properties" if "{" in json.dumps(event.get("properties", {}))[1:] else "flat properties")
    hypothesis.target(float(len(event)), label="optional fields present")
    assert fast[0] == "ok", fast  # valid input is accepted, never a rejection by accident
    assert fast == slow
    row = fast[1]
    for name in ("transaction_id", "external_customer_id", "code"):
        assert row[name] == event[name]
    assert row["organization_id"] == "org_1" and row["ingested_at"] == NOW_MS and row["arrived_at"] == NOW_MS
    if expected_ms is None:
        assert abs(row["timestamp"] - event["timestamp"][1] * 1000) <= 1
    else:
        assert row["timestamp"] == expected_ms
    assert json.loads(row["properties"]) == event.get("properties", {})
    if "value" in event:
        assert row["value"] == float(event["value"])
    if "decimal_value" in event:
        assert Decimal(row["decimal_value"]) == Decimal(str(event["decimal_value"]))


# One mutation of a valid event: each must be judged the same on both paths.
MUTATIONS = {
    "none": lambda e: e,
    "drop transaction_id": lambda e: {k: v for k, v in e.items() if k != "transaction_id"},
    "unknown field": lambda e: {**e, "timestmap": 1},
    "reserved field": lambda e: {**e, "ingested_at": NOW_MS},
    "empty code": lambda e: {**e, "code": " "},
    "id too long": lambda e: {**e, "external_customer_id": "x" * 257},
    "numeric id": lambda e: {**e, "transaction_id": 7},
    "ms timestamp": lambda e: {**e, "timestamp": NOW_MS},
    "naive iso": lambda e: {**e, "timestamp": "2026-01-01T00:00:00"},
    "string value": lambda e: {**e, "value": "1"},
    "huge value": lambda e: {**e, "value": 10**400},
    "bad decimal": lambda e: {**e, "decimal_value": "1e5x"},
    "other organization": lambda e: {**e, "organization_id": "org_2"},
    "list properties": lambda e: {**e, "properties": [1]},
}


@given(valid_events, st.just("none") | st.sampled_from(sorted(set(MUTATIONS) - {"none"})))  # about half accepted
def test_fast_and_slow_paths_agree(event, mutation):
    rules = EventRules(organization_id="org_1")
    data, _, _ = _send(event)
    data = json.dumps(MUTATIONS[mutation](json.loads(data))).encode()
    fast, slow = both_paths(data, rules)
    hypothesis.event("accepted" if fast[0] == "ok" else f"rejected: {fast[1]}")
    assert fast == slow
    assert (fast[0] == "ok") == (mutation == "none")


# ----------------------------------------------------------------------------- Python objects (Producer.put(dict))


@pytest.mark.parametrize(
    ("value", "code"),
    [
        (float("inf"), "bad_value"),
        (float("-inf"), "bad_value"),
        (float("nan"), "bad_value"),
        (10**400, "bad_value"),
        (Decimal("Infinity"), "bad_value"),
        (Decimal("NaN"), "bad_value"),
        (Decimal("1e400"), "bad_value"),
        (Decimal("-1e309"), "bad_value"),
    ],
)
def test_a_value_no_json_text_can_carry_is_refused_from_a_dict(value, code, rules):
    # JSON has no NaN/Infinity and msgspec refuses numbers beyond a double, but a caller's dict can hold them.
    with pytest.raises(EventError) as caught:
        normalize({**BASE, "value": value}, rules, arrival_ms=NOW_MS, ingested_ms=NOW_MS)
    assert caught.value.code == code


@pytest.mark.parametrize(("value", "stored"), [(Decimal("2.5"), 2.5), (Decimal("-0"), 0.0), (-0.0, 0.0), (7, 7.0)])
def test_a_dict_value_is_stored_as_one_float_spelling(value, stored, rules):
    event = normalize({**BASE, "value": value}, rules, arrival_ms=NOW_MS, ingested_ms=NOW_MS)
    assert event.value == stored and type(event.value) is float
    assert str(event.value) == str(stored)  # -0.0 becomes 0.0


@pytest.mark.parametrize("ts", [float("nan"), float("inf"), Decimal("NaN"), Decimal("-Infinity")])
def test_a_timestamp_no_json_text_can_carry_is_refused_from_a_dict(ts, rules):
    with pytest.raises(EventError) as caught:
        normalize({**BASE, "timestamp": ts}, rules, arrival_ms=NOW_MS, ingested_ms=NOW_MS)
    assert caught.value.code == "bad_timestamp" and "not finite" in caught.value.message


def test_a_dict_decimal_value_may_be_a_float_or_a_decimal(rules):
    def decimal_value(value):
        return normalize({**BASE, "decimal_value": value}, rules, arrival_ms=NOW_MS, ingested_ms=0).decimal_value

    assert decimal_value(1.25) == "1.25"
    assert decimal_value(0.1) == "0.1"  # the float's shortest repr, not its binary expansion
    assert decimal_value(Decimal("12.50")) == "12.50"
    for bad in (float("inf"), float("nan")):
        with pytest.raises(EventError, match="bad_decimal"):
            decimal_value(bad)


def test_an_unexpected_python_type_is_named_in_the_message(rules):
    with pytest.raises(EventError) as caught:
        normalize({**BASE, "value": b"12"}, rules, arrival_ms=NOW_MS, ingested_ms=0)
    assert caught.value.code == "wrong_type:value" and caught.value.message.endswith("got bytes")
