"""Validation at the edge: bad events are refused at once and never cost a PutRecords call."""

from __future__ import annotations

import json
import time
from decimal import Decimal
from typing import Any

import pytest

from bxb_runtime.config import EventRules
from bxb_runtime.events.validate import EventError
from bxb_stream.producer import PartitioningPolicy, Producer, ProducerClosedError
from bxb_stream.producer.synthetic import Expect, generate

GOOD = {"transaction_id": "t1", "external_customer_id": "c1", "code": "api_calls"}


def _producer(client: Any, stream: str = "s", **kw: Any) -> Producer:
    return Producer(stream, client=client, linger_ms=None, **kw)


@pytest.fixture
def moto_stream(kinesis: Any, make_stream: Any, read: Any) -> Any:
    """A one-shard stream on the session's moto server (one shard: records read back in put order)."""

    class Stream:
        name = make_stream(shards=1)
        client = kinesis

        def records(self) -> list[dict[str, Any]]:
            return read(kinesis, self.name)

    return Stream()


@pytest.mark.parametrize(
    ("event", "code"),
    [
        ({"external_customer_id": "c", "transaction_id": "t"}, "missing_field:code"),
        (GOOD | {"timestmap": 1_700_000_000}, "unknown_field:timestmap"),
        (GOOD | {"timestamp": "yesterday"}, "bad_timestamp"),
        (GOOD | {"external_customer_id": 42}, "wrong_type:external_customer_id"),
        (GOOD | {"ingested_at": 1}, "reserved_field:ingested_at"),
        (GOOD | {"organization_id": "someone-else"}, "organization_mismatch"),
        (b'{"transaction_id": "t1", "external_', "not_json"),
        ("[1, 2]", "not_object"),
        (GOOD | {"properties": {"p": "v" * 70_000}}, "properties_too_large"),
        (GOOD | {"value": object()}, "wrong_type:value"),
    ],
)
def test_bad_event_raises_its_specific_error_and_sends_nothing(moto_stream: Any, event: Any, code: str) -> None:
    producer = _producer(moto_stream.client, moto_stream.name)
    with pytest.raises(EventError) as info:
        producer.put(event)
    assert info.value.code == code
    assert producer.flush() == []
    assert moto_stream.records() == []
    assert producer.stats.rejected == 1 and producer.stats.events == 0 and producer.stats.delivered == 0


def test_every_synthetic_invalid_kind_is_rejected_with_its_expected_code(moto_stream: Any) -> None:
    producer = _producer(moto_stream.client, moto_stream.name)
    now = time.time_ns() // 1_000_000
    kinds = set()
    for event, expect in generate(600, seed=11, invalid_share=1.0, now_ms=now):
        with pytest.raises(EventError) as info:
            producer.put(event)
        assert info.value.code == expect.error_code
        kinds.add(expect.error_code)
    assert len(kinds) == 10
    assert producer.flush() == []
    assert moto_stream.records() == []


def test_put_many_returns_rejections_and_sends_the_rest(moto_stream: Any) -> None:
    seen: list[tuple[Any, str]] = []
    producer = _producer(moto_stream.client, moto_stream.name, on_invalid=lambda ev, err: seen.append((ev, err.code)))
    bad = GOOD | {"timestmap": 1}
    rejections = producer.put_many([GOOD, bad, GOOD | {"transaction_id": "t2"}])
    assert [(r.index, r.event, r.error.code) for r in rejections] == [(1, bad, "unknown_field:timestmap")]
    assert seen == [(bad, "unknown_field:timestmap")]
    assert producer.put(bad) is False  # with on_invalid, put reports instead of raising
    assert producer.flush() == []
    assert [json.loads(r["data"])["transaction_id"] for r in moto_stream.records()] == ["t1", "t2"]


def test_original_json_is_sent_not_the_normalised_form(moto_stream: Any) -> None:
    producer = _producer(moto_stream.client, moto_stream.name, clock_ms=lambda: 1_777_777_777_001)
    event = GOOD | {"timestamp": "2024-05-01T10:00:00+02:00", "decimal_value": Decimal("1.50"), "value": 3}
    producer.put(event)
    producer.put(b' {"transaction_id":"t9","external_customer_id":"c9","code":"x"} ')
    assert producer.flush() == []
    stored = moto_stream.records()
    assert stored[0]["data"] == (
        b'{"transaction_id":"t1","external_customer_id":"c1","code":"api_calls",'
        b'"timestamp":"2024-05-01T10:00:00+02:00","decimal_value":1.50,"value":3}'
    )
    assert stored[0]["pk"] == "c1"
    # Only the put-time stamp is added (the event had no timestamp); every other byte is as given.
    assert stored[1]["data"] == (
        b' {"timestamp":"2026-05-03T03:09:37.001Z","transaction_id":"t9","external_customer_id":"c9","code":"x"} '
    )


