"""No record can fail an ingest request, through the real insert: whatever a line holds, the request
is answered 200 and every record is stored (value for value) or dead-lettered, once. The unit fuzz (tests/unit/ingest)
stops before ClickHouse; values Python accepts but ClickHouse cannot parse only show up here."""

from __future__ import annotations

import base64
import itertools
import json
from collections import Counter
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from bxb_runtime.config import EventRules
from bxb_runtime.events.lines import MAX_TIMESTAMP_MS, MIN_TIMESTAMP_MS, to_line
from bxb_runtime.events.schema import FIELDS, Kind
from bxb_runtime.events.validate import normalize
from bxb_runtime.ingest import IngestService, IngestSettings
from bxb_runtime.ingest.rows import Trust

NOW_MS = 1_790_000_000_000
GOOD = json.loads(
    to_line(
        normalize(
            {"transaction_id": "t", "external_customer_id": "c", "code": "x", "value": 1.5},
            EventRules(organization_id="org_1"),
            arrival_ms=NOW_MS,
            ingested_ms=NOW_MS,
        )
    )
)
# Around each type's edges, and values that pass Python's checks but not every parser's.
EDGES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=8),
    st.sampled_from(
        ["", "\u0661\u0662", "1\n2", "-0", "0.000000000000000001", "9" * 21, "1e5", "\x00", "\ud800", "\ufeff1"]
    ),
    st.sampled_from([MIN_TIMESTAMP_MS - 1, MIN_TIMESTAMP_MS, MAX_TIMESTAMP_MS, MAX_TIMESTAMP_MS + 1, 10**16]),
)
# Field values a parser could take and ClickHouse refuse (or the reverse): each is drawn often.
TRICKY = st.sampled_from(
    [
        ("decimal_value", "\u0661\u0662"),  # Unicode digits: Python's \d matches them
        ("decimal_value", "1\n2"),
        ("decimal_value", "-" + "9" * 20 + "." + "9" * 18),
        ("decimal_value", "9" * 21),
        ("timestamp", MAX_TIMESTAMP_MS),
        ("timestamp", MAX_TIMESTAMP_MS + 1),
        ("timestamp", MIN_TIMESTAMP_MS),
        ("timestamp", 999_999_999_999),
        ("value", 1.7976931348623157e308),
        ("value", -(2**70)),
        ("value", 5e-324),
        ("properties", '\x00\t\n\\"'),
        ("properties", "\U0001f600"),
        ("transaction_id", "\ud800"),
        ("code", "\u2028"),
        ("organization_id", "org_1\x00"),
    ]
)
LINES = st.one_of(
    st.just(json.dumps(GOOD).encode() + b"\n"),
    st.builds(
        lambda pairs: json.dumps({**GOOD, **dict(pairs)}).encode() + b"\n", st.lists(TRICKY, min_size=1, max_size=2)
    ),
    st.builds(
        lambda changes: json.dumps({**GOOD, **changes}).encode() + b"\n",
        st.dictionaries(st.sampled_from([*sorted(GOOD), "decimal_value", "extra"]), EDGES, min_size=1, max_size=3),
    ),
    st.binary(max_size=60),
)
_request_ids = itertools.count()
STORED = [f.name for f in FIELDS]
TIMESTAMPS = {f.name for f in FIELDS if f.kind is Kind.TIMESTAMP_MS}


class AnyKey:
    def accepts(self, presented: str | None) -> bool:
        return True


@pytest.fixture(scope="module")
def fuzz_db(clickhouse_stack) -> Any:
    return clickhouse_stack()


def count(db: Any, table: str, where: str = "1") -> int:
    return db.client.query(f"SELECT count() FROM {db.database}.{table} WHERE {where}").result_rows[0][0]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(LINES, min_size=1, max_size=6))
# Sent out of the table's key order (the stored part is sorted).
@example([json.dumps({**GOOD, "transaction_id": "u"}).encode() + b"\n", json.dumps(GOOD).encode() + b"\n"])
def test_every_record_is_stored_or_dead_lettered_through_the_insert(fuzz_db, lines):
    service = IngestService(
        AnyKey(),
        lambda: fuzz_db.client,
        IngestSettings(database=fuzz_db.database, trust=Trust("org_1")),
        clock=lambda: NOW_MS / 1000 + 30,
    )
    request_id = f"fuzz-{next(_request_ids)}"
    body = {
        "requestId": request_id,
        "timestamp": NOW_MS,
        "records": [{"data": base64.b64encode(x).decode()} for x in lines],
    }
    before = count(fuzz_db, "events_raw")
    response, outcome = service.handle({"headers": {}, "body": json.dumps(body), "isBase64Encoded": False})
    assert response["statusCode"] == 200, outcome.error  # never a 503 for what a record holds
    assert outcome.rows_inserted + outcome.dead_lettered == len(lines)
    assert count(fuzz_db, "events_raw") - before == outcome.rows_inserted
    assert count(fuzz_db, "events_dead_letter", f"request_id = '{request_id}'") == outcome.dead_lettered
    # What was stored is what the sound lines hold, value for value (as many times each: the
    # part is sorted by the table's key, so not in the order sent).
    dead = {
        i
        for (i,) in fuzz_db.client.query(
            f"SELECT record_index FROM {fuzz_db.database}.events_dead_letter WHERE request_id = '{request_id}'"
        ).result_rows
    }
    sound = [json.loads(line) for i, line in enumerate(lines) if i not in dead]
    if sound:
        assert Counter(stored_block(fuzz_db)) == Counter(tuple(_expected(e, name) for name in STORED) for e in sound)


def _expected(event: dict[str, Any], name: str) -> Any:
    value = event.get(name)
    return Decimal(value) if name == "decimal_value" and value is not None else value


def stored_block(db: Any) -> list[tuple]:
    """The rows of the last insert into events_raw."""
    columns = ", ".join(f"toUnixTimestamp64Milli({name})" if name in TIMESTAMPS else name for name in STORED)
    table = f"{db.database}.events_raw"
    return db.client.query(
        f"SELECT {columns} FROM {table} WHERE _block_number = (SELECT max(_block_number) FROM {table})"
    ).result_rows
