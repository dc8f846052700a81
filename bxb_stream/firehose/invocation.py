"""Firehose's side of the processor contract (``bxb_runtime.wire.firehose_processor``), for callers that play Firehose.

``firehose_event`` builds the request exactly as Firehose sends it to the
transform Lambda (Kinesis source); ``check_response`` judges the answer the way
Firehose does, returning one verdict per input record. ``judge_wire`` gives the
same verdicts for a response still in its JSON wire form, as parallel lists, with
a one-pass typed fast path for well-formed answers. The local Firehose runner,
the tests and the benchmarks use these.
"""

from __future__ import annotations

import binascii
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import msgspec
from pybase64 import b64decode, b64encode_as_string

from bxb_runtime.wire.firehose_processor import RESULTS, Request, Result


@dataclass(frozen=True)
class SourceRecord:
    data: bytes
    arrival_ms: int
    partition_key: str = "pk"
    shard_id: str = "shardId-000000000000"
    sequence_number: str = "0"
    subsequence_number: int = 0


class SourceLike(Protocol):
    """What ``firehose_event`` reads from a record: ``SourceRecord``, or the runner's own record type."""

    @property
    def data(self) -> bytes: ...
    @property
    def arrival_ms(self) -> int: ...
    @property
    def partition_key(self) -> str: ...
    @property
    def shard_id(self) -> str: ...
    @property
    def sequence_number(self) -> str: ...
    @property
    def subsequence_number(self) -> int: ...


