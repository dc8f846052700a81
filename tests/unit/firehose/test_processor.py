"""The processor contract: Firehose's event in, its checks on the answer, retries, error outputs."""

import base64
import json
from typing import Any

import pytest

from bxb_runtime.config import EventRules
from bxb_runtime.transform import Transformer
from bxb_stream.firehose.checkpoint import ShardLedger
from bxb_stream.firehose.clock import ManualClock
from bxb_stream.firehose.processor import Processor
from bxb_stream.firehose.records import PROCESSING_FAILED, Record, error_line
from bxb_stream.firehose.settings import ProcessorSettings

ARN = "arn:aws:firehose:us-east-1:123456789012:deliverystream/t"
SRC = "arn:aws:kinesis:us-east-1:123456789012:stream/t"
NOW_MS = 1_790_000_000_000  # the transform's clock, fixed


def records(datas: list[bytes]) -> list[Record]:
    ledger = ShardLedger("shardId-000000000003")
    return [
        Record(d, 1_700_000_000_000 + i, f"pk{i}", str(100 + i), 0, ledger, ledger.add((100 + i, 0)))
        for i, d in enumerate(datas)
    ]


def processor(handler: Any, clock: ManualClock | None = None, **settings: Any) -> Processor:
    clock = clock or ManualClock()
    return Processor(
        ProcessorSettings(**settings), handler, delivery_stream_arn=ARN, source_stream_arn=SRC,
        wall=clock.time, sleep=clock.sleep,
    )  # fmt: skip


def ok_all(event: dict[str, Any]) -> dict[str, Any]:
    return {"records": [{"recordId": r["recordId"], "result": "Ok", "data": r["data"]} for r in event["records"]]}


def test_event_has_firehose_shape() -> None:
    seen: list[dict[str, Any]] = []

    def handler(event: dict[str, Any]) -> dict[str, Any]:
        seen.append(event)
        return ok_all(event)

    outcome = processor(handler).process(records([b"a", b"b"]))
    event = seen[0]
    assert set(event) == {"invocationId", "deliveryStreamArn", "sourceKinesisStreamArn", "region", "records"}
    assert event["deliveryStreamArn"] == ARN and event["sourceKinesisStreamArn"] == SRC
    first = event["records"][0]
    assert base64.b64decode(first["data"]) == b"a"
    assert first["kinesisRecordMetadata"] == {
        "shardId": "shardId-000000000003",
        "partitionKey": "pk0",
        "approximateArrivalTimestamp": 1_700_000_000_000,
        "sequenceNumber": "100",
        "subsequenceNumber": 0,
    }
    assert [d for _, d, _ in outcome.ok] == [b"a", b"b"]


@pytest.mark.parametrize(
    "mangle, code",
    [
        (lambda items: items[1:], "Lambda.MissingRecordId"),
        (lambda items: [{**items[0], "recordId": "not-sent"}, *items[1:]], "Lambda.MissingRecordId"),
        (lambda items: [{**items[0], "result": "Okay"}, *items[1:]], "Lambda.InvalidRecordResult"),
        (lambda items: [{**items[0], "data": "%%%not-base64"}, *items[1:]], "Lambda.InvalidBase64Data"),
        (lambda items: [items[0], *items], "Lambda.DuplicatedRecordId"),
    ],
    ids=["missing", "extra-instead", "invalid-result", "bad-base64", "duplicate"],
)
def test_bad_response_fails_only_the_affected_record(mangle: Any, code: str) -> None:
    def handler(event: dict[str, Any]) -> dict[str, Any]:
        return {"records": mangle(ok_all(event)["records"])}

    proc = processor(handler)
    outcome = proc.process(records([b"r0", b"r1", b"r2"]))
    assert [f.record.data for f in outcome.failed] == [b"r0"]
    failure = outcome.failed[0]
    assert (failure.code, failure.output_type, failure.attempts) == (code, PROCESSING_FAILED, 1)
    assert [r.data for r, _, _ in outcome.ok] == [b"r1", b"r2"]
    assert proc.stats.error_codes == {code: 1} and proc.stats.failed == 1 and proc.stats.ok == 2


def test_extra_record_id_is_counted_and_ignored() -> None:
    def handler(event: dict[str, Any]) -> dict[str, Any]:
        response = ok_all(event)
        response["records"].append({"recordId": "stranger", "result": "Ok", "data": ""})
        return response

    proc = processor(handler)
    outcome = proc.process(records([b"x"]))
    assert len(outcome.ok) == 1 and proc.stats.unknown_record_ids == 1


