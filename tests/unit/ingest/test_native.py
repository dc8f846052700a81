"""The Native block the ingest inserts, read back by an independent reader (testkit.native)."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st
from testkit.native import read_block

from bxb_runtime.events.lines import MAX_TIMESTAMP_MS, MIN_TIMESTAMP_MS
from bxb_runtime.events.schema import FIELDS, Kind
from bxb_runtime.ingest import native


@pytest.mark.parametrize(
    ("n", "encoded"),
    [(0, b"\x00"), (1, b"\x01"), (127, b"\x7f"), (128, b"\x80\x01"), (300, b"\xac\x02"), (16_384, b"\x80\x80\x01")],
)
def test_leb128(n, encoded):
    assert native.leb128(n) == encoded


def reference_strings(values: list[str]) -> bytes:
    return b"".join(native.leb128(len(v.encode())) + v.encode() for v in values)


TEXT = st.one_of(
    st.text(alphabet=st.characters(max_codepoint=127), max_size=300),  # ASCII, both prefix widths
    st.text(max_size=40),  # any code point: latin-1, astral, controls
    st.builds(lambda c, n: c * n, st.sampled_from(["a", "é"]), st.integers(16_380, 16_390)),  # the table's edge
)


@given(st.lists(TEXT, max_size=30))
def test_strings_are_length_prefixed_utf8(values):
    assert native.strings(values) == reference_strings(values)


@given(st.sampled_from(["org_1", "", "é", "x" * 200]), st.integers(1, 50))
def test_a_repeated_value_is_written_like_any_other(value, count):
    assert native.strings([value] * count) == reference_strings([value] * count)


def column(kind: Kind, nullable: bool) -> st.SearchStrategy:
    values = {
        Kind.STRING: st.text(max_size=20),
        Kind.JSON: st.text(max_size=200),
        Kind.TIMESTAMP_MS: st.integers(MIN_TIMESTAMP_MS, MAX_TIMESTAMP_MS),
        Kind.FLOAT: st.floats(allow_nan=False, allow_infinity=False),
        Kind.DECIMAL: st.from_regex(r"\A-?[0-9]{1,20}(\.[0-9]{1,18})?\Z"),
    }[kind]
    return st.one_of(values, st.none()) if nullable else values


@given(st.data(), st.integers(0, 12))
def test_a_block_reads_back_as_the_columns_it_was_given(data, rows):
    columns = {f.name: data.draw(st.lists(column(f.kind, f.nullable), min_size=rows, max_size=rows)) for f in FIELDS}
    block = read_block(native.block(columns))
    assert list(block) == [f.name for f in FIELDS]
    for f in FIELDS:
        kind, values = block[f.name]
        assert kind == native.native_type(f)
        assert values == columns[f.name]
        if f.kind is Kind.FLOAT:  # bit for bit, -0.0 included
            assert [math.copysign(1, v) for v in values if v is not None] == [
                math.copysign(1, v) for v in columns[f.name] if v is not None
            ]


def test_types_sent_match_the_table_but_for_the_decimal_text():
    sent = {f.name: native.native_type(f) for f in FIELDS}
    assert sent["timestamp"] == "DateTime64(3, 'UTC')" and sent["value"] == "Nullable(Float64)"
    assert sent["decimal_value"] == "Nullable(String)"  # converted on insert: native.SETTINGS
    assert native.SETTINGS == {"input_format_native_allow_types_conversion": 1}


def test_columns_of_different_lengths_are_refused():
    with pytest.raises(ValueError, match="different lengths"):
        native.block({"transaction_id": ["a", "b"], "code": ["x"]})


def test_numbers_are_little_endian_whatever_the_machine(monkeypatch):
    assert native.int64s([1]) == (1).to_bytes(8, "little")
    # On a big-endian machine array() holds big-endian values, and the writer swaps them.
    monkeypatch.setattr(native.sys, "byteorder", "big")
    assert native.int64s([1]) == (1).to_bytes(8, "big")
