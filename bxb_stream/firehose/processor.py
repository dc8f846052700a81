"""The data-transformation step: invoke the transform handler in-process, as Firehose invokes the Lambda.

The handler is any callable taking Firehose's event dict and returning the response
dict (a Lambda handler), or ``(response, BatchStats)`` as ``Transformer.process``
does, in which case its reasons are kept for reconciliation. The response makes a
JSON round trip, as it would over Lambda's wire, so a handler that returns
something Lambda could not serialise fails the same way.

Per invocation: at most the processor buffer hint and the 6 MB Lambda payload.
An invocation that raises (or answers over 6 MB, or not JSON) is retried
``retries`` times; records of a batch that never succeeds fail with
``Lambda.FunctionError``. Per record, ``check_response`` decides; a failed
record goes to the ``processing-failed`` error output with the original data.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from time import perf_counter
from typing import Any

import msgspec

from bxb_stream.firehose.records import PROCESSING_FAILED, Failure, Record
from bxb_stream.firehose.settings import LAMBDA_PAYLOAD_LIMIT, ProcessorSettings
from bxb_stream.firehose.timing import CHECK, INVOKE, REQUEST, TRANSFORM, Stages
from bxb_stream.transform.contract import check_response, firehose_event

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
    late: int = 0  # Ok records the transform routed to the late stream
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
        out: list[list[Record]] = []
        batch: list[Record] = []
        size = 0
        for record in records:
            cost = record_cost(record)
            if batch and size + cost > self.limit:
                out.append(batch)
                batch, size = [], 0
            batch.append(record)
            size += cost
        if batch:
            out.append(batch)
        return out

    def process(self, records: Sequence[Record]) -> Outcome:
        """One batch through the handler, with Firehose's retries and response checks."""
        stats = self.stats
        stats.batches += 1
        started = perf_counter()
        event = firehose_event(
            [r.source() for r in records],
            delivery_stream_arn=self.delivery_stream_arn,
            source_stream_arn=self.source_stream_arn,
            region=self.region,
        )
        self.stages.lap(REQUEST, started)
        attempts = self.settings.retries + 1
        last_error = ""
        for attempt in range(1, attempts + 1):
            stats.invocations += 1
            try:
                response, batch_stats = self._invoke(event)
            except Exception as exc:  # any failure of the function itself is retried, as Firehose does
                stats.failed_invocations += 1
                last_error = f"{type(exc).__name__}: {exc}"
                if attempt < attempts:
                    self.sleep(min(0.05 * 2**attempt, 2.0))  # short backoff; the clock is injectable
                continue
            started = perf_counter()
            outcome = self._judge(event, records, response, batch_stats, attempt)
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

    def _invoke(self, event: dict[str, Any]) -> tuple[Any, Any]:
        # The handler gets its own copy, as a Lambda would, so it cannot alter what Firehose judges against.
        stages = self.stages
        started = perf_counter()
        wire = msgspec.json.encode(event)
        if len(wire) > LAMBDA_PAYLOAD_LIMIT:
            raise RuntimeError(f"request of {len(wire)} bytes exceeds the Lambda payload limit")
        request = msgspec.json.decode(wire)
        started = stages.lap(INVOKE, started)
        try:
            result = self.handler(request)
        finally:
            started = stages.lap(TRANSFORM, started)
        batch_stats = None
        if isinstance(result, tuple) and len(result) == 2:  # Transformer.process: (response, BatchStats)
            result, batch_stats = result
        body = msgspec.json.encode(result)
        if len(body) > LAMBDA_PAYLOAD_LIMIT:
            raise RuntimeError(f"response of {len(body)} bytes exceeds the Lambda payload limit")
        response = msgspec.json.decode(body)
        stages.lap(INVOKE, started)
        return response, batch_stats

    def _judge(
        self, event: dict[str, Any], records: Sequence[Record], response: Any, batch_stats: Any, attempt: int
    ) -> Outcome:
        stats = self.stats
        verdicts = check_response(event, response)
        if isinstance(response, dict) and isinstance(response.get("records"), list):
            sent = {r["recordId"] for r in event["records"]}
            stats.unknown_record_ids += sum(
                1 for item in response["records"] if not isinstance(item, dict) or item.get("recordId") not in sent
            )
        rejections: dict[str, str] = {}
        if batch_stats is not None:
            stats.reasons.update(batch_stats.reasons)
            stats.late += batch_stats.late
            rejections = {r.record_id: f"{r.code}: {r.message}" for r in batch_stats.rejections}
        ended = int(self.wall() * 1000)
        outcome = Outcome()
        for record, verdict in zip(records, verdicts, strict=True):
            if verdict.result == "Ok":
                outcome.ok.append((record, verdict.data, verdict.partition_keys))
            elif verdict.result == "Dropped":
                outcome.dropped.append(record)
            else:
                reason = verdict.error or "Lambda.ProcessingFailed"
                code = error_code(reason)
                if code == "Lambda.ProcessingFailed":
                    message = rejections.get(verdict.record_id, PROCESSING_FAILED_MESSAGE)
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
