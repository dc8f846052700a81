"""The Firehose processor contract, end to end through Transformer.process."""

from __future__ import annotations

import base64
import json
from collections import Counter
from datetime import UTC, datetime
from decimal import Decimal

import pyarrow as pa
import pytest

from bxb_runtime.config import EventRules
from bxb_runtime.events.schema import arrow_schema
from bxb_runtime.transform import Transformer
from bxb_runtime.transform.process import entry_size, response_size
from bxb_stream.firehose.invocation import check_response

NOW_MS = 1_790_000_000_000
HOUR_MS = 3_600_000


def decoded_lines(response: dict) -> list[dict]:
    return [json.loads(base64.b64decode(r["data"])) for r in response["records"] if r["result"] == "Ok"]


def assert_balanced(request: dict, response: dict, stats) -> None:
    """in = Ok + Dropped + ProcessingFailed, and every recordId comes back once, in order."""
    assert [r["recordId"] for r in response["records"]] == [r["recordId"] for r in request["records"]]
    counted = Counter(r["result"] for r in response["records"])
    assert sum(counted.values()) == stats.records_in == len(request["records"])
    assert counted == {k: v for k, v in stats.results.items() if v}
    assert stats.balanced
    assert all(v.error is None or v.result == "ProcessingFailed" for v in check_response(request, response))


@pytest.mark.parametrize("name", ["aws_docs_firehose_event.json", "aws_docs_kinesis_source_event.json"])
def test_aws_documentation_sample_events(name, sample, transformer):
    request = sample(name)
    response, stats = transformer.process(request)
    assert_balanced(request, response, stats)
    # The samples carry plain text, not billing events: each fails on its own, the batch does not.
    assert {r["result"] for r in response["records"]} == {"ProcessingFailed"}
    assert stats.reasons == Counter({"not_json": len(request["records"])})
    for answer, original in zip(response["records"], request["records"], strict=True):
        assert answer["data"] == original["data"]  # failed records keep their original data


def test_valid_events_come_back_ok_with_partition_keys(transformer, make_request, make_event):
    request = make_request(make_event("a"), make_event("b", timestamp="2026-09-21T13:59:59.500Z"))
    response, stats = transformer.process(request)
    assert_balanced(request, response, stats)
    assert stats.results["Ok"] == 2
    first, second = response["records"]
    assert first["metadata"]["partitionKeys"] == {"organization_id": "org_1", "date": "2026-09-21", "hour": "14"}
    assert second["metadata"]["partitionKeys"]["hour"] == "13"
    lines = [base64.b64decode(r["data"]) for r in response["records"]]
    assert all(line.endswith(b"\n") and line.count(b"\n") == 1 for line in lines)
    rows = decoded_lines(response)
    assert [r["transaction_id"] for r in rows] == ["a", "b"]
    assert rows[0]["ingested_at"] == NOW_MS and rows[0]["organization_id"] == "org_1"
    assert rows[0]["arrived_at"] == NOW_MS  # the record's Kinesis arrival, the same on every retry


def test_duplicates_within_a_batch_are_dropped_and_conflicts_passed_on(transformer, make_request, make_event):
    request = make_request(
        make_event("a"),
        make_event("b"),
        make_event("a", value=9.0),  # another payload: stored, so ClickHouse records the conflict
        make_event("a"),  # the first copy again: dropped, counted
        make_event("a", value=9.0),  # the conflicting copy again: nothing new, dropped
    )
    response, stats = transformer.process(request)
    assert_balanced(request, response, stats)
    assert [r["result"] for r in response["records"]] == ["Ok", "Ok", "Ok", "Dropped", "Dropped"]
    assert stats.reasons == Counter({"duplicate_in_batch": 2, "conflict_in_batch": 1}) and stats.conflicts == 1
    lines = decoded_lines(response)
    assert [(r["transaction_id"], r.get("value")) for r in lines] == [("a", None), ("b", None), ("a", 9.0)]


