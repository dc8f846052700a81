"""Thread-safe Kinesis producer: validate at the edge, batch to the PutRecords limits,
optionally KPL-aggregate, and retry only the failed entries.

Delivery contract: every accepted event ends either in a successful PutRecords entry
or in a ``DeliveryFailure`` (returned by ``flush``/``close`` or passed to
``on_failure``). The library never re-sends an entry Kinesis acknowledged, so it adds
no duplicates of its own (a network error after Kinesis stored a batch can still
cause one, as with any at-least-once producer; the pipeline deduplicates on
``transaction_id``).

Event time: an event without a ``timestamp`` is stamped when ``put`` accepts it (UTC,
ISO-8601 with milliseconds, e.g. ``2026-05-01T08:00:00.123Z``), and the stamped bytes are
what every attempt sends. So a retry, or a copy stored twice after a lost PutRecords
response, carries the same instant, and the two copies collapse downstream instead of
being billed in two hours. ``DeliveryFailure.data`` holds those bytes for a caller that
re-sends later.

Failures are named by their cause (``bxb_stream.aws_errors``): no credentials, unknown
host, connection refused and unreachable endpoints are reported at once, not retried;
throttling, 5xx answers and timeouts are retried within the ``RetryPolicy``.

Ordering: batches go out one at a time, and a batch's retries finish before the next
batch is sent, so a partition key's events stay in order except when a retry moves a
failed entry behind a later one from the same request.
"""

from __future__ import annotations

import bisect
import hashlib
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, NamedTuple

import msgspec

from bxb_runtime.config import EventRules
from bxb_runtime.events.validate import EventError, decode, normalize
from bxb_stream import kpl
from bxb_stream.aws_errors import RETRYABLE_SERVICE_CODES, CallFailure, classify
from bxb_stream.producer import limits as L
from bxb_stream.producer.policies import AggregationPolicy, PartitioningPolicy, RetryPolicy, check_explicit_hash_key

log = logging.getLogger(__name__)

Event = Mapping[str, Any] | bytes | str

# Per-entry and whole-call service error codes worth another attempt (kept under its old name).
RETRYABLE_CODES = RETRYABLE_SERVICE_CODES


def _encode_default(obj: Any) -> Any:
    raise TypeError(f"cannot encode {type(obj).__name__} as JSON")


_encoder = msgspec.json.Encoder(decimal_format="number", enc_hook=_encode_default)
_exact_decoder = msgspec.json.Decoder(float_hook=Decimal)  # every number read back as written
_JSON_SPACE = b" \t\r\n"


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
    """An accepted event that could not be delivered.

    ``error_code`` names the cause (an AWS error code, or one of ``bxb_stream.aws_errors``'
    own: ``NoCredentials``, ``UnknownHost``, ``ConnectionRefused``...). ``data`` is the JSON
    exactly as it was sent, timestamp stamp included: re-send it to keep the event's time."""

    event: Any  # what was passed to put(), unchanged
    error_code: str
    error_message: str
    attempts: int
    data: bytes = field(default=b"", compare=False, repr=False)


@dataclass(frozen=True)
class Rejection:
    """An event ``put_many`` refused at the edge; ``index`` is its position in the input."""

    index: int
    event: Any
    error: EventError


class ProducerClosedError(RuntimeError):
    pass


class _Item(NamedTuple):
    event: Any  # as passed to put()
    data: bytes  # its JSON as sent


class _Entry(NamedTuple):
    partition_key: str
    explicit_hash_key: str | None
    data: bytes
    size: int  # partition key UTF-8 bytes + data bytes: what Kinesis counts
    items: list[_Item]


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


def kinesis_endpoint(endpoint_url: str | None = None) -> str | None:
    """The endpoint a client will use: the argument, else AWS_ENDPOINT_URL_KINESIS / AWS_ENDPOINT_URL."""
    return endpoint_url or os.environ.get("AWS_ENDPOINT_URL_KINESIS") or os.environ.get("AWS_ENDPOINT_URL")


