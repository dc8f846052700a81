"""No single record can fail a batch: every input gets exactly one answer, a bad one a specific code.

Covers numbers in every numeric field (huge, tiny, exponents, NaN and Infinity spellings),
hooks that misbehave, odd encodings, deep and wide nesting, and a hypothesis fuzz over
arbitrary JSON in each field and arbitrary bytes. Also: the response is measured as the
Lambda runtime encodes it, and kept under the 6 MB limit with the longest organization ids.
"""

from __future__ import annotations

import base64
import json
from collections import Counter
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from bxb_runtime.config import EventRules
from bxb_runtime.events.schema import INPUT_FIELDS
from bxb_runtime.transform import Transformer
from bxb_runtime.transform.hooks import Hook
from bxb_runtime.transform.process import MAX_RESPONSE_BYTES
from bxb_stream.firehose.invocation import SourceRecord, check_response, firehose_event

NOW_MS = 1_790_000_000_000
GOOD = {"transaction_id": "tx", "external_customer_id": "c", "code": "api", "timestamp": NOW_MS // 1000 - 60}
RESULTS = {"Ok", "Dropped", "ProcessingFailed"}


def request(*datas: bytes, arrival_ms: int = NOW_MS) -> dict[str, Any]:
    return firehose_event([SourceRecord(d, arrival_ms, sequence_number=str(i)) for i, d in enumerate(datas)])


def answers(transformer: Transformer, req: dict[str, Any]) -> tuple[list[dict[str, Any]], Any]:
    """Process, and check the contract whatever happened: every recordId once, in order, a valid result."""
    response, stats = transformer.process(req)
    out = response["records"]
    assert [a["recordId"] for a in out] == [r["recordId"] for r in req["records"]]
    assert all(a["result"] in RESULTS for a in out)
    assert stats.balanced and sum(stats.results.values()) == len(out)
    assert stats.response_bytes == len(json.dumps(response).encode())  # measured, not estimated
    assert all(v.error is None or v.result == "ProcessingFailed" for v in check_response(req, response))
    return out, stats


def codes(stats: Any) -> list[str]:
    return [r.code for r in stats.rejections]


@pytest.fixture
def transformer() -> Transformer:
    return Transformer(EventRules(organization_id="org_1"), clock=lambda: NOW_MS / 1000)


# ------------------------------------------------------------------ numbers


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        (b'"timestamp": 1.8e305', "timestamp_in_future"),
        (b'"timestamp": -1.8e305', "timestamp_before_2000"),
        (b'"timestamp": 1e-320', "timestamp_before_2000"),
        (b'"timestamp": ' + b"9" * 400, "timestamp_in_future"),
        (b'"timestamp": ' + b"9" * 5000, "number_out_of_range"),  # beyond Python's integer text limit
        (b'"timestamp": "' + b"9" * 5000 + b'"', "timestamp_in_future"),
        (b'"timestamp": 1e999', "number_out_of_range"),
        (b'"timestamp": NaN', "not_json"),
        (b'"timestamp": Infinity', "not_json"),
        (b'"timestamp": "NaN"', "bad_timestamp"),
        (b'"timestamp": "-Infinity"', "bad_timestamp"),
        (b'"timestamp": "1e10"', "bad_timestamp"),
        (b'"decimal_value": "1E+999999999"', "decimal_out_of_range"),
        (b'"decimal_value": "-1E+999999999"', "decimal_out_of_range"),
        (b'"decimal_value": "1E-999999999"', "decimal_too_precise"),
        (b'"decimal_value": "sNaN"', "bad_decimal"),
        (b'"decimal_value": "Infinity"', "bad_decimal"),
        (b'"decimal_value": 1e308', "decimal_out_of_range"),
        (b'"decimal_value": ' + b"1" * 400, "decimal_out_of_range"),
        (b'"value": ' + b"1" * 400, "bad_value"),
        (b'"value": 1e400', "number_out_of_range"),
        (b'"value": "1.5"', "wrong_type:value"),
        (b'"value": true', "wrong_type:value"),
    ],
)
def test_a_number_out_of_any_range_fails_only_its_record(transformer, raw, code):
    body = json.dumps(GOOD)[:-1].encode() + b", " + raw + b"}"
    if b'"timestamp"' in raw:
        body = json.dumps({k: v for k, v in GOOD.items() if k != "timestamp"})[:-1].encode() + b", " + raw + b"}"
    out, stats = answers(
        transformer, request(json.dumps(GOOD).encode(), body, json.dumps({**GOOD, "transaction_id": "z"}).encode())
    )
    assert [a["result"] for a in out] == ["Ok", "ProcessingFailed", "Ok"]
    assert codes(stats) == [code]


