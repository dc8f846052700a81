"""No record can fail an ingest request: whatever the bytes, each is stored or dead-lettered, once."""

from __future__ import annotations

import base64
import json

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from bxb_runtime.config import EventRules
from bxb_runtime.events.lines import to_line
from bxb_runtime.events.validate import normalize
from bxb_runtime.ingest.protocol import decode_records
from bxb_runtime.ingest.rows import Trust, build_batch

NOW_MS = 1_790_000_000_000
RULES = EventRules(organization_id="org_1")
GOOD = to_line(
    normalize(
        {"transaction_id": "t", "external_customer_id": "c", "code": "x", "value": 1.5},
        RULES,
        arrival_ms=NOW_MS,
        ingested_ms=NOW_MS,
    )
)
FIELDS = json.loads(GOOD)
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=8,
)
# A transformed line with any field replaced by any JSON value, or any bytes at all.
LINES = st.one_of(
    st.binary(max_size=200),
    st.builds(
        lambda name, value: json.dumps({**FIELDS, name: value}).encode() + b"\n",
        st.sampled_from(sorted(FIELDS)),
        JSON,
    ),
    st.just(GOOD),
)
# Example counts come from the hypothesis profile (tests/conftest.py).
PROFILE = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PROFILE
@given(st.lists(LINES, min_size=1, max_size=10))
def test_every_record_is_stored_or_dead_lettered_once(lines):
    texts = [base64.b64encode(line).decode() for line in lines]
    decoded = decode_records(texts)
    assert decoded == lines  # the request parser's one decode gives back every record
    batch = build_batch("req-1", texts, decoded, Trust("org_1"), now_ms=NOW_MS)
    assert batch.rows + batch.dead_rows == len(lines)
    event("all stored" if not batch.dead_rows else "some dead-lettered")
    indexes = batch.dead[2]
    assert len(set(indexes)) == len(indexes)  # one dead letter per record at most
    for index, raw in zip(indexes, batch.dead[3], strict=True):
        assert raw == texts[index]  # as received: replayable


@PROFILE
@given(st.lists(st.text(max_size=60), min_size=1, max_size=6))
def test_records_that_are_not_base64_are_dead_lettered_as_they_came(texts):
    batch = build_batch("req-2", texts, decode_records(texts), Trust("org_1"), now_ms=NOW_MS)
    assert batch.rows + batch.dead_rows == len(texts)
    assert sorted(batch.dead[2]) == sorted(set(batch.dead[2]))