def test_a_resend_without_timestamp_is_the_same_payload(transformer, make_request, make_event):
    """Without a timestamp each copy takes its own arrival time; what was sent is still identical."""
    request = make_request(make_event("a", timestamp=None), make_event("a", timestamp=None))
    request["records"][1]["approximateArrivalTimestamp"] += 5_000
    response, _ = transformer.process(request)
    assert [r["result"] for r in response["records"]] == ["Ok", "Dropped"]


def test_same_transaction_id_in_two_organizations_is_not_a_duplicate(make_request, make_event):
    transformer = Transformer(EventRules(organization_id="org_1", multi_tenant=True), clock=lambda: NOW_MS / 1000)
    request = make_request(
        make_event("a"), make_event("a", organization_id="org_2"), make_event("a", organization_id="org_1")
    )
    response, stats = transformer.process(request)
    assert stats.reasons == {"duplicate_in_batch": 1}
    assert [r["result"] for r in response["records"]] == ["Ok", "Ok", "Dropped"]
    assert [r["metadata"]["partitionKeys"]["organization_id"] for r in response["records"][:2]] == ["org_1", "org_2"]


def test_lateness_is_not_decided_here_an_old_event_passes_with_its_arrival(rules, make_request, make_event):
    """Billing periods live in ClickHouse; the transform only records when the record arrived,
    so both delivery paths (and every Firehose retry) give the resolver the same inputs."""
    old = make_event("a", timestamp=(NOW_MS - 40 * 24 * HOUR_MS) / 1000)
    for clock_ms in (NOW_MS, NOW_MS + 48 * HOUR_MS):  # Firehose retried two days later
        transformer = Transformer(rules, clock=lambda c=clock_ms: c / 1000)
        response, _ = transformer.process(make_request(old, arrival_ms=NOW_MS))
        (line,) = decoded_lines(response)
        assert response["records"][0]["result"] == "Ok" and line["arrived_at"] == NOW_MS
        assert line["timestamp"] == NOW_MS - 40 * 24 * HOUR_MS


def test_a_bad_record_never_fails_the_batch(transformer, make_request, make_event):
    request = make_request(make_event("a"), b"{not json", make_event("b", timestmap=1), make_event("c"))
    request["records"].insert(1, {**request["records"][0], "recordId": "bad-b64", "data": "@@@"})
    response, stats = transformer.process(request)
    assert_balanced(request, response, stats)
    assert [r["result"] for r in response["records"]] == [
        "Ok",
        "ProcessingFailed",
        "ProcessingFailed",
        "ProcessingFailed",
        "Ok",
    ]
    assert stats.reasons == Counter({"not_base64": 1, "not_json": 1, "unknown_field:timestmap": 1})
    assert [r.code for r in stats.rejections] == ["not_base64", "not_json", "unknown_field:timestmap"]
    assert stats.rejections[0].record_id == "bad-b64"


def test_response_stays_under_the_limit_and_nothing_is_lost(rules, make_request, make_event):
    events = [make_event(f"tx_{i}", properties={"pad": "x" * 300}) for i in range(40)]
    request = make_request(*events)
    request_bytes = sum(len(r["data"]) + len(r["recordId"]) for r in request["records"])
    limit = request_bytes + 3_000  # room for the echo, not for every expanded line
    transformer = Transformer(rules, clock=lambda: NOW_MS / 1000, max_response_bytes=limit)
    response, stats = transformer.process(request)
    assert_balanced(request, response, stats)
    assert len(json.dumps(response)) < limit + 200 * len(events)
    failed = [r for r in response["records"] if r["result"] == "ProcessingFailed"]
    assert failed and stats.reasons["response_too_large"] == len(failed)
    assert stats.results["Ok"] + len(failed) == len(events)
    # Failed from the end, with their original data for Firehose's error output.
    assert [r["recordId"] for r in failed] == [r["recordId"] for r in request["records"][-len(failed) :]]
    originals = {r["recordId"]: r["data"] for r in request["records"]}
    assert all(r["data"] == originals[r["recordId"]] for r in failed)


