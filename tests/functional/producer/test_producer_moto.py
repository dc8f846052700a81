"""Producer against a moto Kinesis server on 127.0.0.1: written, read back, counted."""

from __future__ import annotations

import json
import threading
import time
from collections import defaultdict
from typing import Any

import pytest

from bxb_stream import kpl
from bxb_stream.producer import LEGACY, Producer
from bxb_stream.producer.synthetic import generate


def _events(n: int, seed: int = 1) -> list[dict[str, Any]]:
    return [e for e, _ in generate(n, seed=seed, customers=50)]


def _user_records(rows: list[dict[str, Any]]) -> list[tuple[str, str, bytes]]:
    return [(r["shard"], u.partition_key, u.data) for r in rows for u in kpl.deaggregate(r["data"], r["pk"])]


@pytest.mark.parametrize("aggregate", [False, True])
def test_happy_path_every_event_once_with_its_customer_key(
    aggregate: bool, kinesis: Any, make_stream: Any, read: Any
) -> None:
    stream = make_stream(shards=3)
    events = _events(1500)
    with Producer(stream, client=kinesis, aggregate=aggregate, linger_ms=None, limits=LEGACY) as producer:
        assert producer.put_many(events) == []
    stats = producer.stats
    rows = read(kinesis, stream)
    users = _user_records(rows)
    assert sorted(json.loads(d)["transaction_id"] for _, _, d in users) == sorted(e["transaction_id"] for e in events)
    # The original JSON is sent, compact, keyed by external_customer_id.
    by_tid = {e["transaction_id"]: e for e in events}
    for _, pk, data in users:
        sent = json.loads(data)
        assert sent == by_tid[sent["transaction_id"]] and pk == sent["external_customer_id"]
        assert b", " not in data and b": " not in data
    assert (stats.events, stats.delivered, stats.failures, stats.rejected) == (1500, 1500, 0, 0)
    assert stats.records == len(rows)
    assert stats.bytes == sum(len(r["data"]) + len(r["pk"].encode()) for r in rows)
    if aggregate:
        assert all(kpl.is_aggregated(r["data"]) for r in rows) and len(rows) < 1500 / 50
    else:
        assert len(rows) == 1500


def test_aggregation_keeps_each_customer_on_one_shard_in_order(kinesis: Any, make_stream: Any, read: Any) -> None:
    stream = make_stream(shards=4)
    events = _events(2000, seed=2)
    with Producer(stream, client=kinesis, aggregate=True, linger_ms=None, limits=LEGACY) as producer:
        producer.put_many(events)
    shards_of: dict[str, set[str]] = defaultdict(set)
    order: dict[str, list[str]] = defaultdict(list)
    for shard, pk, data in _user_records(read(kinesis, stream)):
        shards_of[pk].add(shard)
        order[pk].append(json.loads(data)["transaction_id"])
    assert len({s for v in shards_of.values() for s in v}) > 1  # really spread over shards
    assert all(len(v) == 1 for v in shards_of.values())
    expected: dict[str, list[str]] = defaultdict(list)
    for e in events:
        expected[e["external_customer_id"]].append(e["transaction_id"])
    assert order == expected


def test_linger_sends_without_flush(kinesis: Any, make_stream: Any, read: Any) -> None:
    stream = make_stream(shards=1)
    producer = Producer(stream, client=kinesis, linger_ms=50)
    try:
        producer.put_many(_events(10, seed=3))
        deadline = time.monotonic() + 10
        while producer.stats.delivered < 10 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert producer.stats.delivered == 10
        assert len(read(kinesis, stream)) == 10
    finally:
        assert producer.close() == []


def test_many_threads_put_concurrently_nothing_lost_or_duplicated(kinesis: Any, make_stream: Any, read: Any) -> None:
    stream = make_stream(shards=2)
    events = _events(4000, seed=4)
    chunks = [events[i::4] for i in range(4)]
    with Producer(stream, client=kinesis, aggregate=True, linger_ms=20, limits=LEGACY) as producer:
        threads = [threading.Thread(target=lambda c=c: [producer.put(e) for e in c]) for c in chunks]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
    tids = [json.loads(d)["transaction_id"] for _, _, d in _user_records(read(kinesis, stream))]
    assert len(tids) == len(set(tids)) == 4000
    assert producer.stats.delivered == 4000


def test_endpoint_from_aws_endpoint_url(
    monkeypatch: pytest.MonkeyPatch, moto_endpoint: str, kinesis: Any, make_stream: Any, read: Any
) -> None:
    stream = make_stream(shards=1)
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_endpoint)
    with Producer(stream, linger_ms=None) as producer:  # no client, no endpoint_url: from the environment
        producer.put_many(_events(5, seed=5))
    assert len(read(kinesis, stream)) == 5


def test_explicit_endpoint_url_and_stream_arn(moto_endpoint: str, kinesis: Any, make_stream: Any, read: Any) -> None:
    stream = make_stream(shards=1)
    arn = kinesis.describe_stream_summary(StreamName=stream)["StreamDescriptionSummary"]["StreamARN"]
    with Producer(arn, endpoint_url=moto_endpoint, region="us-east-1", linger_ms=None) as producer:
        producer.put_many(_events(5, seed=6))
    assert len(read(kinesis, stream)) == 5


def test_missing_stream_is_reported_not_lost(kinesis: Any) -> None:
    producer = Producer("no-such-stream", client=kinesis, linger_ms=None)
    producer.put_many(_events(3, seed=7))
    failures = producer.close()
    assert [f.error_code for f in failures] == ["ResourceNotFoundException"] * 3
    assert producer.stats.failures == 3 and producer.stats.requests == 1  # not retried: it would fail again