def test_response_without_records_fails_every_record() -> None:
    outcome = processor(lambda event: {"nope": []}).process(records([b"x", b"y"]))
    assert [f.code for f in outcome.failed] == ["Lambda.JsonProcessingException"] * 2


def test_exception_is_retried_and_succeeds_on_the_second_try() -> None:
    calls = []

    def flaky(event: dict[str, Any]) -> dict[str, Any]:
        calls.append(event["invocationId"])
        if len(calls) == 1:
            raise TimeoutError("Task timed out after 300.00 seconds")
        return ok_all(event)

    clock = ManualClock()
    proc = processor(flaky, clock)
    outcome = proc.process(records([b"a", b"b"]))
    assert len(outcome.ok) == 2 and not outcome.failed
    assert len(calls) == 2 and calls[0] == calls[1]  # the same invocation, retried
    assert proc.stats.invocations == 2 and proc.stats.failed_invocations == 1
    assert len(clock.slept) == 1


def test_exhausted_retries_fail_the_batch_with_function_error() -> None:
    calls = []

    def broken(event: dict[str, Any]) -> dict[str, Any]:
        calls.append(1)
        raise RuntimeError("boom")

    clock = ManualClock()
    proc = processor(broken, clock, retries=3)
    outcome = proc.process(records([b"a", b"b", b"c"]))
    assert len(calls) == 4  # first try + 3 retries
    assert not outcome.ok and len(outcome.failed) == 3
    failure = outcome.failed[0]
    assert failure.code == "Lambda.FunctionError" and failure.attempts == 4 and "boom" in failure.message
    assert failure.ended_ms == int(clock.time() * 1000)
    line = json.loads(error_line(failure, {"lambdaArn": "arn:l"}))
    assert list(line)[:6] == [
        "attemptsMade", "arrivalTimestamp", "errorCode", "errorMessage", "attemptEndingTimestamp", "rawData",
    ]  # fmt: skip
    assert base64.b64decode(line["rawData"]) == b"a" and line["lambdaArn"] == "arn:l"
    assert line["arrivalTimestamp"] == 1_700_000_000_000


def test_unserialisable_response_is_a_function_error() -> None:
    outcome = processor(lambda event: {"records": object()}, retries=1).process(records([b"a"]))
    assert outcome.failed[0].code == "Lambda.FunctionError" and outcome.failed[0].attempts == 2


def test_batches_respect_the_buffer_hint_and_the_6mb_payload() -> None:
    proc = processor(ok_all, buffer_size_bytes=10_000)
    batches = proc.batches(records([b"x" * 3000] * 10))
    assert [len(b) for b in batches] == [2, 2, 2, 2, 2]  # 4000 base64 bytes + overhead each
    big = processor(ok_all, buffer_size_bytes=3 * 1024 * 1024)
    assert all(sum(len(r.data) for r in b) < 3 * 1024 * 1024 for b in big.batches(records([b"y" * 500_000] * 12)))


def test_real_transformer_keeps_its_reasons() -> None:
    # The transform reads `timestamp` in seconds (or ISO 8601); NOW_MS is milliseconds and would be
    # refused as timestamp_in_future, so the "good" records would never reach Ok or Dropped.
    raw = {"transaction_id": "t-1", "external_customer_id": "c", "code": "api", "timestamp": NOW_MS // 1000}
    datas = [json.dumps(raw).encode(), json.dumps(raw).encode(), b"{bad"]  # a duplicate and a malformed one
    proc = processor(Transformer(EventRules(organization_id="org-t"), clock=lambda: NOW_MS / 1000).process)
    recs = records(datas)
    for r in recs:
        r.arrival_ms = NOW_MS
    outcome = proc.process(recs)
    assert [r.data for r, _, _ in outcome.ok] == [datas[0]]  # the first copy passes on
    assert json.loads(outcome.ok[0][1])["transaction_id"] == "t-1"
    assert outcome.ok[0][2]["organization_id"] == "org-t"
    assert [r.data for r in outcome.dropped] == [datas[1]]  # the second is duplicate_in_batch
    assert [f.record.data for f in outcome.failed] == [b"{bad"]
    assert outcome.failed[0].code == "Lambda.ProcessingFailed"
    assert outcome.failed[0].message.startswith("not_json")
    assert (proc.stats.ok, proc.stats.dropped, proc.stats.failed) == (1, 1, 1)
    assert proc.stats.reasons == {"duplicate_in_batch": 1, "not_json": 1}