def test_echoed_records_count_against_the_response_limit(rules, make_request, make_event):
    """Rejected and dropped records echo their input; the guard counts those bytes too."""
    bad = [make_event(f"bad_{i}", timestmap=1, pad="x" * 3_000) for i in range(4)]
    good = [make_event(f"tx_{i}") for i in range(40)]
    request = make_request(*bad, *good, good[0])  # the last one is a duplicate: Dropped, echoed
    unlimited = Transformer(rules, clock=lambda: NOW_MS / 1000).process(request)[0]
    limit = len(json.dumps(unlimited)) - 2_000  # less than the echoes: uncounted, they would not fit
    response, stats = Transformer(rules, clock=lambda: NOW_MS / 1000, max_response_bytes=limit).process(request)
    assert_balanced(request, response, stats)
    assert len(json.dumps(response)) <= limit
    assert stats.reasons["response_too_large"] > 0
    assert stats.reasons["duplicate_in_batch"] == 1 and stats.reasons["unknown_field:pad"] == 4


def test_output_lines_validate_against_the_arrow_schema(transformer, make_request, make_event):
    request = make_request(
        make_event("a", properties={"z": 1, "a": {"b": [1, 2]}}, value=1, decimal_value="10.000000000000000001"),
        make_event("b", timestamp="2026-09-21T12:00:00+00:00"),
        make_event("c", timestamp=None),
    )
    response, _ = transformer.process(request)
    rows = decoded_lines(response)
    schema = arrow_schema()
    for row in rows:
        for name in schema.names:
            row.setdefault(name, None)
        row["timestamp"] = pa.scalar(row["timestamp"], pa.timestamp("ms", tz="UTC"))
        row["ingested_at"] = pa.scalar(row["ingested_at"], pa.timestamp("ms", tz="UTC"))
        row["arrived_at"] = pa.scalar(row["arrived_at"], pa.timestamp("ms", tz="UTC"))
        if row["decimal_value"] is not None:
            row["decimal_value"] = Decimal(row["decimal_value"])  # a string in JSON, as the SerDe reads it
    table = pa.Table.from_pylist(rows, schema=schema)
    assert table.num_rows == 3
    assert str(table.column("decimal_value")[0].as_py()) == "10.000000000000000001"
    assert table.column("properties")[0].as_py() == '{"a":{"b":[1,2]},"z":1}'
    assert table.column("timestamp")[2].as_py().timestamp() * 1000 == NOW_MS  # absent: the arrival time


def test_empty_batch(transformer):
    response, stats = transformer.process({"invocationId": "x", "records": []})
    assert response == {"records": []} and stats.balanced


def test_partition_keys_stay_right_past_the_cache_bound(make_request, make_event):
    """The per-(organization, hour) metadata cache is emptied past 10,000 entries (a warm Lambda's
    memory bound); the records after that still get their own hour's keys."""
    hours = 10_050
    events = [make_event(f"t{i}", timestamp=(NOW_MS - (i + 1) * HOUR_MS) / 1000) for i in range(hours)]
    response, stats = Transformer(EventRules(organization_id="org_1"), clock=lambda: NOW_MS / 1000).process(
        make_request(*events)
    )
    assert stats.results["Ok"] == hours
    for i, record in enumerate(response["records"]):
        at = datetime.fromtimestamp((NOW_MS - (i + 1) * HOUR_MS) // HOUR_MS * 3600, tz=UTC)
        keys = record["metadata"]["partitionKeys"]
        assert (keys["date"], keys["hour"]) == (at.strftime("%Y-%m-%d"), at.strftime("%H")), i


def test_response_size_is_json_dumps_size_for_non_ascii_answers():
    answers = [
        {"recordId": "é-1", "result": "Ok", "data": "eA==", "metadata": {"partitionKeys": {"organization_id": "ü"}}},
        {"recordId": "2", "result": "Dropped", "data": ""},
    ]
    assert response_size(answers) == len(json.dumps({"records": answers}).encode())
    assert entry_size(answers[0]) == len(json.dumps(answers[0]).encode())
    keys = {"organization_id": "o", "date": "2026-09-21", "hour": "14"}  # the transform's three keys
    ascii_answer = {**answers[0], "recordId": "1", "metadata": {"partitionKeys": keys}}
    assert entry_size(ascii_answer) == len(json.dumps(ascii_answer).encode())  # the fast count agrees
