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

import time
from binascii import b2a_base64
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from bxb_stream.config import EventRules
from bxb_stream.events.validate import EventError, decode_base64, from_dict, normalize_bytes, to_dict, to_line
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
        self._partitions: dict[tuple[str, int, str], dict[str, Any]] = {}

    def process(self, event: dict[str, Any]) -> tuple[dict[str, Any], BatchStats]:
        records = event["records"]
        stats = BatchStats(records_in=len(records))
        out: list[dict[str, Any]] = []
        seen: set[tuple[str, str]] = set()
        now_ms = int(self.clock() * 1000)
        rules = self.rules
        lateness_ms = rules.allowed_lateness_ms
        # Worst case, every record still to come is echoed back unchanged; reserve room for that.
        reserve = sum(len(r["data"]) + len(r["recordId"]) + _RECORD_OVERHEAD for r in records)
        used = 0
        results = stats.results

        for record in records:
            record_id = record["recordId"]
            data = record["data"]
            echo = len(data) + len(record_id) + _RECORD_OVERHEAD
            reserve -= echo
            try:
                arrival_ms = _arrival_ms(record, now_ms)
                ev = normalize_bytes(decode_base64(data), rules, arrival_ms=arrival_ms, ingested_ms=now_ms)
                if self.hooks:
                    ev = self._run_hooks(ev)
                    if type(ev) is str:  # the name of the hook that dropped it
                        used += echo
                        out.append(_answer(record_id, DROPPED, data, stats, f"hook_dropped:{ev}"))
                        continue
                key = (ev.organization_id, ev.transaction_id)
                if key in seen:
                    used += echo
                    out.append(_answer(record_id, DROPPED, data, stats, DUPLICATE))
                    continue
                line = b2a_base64(to_line(ev), newline=False).decode("ascii")
                late = ev.timestamp < arrival_ms - lateness_ms
                size = len(line) + len(record_id) + _RECORD_OVERHEAD
                if used + size + reserve > self.max_response_bytes:
                    raise EventError(RESPONSE_TOO_LARGE, "response would exceed the 6 MB Lambda limit")
            except EventError as exc:
                stats.rejections.append(Rejection(record_id, exc.code, exc.message))
                out.append(_answer(record_id, FAILED, data, stats, exc.code))
                used += echo
                continue
            seen.add(key)
            used += size
            stats.late += late
            results[OK] += 1
            out.append(
                {
                    "recordId": record_id,
                    "result": OK,
                    "data": line,
                    "metadata": self._partition(ev.organization_id, ev.timestamp, late),
                }
            )
        return {"records": out}, stats

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

    def _partition(self, organization_id: str, ts_ms: int, late: bool) -> dict[str, Any]:
        """Partition-key metadata, shared between records of the same org, hour and stream."""
        hour = ts_ms // 3_600_000
        stream = STREAM_LATE if late else STREAM_ON_TIME
        cache_key = (organization_id, hour, stream)
        meta = self._partitions.get(cache_key)
        if meta is None:
            if len(self._partitions) > 10_000:
                self._partitions.clear()
            at = datetime.fromtimestamp(hour * 3600, tz=timezone.utc)
            meta = {
                "partitionKeys": {
                    "organization_id": organization_id,
                    "date": at.strftime("%Y-%m-%d"),
                    "hour": at.strftime("%H"),
                    "stream": stream,
                }
            }
            self._partitions[cache_key] = meta
        return meta


def _arrival_ms(record: dict[str, Any], default: int) -> int:
    """Kinesis arrival time if known, else Firehose's, else now."""
    meta = record.get("kinesisRecordMetadata")
    if meta and meta.get("approximateArrivalTimestamp"):
        return int(meta["approximateArrivalTimestamp"])
    arrival = record.get("approximateArrivalTimestamp")
    return int(arrival) if arrival else default


def _answer(record_id: str, result: str, data: str, stats: BatchStats, reason: str) -> dict[str, Any]:
    stats.results[result] += 1
    stats.reasons[reason] += 1
    return {"recordId": record_id, "result": result, "data": data}
