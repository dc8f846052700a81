"""``deaggregate_keys_and_data`` (the runner's hot path) and the parser's fast layout path read exactly what
``deaggregate`` reads, and fail on exactly the same corrupt aggregates."""

from __future__ import annotations

import hashlib
import random

import pytest

from bxb_stream.kpl import MAGIC, Aggregator, KplError, UserRecord, deaggregate, deaggregate_keys_and_data


def _sealed(body: bytes) -> bytes:
    return MAGIC + body + hashlib.md5(body).digest()


def _aggregates(records: list[UserRecord], max_size: int = 1_000_000) -> list[bytes]:
    agg = Aggregator(max_size)
    out = [bytes(a) for r in records if (a := agg.add(r)) is not None]
    last = agg.flush()
    return [*out, bytes(last)] if last is not None else out


def _both(blob: bytes, pk: str = "outer") -> list[tuple[str, bytes]]:
    keys, datas = deaggregate_keys_and_data(blob, pk)
    assert [(u.partition_key, u.data) for u in deaggregate(blob, pk)] == list(zip(keys, datas, strict=True))
    return list(zip(keys, datas, strict=True))


@pytest.mark.parametrize("size", [0, 1, 127, 128, 300, 16_383, 16_384, 70_000])  # 1-, 2- and 3-byte varints
def test_record_sizes_across_varint_widths(size: int) -> None:
    rng = random.Random(size)
    records = [UserRecord(f"k{i % 3}", None, rng.randbytes(size)) for i in range(4)]
    (blob,) = _aggregates(records)
    assert _both(blob) == [(r.partition_key, r.data) for r in records]


def test_many_keys_explicit_hash_keys_and_mixed_layouts() -> None:
    rng = random.Random(1)
    records = [
        UserRecord(f"key-{rng.randrange(300)}", str(rng.randrange(2**128)) if rng.random() < 0.3 else None, b"d" * i)
        for i in range(400)
    ]  # more than 128 distinct keys: pk indexes past one byte take the general reader
    for blob in _aggregates(records, 60_000):
        _both(blob)
    assert [u for b in _aggregates(records, 60_000) for u in deaggregate(b)] == records


def test_tags_take_the_general_reader() -> None:
    inner = b"\x08\x00\x1a\x02hi" + b"\x22\x05\x0a\x01t\x12\x00"
    body = b"\x0a\x01k" + b"\x1a" + bytes([len(inner)]) + inner + b"\x1a\x04\x08\x00\x1a\x00"
    assert _both(_sealed(body)) == [("k", b"hi"), ("k", b"")]


def test_not_aggregated_passes_through() -> None:
    assert deaggregate_keys_and_data(b'{"a":1}', "pk") == (["pk"], [b'{"a":1}'])
    assert deaggregate_keys_and_data(MAGIC + b"short", "pk") == (["pk"], [MAGIC + b"short"])


@pytest.mark.parametrize(
    "body",
    [
        b"\x0a\x05ab",  # key table entry claims 5 bytes, has 2
        b"\x0a\x01k" + b"\x1a\x04\x08\x03\x1a\x00",  # pk index 3 of 1
        b"\x0a\x01k" + b"\x1a\x06\x08\x00\x10\x02\x1a\x00",  # ehk index 2 of 0
        b"\x0a\x01k" + b"\x1a\x02\x08\x00",  # record without data
        b"\x0a\x01k" + b"\x1a\x05\x08\x00\x1a\x05a",  # data claims 5 bytes, has 1
        b"\x0a\x01k" + b"\x1a\x05\x08\x00\x1a\x81",  # data length varint cut short
        b"\x0a\x01k" + b"\x1a\x85",  # record length varint cut short at the end
        b"\x0a\x02\xff\xfe",  # key not UTF-8
        b"\x0f",  # wire type 7
    ],
)
def test_corrupt_aggregates_fail_the_same_way(body: bytes) -> None:
    with pytest.raises(KplError):
        deaggregate(_sealed(body))
    with pytest.raises(KplError):
        deaggregate_keys_and_data(_sealed(body))


def test_bad_digest_fails() -> None:
    (blob,) = _aggregates([UserRecord("k", None, b"x")])
    with pytest.raises(KplError, match="MD5"):
        deaggregate_keys_and_data(blob[:-1] + bytes([blob[-1] ^ 1]))
