"""Thread-safe Kinesis producer: validate at the edge, batch to the PutRecords limits,
optionally KPL-aggregate, and retry only the failed entries.

Delivery contract: every accepted event ends either in a successful PutRecords entry
or in a ``DeliveryFailure`` (returned by ``flush``/``close`` or passed to
``on_failure``). The library never re-sends an entry Kinesis acknowledged, so it adds
no duplicates of its own (a network error after Kinesis stored a batch can still
cause one, as with any at-least-once producer; the pipeline deduplicates on
``transaction_id``).

Ordering: batches go out one at a time, and a batch's retries finish before the next
batch is sent, so a partition key's events stay in order except when a retry moves a
failed entry behind a later one from the same request.
"""

from __future__ import annotations

import bisect
import hashlib
import logging
import os
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any, NamedTuple

import msgspec

from bxb_stream import kpl
from bxb_stream.config import EventRules
from bxb_stream.events.validate import EventError, decode, normalize
from bxb_stream.producer import limits as L

log = logging.getLogger(__name__)

Event = Mapping[str, Any] | bytes | str
PartitionKeyFn = Callable[[Any], str]
HashKeyFn = Callable[[Any], "int | str | None"]

# Per-entry and whole-call error codes worth another attempt. Anything else
# (ValidationException, ResourceNotFoundException, AccessDenied, KMS key problems)
# would fail the same way again, so it is reported at once.
RETRYABLE_CODES = frozenset(
    {
        "ProvisionedThroughputExceededException",
        "InternalFailure",
        "InternalServerError",
        "ServiceUnavailable",
        "ServiceUnavailableException",
        "ThrottlingException",
        "Throttling",
        "LimitExceededException",
        "RequestTimeout",
        "RequestTimeoutException",
        "KMSThrottlingException",
        "SlowDown",
    }
)


def _encode_default(obj: Any) -> Any:
    raise TypeError(f"cannot encode {type(obj).__name__} as JSON")


_encoder = msgspec.json.Encoder(decimal_format="number", enc_hook=_encode_default)


@dataclass
class ProducerStats:
    events: int = 0  # accepted by put/put_many and queued
    rejected: int = 0  # refused at the edge (invalid, too large); never sent
    delivered: int = 0  # events inside records Kinesis acknowledged
    records: int = 0  # Kinesis records acknowledged (aggregates count once)
    bytes: int = 0  # partition key + data bytes of acknowledged records
    requests: int = 0  # PutRecords calls made
    retries: int = 0  # record entries re-sent after a failure
    failures: int = 0  # events given up on and reported


@dataclass(frozen=True)
class DeliveryFailure:
    """An accepted event that could not be delivered."""

    event: Any  # what was passed to put(), unchanged
    error_code: str
    error_message: str
    attempts: int


@dataclass(frozen=True)
class Rejection:
    """An event ``put_many`` refused at the edge; ``index`` is its position in the input."""

    index: int
    event: Any
    error: EventError


class ProducerClosedError(RuntimeError):
    pass


class _Entry(NamedTuple):
    partition_key: str
    explicit_hash_key: str | None
    data: bytes
    size: int  # partition key UTF-8 bytes + data bytes: what Kinesis counts
    events: list[Any]


class _ShardMap:
    """Open shards' hash ranges, so aggregates only bundle records bound for one shard."""

    def __init__(self, starts: list[int]) -> None:
        self.starts = sorted(starts)

    def index(self, hash_key: int) -> int:
        return max(bisect.bisect_right(self.starts, hash_key) - 1, 0)


def _hash_key(partition_key: str, explicit_hash_key: str | None) -> int:
    if explicit_hash_key is not None:
        return int(explicit_hash_key)
    # Kinesis maps a partition key to a shard by the MD5 of its UTF-8 bytes as a 128-bit integer.
    return int.from_bytes(hashlib.md5(partition_key.encode(), usedforsecurity=False).digest(), "big")


def make_client(endpoint_url: str | None = None, region: str | None = None) -> Any:
    """A boto3 Kinesis client whose retries are ours alone (botocore's are switched off)."""
    import boto3
    from botocore.config import Config

    endpoint_url = endpoint_url or os.environ.get("AWS_ENDPOINT_URL_KINESIS") or os.environ.get("AWS_ENDPOINT_URL")
    region = region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
    config = Config(
        retries={"total_max_attempts": 1, "mode": "standard"},
        connect_timeout=5,
        read_timeout=30,
        tcp_keepalive=True,
    )
    return boto3.client("kinesis", endpoint_url=endpoint_url, region_name=region, config=config)


