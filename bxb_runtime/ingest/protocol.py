"""Firehose HTTP-endpoint delivery (``bxb_runtime.wire.firehose_http``), as seen from a Lambda function URL.

Request (function-URL event): lower-cased ``headers``; ``body`` (base64 when
``isBase64Encoded``), JSON ``{requestId, timestamp, records: [{data}]}``,
gzip-compressed when ``Content-Encoding: gzip``.

Response: ``{requestId, timestamp, errorMessage?}`` with Content-Length. Only
200 is success; 413 is permanent; Firehose retries anything else.

Each record's base64 is decoded exactly once, here. In the common case msgspec decodes it
in C while it reads the body (``_Body[bytes]``); only a request with a record that is not
base64 is read the careful way, one record at a time (``decode_records``), so that record
alone becomes a dead letter. A record's text as received is what a dead letter keeps; it is
read from the body only when one is needed (``_BodyTexts``).
"""

from __future__ import annotations

import binascii
import time
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar, overload

import msgspec
from pybase64 import b64decode

from bxb_runtime.wire import firehose_http as wire

T = TypeVar("T", str, bytes)

PROTOCOL_VERSION = wire.PROTOCOL_VERSION
MAX_RECORDS = wire.MAX_RECORDS
MAX_ERROR_MESSAGE = wire.MAX_ERROR_MESSAGE
_ACCESS_KEY = wire.lower(wire.ACCESS_KEY_HEADER)
_SOURCE_ARN = wire.lower(wire.SOURCE_ARN_HEADER)
_REQUEST_ID = wire.lower(wire.REQUEST_ID_HEADER)


class ProtocolError(Exception):
    """The request cannot be accepted; ``status`` is what Firehose is told."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class Limits:
    # A function URL takes at most 6 MB; the decompressed guard stops a gzip bomb.
    max_body_bytes: int = 6 * 1024 * 1024
    max_decompressed_bytes: int = 64 * 1024 * 1024  # Firehose's own ceiling for one request


@dataclass(frozen=True)
class FirehoseRequest:
    request_id: str
    texts: Sequence[str]  # each record's data as received (base64 text): what a dead letter keeps
    lines: list[bytes | None]  # each record decoded; None where it is not valid base64


# The request as Firehose posts it (wire.Request), with each record's data read as T: str is the
# base64 text as received; bytes has msgspec decode the base64, as strictly as binascii's strict mode.
# gc=False: strings and bytes only, no cycles; the collector need not track a request's records.
class _Record(msgspec.Struct, Generic[T], gc=False):
    data: T


class _Body(msgspec.Struct, Generic[T], gc=False):
    requestId: str  # Firehose's field names (wire.Request)
    timestamp: int
    records: list[_Record[T]]


_body_decoder = msgspec.json.Decoder(_Body[str])
_decoded_body_decoder = msgspec.json.Decoder(_Body[bytes])


class _BodyTexts(Sequence[str]):
    """The records' texts as received, read from the body the first time a dead letter asks."""

    def __init__(self, raw: bytes | str) -> None:
        self._raw: bytes | str | None = raw
        self._texts: list[str] = []

    def _load(self) -> list[str]:
        if self._raw is not None:
            self._texts = [r.data for r in _body_decoder.decode(self._raw).records]
            self._raw = None
        return self._texts

    @overload
    def __getitem__(self, index: int) -> str: ...
    @overload
    def __getitem__(self, index: slice) -> Sequence[str]: ...
    def __getitem__(self, index: int | slice) -> str | Sequence[str]:
        return self._load()[index]

    def __len__(self) -> int:
        return len(self._load())


def access_key(event: dict[str, Any]) -> str | None:
    return _headers(event).get(_ACCESS_KEY)


def source_arn(event: dict[str, Any]) -> str:
    return _headers(event).get(_SOURCE_ARN, "")


def header_request_id(event: dict[str, Any]) -> str:
    return _headers(event).get(_REQUEST_ID, "")


