"""events.table: the Arrow fast path accepts only what read_lines accepts, with the same values."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import hypothesis
import msgspec
import pyarrow as pa
import pytest
from hypothesis import given
from hypothesis import strategies as st

from bxb_runtime.events.errors import EventError
from bxb_runtime.events.lines import MAX_TIMESTAMP_MS, MIN_TIMESTAMP_MS, read_line, read_lines, to_line
from bxb_runtime.events.schema import arrow_schema
from bxb_runtime.events.validate import normalize
from bxb_stream.event_table import from_events, read_table

from .conftest import NOW_MS


@pytest.fixture
def good_lines(rules, valid_event) -> list[bytes]:
    lines = []
    for i in range(6):
        event = {**valid_event, "transaction_id": f"tx_{i}"}
        if i % 2:
            event["decimal_value"] = f"-{i}2345678901234567890.123456789012345678"[:40]
            event.pop("value")
        lines.append(to_line(normalize(event, rules, arrival_ms=NOW_MS, ingested_ms=NOW_MS)))
    return lines


def line(**fields: Any) -> bytes:
    base = {
        "transaction_id": "tx_x",
        "external_customer_id": "c",
        "code": "api_calls",
        "timestamp": NOW_MS,
        "properties": "{}",
        "organization_id": "org_1",
        "ingested_at": NOW_MS,
        "arrived_at": NOW_MS,
    }
    return json.dumps({**base, **fields}).encode() + b"\n"


def assert_same_as_read_lines(lines: list[bytes]) -> pa.Table | None:
    """The property: whenever read_table gives a table, read_lines agrees, value for value."""
    table = read_table(lines)
    if table is not None:
        events = read_lines(lines)
        assert events is not None, lines
        assert table.equals(from_events(events))
    return table


def test_sound_lines_give_the_read_lines_table(good_lines):
    table = assert_same_as_read_lines(good_lines)
    assert table is not None and table.num_rows == len(good_lines)
    assert table.schema.equals(arrow_schema())
    assert table.column("decimal_value").null_count == 3


BAD_LINES = {
    "missing field": b'{"transaction_id":"a","code":"c"}\n',
    "null required": line(code=None),
    "empty id": line(transaction_id=""),
    "id too long": line(transaction_id="x" * 257),
    "org too long": line(organization_id="o" * 129),
    "before 2000": line(timestamp=900_000_000_000),
    "float timestamp": line(timestamp=1.79e12),
    "string timestamp": line(timestamp=str(NOW_MS)),
    "NaN literal": line()[:-2] + b',"value":NaN}\n',
    "Infinity literal": line()[:-2] + b',"value":-Infinity}\n',
    "decimal too precise": line(decimal_value="1.1234567890123456789"),
    "decimal too big": line(decimal_value="123456789012345678901"),
    "decimal exponent": line(decimal_value="1e5"),
    "decimal newline": line(decimal_value="1.5\n"),
    "unknown field": line(extra=1),
    "duplicate key": line()[:-2] + b',"code":"other"}\n',
    "number for string": line(code=5),
    "object for string": line(properties={"a": 1}),
    "not an object": b"[1, 2]\n",
    "blank": b"\n",
    "empty": b"",
    "no newline": line()[:-1],
    "invalid utf-8": line(code="XX").replace(b"XX", b"\xe9"),
    "lone surrogate": line()[:-2] + b',"value":null,"decimal_value":"\\ud800"}\n',
}


@pytest.mark.parametrize("bad", BAD_LINES.values(), ids=BAD_LINES.keys())
def test_a_line_read_line_would_judge_sends_the_batch_to_it(good_lines, bad):
    assert read_table([*good_lines[:3], bad, *good_lines[3:]]) is None


def test_lengths_count_characters_not_bytes(good_lines):
    at_limit = line(transaction_id="\u00e9" * 256)  # 512 bytes, 256 characters: allowed
    table = assert_same_as_read_lines([*good_lines, at_limit])
    assert table is not None and table.column("transaction_id")[-1].as_py() == "\u00e9" * 256
    assert read_table([*good_lines, line(transaction_id="\u00e9" * 257)]) is None


def test_a_line_cannot_borrow_from_its_neighbour(good_lines):
    two_in_one = good_lines[0].rstrip(b"\n") + b" " + good_lines[1]
    assert read_table([two_in_one, b"   \n", *good_lines[2:]]) is None  # 2 rows + 0 rows
    head, tail = good_lines[0][:40], good_lines[0][40:]
    assert read_table([head, tail, *good_lines[1:]]) is None  # one object over two records
    # The same crafted split against the msgspec path: an object closed in the next record,
    # and a record holding two objects to keep the count.
    open_ended = good_lines[0].rstrip(b"\n")[:-1] + b"\n"  # its closing brace moved to the next record
    split = [open_ended, b'"value":1.5}\n', good_lines[1].rstrip(b"\n") + b"," + good_lines[2]]
    joined = msgspec.json.decode(b"[" + b",".join(split) + b"]")
    assert len(joined) == len(split)  # unframed, the lines would parse as three events
    assert read_lines(split) is None and read_table(split) is None
    assert read_table([good_lines[0] + good_lines[1], *good_lines[2:]]) is None  # two lines in one record
    assert read_table([good_lines[0] + b"  \n", *good_lines[1:]]) is not None  # trailing whitespace, as read_line
    assert_same_as_read_lines([good_lines[0] + b"  \n", *good_lines[1:]])


# Valid transformed lines: every example must come back as a table equal to read_lines' one.
_ids = st.text(min_size=1, max_size=256)
_stored_decimals = (
    st.integers(0, 18)
    .flatmap(
        lambda places: st.decimals(
            min_value=Decimal("-99999999999999999999"), max_value=Decimal("99999999999999999999"), places=places
        )
    )
    .map(lambda d: format(d, "f"))
)
valid_lines = st.builds(
    lambda fields: line(**fields),
    st.fixed_dictionaries(
        {
            "transaction_id": _ids,
            "external_customer_id": _ids,
            "code": _ids,
            "timestamp": st.integers(MIN_TIMESTAMP_MS, MAX_TIMESTAMP_MS),
            "organization_id": st.text(min_size=1, max_size=128),
        },
        optional={
            "value": st.floats(allow_nan=False, allow_infinity=False) | st.none(),
            "decimal_value": _stored_decimals | st.none(),
            "properties": st.dictionaries(st.text(max_size=5), st.integers(), max_size=3).map(json.dumps),
        },
    ),
)


@given(st.lists(valid_lines, min_size=1, max_size=6))
def test_valid_lines_give_the_read_lines_table(lines):
    table = assert_same_as_read_lines(lines)
    assert table is not None and table.num_rows == len(lines)  # the fast path takes every valid batch


# Keys and values around the schema's edges; the encoded lines meet read_lines' checks or miss them.
edge_values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**65), 2**65),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=3),
    st.sampled_from(["", " ", "x" * 257, "1.5", "-0.000000000000000001", "1e5", "\ud7ff", "\u0661\u0662", "1\n2"]),
    st.sampled_from([NOW_MS, MIN_TIMESTAMP_MS - 1, MIN_TIMESTAMP_MS, MAX_TIMESTAMP_MS, MAX_TIMESTAMP_MS + 1]),
)
edge_lines = st.builds(
    lambda changes: line(**changes),
    st.dictionaries(
        st.sampled_from(
            ["transaction_id", "code", "timestamp", "value", "decimal_value", "organization_id", "ingested_at", "x"]
        ),
        edge_values,
        max_size=3,
    ),
)


@given(st.lists(valid_lines, max_size=5), st.lists(edge_lines, min_size=1, max_size=2))
def test_read_table_never_accepts_more_than_read_lines(good, edges):
    lines = [*good, *edges]
    table = assert_same_as_read_lines(lines)
    accepted = read_lines(lines) is not None
    fast = "gives a table" if table is not None else "defers"
    hypothesis.event(f"read_lines {'accepts' if accepted else 'refuses'}, read_table {fast}")
    if not accepted:
        assert table is None


def test_reads_what_the_transform_wrote_with_msgspec(good_lines):
    # The transform's encoder (msgspec) and json.dumps lines read the same.
    decoded = [msgspec.json.decode(x) for x in good_lines]
    rewritten = [json.dumps(d).encode() + b"\n" for d in decoded]
    assert read_table(rewritten).equals(read_table(good_lines))


def test_no_lines_is_no_table(good_lines):
    assert read_table([]) is None
    assert read_lines([]) == []


def test_two_objects_in_one_framed_line_are_refused_by_both_paths(good_lines):
    two = good_lines[0].rstrip(b"\n") + b"," + good_lines[1]  # starts with {, ends with a newline
    assert read_lines([two, good_lines[2]]) is None  # three events for two lines: the count gives it away
    assert read_table([two, good_lines[2]]) is None


@pytest.mark.parametrize("text", ["\u0661\u0662", "1\n2", "1.5\n", "", "+1", "1." + "0" * 19, "1" * 21, 12, True])
def test_decimals_clickhouse_cannot_read_are_refused_by_every_path(good_lines, text):
    bad = line(decimal_value=text)
    with pytest.raises(EventError) as caught:
        read_line(bad)
    assert caught.value.code == "bad_decimal"
    assert read_lines([*good_lines, bad]) is None  # the ingest then judges each line alone
    assert read_table([*good_lines, bad]) is None


def test_decimals_at_the_limits_are_read_by_every_path(good_lines):
    edges = ["-" + "9" * 20 + "." + "9" * 18, "0", "-0.000000000000000001"]
    lines = [*good_lines, *(line(decimal_value=d) for d in edges)]
    events = read_lines(lines)
    assert events is not None and [e.decimal_value for e in events[-3:]] == edges
    assert [read_line(x).decimal_value for x in lines[-3:]] == edges
    assert assert_same_as_read_lines(lines) is not None