def test_negative_zero_is_stored_as_zero(transformer):
    """One spelling per value: ClickHouse compares payloads by their bytes."""
    out, _ = answers(transformer, request(json.dumps({**GOOD, "value": -0.0}).encode()))
    assert json.loads(base64.b64decode(out[0]["data"]))["value"] == 0.0
    assert str(json.loads(base64.b64decode(out[0]["data"]))["value"]) == "0.0"


# ------------------------------------------------------------------ encodings and shapes


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (b"\xff\xfe{}", "not_utf8"),
        (b'{"transaction_id": "\xed\xa0\x80"}', "not_utf8"),  # a lone surrogate, UTF-8 encoded
        (json.dumps({**GOOD, "code": "\ud800"}).encode(), "not_json"),  # a lone surrogate, \u-escaped
        (json.dumps({**GOOD, "external_customer_id": "a\x00b"}).encode(), "ok"),  # a NUL is just a character
        (b"[" * 100_000, "too_large"),
        (b"[" * 5_000 + b"]" * 5_000, "too_deep"),
        (b"[[]]", "not_object"),
        (json.dumps({**GOOD, "properties": {"a": [[[[[[[[[[1]]]]]]]]]]}}).encode(), "properties_too_deep"),
        (json.dumps({**GOOD, "properties": {str(i): i for i in range(3000)}}).encode(), "properties_too_large"),
        (b"", "not_json"),
        (b"\xf3\x89\x9a\xc2" + b"x" * 20, "kpl_aggregate_not_expected"),
    ],
)
def test_odd_encodings_and_shapes_fail_only_their_record(transformer, data, code):
    out, stats = answers(transformer, request(data, json.dumps(GOOD).encode()))
    assert out[1]["result"] == "Ok"
    if code == "ok":
        assert out[0]["result"] == "Ok"
    else:
        assert out[0]["result"] == "ProcessingFailed" and codes(stats) == [code]


def test_data_that_is_not_base64_or_not_a_string_fails_only_its_record(transformer):
    req = request(json.dumps(GOOD).encode(), json.dumps(GOOD).encode(), json.dumps(GOOD).encode())
    req["records"][0]["data"] = "@@@"
    req["records"][1]["data"] = None
    req["records"][2]["approximateArrivalTimestamp"] = "yesterday"  # not from Firehose, but never fatal
    out, stats = answers(transformer, req)
    assert [a["result"] for a in out] == ["ProcessingFailed"] * 3
    assert codes(stats)[:2] == ["not_base64", "not_base64"] and codes(stats)[2] == "internal_error"


# ------------------------------------------------------------------ hooks


def _hooked(*functions: Any) -> Transformer:
    hooks = [Hook(name=f.__name__, function=f) for f in functions]
    return Transformer(EventRules(organization_id="org_1"), hooks, clock=lambda: NOW_MS / 1000)


def unencodable(event: dict) -> dict:
    event["properties"]["when"] = object()  # nothing JSON can carry
    return event


def explodes(event: dict) -> dict:
    raise MemoryError("the hook ran out of memory")


def not_a_dict(event: dict) -> Any:
    return ["not", "an", "event"]


def huge_timestamp(event: dict) -> dict:
    event["timestamp"] = 10**5000
    return event


def moves_arrival(event: dict) -> dict:
    event["arrived_at"] -= 1  # the pipeline's own field
    return event


def nan_value(event: dict) -> dict:
    event["value"] = float("nan")
    return event


def int_value(event: dict) -> dict:
    event["value"] = 5  # an integer is a fine number
    return event


@pytest.mark.parametrize(
    ("hook", "code"),
    [
        (unencodable, "hook_failed:wrong_type:properties"),
        (explodes, "hook_failed:explodes"),
        (not_a_dict, "hook_failed:not_object"),
        (huge_timestamp, "hook_failed:timestamp_in_future"),
        (moves_arrival, "hook_failed:reserved_field:arrived_at"),
        (nan_value, "hook_failed:bad_value"),
        (int_value, None),
    ],
)
def test_a_misbehaving_hook_fails_only_its_record(hook, code):
    out, stats = answers(_hooked(hook), request(json.dumps(GOOD).encode(), b"not json"))
    assert out[1]["result"] == "ProcessingFailed"
    if code is None:
        assert out[0]["result"] == "Ok" and json.loads(base64.b64decode(out[0]["data"]))["value"] == 5.0
    else:
        assert out[0]["result"] == "ProcessingFailed" and codes(stats) == [code, "not_json"]


# ------------------------------------------------------------------ the 6 MB response, measured


