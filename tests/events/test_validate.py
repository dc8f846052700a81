"""The validator: every kind of bad input gets its own code; good input is normalised exactly."""

from __future__ import annotations

import json
from decimal import Decimal

import msgspec
import pytest
from hypothesis import given, settings
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
    assert fast.value.message  # a human sentence, not just the code
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
    assert normalize_bytes(with_(timestamp=NOW_MS / 1000 + 1800), loose, arrival_ms=NOW_MS, ingested_ms=0).timestamp


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
    assert normalize_bytes(with_(organization_id="org_1"), rules, arrival_ms=NOW_MS, ingested_ms=0).organization_id


# ----------------------------------------------------------------------------- fast path == slow path

json_scalars = (
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=False) | st.text(max_size=5)
)
field_values = st.one_of(
    json_scalars,
    st.text(min_size=0, max_size=300),
    st.dictionaries(st.text(max_size=4), json_scalars, max_size=4),
    st.lists(json_scalars, max_size=3),
    st.sampled_from(["2026-09-21T13:00:00Z", "1789990000", "1789990000.5", " 12.5 ", "1e3", "NaN", "-0"]),
)
field_names = st.sampled_from(
    [
        "transaction_id",
        "external_customer_id",
        "code",
        "timestamp",
        "properties",
        "value",
        "decimal_value",
        "organization_id",
        "timestmap",
        "ingested_at",
    ]
)
events = st.dictionaries(field_names, field_values, max_size=10).map(lambda extra: {**BASE, **extra})


def outcome(fn):
    try:
        return ("ok", msgspec.structs.asdict(fn()))
    except EventError as exc:
        return ("error", exc.code)


@settings(max_examples=400, deadline=None)
@given(events)
def test_fast_and_slow_paths_agree(event):
    rules = EventRules(organization_id="org_1")
    data = json.dumps(event).encode()
    fast = outcome(lambda: normalize_bytes(data, rules, arrival_ms=NOW_MS, ingested_ms=NOW_MS))
    slow = outcome(lambda: normalize(decode(data, 65536), rules, arrival_ms=NOW_MS, ingested_ms=NOW_MS))
    assert fast == slow
