"""Partial failures and throttling through a scripted client (moto never throttles)."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest

from bxb_stream import kpl
from bxb_stream.producer import AggregationPolicy, DeliveryFailure, Producer, RetryPolicy

PTE = "ProvisionedThroughputExceededException"


def _event(i: int) -> dict[str, Any]:
    return {"transaction_id": f"t{i}", "external_customer_id": f"c{i % 7}", "code": "api_calls"}


def _tids(records: list[dict[str, Any]]) -> list[str]:
    return [json.loads(u.data)["transaction_id"] for r in records for u in kpl.deaggregate(r["Data"])]


class MaxJitter(random.Random):
    """Full jitter at its upper bound, so the backoff cap and deadline are testable."""

    def uniform(self, a: float, b: float) -> float:
        return b


def _producer(client: Any, delays: list[float], rng: random.Random | None = None, **kw: Any) -> Producer:
    """A producer whose backoff sleeps are recorded in ``delays``; ``max_attempts``, ``backoff_*_ms``
    and ``deadline_s`` go to its RetryPolicy, the rest to the Producer."""
    names = ("max_attempts", "backoff_base_ms", "backoff_max_ms", "deadline_s")
    retry = RetryPolicy(sleep=delays.append, rng=rng or random.Random(0), **{k: kw.pop(k) for k in names if k in kw})
    return Producer("s", client=client, linger_ms=None, retry=retry, **kw)


def test_partial_failure_resends_only_failed_entries_in_order(stub: Any) -> None:
    client = stub([{1: PTE, 3: "InternalFailure", 4: PTE}, {1: PTE}, None])
    delays: list[float] = []
    producer = _producer(client, delays)
    producer.put_many(_event(i) for i in range(6))
    assert producer.flush() == []
    first, second, third = (_tids(c) for c in client.calls)
    assert first == [f"t{i}" for i in range(6)]
    assert second == ["t1", "t3", "t4"]
    assert third == ["t3"]
    # Every event stored exactly once; nothing lost, nothing duplicated.
    assert sorted(_tids(client.stored)) == sorted(f"t{i}" for i in range(6))
    stats = producer.stats
    assert (stats.delivered, stats.retries, stats.requests, stats.failures) == (6, 4, 3, 0)
    # Full jitter: each delay within [0, base * 2**attempt).
    assert len(delays) == 2 and 0 <= delays[0] <= 0.1 and 0 <= delays[1] <= 0.2


def test_whole_call_throttling_and_network_errors_count_as_all_failed(stub: Any, err: Any) -> None:
    from botocore.exceptions import EndpointConnectionError

    client = stub([err("ThrottlingException"), EndpointConnectionError(endpoint_url="http://127.0.0.1:1"), None])
    delays: list[float] = []
    producer = _producer(client, delays)
    producer.put_many(_event(i) for i in range(3))
    assert producer.flush() == []
    assert [_tids(c) for c in client.calls] == [["t0", "t1", "t2"]] * 3
    assert _tids(client.stored) == ["t0", "t1", "t2"]
    assert producer.stats.retries == 6 and len(delays) == 2


def test_exhausted_attempts_report_each_event_with_its_error(stub: Any) -> None:
    client = stub([{0: PTE, 2: PTE}, {0: PTE, 1: "InternalFailure"}, {0: PTE, 1: "InternalFailure"}])
    delays: list[float] = []
    producer = _producer(client, delays, max_attempts=3, rng=MaxJitter())
    events = [_event(i) for i in range(4)]
    producer.put_many(events)
    failures = producer.flush()
    assert failures == [
        DeliveryFailure(events[0], PTE, f"scripted {PTE}", 3),
        DeliveryFailure(events[2], "InternalFailure", "scripted InternalFailure", 3),
    ]
    assert sorted(_tids(client.stored)) == ["t1", "t3"]
    assert delays == [0.1, 0.2]  # exponential: base, 2 * base; no sleep after the last attempt
    stats = producer.stats
    assert (stats.delivered, stats.failures, stats.events) == (2, 2, 4)
    assert producer.flush() == []  # reported once


def test_backoff_is_capped_and_bounded_by_the_deadline(stub: Any) -> None:
    client = stub([{0: PTE}] * 20)
    delays: list[float] = []
    producer = _producer(
        client, delays, max_attempts=20, backoff_base_ms=100, backoff_max_ms=400, deadline_s=1.0, rng=MaxJitter()
    )
    producer.put(_event(0))
    failures = producer.flush()
    assert [f.error_code for f in failures] == [PTE]
    # Sleeps are recorded, not slept, so the clock never nears the deadline: the cap and the attempt bound apply.
    assert delays[:4] == [0.1, 0.2, 0.4, 0.4] and max(delays) == 0.4
    assert len(client.calls) == 20 and len(delays) == 19


def test_deadline_stops_retries_before_attempts_run_out(stub: Any) -> None:
    client = stub([{0: PTE}] * 5)
    delays: list[float] = []
    producer = _producer(
        client,
        delays,
        max_attempts=5,
        backoff_base_ms=2_000,
        backoff_max_ms=2_000,
        deadline_s=1.0,
        rng=MaxJitter(),
    )
    producer.put(_event(0))
    failures = producer.flush()
    assert len(client.calls) == 1 and delays == []  # a 2 s backoff would overrun the 1 s budget
    assert failures[0].attempts == 1


def test_non_retryable_error_is_reported_at_once(stub: Any, err: Any) -> None:
    client = stub([err("AccessDeniedException"), None])
    seen: list[DeliveryFailure] = []
    producer = _producer(client, [], on_failure=seen.extend)
    producer.put_many(_event(i) for i in range(2))
    assert producer.flush() == []  # went to the callback instead
    assert [f.error_code for f in seen] == ["AccessDeniedException"] * 2
    assert len(client.calls) == 1 and client.stored == []


def test_server_5xx_is_retried(stub: Any, err: Any) -> None:
    client = stub([err("SomethingOdd", status=503), None])
    producer = _producer(client, [])
    producer.put(_event(0))
    assert producer.flush() == [] and len(client.calls) == 2


def test_malformed_response_is_reported_not_resent(stub: Any) -> None:
    class Short(stub):  # type: ignore[misc, valid-type]
        def put_records(self, **kw: Any) -> dict[str, Any]:
            out = super().put_records(**kw)
            out["Records"] = out["Records"][:-1]
            return out

    client = Short()
    producer = _producer(client, [])
    producer.put_many(_event(i) for i in range(2))
    failures = producer.flush()
    assert [f.error_code for f in failures] == ["MalformedResponse"] * 2 and len(client.calls) == 1


def test_aggregated_entry_failure_reports_every_event_inside(stub: Any) -> None:
    client = stub([{0: PTE}, {0: PTE}])
    producer = _producer(client, [], aggregate=AggregationPolicy(by_shard=False), max_attempts=2)
    events = [_event(i) for i in range(50)]
    producer.put_many(events)
    failures = producer.flush()
    assert len(client.calls) == 2 and len(client.calls[0]) == 1  # one aggregate, retried once
    assert [f.event for f in failures] == events
    assert producer.stats.failures == 50 and producer.stats.retries == 1


@pytest.mark.parametrize("aggregate", [False, True])
def test_retries_keep_batches_in_order(stub: Any, aggregate: bool) -> None:
    # Two full batches; the first is throttled once. The second must not overtake it.
    client = stub([{i: PTE for i in range(500)}, None, None])
    policy = AggregationPolicy(max_bytes=200, by_shard=False) if aggregate else False
    producer = _producer(client, [], aggregate=policy)
    producer.put_many(_event(i) for i in range(1000))
    assert producer.flush() == []
    assert _tids(client.stored) == [f"t{i}" for i in range(1000)]