class Producer:
    """Send billing events to a Kinesis stream.

    ``put`` raises ``EventError`` for an invalid event unless ``on_invalid`` is given
    (then it is called and ``put`` returns False). Undeliverable events are passed to
    ``on_failure`` if given, else collected and returned by ``flush``/``close``.
    Callbacks run on whichever thread sends (a caller's or the linger thread).
    """

    def __init__(
        self,
        stream: str,
        *,
        client: Any = None,
        endpoint_url: str | None = None,
        region: str | None = None,
        rules: EventRules | None = None,
        validate: bool = True,
        partition_key: str | PartitionKeyFn = "external_customer_id",
        explicit_hash_key: int | str | HashKeyFn | None = None,
        aggregate: bool = False,
        aggregate_max_bytes: int = L.KPL_DEFAULT_AGGREGATE_BYTES,
        aggregate_by_shard: bool = True,
        limits: L.Limits = L.CURRENT,
        linger_ms: int | None = 200,
        max_attempts: int = 8,
        backoff_base_ms: int = 100,
        backoff_max_ms: int = 5_000,
        retry_deadline_s: float = 60.0,
        on_failure: Callable[[list[DeliveryFailure]], None] | None = None,
        on_invalid: Callable[[Any, EventError], None] | None = None,
        clock_ms: Callable[[], int] | None = None,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
    ) -> None:
        if aggregate and not kpl.OVERHEAD < aggregate_max_bytes <= limits.max_record_bytes:
            raise ValueError(f"aggregate_max_bytes must be in ({kpl.OVERHEAD}, {limits.max_record_bytes}]")
        if max_attempts < 1 or backoff_base_ms < 0 or backoff_max_ms < backoff_base_ms or retry_deadline_s <= 0:
            raise ValueError("retry settings: need max_attempts >= 1, 0 <= base <= max backoff, deadline > 0")
        if linger_ms is not None and linger_ms < 0:
            raise ValueError("linger_ms must be >= 0 or None")
        self.stream = stream
        self._stream_param = {"StreamARN": stream} if stream.startswith("arn:") else {"StreamName": stream}
        self._client = client if client is not None else make_client(endpoint_url, region)
        self._rules = rules or EventRules()
        self._validate = validate
        self._pk = partition_key
        self._ehk = explicit_hash_key
        if isinstance(explicit_hash_key, int | str):
            self._fixed_ehk: str | None = _check_ehk(explicit_hash_key)
        else:
            self._fixed_ehk = None
        self._aggregate = aggregate
        self._agg_max = aggregate_max_bytes
        self._agg_by_shard = aggregate_by_shard
        self._limits = limits
        self._linger_s = None if linger_ms is None else linger_ms / 1000
        self._max_attempts = max_attempts
        self._base_s = backoff_base_ms / 1000
        self._cap_s = backoff_max_ms / 1000
        self._deadline_s = retry_deadline_s
        self._on_failure = on_failure
        self._on_invalid = on_invalid
        self._clock_ms = clock_ms or (lambda: time.time_ns() // 1_000_000)
        self._sleep = sleep
        self._rng = rng or random.Random()

        self._lock = threading.Lock()  # buffers, aggregators, stats, failures
        self._send_lock = threading.Lock()  # one PutRecords batch (with its retries) at a time
        self._stats = ProducerStats()
        self._pending: list[_Entry] = []
        self._pending_bytes = 0
        self._ready: deque[list[_Entry]] = deque()
        self._aggs: dict[int, tuple[kpl.Aggregator, list[Any]]] = {}
        self._shards: _ShardMap | None = None
        self._shards_loaded = False
        self._oldest: float | None = None  # monotonic time the oldest buffered event arrived
        self._failures: list[DeliveryFailure] = []
        self._closed = False
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        if self._linger_s is not None:
            self._thread = threading.Thread(target=self._linger_loop, name="bxb-producer-linger", daemon=True)
            self._thread.start()

    # ------------------------------------------------------------------ public API

    @property
    def stats(self) -> ProducerStats:
        with self._lock:
            return replace(self._stats)

    def put(self, event: Event) -> bool:
        """Queue one event (a dict, or its JSON as bytes/str). True if accepted.

        An invalid event raises ``EventError`` (or goes to ``on_invalid`` and returns False).
        """
        err = self._accept(event)
        if err is None:
            return True
        if self._on_invalid is None:
            raise err
        return False

    def put_many(self, events: Iterable[Event]) -> list[Rejection]:
        """Queue many events; invalid ones are skipped, returned, and passed to ``on_invalid``."""
        return [Rejection(i, ev, err) for i, ev in enumerate(events) if (err := self._accept(ev)) is not None]

    def _accept(self, event: Event) -> EventError | None:
        if self._closed:
            raise ProducerClosedError("producer is closed")
        try:
            pk, ehk, data, size = self._prepare(event)
        except EventError as err:
            with self._lock:
                self._stats.rejected += 1
            if self._on_invalid is not None:
                self._on_invalid(event, err)
            return err
        self._load_shards()
        with self._lock:
            if self._closed:
                raise ProducerClosedError("producer is closed")
            self._stats.events += 1
            self._enqueue(pk, ehk, data, size, event)
            full = bool(self._ready)
        if full:
            self._drain()
        return None

    def flush(self) -> list[DeliveryFailure]:
        """Send everything buffered; return failures not yet reported (empty with ``on_failure``)."""
        with self._lock:
            self._cut_all()
        self._drain()
        return self._take_failures()

    def close(self) -> list[DeliveryFailure]:
        """Flush, stop the linger thread, and return the failures not yet reported."""
        with self._lock:
            already = self._closed
            self._closed = True
        if not already:
            self._stop.set()
            self._wake.set()
            if self._thread is not None:
                self._thread.join(timeout=self._deadline_s + 5)
        return self.flush()

    def __enter__(self) -> Producer:
        return self

    def __exit__(self, *exc: object) -> None:
        failures = self.close()
        if failures:
            log.error("producer closed with %d undelivered events", len(failures))

    # ------------------------------------------------------------------ edge

    def _prepare(self, event: Event) -> tuple[str, str | None, bytes, int]:
        """Validate, encode and key one event. Raises EventError; touches no shared state."""
        now = self._clock_ms()
        if isinstance(event, bytes | bytearray | memoryview | str):
            data = event.encode() if isinstance(event, str) else bytes(event)
            if self._validate:
                obj = decode(data, self._rules.max_record_bytes)
                normalize(obj, self._rules, arrival_ms=now, ingested_ms=now)
            else:
                try:
                    obj = msgspec.json.decode(data)
                except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):
                    obj = None  # unvalidated and not JSON: keyed by its bytes below
        else:
            obj = event
            if self._validate:
                normalize(obj, self._rules, arrival_ms=now, ingested_ms=now)
            try:
                data = _encoder.encode(obj)
            except (TypeError, msgspec.EncodeError, OverflowError) as exc:
                raise EventError("not_serializable", f"event cannot be encoded as JSON ({exc})") from None
            if self._validate and len(data) > self._rules.max_record_bytes:
                raise EventError("too_large", f"record is {len(data)} bytes, limit {self._rules.max_record_bytes}")
        pk = self._partition_key(obj, data)
        ehk = self._explicit_hash_key(obj)
        size = len(pk.encode()) + len(data)
        if size > self._limits.max_record_bytes:
            raise EventError(
                "record_too_large",
                f"partition key + data is {size} bytes, Kinesis record limit {self._limits.max_record_bytes}",
            )
        return pk, ehk, data, size

    def _partition_key(self, obj: Any, data: bytes) -> str:
        if callable(self._pk):
            try:
                key = self._pk(obj)
            except Exception as exc:  # a user function: report it against the event
                raise EventError("bad_partition_key", f"partition key function failed: {exc!r}") from None
            if type(key) is not str or not 1 <= len(key) <= L.MAX_PARTITION_KEY_CHARS:
                raise EventError("bad_partition_key", f"partition key must be 1..256 characters, got {key!r}")
            return key
        key = obj.get(self._pk) if isinstance(obj, Mapping) else None
        if type(key) is str and 1 <= len(key) <= L.MAX_PARTITION_KEY_CHARS:
            return key
        # Only unvalidated events get here (a valid event always has its customer): spread them by content.
        return hashlib.md5(data, usedforsecurity=False).hexdigest()

    def _explicit_hash_key(self, obj: Any) -> str | None:
        if self._ehk is None or self._fixed_ehk is not None:
            return self._fixed_ehk
        try:
            value = self._ehk(obj)  # type: ignore[operator]
        except Exception as exc:
            raise EventError("bad_explicit_hash_key", f"explicit hash key function failed: {exc!r}") from None
        if value is None:
            return None
        try:
            return _check_ehk(value)
        except ValueError as exc:
            raise EventError("bad_explicit_hash_key", str(exc)) from None

    # ------------------------------------------------------------------ buffering (callers hold _lock)

    def _load_shards(self) -> None:
        if not self._aggregate or not self._agg_by_shard or self._shards_loaded:
            return
        starts: list[int] = []
        try:
            kwargs: dict[str, Any] = dict(self._stream_param)
            for _page in range(1000):  # bounded: 1000 pages of up to 1000 shards
                resp = self._client.list_shards(**kwargs)
                for shard in resp.get("Shards", []):
                    if "EndingSequenceNumber" not in shard.get("SequenceNumberRange", {}):
                        starts.append(int(shard["HashKeyRange"]["StartingHashKey"]))
                token = resp.get("NextToken")
                if not token:
                    break
                kwargs = {"NextToken": token}
        except Exception as exc:  # no ListShards permission or emulator gap: one aggregate for all keys
            log.warning("ListShards failed (%s); aggregating across shards", exc)
            starts = []
        with self._lock:
            if not self._shards_loaded:
                self._shards = _ShardMap(starts) if len(starts) > 1 else None
                self._shards_loaded = True

    def _enqueue(self, pk: str, ehk: str | None, data: bytes, size: int, event: Any) -> None:
        if self._oldest is None:
            self._oldest = time.monotonic()
            self._wake.set()
        if not self._aggregate:
            self._append_entry(_Entry(pk, ehk, data, size, [event]))
            return
        slot = 0 if self._shards is None else self._shards.index(_hash_key(pk, ehk))
        agg, events = self._aggs.get(slot) or self._aggs.setdefault(
            slot, (kpl.Aggregator(self._agg_max, count_partition_key=True), [])
        )
        try:
            out = agg.add(kpl.UserRecord(pk, ehk, data))
        except kpl.RecordTooLargeError:
            # Too big to aggregate but within the record limit: send it on its own, as the KPL does.
            self._append_entry(_Entry(pk, ehk, data, size, [event]))
            return
        if out is None:
            events.append(event)
            return
        self._aggs[slot] = (agg, [event])
        self._append_aggregate(out, events)

    def _append_aggregate(self, out: kpl.Aggregate, events: list[Any]) -> None:
        size = len(out) + len(out.partition_key.encode())
        self._append_entry(_Entry(out.partition_key, out.explicit_hash_key, bytes(out), size, events))

    def _append_entry(self, entry: _Entry) -> None:
        lim = self._limits
        if self._pending and self._pending_bytes + entry.size > lim.max_request_bytes:
            self._cut()
        self._pending.append(entry)
        self._pending_bytes += entry.size
        if len(self._pending) >= lim.max_records_per_request or self._pending_bytes >= lim.max_request_bytes:
            self._cut()

    def _cut(self) -> None:
        if self._pending:
            self._ready.append(self._pending)
            self._pending = []
            self._pending_bytes = 0

    def _cut_all(self) -> None:
        for slot in sorted(self._aggs):
            agg, events = self._aggs[slot]
            out = agg.flush()
            if out is not None:
                self._append_aggregate(out, events)
        self._aggs.clear()
        self._cut()
        self._oldest = None

    def _take_failures(self) -> list[DeliveryFailure]:
        with self._lock:
            out, self._failures = self._failures, []
        return out

    # ------------------------------------------------------------------ sending

    def _linger_loop(self) -> None:
        assert self._linger_s is not None
        while not self._stop.is_set():
            self._wake.clear()
            with self._lock:
                oldest = self._oldest
            if oldest is None:
                self._wake.wait(1.0)
                continue
            remaining = oldest + self._linger_s - time.monotonic()
            if remaining > 0:
                self._stop.wait(remaining)
                continue
            try:
                with self._lock:
                    self._cut_all()
                self._drain()
            except Exception:  # never let the thread die silently; _send already reports per event
                log.exception("linger flush failed")

    def _drain(self) -> None:
        with self._send_lock:
            for _ in range(1_000_000):  # bounded; each pass sends one batch
                with self._lock:
                    if not self._ready:
                        return
                    batch = self._ready.popleft()
                self._send(batch)

    def _send(self, batch: list[_Entry]) -> None:
        """PutRecords with retries of only the failed entries, in order, full-jitter backoff."""
        pending = batch
        deadline = time.monotonic() + self._deadline_s
        for attempt in range(1, self._max_attempts + 1):
            failed = self._put_records(pending)
            if not failed:
                return
            delay = self._rng.uniform(0, min(self._cap_s, self._base_s * 2 ** (attempt - 1)))
            out_of_budget = attempt >= self._max_attempts or time.monotonic() + delay > deadline
            retry: list[_Entry] = []
            give_up: list[DeliveryFailure] = []
            for entry, code, message in failed:
                if code in RETRYABLE_CODES and not out_of_budget:
                    retry.append(entry)
                else:
                    give_up.extend(DeliveryFailure(ev, code, message, attempt) for ev in entry.events)
            self._report(give_up)
            if not retry:
                return
            with self._lock:
                self._stats.retries += len(retry)
            self._sleep(delay)
            pending = retry

    def _put_records(self, entries: list[_Entry]) -> list[tuple[_Entry, str, str]]:
        """One PutRecords call; returns the failed entries with their error, in request order."""
        records = []
        for e in entries:
            rec: dict[str, Any] = {"Data": e.data, "PartitionKey": e.partition_key}
            if e.explicit_hash_key is not None:
                rec["ExplicitHashKey"] = e.explicit_hash_key
            records.append(rec)
        with self._lock:
            self._stats.requests += 1
        try:
            resp = self._client.put_records(Records=records, **self._stream_param)
        except Exception as exc:
            code, message = _call_error(exc)
            return [(e, code, message) for e in entries]
        results = resp.get("Records") if isinstance(resp, dict) else None
        if not isinstance(results, list) or len(results) != len(entries):
            # Cannot tell which entries were stored: report rather than risk re-sending duplicates.
            return [(e, "MalformedResponse", f"PutRecords returned {resp!r:.200}") for e in entries]
        failed = []
        ok_records = ok_bytes = ok_events = 0
        for entry, result in zip(entries, results, strict=True):
            code = result.get("ErrorCode")
            if code:
                failed.append((entry, code, result.get("ErrorMessage", "")))
            else:
                ok_records += 1
                ok_bytes += entry.size
                ok_events += len(entry.events)
        with self._lock:
            self._stats.records += ok_records
            self._stats.bytes += ok_bytes
            self._stats.delivered += ok_events
        return failed

    def _report(self, failures: list[DeliveryFailure]) -> None:
        if not failures:
            return
        with self._lock:
            self._stats.failures += len(failures)
            if self._on_failure is None:
                self._failures.extend(failures)
        if self._on_failure is not None:
            self._on_failure(failures)


def _call_error(exc: Exception) -> tuple[str, str]:
    """A whole-call exception -> (code, message). Network errors map to a retryable code."""
    from botocore.exceptions import BotoCoreError, ClientError

    if isinstance(exc, ClientError):
        err = exc.response.get("Error", {})
        code = err.get("Code") or "ClientError"
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        if status >= 500 and code not in RETRYABLE_CODES:
            code = "InternalFailure"
        return code, err.get("Message") or str(exc)
    if isinstance(exc, BotoCoreError | ConnectionError | TimeoutError):
        return "RequestTimeout", f"{type(exc).__name__}: {exc}"
    return type(exc).__name__, str(exc)


def _check_ehk(value: int | str) -> str:
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise ValueError(f"explicit hash key must be a decimal integer, got {value!r}") from None
    if isinstance(value, bool) or not 0 <= number <= L.MAX_EXPLICIT_HASH_KEY:
        raise ValueError(f"explicit hash key must be in [0, 2**128 - 1], got {value!r}")
    return str(number)


__all__ = [
    "RETRYABLE_CODES",
    "DeliveryFailure",
    "Producer",
    "ProducerClosedError",
    "ProducerStats",
    "Rejection",
    "make_client",
]
