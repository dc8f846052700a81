"""The data-transformation step: invoke the transform handler in-process, as Firehose invokes the Lambda.

The handler is any callable taking Firehose's event dict and returning the response
dict (a Lambda handler), or ``(response, BatchStats)`` as ``Transformer.process``
does, in which case its reasons are kept for reconciliation. The handler gets a
freshly built event per attempt (its own copy, as over Lambda's wire: what it does
to it cannot change what Firehose judges against), and the request is encoded to
check its exact size. The response is encoded as Lambda would, so a handler that
returns something Lambda could not serialise fails the same way, and is judged in
its wire form (``judge_wire``: ``check_response``'s verdicts, one typed pass).

Per invocation: at most the processor buffer hint and the 6 MB Lambda payload.
An invocation that raises (or answers over 6 MB, or not JSON) is retried
``retries`` times; records of a batch that never succeeds fail with
``Lambda.FunctionError``. Per record, the contract's judgement decides; a failed
record goes to the ``processing-failed`` error output with the original data.
"""

from __future__ import annotations

import time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from time import perf_counter
from typing import Any

import msgspec

from bxb_runtime.wire.firehose_processor import Result
from bxb_stream.firehose.invocation import firehose_event, judge_wire
from bxb_stream.firehose.records import PROCESSING_FAILED, Failure, Record
from bxb_stream.firehose.settings import LAMBDA_PAYLOAD_LIMIT, ProcessorSettings
from bxb_stream.firehose.timing import CHECK, INVOKE, REQUEST, TRANSFORM, Stages

Handler = Callable[[dict[str, Any]], Any]

# Bytes one record adds to the event besides its base64 data: recordId, arrival, Kinesis metadata.
RECORD_OVERHEAD = 320
EVENT_OVERHEAD = 512
PROCESSING_FAILED_MESSAGE = "The record was marked ProcessingFailed by the Lambda function"
FUNCTION_ERROR_MESSAGE = "The Lambda function failed after all retries"

# check_response's reasons -> the error codes written to the error output.
_ERROR_CODES = (
    ("recordId missing", "Lambda.MissingRecordId"),
    ("recordId answered twice", "Lambda.DuplicatedRecordId"),
    ("invalid result", "Lambda.InvalidRecordResult"),
    ("data is not valid base64", "Lambda.InvalidBase64Data"),
    ("response has no records list", "Lambda.JsonProcessingException"),
)


def error_code(reason: str) -> str:
    for prefix, code in _ERROR_CODES:
        if reason.startswith(prefix):
            return code
    return "Lambda.ProcessingFailed"


def record_cost(record: Record) -> int:
    """Bytes the record adds to the invocation event."""
    return (len(record.data) + 2) // 3 * 4 + RECORD_OVERHEAD


@dataclass
class ProcessorStats:
    invocations: int = 0  # attempts, including retries
    failed_invocations: int = 0  # attempts that raised or answered unusably
    batches: int = 0
    ok: int = 0
    dropped: int = 0
    failed: int = 0
    conflicts: int = 0  # Ok records whose transaction came earlier in their batch with another payload
    reasons: Counter[str] = field(default_factory=Counter)  # the transform's own drop/reject codes
    error_codes: Counter[str] = field(default_factory=Counter)
    unknown_record_ids: int = 0  # ids in a response that were never sent (ignored, as check_response does)


@dataclass
class Outcome:
    ok: list[tuple[Record, bytes, dict[str, str]]] = field(default_factory=list)
    dropped: list[Record] = field(default_factory=list)
    failed: list[Failure] = field(default_factory=list)