def make_client(
    endpoint_url: str | None = None, region: str | None = None, credentials: Mapping[str, str] | None = None
) -> Any:
    """A boto3 Kinesis client whose retries are ours alone (botocore's are switched off).

    ``credentials`` (``aws_access_key_id``, ``aws_secret_access_key``) replace the default chain."""
    import boto3
    from botocore.config import Config

    region = region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
    config = Config(
        retries={"total_max_attempts": 1, "mode": "standard"},
        connect_timeout=5,
        read_timeout=30,
        tcp_keepalive=True,
    )
    # A session of its own: boto3's default one caches the credentials it resolved first.
    session = boto3.session.Session()
    return session.client(
        "kinesis", endpoint_url=kinesis_endpoint(endpoint_url), region_name=region, config=config, **(credentials or {})
    )


def iso_timestamp(ms: int) -> str:
    """UTC milliseconds as ISO-8601 with milliseconds and ``Z``: exact, and read back to the same ms."""
    seconds, millis = divmod(ms, 1000)
    return datetime.fromtimestamp(seconds, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{millis:03d}Z"


class Producer:
    """Send billing events to a Kinesis stream.

    ``Producer("stream")`` validates, stamps, batches and retries with every default;
    ``retry``, ``aggregate`` and ``partitioning`` take policy objects
    (``bxb_stream.producer.policies``), and ``aggregate=True`` means the KPL's defaults.

    ``put`` raises ``EventError`` for an invalid event unless ``on_invalid`` is given
    (then it is called and ``put`` returns False). Undeliverable events are passed to
    ``on_failure`` if given, else collected and returned by ``flush``/``close``.
    Callbacks run on whichever thread sends (a caller's or the linger thread).
    An event without ``timestamp`` is stamped at ``put`` (see the module docstring).
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
        limits: L.Limits = L.CURRENT,
        linger_ms: int | None = 200,
        retry: RetryPolicy | None = None,
        aggregate: bool | AggregationPolicy = False,
        partitioning: PartitioningPolicy | None = None,
        on_failure: Callable[[list[DeliveryFailure]], None] | None = None,
        on_invalid: Callable[[Any, EventError], None] | None = None,
        clock_ms: Callable[[], int] | None = None,
    ) -> None:
        aggregation = AggregationPolicy() if aggregate is True else aggregate or None
        if aggregation is not None:
            aggregation.check(limits)
        if linger_ms is not None and linger_ms < 0:
            raise ValueError("linger_ms must be >= 0 or None")
        self.stream = stream
        self._stream_param = {"StreamARN": stream} if stream.startswith("arn:") else {"StreamName": stream}
        self._client = client if client is not None else make_client(endpoint_url, region)
        self._rules = rules or EventRules()
        self._validate = validate
        self._retry = retry or RetryPolicy()
        self._aggregation = aggregation
        self._partitioning = partitioning or PartitioningPolicy()
        self._fixed_ehk = self._partitioning.fixed_hash_key
        self._limits = limits
        self._linger_s = None if linger_ms is None else linger_ms / 1000
        self._on_failure = on_failure
        self._on_invalid = on_invalid
        self._clock_ms = clock_ms or (lambda: time.time_ns() // 1_000_000)
        self._stamp_second = -1  # the last second formatted, and its text: most puts share one
        self._stamp_prefix = ""

        self._lock = threading.Lock()  # buffers, aggregators, stats, failures
        self._send_lock = threading.Lock()  # one PutRecords batch (with its retries) at a time
        self._stats = ProducerStats()
        self._pending: list[_Entry] = []
        self._pending_bytes = 0
        self._ready: deque[list[_Entry]] = deque()
        self._aggs: dict[int, tuple[kpl.Aggregator, list[_Item]]] = {}
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
                self._thread.join(timeout=self._retry.deadline_s + 5)
        return self.flush()

    def __enter__(self) -> Producer:
        return self

    def __exit__(self, *exc: object) -> None:
        failures = self.close()
        if failures:
            log.error("producer closed with %d undelivered events", len(failures))

    # ------------------------------------------------------------------ edge

    def _prepare(self, event: Event) -> tuple[str, str | None, bytes, int]:
        """Validate, stamp, encode and key one event. Raises EventError; touches no shared state."""
        now = self._clock_ms()
        if isinstance(event, bytes | bytearray | memoryview | str):
            data = event.encode() if isinstance(event, str) else bytes(event)
            if self._validate:
                obj = decode(data, self._rules.max_record_bytes)
            else:
                try:
                    obj = msgspec.json.decode(data)
                except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):
                    obj = None  # unvalidated and not JSON: keyed by its bytes below
            if type(obj) is dict and obj.get("timestamp") is None:
                stamp = self._stamp(now)
                data = _with_timestamp(data, "timestamp" in obj, stamp)
                obj["timestamp"] = stamp
            if self._validate:
                normalize(obj, self._rules, arrival_ms=now, ingested_ms=now)
                if len(data) > self._rules.max_record_bytes:  # the stamp made it longer
                    raise EventError("too_large", f"record is {len(data)} bytes, limit {self._rules.max_record_bytes}")
        else:
            obj = event
            if isinstance(obj, Mapping) and obj.get("timestamp") is None:
                obj = {**obj, "timestamp": self._stamp(now)}  # a copy: the caller's event stays as given
            elif type(obj) is not dict and isinstance(obj, Mapping):
                obj = dict(obj)
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

    def _stamp(self, now_ms: int) -> str:
        second, millis = divmod(now_ms, 1000)
        if second != self._stamp_second:  # benign race: both threads would compute the same text
            self._stamp_prefix = iso_timestamp(second * 1000)[:-4]
            self._stamp_second = second
        return f"{self._stamp_prefix}{millis:03d}Z"

    def _partition_key(self, obj: Any, data: bytes) -> str:
        pk = self._partitioning.partition_key
        if callable(pk):
            try:
                key = pk(obj)
            except Exception as exc:  # a user function: report it against the event
                raise EventError("bad_partition_key", f"partition key function failed: {exc!r}") from None
            if type(key) is not str or not 1 <= len(key) <= L.MAX_PARTITION_KEY_CHARS:
                raise EventError("bad_partition_key", f"partition key must be 1..256 characters, got {key!r}")
            return key
        key = obj.get(pk) if isinstance(obj, Mapping) else None
        if type(key) is str and 1 <= len(key) <= L.MAX_PARTITION_KEY_CHARS:
            return key
        # Only unvalidated events get here (a valid event always has its customer): spread them by content.
        return hashlib.md5(data, usedforsecurity=False).hexdigest()

    def _explicit_hash_key(self, obj: Any) -> str | None:
        ehk = self._partitioning.explicit_hash_key
        if ehk is None or self._fixed_ehk is not None:
            return self._fixed_ehk
        try:
            value = ehk(obj)  # type: ignore[operator]
        except Exception as exc:
            raise EventError("bad_explicit_hash_key", f"explicit hash key function failed: {exc!r}") from None
        if value is None:
            return None
        try:
            return check_explicit_hash_key(value)
        except ValueError as exc:
            raise EventError("bad_explicit_hash_key", str(exc)) from None

    # ------------------------------------------------------------------ buffering (callers hold _lock)

    def _load_shards(self) -> None:
        if self._aggregation is None or not self._aggregation.by_shard or self._shards_loaded:
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
        item = _Item(event, data)
        if self._aggregation is None:
            self._append_entry(_Entry(pk, ehk, data, size, [item]))
            return
        slot = 0 if self._shards is None else self._shards.index(_hash_key(pk, ehk))
        agg, items = self._aggs.get(slot) or self._aggs.setdefault(
            slot, (kpl.Aggregator(self._aggregation.max_bytes, count_partition_key=True), [])
        )
        try:
            out = agg.add(kpl.UserRecord(pk, ehk, data))
        except kpl.RecordTooLargeError:
            # Too big to aggregate but within the record limit: send it on its own, as the KPL does.
            self._append_entry(_Entry(pk, ehk, data, size, [item]))
            return
        if out is None:
            items.append(item)
            return
        self._aggs[slot] = (agg, [item])
        self._append_aggregate(out, items)

    def _append_aggregate(self, out: kpl.Aggregate, items: list[_Item]) -> None:
        size = len(out) + len(out.partition_key.encode())
        self._append_entry(_Entry(out.partition_key, out.explicit_hash_key, bytes(out), size, items))

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
            agg, items = self._aggs[slot]
            out = agg.flush()
            if out is not None:
                self._append_aggregate(out, items)
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
        policy = self._retry
        pending = batch
        deadline = time.monotonic() + policy.deadline_s
        for attempt in range(1, policy.max_attempts + 1):
            failed = self._put_records(pending)
            if not failed:
                return
            delay = policy.delay_s(attempt)
            out_of_budget = attempt >= policy.max_attempts or time.monotonic() + delay > deadline
            retry: list[_Entry] = []
            give_up: list[DeliveryFailure] = []
            for entry, why in failed:
                if why.retryable and not out_of_budget:
                    retry.append(entry)
                else:
                    give_up.extend(
                        DeliveryFailure(i.event, why.code, why.message, attempt, i.data) for i in entry.items
                    )
            self._report(give_up)
            if not retry:
                return
            with self._lock:
                self._stats.retries += len(retry)
            policy.sleep(delay)
            pending = retry

    def _put_records(self, entries: list[_Entry]) -> list[tuple[_Entry, CallFailure]]:
        """One PutRecords call; returns the failed entries with their cause, in request order."""
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
            why = classify(exc) or CallFailure(type(exc).__name__, str(exc), False)
            return [(e, why) for e in entries]
        results = resp.get("Records") if isinstance(resp, dict) else None
        if not isinstance(results, list) or len(results) != len(entries):
            # Cannot tell which entries were stored: report rather than risk re-sending duplicates.
            why = CallFailure("MalformedResponse", f"PutRecords returned {resp!r:.200}", False)
            return [(e, why) for e in entries]
        failed = []
        ok_records = ok_bytes = ok_events = 0
        for entry, result in zip(entries, results, strict=True):
            code = result.get("ErrorCode")
            if code:
                failed.append((entry, CallFailure(code, result.get("ErrorMessage", ""), code in RETRYABLE_CODES)))
            else:
                ok_records += 1
                ok_bytes += entry.size
                ok_events += len(entry.items)
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


def _with_timestamp(data: bytes, present: bool, stamp: str) -> bytes:
    """A JSON object's bytes with ``"timestamp": stamp``. An absent key is spliced in after the
    opening brace, so every other byte stays as written; a ``null`` one is replaced by
    re-encoding with every number read exactly (decimals never pass through a float)."""
    if present:
        obj = _exact_decoder.decode(data)
        obj["timestamp"] = stamp
        return _encoder.encode(obj)
    brace = data.index(b"{")
    rest = data[brace + 1 :]
    comma = b"" if rest.lstrip(_JSON_SPACE).startswith(b"}") else b","
    return b'%s"timestamp":"%s"%s%s' % (data[: brace + 1], stamp.encode(), comma, rest)


__all__ = [
    "RETRYABLE_CODES",
    "AggregationPolicy",
    "DeliveryFailure",
    "PartitioningPolicy",
    "Producer",
    "ProducerClosedError",
    "ProducerStats",
    "Rejection",
    "RetryPolicy",
    "iso_timestamp",
    "kinesis_endpoint",
    "make_client",
]
