"""HTTP endpoint destination: Firehose's HTTP delivery request, response check, retries and S3 backup.

Protocol (``bxb_runtime.wire.firehose_http``; https://docs.aws.amazon.com/firehose/latest/dev/httpdeliveryrequestresponse.html):
- POST, headers ``X-Amz-Firehose-Protocol-Version: 1.0``, ``X-Amz-Firehose-Request-Id``
  (the same on every retry of one batch), ``X-Amz-Firehose-Source-Arn``,
  ``X-Amz-Firehose-Access-Key``, ``X-Amz-Firehose-Common-Attributes``,
  ``Content-Type: application/json`` and ``Content-Encoding: gzip`` when on;
- body ``{"requestId", "timestamp" (ms), "records": [{"data": base64}]}``, 1-10,000
  records and at most 64 MiB before compression;
- success is only a 200 whose body is a JSON object with the same ``requestId`` (and a
  Content-Length); anything else counts as a failure. 413 is permanent; everything
  else is retried with backoff from 1 s, doubling, +-15% jitter, capped, while within
  ``retry_duration_s`` of the first attempt. Then the batch goes to the S3 backup.
  At shutdown (``Retrier.abandon``) the wait ends with ``Abandoned``: the batch stays
  unsettled and is read again after a restart, rather than backed up.
"""

from __future__ import annotations

import binascii
import gzip
import http.client
import random
import time
import urllib.parse
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec

from bxb_runtime.wire import firehose_http as wire
from bxb_stream.firehose.records import HTTP_ENDPOINT_FAILED, Failure, Record, resolve_all
from bxb_stream.firehose.retry import Retrier
from bxb_stream.firehose.s3 import ErrorOutput
from bxb_stream.firehose.settings import MIB, HttpSettings

MAX_RECORDS_PER_REQUEST = wire.MAX_RECORDS
MAX_BODY_BYTES = 64 * MIB
MAX_RESPONSE_BYTES = 1 * MIB
_RECORD_JSON_OVERHEAD = 12  # {"data":""},


@dataclass
class Attempt:
    status: int | None  # None when no HTTP response came back
    ok: bool
    code: str  # error code when not ok
    message: str


@dataclass
class HttpStats:
    requests: int = 0  # attempts, including retries
    batches: int = 0
    retries: int = 0
    delivered: int = 0
    backed_up: Counter[str] = field(default_factory=Counter)  # records, by error code
    statuses: Counter[str] = field(default_factory=Counter)  # "200", "503", "error", ...
    request_bytes: int = 0


