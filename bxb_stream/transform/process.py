"""The Firehose data-transformation contract, as a plain function over dicts.

In:  {invocationId, deliveryStreamArn, sourceKinesisStreamArn?, region, records: [
        {recordId, approximateArrivalTimestamp, data (base64), kinesisRecordMetadata?}]}
Out: {records: [{recordId, result: Ok|Dropped|ProcessingFailed, data (base64), metadata?}]}

Every recordId comes back exactly once, in order. Ok records carry one
newline-terminated JSON line (the normalised event) and
``metadata.partitionKeys`` = organization_id, date, hour and stream
(``events`` on time, ``late`` past the allowed lateness).
"""

from __future__ import annotations

import binascii
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pybase64 import b64decode, b64encode_as_string

from bxb_stream.config import EventRules
from bxb_stream.events.lines import line_encoder
from bxb_stream.events.validate import EventError, from_dict, make_normalizer, to_dict
from bxb_stream.transform.hooks import Hook

OK, DROPPED, FAILED = "Ok", "Dropped", "ProcessingFailed"
STREAM_ON_TIME, STREAM_LATE = "events", "late"
DUPLICATE = "duplicate_in_batch"
RESPONSE_TOO_LARGE = "response_too_large"
# Lambda's synchronous response limit is 6 MB; keep a margin for the JSON envelope.
MAX_RESPONSE_BYTES = 6 * 1024 * 1024 - 64 * 1024
_RECORD_OVERHEAD = 160  # keys, quotes and partition-key metadata of one response record


@dataclass
class Rejection:
    record_id: str
    code: str
    message: str


@dataclass
class BatchStats:
    records_in: int = 0
    results: Counter[str] = field(default_factory=Counter)  # Ok / Dropped / ProcessingFailed
    reasons: Counter[str] = field(default_factory=Counter)  # error and drop codes
    late: int = 0
    rejections: list[Rejection] = field(default_factory=list)

    @property
    def balanced(self) -> bool:
        return self.records_in == sum(self.results.values())


