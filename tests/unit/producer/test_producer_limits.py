"""Batching at the exact PutRecords limits (500 records, record bytes, request bytes)."""

from __future__ import annotations

from typing import Any

import pytest

from bxb_runtime.events.validate import EventError
from bxb_stream import kpl
from bxb_stream.producer import CURRENT, AggregationPolicy, Limits, PartitioningPolicy, Producer
from bxb_stream.producer import limits as L

MiB = 1024 * 1024


def test_limits_are_the_current_api_reference() -> None:
    assert (500, 10 * MiB, 10 * MiB) == (L.MAX_RECORDS_PER_REQUEST, L.MAX_REQUEST_BYTES, L.MAX_RECORD_BYTES_CEILING)
    assert Limits(500, 10 * MiB, 1 * MiB) == CURRENT  # 1 MiB: a stream's default MaxRecordSize
    with pytest.raises(ValueError):
        Limits(max_records_per_request=501)
    with pytest.raises(ValueError):
        Limits(max_record_bytes=10 * MiB + 1)


def _raw(pk: str, size: int) -> bytes:
    """Data such that partition key + data is exactly ``size`` bytes (validation off: sizes are ours)."""
    return b"x" * (size - len(pk.encode()))


def _producer(client: Any, **kw: Any) -> Producer:
    fixed_key = PartitioningPolicy(partition_key=lambda _: "k")
    return Producer("s", client=client, linger_ms=None, validate=False, partitioning=fixed_key, **kw)


@pytest.mark.parametrize(("n", "calls"), [(500, [500]), (501, [500, 1]), (1000, [500, 500])])
def test_record_count_edge(stub: Any, n: int, calls: list[int]) -> None:
    client = stub()
    producer = _producer(client)
    for i in range(n):
        producer.put(b"%d" % i)
    assert producer.flush() == []
    assert [len(c) for c in client.calls] == calls
    assert [r["Data"] for r in client.stored] == [b"%d" % i for i in range(n)]


def test_a_full_batch_goes_out_before_flush(stub: Any) -> None:
    client = stub()
    producer = _producer(client)
    for i in range(500):
        producer.put(b"%d" % i)
    assert [len(c) for c in client.calls] == [500]


def test_record_size_edge_counts_the_partition_key(stub: Any) -> None:
    client = stub()
    producer = _producer(client)
    assert producer.put(_raw("k", 1 * MiB))  # exactly the limit
    with pytest.raises(EventError) as info:
        producer.put(_raw("k", 1 * MiB + 1))
    assert info.value.code == "record_too_large"
    producer.flush()
    assert [len(r["Data"]) + len(r["PartitionKey"]) for c in client.calls for r in c] == [1 * MiB]
    assert producer.stats.rejected == 1


def test_raised_stream_record_limit(stub: Any) -> None:
    client = stub()
    producer = _producer(client, limits=Limits(max_record_bytes=10 * MiB))
    producer.put(_raw("k", 10 * MiB))
    with pytest.raises(EventError):
        producer.put(_raw("k", 10 * MiB + 1))
    producer.flush()
    assert [len(c) for c in client.calls] == [1]


def test_request_size_edge(stub: Any) -> None:
    # Ten 1 MiB records fill a 10 MiB request exactly; one more byte starts a second request.
    client = stub()
    producer = _producer(client)
    for _ in range(10):
        producer.put(_raw("k", 1 * MiB))
    assert [len(c) for c in client.calls] == [10]  # sent as soon as it was exactly full
    producer.put(_raw("k", 2))
    producer.flush()
    assert [len(c) for c in client.calls] == [10, 1]

    client = stub()
    producer = _producer(client)
    for _ in range(9):
        producer.put(_raw("k", 1 * MiB))
    producer.put(_raw("k", 1 * MiB - 1))
    producer.put(_raw("k", 2))  # 10 MiB + 1: does not fit
    producer.flush()
    sizes = [sum(len(r["Data"]) + len(r["PartitionKey"]) for r in c) for c in client.calls]
    assert sizes == [10 * MiB - 1, 2]


def test_aggregates_respect_record_and_request_limits(stub: Any) -> None:
    client = stub()
    max_agg = 300_000
    producer = Producer("s", client=client, linger_ms=None, aggregate=AggregationPolicy(max_agg, by_shard=False))
    event = {"transaction_id": "t", "external_customer_id": "c" * 200, "code": "x", "properties": {"p": "v" * 600}}
    for i in range(40_000):
        event["transaction_id"] = f"t{i}"
        producer.put(event)
    assert producer.flush() == []
    for call in client.calls:
        assert len(call) <= 500
        assert sum(len(r["Data"]) + len(r["PartitionKey"].encode()) for r in call) <= 10 * MiB
        assert all(len(r["Data"]) + len(r["PartitionKey"].encode()) <= max_agg for r in call)
    assert len(client.calls) >= 3  # the request byte limit, not the record count, split these
    assert sum(len(kpl.deaggregate(r["Data"])) for r in client.stored) == 40_000


def test_event_too_big_to_aggregate_goes_alone(stub: Any) -> None:
    client = stub()
    producer = Producer("s", client=client, linger_ms=None, aggregate=AggregationPolicy(1000, by_shard=False))
    small = {"transaction_id": "a", "external_customer_id": "c", "code": "x"}
    big = {"transaction_id": "b", "external_customer_id": "c", "code": "x", "properties": {"p": "v" * 2000}}
    producer.put_many([small, big, small | {"transaction_id": "c"}])
    assert producer.flush() == []
    kinds = [kpl.is_aggregated(r["Data"]) for r in client.stored]
    assert kinds == [False, True]  # big goes alone (and first: the aggregate is emitted at flush)
    assert producer.stats.delivered == 3


def test_aggregate_max_bytes_must_fit_the_record_limit(stub: Any) -> None:
    with pytest.raises(ValueError):
        Producer("s", client=stub(), aggregate=AggregationPolicy(max_bytes=1 * MiB + 1), linger_ms=None)
    Producer("s", client=stub(), aggregate=AggregationPolicy(max_bytes=1 * MiB), linger_ms=None).close()