class HttpDestination:
    def __init__(
        self,
        settings: HttpSettings,
        backup: ErrorOutput,
        *,
        source_arn: str,
        monotonic: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
        retrier: Retrier | None = None,
    ) -> None:
        self.settings = settings
        self.backup = backup
        self.retrier = retrier or Retrier(f"http {settings.name}", sleep=sleep)
        self.source_arn = source_arn
        self.monotonic = monotonic
        self.wall = wall
        self.sleep = sleep
        self.rng = rng or random.Random()
        self.stats = HttpStats()
        self.on_settled: Callable[[], None] = lambda: None  # the runner saves checkpoints here
        url = urllib.parse.urlsplit(settings.url)
        if url.scheme not in ("http", "https"):
            raise ValueError(f"unsupported URL {settings.url!r}")
        self._url = url
        self._path = (url.path or "/") + (f"?{url.query}" if url.query else "")
        self._conn: http.client.HTTPConnection | None = None
        self._records: list[Record] = []
        self._data: list[bytes] = []
        self._size = 0
        self._opened = 0.0
        self._headers = {
            wire.PROTOCOL_VERSION_HEADER: wire.PROTOCOL_VERSION,
            wire.SOURCE_ARN_HEADER: source_arn,
            wire.COMMON_ATTRIBUTES_HEADER: msgspec.json.encode(
                {"commonAttributes": dict(settings.common_attributes)}
            ).decode(),
            "Content-Type": "application/json",
        }
        if settings.access_key is not None:
            self._headers[wire.ACCESS_KEY_HEADER] = settings.access_key
        if settings.gzip:
            self._headers["Content-Encoding"] = "gzip"

    # ------------------------------------------------------------------ buffering
    @property
    def buffered(self) -> int:
        return len(self._records)

    def add(self, record: Record, data: bytes, partition_keys: dict[str, str]) -> Failure | None:
        if not self._records:
            self._opened = self.monotonic()
        self._records.append(record)
        self._data.append(data)
        self._size += len(data)
        if self._size >= self.settings.buffer_size_bytes:
            self.flush_all()
        return None

    def add_many(self, items: Sequence[tuple[Record, bytes, dict[str, str]]]) -> list[Failure]:
        """``add`` for each of one invocation's Ok records, in order; returns the failures."""
        return [failure for item in items if (failure := self.add(*item)) is not None]

    def next_due_in(self) -> float | None:
        if not self._records:
            return None
        return max(0.0, self._opened + self.settings.buffer_interval_s - self.monotonic())

    def flush_due(self) -> int:
        if self._records and self.monotonic() - self._opened >= self.settings.buffer_interval_s:
            return self.flush_all()
        return 0

    def flush_all(self) -> int:
        records, data = self._records, self._data
        self._records, self._data, self._size = [], [], 0
        sent = 0
        for start, stop in self.batches(data):
            self._deliver(records[start:stop], data[start:stop])
            sent += 1
        return sent

    def batches(self, data: Sequence[bytes]) -> list[tuple[int, int]]:
        """Index ranges of requests: at most 10,000 records, 64 MiB of body and (about) the buffer hint."""
        out = []
        start, body = 0, 0
        limit = min(MAX_BODY_BYTES - 1024, max(self.settings.buffer_size_bytes, 1) * 4 // 3 + 1024)
        for i, item in enumerate(data):
            cost = (len(item) + 2) // 3 * 4 + _RECORD_JSON_OVERHEAD
            if i > start and (i - start >= MAX_RECORDS_PER_REQUEST or body + cost > limit):
                out.append((start, i))
                start, body = i, 0
            body += cost
        if start < len(data):
            out.append((start, len(data)))
        return out

    # ------------------------------------------------------------------ delivery
    def _deliver(self, records: list[Record], data: list[bytes]) -> None:
        stats = self.stats
        stats.batches += 1
        request_id = str(uuid.uuid4())
        request: wire.Request = {
            "requestId": request_id,
            "timestamp": int(self.wall() * 1000),
            "records": [{"data": binascii.b2a_base64(d, newline=False).decode("ascii")} for d in data],
        }
        payload = msgspec.json.encode(request)
        body = gzip.compress(payload, compresslevel=6) if self.settings.gzip else payload
        headers = dict(self._headers, **{wire.REQUEST_ID_HEADER: request_id})
        started = self.monotonic()
        delay = 1.0
        attempts = 0
        while True:  # bounded: each turn sleeps, and the window is retry_duration_s
            self.retrier.check("HTTP delivery")
            attempts += 1
            result = self._post(body, headers, request_id)
            stats.requests += 1
            stats.request_bytes += len(body)
            stats.statuses[str(result.status) if result.status is not None else "error"] += 1
            if result.ok:
                resolve_all(records)
                self.on_settled()
                stats.delivered += len(records)
                return
            if result.status == wire.TOO_LARGE_STATUS:
                break  # permanent: no retry
            wait = min(delay, self.settings.max_backoff_s) * self.rng.uniform(0.85, 1.15)
            if self.monotonic() - started + wait > self.settings.retry_duration_s:
                break
            self.retrier.sleep(wait, "HTTP delivery")
            delay *= 2
            stats.retries += 1
        ended = int(self.wall() * 1000)
        failures = [
            Failure(r, HTTP_ENDPOINT_FAILED, result.code, result.message, attempts=attempts, ended_ms=ended, data=d)
            for r, d in zip(records, data, strict=True)
        ]
        self.backup.write(failures, {"endpointUrl": self.settings.url, "requestId": request_id})
        stats.backed_up[result.code] += len(records)

    def _connection(self) -> http.client.HTTPConnection:
        if self._conn is None:
            cls = http.client.HTTPSConnection if self._url.scheme == "https" else http.client.HTTPConnection
            self._conn = cls(self._url.hostname or "", self._url.port, timeout=self.settings.request_timeout_s)
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _post(self, body: bytes, headers: dict[str, str], request_id: str) -> Attempt:
        try:
            conn = self._connection()
            conn.request("POST", self._path, body=body, headers=headers)
            response = conn.getresponse()
            raw = response.read(MAX_RESPONSE_BYTES + 1)
            status = response.status
            length = response.getheader("Content-Length")
            if response.will_close:
                self.close()
        except (OSError, http.client.HTTPException) as exc:
            self.close()
            code = "HttpEndpoint.RequestTimeout" if isinstance(exc, TimeoutError) else "HttpEndpoint.ConnectionFailed"
            return Attempt(None, False, code, f"{type(exc).__name__}: {exc}")
        answer = _parse_answer(raw)
        if answer:
            detail = str(answer.get("errorMessage", ""))[: wire.MAX_ERROR_MESSAGE]
        else:
            detail = raw[:256].decode("utf-8", "replace")
        if status == wire.OK_STATUS:
            if length is None or len(raw) > MAX_RESPONSE_BYTES or answer is None:
                return Attempt(status, False, "HttpEndpoint.InvalidResponseFromDestination", "malformed 200 response")
            if answer.get("requestId") != request_id:
                return Attempt(
                    status,
                    False,
                    "HttpEndpoint.InvalidResponseFromDestination",
                    f"response requestId {answer.get('requestId')!r} does not match {request_id!r}",
                )
            return Attempt(status, True, "", "")
        return Attempt(status, False, "HttpEndpoint.ResponseCodeError", f"HTTP {status}: {detail}".strip())


def _parse_answer(raw: bytes) -> dict[str, Any] | None:
    try:
        answer = msgspec.json.decode(raw)
    except msgspec.DecodeError:
        return None
    return answer if isinstance(answer, dict) else None
