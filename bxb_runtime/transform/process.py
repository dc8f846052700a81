"""The transform: one Firehose processor request in, its response out, as plain dicts.

The shapes and results are those of ``bxb_runtime.wire.firehose_processor`` (Firehose's
data-transformation contract).

Every recordId comes back exactly once, in order, whatever its bytes: anything that
goes wrong with one record fails that record alone. Ok records carry one
newline-terminated JSON line (the normalised event, with ``arrived_at`` = the record's
Kinesis arrival) and ``metadata.partitionKeys`` = organization_id, date and hour.

Within a batch, a copy of an (organization_id, transaction_id) with the payload of a copy
already passed on is ``Dropped`` (``duplicate_in_batch``): it carries nothing that is not
stored. A copy with a payload not seen yet is passed on ``Ok``, in stream order, so
ClickHouse's resolver stores it: billed if it is the first, a conflict otherwise (the
same rule the resolver applies across batches).
Lateness is not decided here: billing periods live in ClickHouse (see
``bxb_stream.clickhouse.ddl``), and both delivery paths decide it there, the same way.
"""

from __future__ import annotations

import binascii
import json
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec
from pybase64 import b64decode, b64encode_as_string

from bxb_runtime import layout
from bxb_runtime.config import EventRules
from bxb_runtime.events.lines import line_encoder
from bxb_runtime.events.validate import EventError, from_dict, make_normalizer, to_dict
from bxb_runtime.transform.hooks import Hook, is_drop
from bxb_runtime.wire.firehose_processor import PAYLOAD_LIMIT_BYTES, Metadata, Request, Response, ResponseRecord, Result

OK, DROPPED, FAILED = Result.OK, Result.DROPPED, Result.PROCESSING_FAILED
DUPLICATE = "duplicate_in_batch"
CONFLICT = "conflict_in_batch"  # counted, and answered Ok: the resolver stores it as a conflict
RESPONSE_TOO_LARGE = "response_too_large"
INTERNAL_ERROR = "internal_error"
# Lambda's synchronous response limit is 6 MB; keep a margin for the runtime's framing.
MAX_RESPONSE_BYTES = PAYLOAD_LIMIT_BYTES - 64 * 1024


def is_rejection(reason: str) -> bool:
    """Whether a transform reason code sent the record to Firehose's error output (ProcessingFailed),
    rather than counting a copy it dropped or passed on."""
    return reason not in (DUPLICATE, CONFLICT) and not reason.startswith("hook_dropped:")


@dataclass(frozen=True, slots=True)
class HookDropped:
    """What ``_run_hooks`` gives for a record a hook dropped: the hook's name."""

    hook: str


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
    conflicts: int = 0  # Ok records whose transaction_id came earlier in the batch with another payload
    rejections: list[Rejection] = field(default_factory=list)
    response_bytes: int = 0  # the response as the Lambda runtime serialises it

    @property
    def balanced(self) -> bool:
        return self.records_in == sum(self.results.values())


