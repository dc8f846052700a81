"""Firehose's side of the processor contract: how a response is judged."""

from __future__ import annotations

import base64
from typing import get_type_hints

from bxb_runtime.wire import firehose_processor as wire
from bxb_stream.firehose.invocation import SourceRecord, check_response, firehose_event


def request(n: int = 3) -> dict:
    return firehose_event([SourceRecord(f"r{i}".encode(), 1_790_000_000_000, sequence_number=str(i)) for i in range(n)])


def ok(rid: str, data: bytes = b"x\n") -> dict:
    return {"recordId": rid, "result": "Ok", "data": base64.b64encode(data).decode()}


def test_request_has_firehose_shape():
    req = request(2)
    assert set(req) == {"invocationId", "deliveryStreamArn", "sourceKinesisStreamArn", "region", "records"}
    record = req["records"][0]
    assert set(record) == {"recordId", "approximateArrivalTimestamp", "data", "kinesisRecordMetadata"}
    assert base64.b64decode(record["data"]) == b"r0"
    assert len({r["recordId"] for r in req["records"]}) == 2


def test_request_keys_are_the_wire_contracts():
    req = request(1)
    assert set(req) == set(get_type_hints(wire.Request))
    assert set(req["records"][0]) == set(get_type_hints(wire.RequestRecord))
    assert set(req["records"][0]["kinesisRecordMetadata"]) == set(get_type_hints(wire.KinesisRecordMetadata))


def test_results_are_the_three_firehose_names():
    assert {str(r) for r in wire.Result} == {"Ok", "Dropped", "ProcessingFailed"} == wire.RESULTS
    answer = check_response(request(1), {"records": [ok(request(1)["records"][0]["recordId"])]})
    assert answer[0].result is wire.Result.OK


def test_a_good_response_is_read_record_by_record():
    req = request()
    ids = [r["recordId"] for r in req["records"]]
    response = {
        "records": [
            ok(ids[0]),
            {"recordId": ids[1], "result": "Dropped", "data": ""},
            {"recordId": ids[2], "result": "ProcessingFailed", "data": ""},
        ]
    }
    verdicts = check_response(req, response)
    assert [(v.result, v.error) for v in verdicts] == [
        ("Ok", None),
        ("Dropped", None),
        ("ProcessingFailed", "Lambda.ProcessingFailed"),
    ]
    assert verdicts[0].data == b"x\n"


def test_missing_extra_invalid_and_undecodable_answers_fail_their_records():
    req = request(4)
    ids = [r["recordId"] for r in req["records"]]
    response = {
        "records": [
            ok(ids[0]),
            {"recordId": ids[1], "result": "Maybe", "data": ""},
            {"recordId": ids[2], "result": "Ok", "data": "***not base64***"},
            ok("not-in-the-request"),
        ]
    }
    verdicts = check_response(req, response)
    assert [v.result for v in verdicts] == ["Ok", "ProcessingFailed", "ProcessingFailed", "ProcessingFailed"]
    assert verdicts[1].error == "invalid result 'Maybe'"
    assert verdicts[2].error == "data is not valid base64"
    assert verdicts[3].error == "recordId missing from response"


def test_a_record_answered_twice_fails_and_a_non_list_fails_all():
    req = request(2)
    ids = [r["recordId"] for r in req["records"]]
    twice = check_response(req, {"records": [ok(ids[0]), ok(ids[0]), ok(ids[1])]})
    assert [v.result for v in twice] == ["ProcessingFailed", "Ok"]
    assert all(v.result == "ProcessingFailed" for v in check_response(req, {"records": "nope"}))
    assert all(v.result == "ProcessingFailed" for v in check_response(req, None))