class Transformer:
    """Validates, normalises, enriches, deduplicates and routes one Firehose batch."""

    def __init__(
        self,
        rules: EventRules,
        hooks: Sequence[Hook] = (),
        *,
        clock: Callable[[], float] = time.time,
        max_response_bytes: int = MAX_RESPONSE_BYTES,
    ) -> None:
        self.rules = rules
        self.hooks = tuple(hooks)
        self.clock = clock
        self.max_response_bytes = max_response_bytes
        self._partitions: dict[Any, dict[str, Any]] = {}
        self._normalize = make_normalizer(rules)

    def process(self, event: dict[str, Any]) -> tuple[dict[str, Any], BatchStats]:
        records = event["records"]
        stats = BatchStats(records_in=len(records))
        out: list[dict[str, Any]] = []
        seen: set[tuple[str, str]] = set()
        now_ms = int(self.clock() * 1000)
        rules = self.rules
        lateness_ms = rules.allowed_lateness_ms
        hooks = self.hooks
        partitions = self._partitions
        normalize = self._normalize
        default_org = rules.organization_id
        encode_into = line_encoder.encode_into
        line_buffer = bytearray()  # one buffer for every output line: no bytes object per line
        ok_bytes = late_count = 0

        for record in records:
            record_id = record["recordId"]
            data = record["data"]
            arrival_ms = record.get("approximateArrivalTimestamp") or now_ms
            try:
                # pybase64 (SIMD) halves the base64 cost of stdlib binascii; validate=True is as strict.
                ev = normalize(b64decode(data, validate=True), arrival_ms, now_ms)
                if hooks:
                    ev = self._run_hooks(ev)
                    if type(ev) is str:  # the name of the hook that dropped it
                        out.append(_answer(record_id, DROPPED, data, stats, f"hook_dropped:{ev}"))
                        continue
                org = ev.organization_id
                # A bare id for the deployment's own organization, (org, id) for others: no tuple on the common path.
                key = ev.transaction_id if org == default_org else (org, ev.transaction_id)
                if key in seen:
                    out.append(_answer(record_id, DROPPED, data, stats, DUPLICATE))
                    continue
                encode_into(ev, line_buffer)
                line_buffer.append(10)  # the newline OpenX needs between records
                line = b64encode_as_string(line_buffer)
            except EventError as exc:
                out.append(_reject(record_id, data, stats, exc.code, exc.message))
                continue
            except binascii.Error as exc:
                out.append(_reject(record_id, data, stats, "not_base64", f"record data is not valid base64 ({exc})"))
                continue
            seen.add(key)
            ok_bytes += len(line) + len(record_id)
            ts = ev.timestamp
            late = ts < arrival_ms - lateness_ms
            late_count += late
            hour = ts // 3_600_000
            partition = partitions.get((hour << 1 | late) if org == default_org else (org, hour, late))
            if partition is None:
                partition = self._partition(org, hour, late)
            out.append({"recordId": record_id, "result": OK, "data": line, "metadata": partition})

        stats.results[OK] += len(seen)
        stats.late = late_count
        self._fit_response(records, out, stats, ok_bytes)
        return {"records": out}, stats

    def _fit_response(
        self, records: list[dict[str, Any]], out: list[dict[str, Any]], stats: BatchStats, ok_bytes: int
    ) -> None:
        """Keep the response under Lambda's limit: past it, fail Ok records from the end.

        Failed records go to Firehose's error output with their original data,
        so nothing is lost. ``ok_bytes`` (data and ids of the Ok records) is summed
        in the loop, where they are still in cache; the rest echo their input.
        """
        size = ok_bytes + _RECORD_OVERHEAD * len(out)
        if stats.results[OK] < len(out):
            size += sum(len(r["data"]) + len(r["recordId"]) for r in out if r["result"] != OK)
        index = len(out) - 1
        while size > self.max_response_bytes and index >= 0:
            answer = out[index]
            if answer["result"] == OK:
                original = records[index]["data"]
                size += len(original) - len(answer["data"])
                out[index] = {"recordId": answer["recordId"], "result": FAILED, "data": original}
                stats.results[OK] -= 1
                stats.late -= answer["metadata"]["partitionKeys"]["stream"] == STREAM_LATE
                stats.rejections.append(Rejection(answer["recordId"], RESPONSE_TOO_LARGE, "response over 6 MB"))
                _count(stats, FAILED, RESPONSE_TOO_LARGE)
            index -= 1

    def _run_hooks(self, normalized: Any) -> Any:
        """Run the hooks over the dict form; return the checked result, or the dropping hook's name."""
        ev = to_dict(normalized)
        for hook in self.hooks:
            try:
                result = hook.function(ev)
            except Exception as exc:  # a team's hook must fail one record, never the batch
                raise EventError(f"hook_failed:{hook.name}", f"{type(exc).__name__}: {exc}") from None
            if result is None:
                return hook.name
            ev = result
        try:
            return from_dict(ev, self.rules)
        except EventError as exc:
            raise EventError(f"hook_failed:{exc.code}", exc.message) from None

    def _partition(self, organization_id: str, hour: int, late: bool) -> dict[str, Any]:
        """Partition-key metadata, built once per (org, hour, stream) and shared by its records."""
        if len(self._partitions) > 10_000:
            self._partitions.clear()
        at = datetime.fromtimestamp(hour * 3600, tz=UTC)
        meta = {
            "partitionKeys": {
                "organization_id": organization_id,
                "date": at.strftime("%Y-%m-%d"),
                "hour": at.strftime("%H"),
                "stream": STREAM_LATE if late else STREAM_ON_TIME,
            }
        }
        key = (hour << 1 | late) if organization_id == self.rules.organization_id else (organization_id, hour, late)
        self._partitions[key] = meta
        return meta


def _count(stats: BatchStats, result: str, reason: str) -> None:
    stats.results[result] += 1
    stats.reasons[reason] += 1


def _reject(record_id: str, data: str, stats: BatchStats, code: str, message: str) -> dict[str, Any]:
    stats.rejections.append(Rejection(record_id, code, message))
    return _answer(record_id, FAILED, data, stats, code)


def _answer(record_id: str, result: str, data: str, stats: BatchStats, reason: str) -> dict[str, Any]:
    _count(stats, result, reason)
    return {"recordId": record_id, "result": result, "data": data}