def parse_request(event: dict[str, Any], limits: Limits) -> FirehoseRequest:
    """Function-URL event -> FirehoseRequest, or ProtocolError(400 | 413)."""
    headers = _headers(event)
    raw = _body(event, headers, limits)
    try:
        decoded: _Body[bytes] | None = _decoded_body_decoder.decode(raw)
    except msgspec.ValidationError:
        decoded = None  # a record is not base64, or a field is wrong: the careful reading below says which
    except msgspec.DecodeError as exc:
        raise ProtocolError(400, f"body is not a Firehose request: {exc}") from None
    if decoded is not None:
        request_id, lines = decoded.requestId, [r.data for r in decoded.records]
        texts: Sequence[str] = _BodyTexts(raw)
    else:
        try:
            parsed = _body_decoder.decode(raw)
        except msgspec.DecodeError as exc:
            raise ProtocolError(400, f"body is not a Firehose request: {exc}") from None
        request_id, texts = parsed.requestId, [r.data for r in parsed.records]
        lines = decode_records(texts)
    if not request_id:
        raise ProtocolError(400, "requestId is empty")
    header_id = headers.get(_REQUEST_ID)
    if header_id and header_id != request_id:
        raise ProtocolError(400, "X-Amz-Firehose-Request-Id does not match the body's requestId")
    if len(lines) > MAX_RECORDS:
        raise ProtocolError(400, f"{len(lines)} records, Firehose sends at most {MAX_RECORDS}")
    return FirehoseRequest(request_id, texts, lines)


def _body(event: dict[str, Any], headers: dict[str, str], limits: Limits) -> bytes | str:
    """The request's JSON as sent (msgspec reads str and bytes alike), size-checked and unzipped."""
    body = event.get("body") or ""
    if event.get("isBase64Encoded"):  # the function URL's transport encoding of the whole body
        if len(body) > limits.max_body_bytes * 4 // 3 + 4:
            raise ProtocolError(wire.TOO_LARGE_STATUS, f"request body is over {limits.max_body_bytes} bytes")
        try:
            raw: bytes | str = b64decode(body, validate=True)
        except (binascii.Error, ValueError):
            raise ProtocolError(400, "body is not valid base64") from None
    elif isinstance(body, str) and body.isascii():
        raw = body  # as many bytes as characters (isascii is O(1)): read as it is, no copy
    else:
        try:
            raw = body.encode() if isinstance(body, str) else body
        except UnicodeEncodeError:
            raise ProtocolError(400, "body is not valid UTF-8") from None
    if len(raw) > limits.max_body_bytes:
        raise ProtocolError(wire.TOO_LARGE_STATUS, f"request body is {len(raw)} bytes, limit {limits.max_body_bytes}")
    if headers.get("content-encoding", "").lower() == "gzip":
        raw = gunzip(raw.encode() if isinstance(raw, str) else raw, limits.max_decompressed_bytes)
    return raw


def decode_records(texts: Sequence[str]) -> list[bytes | None]:
    """Each record's bytes (pybase64, SIMD, as strict as binascii's strict mode), or None if not base64."""
    lines: list[bytes | None] = []
    append = lines.append
    for text in texts:
        try:
            append(b64decode(text, validate=True))
        except (binascii.Error, ValueError):
            append(None)
    return lines


def gunzip(data: bytes, limit: int) -> bytes:
    """Decompress at most ``limit`` bytes; more is a 413, never a memory blow-up."""
    inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    try:
        out = inflater.decompress(data, limit + 1)
    except zlib.error as exc:
        raise ProtocolError(400, f"body is not valid gzip ({exc})") from None
    if len(out) > limit or inflater.unconsumed_tail:
        raise ProtocolError(wire.TOO_LARGE_STATUS, f"decompressed body is over {limit} bytes")
    if not inflater.eof:
        raise ProtocolError(400, "gzip body is truncated")
    return out


def response(status: int, request_id: str, error: str | None = None) -> dict[str, Any]:
    """Function-URL response in Firehose's documented shape."""
    body: wire.Response = {"requestId": request_id, "timestamp": int(time.time() * 1000)}
    if error is not None:
        body["errorMessage"] = error[:MAX_ERROR_MESSAGE]
    text = msgspec.json.encode(body).decode()
    return {
        "statusCode": status,
        "headers": {"Content-Type": "application/json", "Content-Length": str(len(text))},
        "body": text,
        "isBase64Encoded": False,
    }


def _headers(event: dict[str, Any]) -> dict[str, str]:
    # Function URLs lower-case header names already; API Gateway may not.
    return {k.lower(): v for k, v in (event.get("headers") or {}).items()}
