"""Both sides of the Firehose processor contract, for callers that play Firehose.

``firehose_event`` builds the request exactly as Firehose sends it to the
transform Lambda (Kinesis source); ``check_response`` judges the answer the way
Firehose does, returning one verdict per input record. The local Firehose
runner, the tests and the benchmarks use these.
"""

from __future__ import annotations

import binascii
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

VALID_RESULTS = frozenset({"Ok", "Dropped", "ProcessingFailed"})


@dataclass(frozen=True)
class SourceRecord:
    data: bytes
    arrival_ms: int
    partition_key: str = "pk"
    shard_id: str = "shardId-000000000000"
    sequence_number: str = "0"
    subsequence_number: int = 0


def firehose_event(
    records: Sequence[SourceRecord],
    *,
    delivery_stream_arn: str = "arn:aws:firehose:us-east-1:123456789012:deliverystream/bxb-events",
    source_stream_arn: str = "arn:aws:kinesis:us-east-1:123456789012:stream/bxb-events",
    region: str = "us-east-1",
    invocation_id: str | None = None,
) -> dict[str, Any]:
    return {
        "invocationId": invocation_id or str(uuid.uuid4()),
        "deliveryStreamArn": delivery_stream_arn,
        "sourceKinesisStreamArn": source_stream_arn,
        "region": region,
        "records": [
            {
                "recordId": f"{r.sequence_number}{i:08d}",
                "approximateArrivalTimestamp": r.arrival_ms,
                "data": binascii.b2a_base64(r.data, newline=False).decode("ascii"),
                "kinesisRecordMetadata": {
                    "shardId": r.shard_id,
                    "partitionKey": r.partition_key,
                    "approximateArrivalTimestamp": r.arrival_ms,
                    "sequenceNumber": r.sequence_number,
                    "subsequenceNumber": r.subsequence_number,
                },
            }
            for i, r in enumerate(records)
        ],
    }


@dataclass(frozen=True)
class Verdict:
    """Firehose's reading of one input record's answer."""

    record_id: str
    result: str  # Ok | Dropped | ProcessingFailed
    data: bytes  # decoded output (Ok) or b"" (other results)
    partition_keys: dict[str, str]
    error: str | None = None  # why Firehose counts it failed, if it does


def check_response(request: dict[str, Any], response: Any) -> list[Verdict]:
    """Judge a processor response as Firehose does: a missing or unknown recordId,
    a result outside Ok/Dropped/ProcessingFailed, or bad base64 fails that record."""
    answers: dict[str, Any] = {}
    problems: dict[str, str] = {}
    known = {r["recordId"] for r in request["records"]}
    items = response.get("records") if isinstance(response, dict) else None
    if not isinstance(items, list):
        items = []
        problem_all = "response has no records list"
    else:
        problem_all = None
    for item in items:
        rid = item.get("recordId") if isinstance(item, dict) else None
        if rid not in known:
            continue  # extra ids are ignored, the known ones still judged below
        if rid in answers:
            problems[rid] = "recordId answered twice"
        answers[rid] = item
    verdicts = []
    for record in request["records"]:
        rid = record["recordId"]
        item = answers.get(rid)
        error = problem_all or problems.get(rid)
        if item is None and error is None:
            error = "recordId missing from response"
        result = item.get("result") if item else None
        data = b""
        keys: dict[str, str] = {}
        if error is None and result not in VALID_RESULTS:
            error = f"invalid result {result!r}"
        if error is None and result == "Ok":
            try:
                data = binascii.a2b_base64(item.get("data", ""), strict_mode=True)
            except (binascii.Error, ValueError, TypeError):
                error = "data is not valid base64"
            keys = ((item.get("metadata") or {}).get("partitionKeys")) or {}
        verdicts.append(
            Verdict(
                record_id=rid,
                result="ProcessingFailed" if error else result,
                data=b"" if error else data,
                partition_keys=keys,
                error=error or (None if result != "ProcessingFailed" else "Lambda.ProcessingFailed"),
            )
        )
    return verdicts