class Transformer:
    """Validates, normalises, enriches, deduplicates and partitions one Firehose batch."""

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
        self._partitions: dict[Any, tuple[Metadata, int]] = {}  # -> metadata, and its size as json.dumps writes it
        self._normalize = make_normalizer(rules)

    def process(self, event: Request) -> tuple[Response, BatchStats]:
        records = event["records"]
        stats = BatchStats(records_in=len(records))
        out: list[ResponseRecord] = []
        passed: dict[Any, Any] = {}  # (org,) transaction_id -> the copy passed on, or a list of them
        now_ms = int(self.clock() * 1000)
        hooks = self.hooks
        partitions = self._partitions
        normalize = self._normalize
        default_org = self.rules.organization_id
        encode_into = line_encoder.encode_into
        line_buffer = bytearray()  # one buffer for every output line: no bytes object per line
        ok = conflicts = 0
        ok_bytes = 0  # the Ok answers' sizes as json.dumps writes them, but for their record ids
        ok_ids: list[str] = []

        for record in records:
            record_id = record["recordId"]
            data = record.get("data")
            try:
                # pybase64 (SIMD) halves the base64 cost of stdlib binascii; validate=True is as strict.
                raw = b64decode(data, validate=True)
            except (binascii.Error, ValueError, TypeError) as exc:
                out.append(_reject(record_id, data, stats, "not_base64", f"record data is not valid base64 ({exc})"))
                continue
            try:
                ev = normalize(raw, record.get("approximateArrivalTimestamp") or now_ms, now_ms)
                if hooks:
                    ev = self._run_hooks(ev)
                    if type(ev) is HookDropped:
                        out.append(_answer(record_id, DROPPED, data, stats, f"hook_dropped:{ev.hook}"))
                        continue
                org = ev.organization_id
                # A bare id for the deployment's own organization, (org, id) for others: no tuple on the common path.
                key = ev.transaction_id if org == default_org else (org, ev.transaction_id)
                earlier = passed.get(key)
                if earlier is None:
                    passed[key] = ev
                else:
                    variants = earlier if type(earlier) is list else [earlier]
                    if any(same_payload(copy, ev) for copy in variants):
                        out.append(_answer(record_id, DROPPED, data, stats, DUPLICATE))
                        continue
                    passed[key] = [*variants, ev]
                    conflicts += 1
                encode_into(ev, line_buffer)
                line_buffer.append(10)  # the newline OpenX needs between records
                line = b64encode_as_string(line_buffer)
                hour = ev.timestamp // 3_600_000
                partition = partitions.get(hour if org == default_org else (org, hour))
                if partition is None:
                    partition = self._partition(org, hour)
                metadata, metadata_bytes = partition
            except EventError as exc:
                out.append(_reject(record_id, data, stats, exc.code, exc.message))
                continue
            except Exception as exc:  # one record's surprise must never fail the batch
                out.append(_reject(record_id, data, stats, INTERNAL_ERROR, f"{type(exc).__name__}: {exc}"[:500]))
                continue
            ok += 1
            out.append({"recordId": record_id, "result": OK, "data": line, "metadata": metadata})
            # Counted here, from lengths already known: encoding the answer again costs 20% of the transform.
            ok_bytes += _OK_ANSWER_BYTES + len(line) + metadata_bytes
            ok_ids.append(record_id)

        stats.results[OK] += ok
        stats.conflicts = conflicts
        if conflicts:
            stats.reasons[CONFLICT] += conflicts
        response: Response = {"records": out}
        stats.response_bytes = self._fit_response(records, out, stats, _size(out, ok, ok_bytes, ok_ids))
        return response, stats

    def _fit_response(self, records: Sequence[Any], out: list[ResponseRecord], stats: BatchStats, size: int) -> int:
        """Keep the response (``size`` bytes, as the runtime will encode it) under Lambda's limit:
        past the limit, fail Ok records from the end (their original data goes to Firehose's
        error output, so nothing is lost). Returns the final size."""
        index = len(out) - 1
        while size > self.max_response_bytes and index >= 0:
            answer = out[index]
            if answer["result"] == OK:
                data = records[index].get("data")
                failed: ResponseRecord = {"recordId": answer["recordId"], "result": FAILED, "data": data}
                size += entry_size(failed) - entry_size(answer)
                out[index] = failed
                stats.results[OK] -= 1
                stats.rejections.append(Rejection(answer["recordId"], RESPONSE_TOO_LARGE, "response over 6 MB"))
                _count(stats, FAILED, RESPONSE_TOO_LARGE)
            index -= 1
        return size

    def _run_hooks(self, normalized: Any) -> Any:
        """Run the hooks over the dict form: the checked event, or ``HookDropped`` naming the hook that dropped it."""
        ev = to_dict(normalized)
        for hook in self.hooks:
            try:
                result = hook.function(ev)
            except Exception as exc:  # a team's hook must fail one record, never the batch
                raise EventError(f"hook_failed:{hook.name}", f"{type(exc).__name__}: {exc}"[:500]) from None
            if is_drop(result):
                return HookDropped(hook.name)
            ev = result
        try:
            return from_dict(ev, normalized, self.rules)
        except EventError as exc:
            raise EventError(f"hook_failed:{exc.code}", exc.message) from None

    def _partition(self, organization_id: str, hour: int) -> Metadata:
        """Partition-key metadata, built once per (org, hour) and shared by its records."""
        if len(self._partitions) > 10_000:
            self._partitions.clear()
        meta: Metadata = {"partitionKeys": layout.partition_keys(organization_id, hour * 3_600_000)}
        entry = meta, len(json.dumps(meta))
        self._partitions[hour if organization_id == self.rules.organization_id else (organization_id, hour)] = entry
        return entry


