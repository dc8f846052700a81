"""The producer's edge validation: no input makes put_many raise; each event is accepted or
refused with a specific EventError, and what is accepted is delivered (moto Kinesis)."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bxb_runtime.events.errors import EventError
from bxb_runtime.events.schema import INPUT_FIELDS
from bxb_stream.producer import LEGACY, Producer

GOOD = {"transaction_id": "t", "external_customer_id": "c", "code": "x"}
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=8,
)
EVENTS = st.one_of(
    st.fixed_dictionaries({}, optional=dict.fromkeys(sorted(INPUT_FIELDS), JSON)).map(lambda e: {**GOOD, **e}),
    st.binary(max_size=120),
    st.text(max_size=60),
    st.just(GOOD),
)
_streams = itertools.count()


@pytest.fixture(scope="module")
def kinesis_stream(moto_endpoint: str) -> tuple[str, str]:
    import boto3

    client = boto3.client(
        "kinesis", endpoint_url=moto_endpoint, region_name="us-east-1",
        aws_access_key_id="testing", aws_secret_access_key="testing",
    )  # fmt: skip
    name = f"edge-fuzz-{next(_streams)}"
    client.create_stream(StreamName=name, ShardCount=1)
    return name, moto_endpoint


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture]
)
@given(st.lists(EVENTS, min_size=1, max_size=8))
def test_any_input_is_accepted_or_refused_with_a_code(kinesis_stream, events):
    stream, endpoint = kinesis_stream
    with Producer(stream, endpoint_url=endpoint, region="us-east-1", limits=LEGACY, linger_ms=None) as producer:
        refused = producer.put_many(events)
        assert all(isinstance(r.error, EventError) and r.error.code for r in refused)
        failures = producer.flush()
    assert failures == []
    assert producer.stats.delivered == len(events) - len(refused)