class Processor:
    def __init__(
        self,
        settings: ProcessorSettings,
        handler: Handler,
        *,
        delivery_stream_arn: str,
        source_stream_arn: str,
        region: str = "us-east-1",
        wall: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        stages: Stages | None = None,
    ) -> None:
        self.settings = settings
        self.handler = handler
        self.delivery_stream_arn = delivery_stream_arn
        self.source_stream_arn = source_stream_arn
        self.region = region
        self.wall = wall
        self.sleep = sleep
        self.stats = ProcessorStats()
        self.stages = stages or Stages()
        self.limit = min(settings.buffer_size_bytes, LAMBDA_PAYLOAD_LIMIT - EVENT_OVERHEAD)

    def batches(self, records: Sequence[Record]) -> list[list[Record]]:
        """Split into invocations of at most the buffer hint (and 6 MB); an oversized record goes alone."""
        return self.batches_and_costs(records)[0]

    def batches_and_costs(self, records: Sequence[Record]) -> tuple[list[list[Record]], list[int]]:
        """``batches``, with each batch's event bytes (``record_cost`` summed)."""
        out: list[list[Record]] = []
        costs: list[int] = []
        batch: list[Record] = []
        size = 0
        limit = self.limit
        for record in records:
            cost = (len(record.data) + 2) // 3 * 4 + RECORD_OVERHEAD  # record_cost, inlined: once per record
            if batch and size + cost > limit:
                out.append(batch)
                costs.append(size)
                batch, size = [], 0
            batch.append(record)
            size += cost
        if batch:
            out.append(batch)
            costs.append(size)
        return out, costs

    def process(self, records: Sequence[Record]) -> Outcome:
        """One batch through the handler, with Firehose's retries and response checks."""
        stats = self.stats
        stats.batches += 1
        invocation_id = str(uuid.uuid4())  # the same for every retry of this batch, as Firehose's
        attempts = self.settings.retries + 1
        last_error = ""
        for attempt in range(1, attempts + 1):
            started = perf_counter()
            event = self._event(records, invocation_id)
            record_ids = [r["recordId"] for r in event["records"]]  # read before the handler can touch them
            self.stages.lap(REQUEST, started)
            stats.invocations += 1
            try:
                body, batch_stats = self._invoke(event)
            except Exception as exc:  # any failure of the function itself is retried, as Firehose does
                stats.failed_invocations += 1
                last_error = f"{type(exc).__name__}: {exc}"
                if attempt < attempts:
                    self.sleep(min(0.05 * 2**attempt, 2.0))  # short backoff; the clock is injectable
                continue
            started = perf_counter()
            outcome = self._judge(record_ids, records, body, batch_stats, attempt)
            self.stages.lap(CHECK, started)
            return outcome
        ended = int(self.wall() * 1000)
        outcome = Outcome()
        message = f"{FUNCTION_ERROR_MESSAGE}: {last_error}"[:8192]
        for record in records:
            outcome.failed.append(
                Failure(record, PROCESSING_FAILED, "Lambda.FunctionError", message, attempts=attempts, ended_ms=ended)
            )
        stats.failed += len(records)
        stats.error_codes["Lambda.FunctionError"] += len(records)
        return outcome

    def _event(self, records: Sequence[Record], invocation_id: str) -> dict[str, Any]:
        return firehose_event(
            records,
            delivery_stream_arn=self.delivery_stream_arn,
            source_stream_arn=self.source_stream_arn,
            region=self.region,
            invocation_id=invocation_id,
        )

    def _invoke(self, event: dict[str, Any]) -> tuple[bytes, Any]:
        """Call the handler; returns the response's JSON bytes (as Lambda would send them) and its stats."""
        stages = self.stages
        started = perf_counter()
        size = len(msgspec.json.encode(event))
        if size > LAMBDA_PAYLOAD_LIMIT:
            raise RuntimeError(f"request of {size} bytes exceeds the Lambda payload limit")
        started = stages.lap(INVOKE, started)
        try:
            result = self.handler(event)
        finally:
            started = stages.lap(TRANSFORM, started)
        batch_stats = None
        if isinstance(result, tuple) and len(result) == 2:  # Transformer.process: (response, BatchStats)
            result, batch_stats = result
        body = msgspec.json.encode(result)
        if len(body) > LAMBDA_PAYLOAD_LIMIT:
            raise RuntimeError(f"response of {len(body)} bytes exceeds the Lambda payload limit")
        stages.lap(INVOKE, started)
        return body, batch_stats

    def _judge(
        self, record_ids: list[str], records: Sequence[Record], body: bytes, batch_stats: Any, attempt: int
    ) -> Outcome:
        stats = self.stats
        judged = judge_wire(record_ids, body)
        stats.unknown_record_ids += judged.unknown_ids
        rejections: dict[str, str] = {}
        if batch_stats is not None:
            stats.reasons.update(batch_stats.reasons)
            stats.conflicts += batch_stats.conflicts
            rejections = {r.record_id: f"{r.code}: {r.message}" for r in batch_stats.rejections}
        ended = int(self.wall() * 1000)
        outcome = Outcome()
        ok, dropped = outcome.ok, outcome.dropped
        results, datas, keys = judged.results, judged.datas, judged.keys
        for i, record in enumerate(records):
            result = results[i]
            if result == Result.OK:
                ok.append((record, datas[i], keys[i]))
            elif result == Result.DROPPED:
                dropped.append(record)
            else:
                reason = judged.errors[i] or "Lambda.ProcessingFailed"
                code = error_code(reason)
                if code == "Lambda.ProcessingFailed":
                    message = rejections.get(record_ids[i], PROCESSING_FAILED_MESSAGE)
                else:
                    message = reason
                outcome.failed.append(
                    Failure(record, PROCESSING_FAILED, code, message, attempts=attempt, ended_ms=ended)
                )
                stats.error_codes[code] += 1
        stats.ok += len(outcome.ok)
        stats.dropped += len(outcome.dropped)
        stats.failed += len(outcome.failed)
        return outcome