def same_payload(a: Any, b: Any) -> bool:
    """Two copies of one transaction carry the same payload (what ClickHouse's resolver calls a
    duplicate): equal fields, where a timestamp that defaulted to its record's arrival counts as
    absent, so an identical resend without a timestamp matches its first copy."""
    return (
        a.external_customer_id == b.external_customer_id
        and a.code == b.code
        and a.properties == b.properties
        and a.value == b.value
        and a.decimal_value == b.decimal_value
        and (a.timestamp == b.timestamp or (a.timestamp == a.arrived_at and b.timestamp == b.arrived_at))
    )


# ------------------------------------------------------------------ measuring the response

_response_encoder = msgspec.json.Encoder()
# json.dumps (what the Lambda runtime uses) puts a space after every ',' and ':' between items.
# An answer with metadata: 4 keys, 3 commas; partitionKeys: 1 key; its 3 keys, 2 commas.
_GAPS_OK, _GAPS_OTHER = 4 + 3 + 1 + 3 + 2, 3 + 2


# An Ok answer as json.dumps writes it, less its record id, its data and its metadata (the data's quotes stay).
_OK_ANSWER_BYTES = len(json.dumps({"recordId": None, "result": OK, "data": "", "metadata": None})) - 2 * len("null")


def _size(out: Sequence[ResponseRecord], ok: int, ok_bytes: int, ok_ids: list[str]) -> int:
    """``response_size(out)``, from the Ok answers' sizes counted in the loop: only their record
    ids are left to count, at once when none needs escaping (Firehose's never do)."""
    try:
        ids = "".join(ok_ids)
    except TypeError:  # a record id that is not a string
        return response_size(out)
    if not (ids.isascii() and ids.isprintable()) or '"' in ids or "\\" in ids:
        return response_size(out)
    size = ok_bytes + len(ids) + 2 * ok + 15 + 2 * max(len(out) - 1, 0)  # quotes; {"records": [...]}; ", "
    if len(out) > ok:
        size += sum(entry_size(answer) for answer in out if answer["result"] != OK)
    return size


def response_size(out: Sequence[ResponseRecord]) -> int:
    """Bytes of ``json.dumps({"records": out})``, exactly: msgspec's compact encoding plus the
    separators' spaces, or json.dumps itself when escaping could differ (non-ASCII text)."""
    response = {"records": out}
    try:
        body = _response_encoder.encode(response)
    except (TypeError, ValueError, OverflowError, UnicodeEncodeError):
        body = b""
    if not body or not body.isascii():
        return len(json.dumps(response).encode())
    gaps = 1 + max(len(out) - 1, 0)  # "records": and the commas between answers
    for answer in out:
        gaps += _GAPS_OK if "metadata" in answer else _GAPS_OTHER
    return len(body) + gaps


def entry_size(answer: ResponseRecord) -> int:
    """Bytes of one answer as json.dumps writes it (see ``response_size``)."""
    try:
        body = _response_encoder.encode(answer)
    except (TypeError, ValueError, OverflowError, UnicodeEncodeError):
        body = b""
    if not body or not body.isascii():
        return len(json.dumps(answer).encode())
    return len(body) + (_GAPS_OK if "metadata" in answer else _GAPS_OTHER)


def _count(stats: BatchStats, result: Result, reason: str) -> None:
    stats.results[result] += 1
    stats.reasons[reason] += 1


def _reject(record_id: str, data: Any, stats: BatchStats, code: str, message: str) -> ResponseRecord:
    stats.rejections.append(Rejection(record_id, code, message))
    return _answer(record_id, FAILED, data, stats, code)


def _answer(record_id: str, result: Result, data: Any, stats: BatchStats, reason: str) -> ResponseRecord:
    _count(stats, result, reason)
    return {"recordId": record_id, "result": result, "data": data}