def firehose_event(
    records: Sequence[SourceLike],
    *,
    delivery_stream_arn: str = "arn:aws:firehose:us-east-1:123456789012:deliverystream/bxb-events",
    source_stream_arn: str = "arn:aws:kinesis:us-east-1:123456789012:stream/bxb-events",
    region: str = "us-east-1",
    invocation_id: str | None = None,
) -> Request:
    return {
        "invocationId": invocation_id or str(uuid.uuid4()),
        "deliveryStreamArn": delivery_stream_arn,
        "sourceKinesisStreamArn": source_stream_arn,
        "region": region,
        "records": [
            {
                "recordId": f"{r.sequence_number}{i:08d}",
                "approximateArrivalTimestamp": (arrival := r.arrival_ms),
                "data": b64encode_as_string(r.data),
                "kinesisRecordMetadata": {
                    "shardId": r.shard_id,
                    "partitionKey": r.partition_key,
                    "approximateArrivalTimestamp": arrival,
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
    result: str  # a Result
    data: bytes  # decoded output (Ok) or b"" (other results)
    partition_keys: dict[str, str]
    error: str | None = None  # why Firehose counts it failed, if it does


def check_response(request: Request | dict[str, Any], response: Any) -> list[Verdict]:
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
        if error is None and result not in RESULTS:
            error = f"invalid result {result!r}"
        if error is None and result == Result.OK:
            try:
                data = b64decode(item.get("data", ""), validate=True)
            except (binascii.Error, ValueError, TypeError):
                error = "data is not valid base64"
            keys = ((item.get("metadata") or {}).get("partitionKeys")) or {}
        verdicts.append(
            Verdict(
                record_id=rid,
                result=Result.PROCESSING_FAILED if error else Result(result),
                data=b"" if error else data,
                partition_keys=keys,
                error=error or (None if result != Result.PROCESSING_FAILED else "Lambda.ProcessingFailed"),
            )
        )
    return verdicts


# --------------------------------------------------------------------------- the response on the wire


class Judged:
    """``check_response``'s verdicts as parallel lists, one entry per request record, in request order.

    ``results[i]`` is Ok, Dropped or ProcessingFailed; ``datas[i]`` the decoded output (b"" unless Ok);
    ``keys[i]`` the partition keys; ``errors[i]`` why Firehose counts it failed (None if it does not);
    ``unknown_ids`` how many answers carried a recordId that was never sent (ignored).
    """

    __slots__ = ("datas", "errors", "keys", "results", "unknown_ids")

    def __init__(
        self,
        results: list[str],
        datas: list[bytes],
        keys: list[dict[str, Any]],
        errors: list[str | None],
        unknown_ids: int = 0,
    ) -> None:
        self.results = results
        self.datas = datas
        self.keys = keys
        self.errors = errors
        self.unknown_ids = unknown_ids


class _Answer(msgspec.Struct):
    recordId: str  # Firehose's field names
    result: str
    # msgspec reads base64 into bytes in C. It accepts a subset of what a2b_base64(strict_mode=True) accepts
    # (tests/functional/firehose/test_fast_paths.py fuzzes this); anything else fails the typed decode -> general path.
    data: bytes = b""
    metadata: msgspec.Raw = msgspec.Raw(b"null")  # decoded once per distinct value, below


class _Response(msgspec.Struct):
    records: list[_Answer]


_response_decoder = msgspec.json.Decoder(_Response)
_any_decoder = msgspec.json.Decoder()


class _Irregular(Exception):
    """The response is not of the common shape; the general path judges it."""


def judge_wire(record_ids: Sequence[str], body: bytes) -> Judged:
    """Judge a response given as its JSON bytes, exactly as ``check_response`` would judge it decoded.

    The common answer - every record answered once, in request order, with well-typed fields - is
    decoded into typed structs and judged in one pass. Anything else (a missing, extra, duplicated or
    reordered recordId, a field of an unexpected type, data that is not plain base64) is decoded
    generically and judged by ``check_response`` itself, so both paths give the same verdicts.
    Records with the same metadata share one partition-keys dict: read it, do not change it.
    """
    try:
        answers = _response_decoder.decode(body).records
        if [a.recordId for a in answers] != list(record_ids):
            raise _Irregular
        return _judge_typed(answers)
    except (msgspec.DecodeError, _Irregular):  # DecodeError includes ValidationError
        return _judge_general(record_ids, _any_decoder.decode(body))


def _judge_typed(answers: list[_Answer]) -> Judged:
    results: list[str] = []
    datas: list[bytes] = []
    keys: list[dict[str, Any]] = []
    errors: list[str | None] = []
    seen: dict[bytes, Any] = {}  # metadata JSON -> its partition keys
    for answer in answers:
        result = answer.result
        if result == Result.OK:
            datas.append(answer.data)
            raw = bytes(answer.metadata)
            found = seen.get(raw)
            if found is None:
                found = seen[raw] = _partition_keys(_any_decoder.decode(raw))
            keys.append(found)
            errors.append(None)
        else:
            datas.append(b"")
            keys.append({})
            if result == Result.DROPPED:
                errors.append(None)
            elif result == Result.PROCESSING_FAILED:
                errors.append("Lambda.ProcessingFailed")
            else:
                errors.append(f"invalid result {result!r}")
                result = Result.PROCESSING_FAILED
        results.append(result)
    return Judged(results, datas, keys, errors)


def _partition_keys(metadata: Any) -> Any:
    """check_response's reading of an Ok answer's metadata; a metadata it could not read is irregular."""
    if metadata is None:
        return {}
    if not isinstance(metadata, dict):
        raise _Irregular
    return metadata.get("partitionKeys") or {}


def _judge_general(record_ids: Sequence[str], response: Any) -> Judged:
    verdicts = check_response({"records": [{"recordId": rid} for rid in record_ids]}, response)
    unknown = 0
    if isinstance(response, dict) and isinstance(response.get("records"), list):
        sent = set(record_ids)
        unknown = sum(
            1 for item in response["records"] if not isinstance(item, dict) or item.get("recordId") not in sent
        )
    return Judged(
        [v.result for v in verdicts],
        [v.data for v in verdicts],
        [v.partition_keys for v in verdicts],
        [v.error for v in verdicts],
        unknown,
    )