def test_longest_organization_ids_and_a_3_mib_buffer_stay_under_the_response_limit():
    """128-character organization ids in multi-tenant mode: each output line and its partition
    keys carry them, so the response outgrows the request. Measured, it never passes the limit."""
    rules = EventRules(organization_id="", multi_tenant=True)
    transformer = Transformer(rules, clock=lambda: NOW_MS / 1000)
    org = "o" * 128
    one = json.dumps({**GOOD, "organization_id": org, "transaction_id": "t" * 40, "properties": {"k": "v" * 60}})
    count = 3 * 1024 * 1024 // len(one)  # a full 3 MiB processor buffer
    datas = [one.replace('"t' + "t" * 39, f'"{i:040d}').encode() for i in range(count)]
    req = request(*datas)
    for i, record in enumerate(req["records"]):  # partition keys per hour: many distinct metadata blocks
        record["approximateArrivalTimestamp"] = NOW_MS + i
    out, stats = answers(transformer, req)
    assert stats.response_bytes <= MAX_RESPONSE_BYTES
    assert stats.results["Ok"] + stats.reasons["response_too_large"] == count
    failed = [a for a in out if a["result"] == "ProcessingFailed"]
    assert all(a["data"] == req["records"][int(a["recordId"][-8:])]["data"] for a in failed)  # nothing lost


def test_a_response_just_over_the_limit_fails_the_fewest_records():
    transformer = Transformer(EventRules(organization_id="org_1"), clock=lambda: NOW_MS / 1000)
    req = request(*(json.dumps({**GOOD, "transaction_id": f"t{i}"}).encode() for i in range(50)))
    full = transformer.process(req)[1].response_bytes
    tight = Transformer(EventRules(organization_id="org_1"), clock=lambda: NOW_MS / 1000, max_response_bytes=full - 1)
    out, stats = answers(tight, req)
    assert stats.reasons["response_too_large"] == 1 and stats.response_bytes <= full - 1
    assert out[-1]["result"] == "ProcessingFailed" and out[-2]["result"] == "Ok"


# ------------------------------------------------------------------ fuzz

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
FIELD_VALUES = st.fixed_dictionaries(
    {},
    optional={name: JSON | st.text() | st.integers(min_value=-(10**30), max_value=10**30) for name in INPUT_FIELDS},
)
# Example counts come from the hypothesis profile (tests/conftest.py).
PROFILE = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PROFILE
@given(st.lists(FIELD_VALUES, min_size=1, max_size=8))
def test_fuzz_arbitrary_json_in_each_field(events):
    transformer = Transformer(EventRules(organization_id="org_1"), clock=lambda: NOW_MS / 1000)
    req = request(*(json.dumps({**GOOD, **e}).encode() for e in events))
    _, stats = answers(transformer, req)
    event("all ok" if stats.results["ProcessingFailed"] == 0 else "some rejected")
    assert "internal_error" not in stats.reasons, stats.rejections  # every rejection is a specific code


@PROFILE
@given(st.lists(st.binary(max_size=300), min_size=1, max_size=8))
def test_fuzz_arbitrary_bytes(datas):
    transformer = Transformer(EventRules(organization_id="org_1"), clock=lambda: NOW_MS / 1000)
    out, stats = answers(transformer, request(*datas, json.dumps(GOOD).encode()))
    assert out[-1]["result"] in ("Ok", "Dropped")  # the good record always goes through
    assert "internal_error" not in stats.reasons, stats.rejections
    assert Counter(a["result"] for a in out) == Counter({k: v for k, v in stats.results.items() if v})


@PROFILE
@given(st.lists(st.one_of(st.text(max_size=12), st.sampled_from(['a"b', "a\\b", "é", "\x01", "\u2028"])), min_size=1))
def test_fuzz_record_ids_the_response_size_is_still_exact(record_ids):
    """Firehose's record ids never need escaping, and the response's size is counted from their
    lengths; any other id (quotes, backslashes, non-ASCII, controls) is measured the slow way."""
    transformer = Transformer(EventRules(organization_id="org_1"), clock=lambda: NOW_MS / 1000)
    req = request(*(json.dumps({**GOOD, "transaction_id": f"t{i}"}).encode() for i in range(len(record_ids))))
    for record, record_id in zip(req["records"], record_ids, strict=True):
        record["recordId"] = record_id
    answers(transformer, req)  # checks response_bytes against json.dumps


def test_a_record_id_that_is_not_a_string_is_measured_too(transformer):
    req = request(json.dumps(GOOD).encode(), b"not json")
    req["records"][0]["recordId"] = 7
    out, _ = answers(transformer, req)
    assert [a["result"] for a in out] == ["Ok", "ProcessingFailed"]