def test_validate_false_sends_invalid_events_keyed_by_content(moto_stream: Any) -> None:
    producer = _producer(moto_stream.client, moto_stream.name, validate=False)
    assert producer.put_many([{"code": "x"}, b"not json at all", GOOD]) == []  # nothing refused
    assert producer.flush() == []
    stored = moto_stream.records()
    assert [r["data"] for r in stored][1] == b"not json at all"
    keys = [r["pk"] for r in stored]
    assert len(keys) == 3 and keys[2] == "c1" and len(keys[0]) == len(keys[1]) == 32
    assert keys[0] != keys[1]  # keyed by content: different events, different keys


def test_rules_apply_at_the_edge(moto_stream: Any) -> None:
    producer = _producer(moto_stream.client, moto_stream.name, rules=EventRules(organization_id="acme"))
    assert producer.put(GOOD | {"organization_id": "acme"}) is True
    with pytest.raises(EventError, match="organization_mismatch"):
        producer.put(GOOD | {"organization_id": "other"})
    assert producer.flush() == []
    assert [json.loads(r["data"])["organization_id"] for r in moto_stream.records()] == ["acme"]


def test_partition_key_options(stub: Any) -> None:
    # The stub, not moto: it keeps the ExplicitHashKey each entry was sent with, which GetRecords never returns.
    client = stub()
    by_field = _producer(client, partitioning=PartitioningPolicy(partition_key="transaction_id"))
    by_field.put(GOOD)
    by_field.flush()
    by_fn = _producer(client, partitioning=PartitioningPolicy(lambda e: f"{e['code']}:{e['external_customer_id']}"))
    by_fn.put(GOOD)
    by_fn.flush()
    fixed = _producer(client, partitioning=PartitioningPolicy(explicit_hash_key=2**127))
    fixed.put(GOOD)
    fixed.flush()
    by_ehk_fn = _producer(client, partitioning=PartitioningPolicy(explicit_hash_key=lambda e: 7))
    by_ehk_fn.put(GOOD)
    by_ehk_fn.flush()
    assert [(r["PartitionKey"], r.get("ExplicitHashKey")) for r in client.stored] == [
        ("t1", None),
        ("api_calls:c1", None),
        ("c1", str(2**127)),
        ("c1", "7"),
    ]
    bad_key = _producer(client, partitioning=PartitioningPolicy(partition_key=lambda e: ""))
    with pytest.raises(EventError, match="bad_partition_key"):
        bad_key.put(GOOD)
    with pytest.raises(ValueError):
        PartitioningPolicy(explicit_hash_key=2**128)


def test_closed_producer_refuses_puts(moto_stream: Any) -> None:
    producer = _producer(moto_stream.client, moto_stream.name)
    producer.close()
    with pytest.raises(ProducerClosedError):
        producer.put(GOOD)
    assert producer.close() == []


def test_synthetic_generator_is_seeded_skewed_and_tagged() -> None:
    now = 1_750_000_000_000
    shares = {"duplicate_share": 0.05, "invalid_share": 0.05, "late_share": 0.05, "conflict_share": 0.05}
    first = list(generate(3000, seed=5, now_ms=now, **shares))
    assert first == list(generate(3000, seed=5, now_ms=now, **shares))
    assert first != list(generate(3000, seed=6, now_ms=now, **shares))
    kinds = [e.kind for _, e in first]
    for kind in Expect:
        assert 0.02 < kinds.count(kind) / len(kinds) < (0.9 if kind is Expect.STORED else 0.09)
    valid = [e for _, e in first if e.kind is Expect.STORED]
    counts: dict[str, int] = {}
    for e in valid:
        counts[e.external_customer_id] = counts.get(e.external_customer_id, 0) + 1
    top = sorted(counts.values(), reverse=True)
    assert top[0] > 10 * len(valid) / 1000  # Zipf: the busiest customer far above a uniform share
    assert len({e.code for e in valid}) == 5
    originals = {e.transaction_id for e in valid} | {e.transaction_id for _, e in first if e.kind is Expect.LATE}
    assert all(e.transaction_id in originals for _, e in first if e.kind is Expect.DUPLICATE)
    late = [e for _, e in first if e.kind is Expect.LATE]
    assert all(e.timestamp_ms < now - 35 * 86_400_000 for e in late)  # past the default grace
    conflicts = [(event, e) for event, e in first if e.kind is Expect.CONFLICT]
    assert all(e.transaction_id in {v.transaction_id for v in valid} for _, e in conflicts)
    # Each conflicting copy is a new variant: no two of one transaction carry the same value.
    variants = [(event["transaction_id"], event["value"]) for event, _ in conflicts]
    assert len(variants) == len(set(variants))
    with pytest.raises(ValueError):
        list(generate(1, invalid_share=0.6, late_share=0.6))
