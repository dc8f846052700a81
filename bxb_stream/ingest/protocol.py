"""Firehose HTTP-endpoint delivery, as seen from a Lambda function URL.

Request (function-URL event): lower-cased ``headers``; ``body`` (base64 when
``isBase64Encoded``), JSON ``{requestId, timestamp, records: [{data}]}``,
gzip-compressed when ``Content-Encoding: gzip``.

Response: ``{requestId, timestamp, errorMessage?}`` with Content-Length. Only
200 is success; 413 is permanent; Firehose retries anything else.
"""

from __future__ import annotations

import base64
import binascii
import time
import zlib
from dataclasses import dataclass, field
from operator import attrgetter
from typing import Any

import msgspec

PROTOCOL_VERSION = "1.0"
MAX_RECORDS = 10_000
MAX_ERROR_MESSAGE = 8_192


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


@dataclass
class FirehoseRequest:
    request_id: str
    timestamp_ms: int
    lines: list[bytes] | None  # every record decoded, when all were valid base64 (decoded once, in C)
    body: bytes  # the JSON body, for the records' text as received (dead letters only)
    headers: dict[str, str] = field(default_factory=dict)
    _texts: list[str] | None = None

    @property
    def source_arn(self) -> str:
        return self.headers.get("x-amz-firehose-source-arn", "")

    @property
    def records(self) -> list[str]:
        """Each record's data as received (base64 text): read from the body on first use only."""
        if self._texts is None:
            self._texts = [r.data for r in _body_decoder.decode(self.body).records]
        return self._texts


class _Record(msgspec.Struct):
    data: str


class _DecodedRecord(msgspec.Struct):
    data: bytes  # msgspec decodes the base64 in C, strictly


class _Body(msgspec.Struct):
    requestId: str  # Firehose's field names
    timestamp: int
    records: list[_Record]


class _DecodedBody(msgspec.Struct):
    requestId: str
    timestamp: int
    records: list[_DecodedRecord]


_body_decoder = msgspec.json.Decoder(_Body)
_DATA = attrgetter("data")
_decoded_body_decoder = msgspec.json.Decoder(_DecodedBody)


def access_key(event: dict[str, Any]) -> str | None:
    return _headers(event).get("x-amz-firehose-access-key")


def source_arn(event: dict[str, Any]) -> str:
    return _headers(event).get("x-amz-firehose-source-arn", "")


def header_request_id(event: dict[str, Any]) -> str:
    return _headers(event).get("x-amz-firehose-request-id", "")


def parse_request(event: dict[str, Any], limits: Limits) -> FirehoseRequest:
    """Function-URL event -> FirehoseRequest, or ProtocolError(400 | 413)."""
    headers = _headers(event)
    body = event.get("body") or ""
    if event.get("isBase64Encoded"):
        if len(body) > limits.max_body_bytes * 4 // 3 + 4:
            raise ProtocolError(413, f"request body is over {limits.max_body_bytes} bytes")
        try:
            raw = base64.b64decode(body, validate=True)
        except (binascii.Error, ValueError):
            raise ProtocolError(400, "body is not valid base64") from None
    else:
        raw = body.encode() if isinstance(body, str) else body
    if len(raw) > limits.max_body_bytes:
        raise ProtocolError(413, f"request body is {len(raw)} bytes, limit {limits.max_body_bytes}")
    if headers.get("content-encoding", "").lower() == "gzip":
        raw = gunzip(raw, limits.max_decompressed_bytes)
    try:
        parsed: Any = _decoded_body_decoder.decode(raw)  # the common case: one pass, base64 included
    except msgspec.DecodeError:
        try:
            parsed = _body_decoder.decode(raw)  # a record is not base64: keep them as text, judge each
        except msgspec.DecodeError as exc:
            raise ProtocolError(400, f"body is not a Firehose request: {exc}") from None
    if not parsed.requestId:
        raise ProtocolError(400, "requestId is empty")
    header_id = headers.get("x-amz-firehose-request-id")
    if header_id and header_id != parsed.requestId:
        raise ProtocolError(400, "X-Amz-Firehose-Request-Id does not match the body's requestId")
    if len(parsed.records) > MAX_RECORDS:
        raise ProtocolError(400, f"{len(parsed.records)} records, Firehose sends at most {MAX_RECORDS}")
    if isinstance(parsed, _DecodedBody):
        lines = list(map(_DATA, parsed.records))
        return FirehoseRequest(parsed.requestId, parsed.timestamp, lines, raw, headers)
    request = FirehoseRequest(parsed.requestId, parsed.timestamp, None, raw, headers)
    request._texts = [r.data for r in parsed.records]
    return request


def gunzip(data: bytes, limit: int) -> bytes:
    """Decompress at most ``limit`` bytes; more is a 413, never a memory blow-up."""
    inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    try:
        out = inflater.decompress(data, limit + 1)
    except zlib.error as exc:
        raise ProtocolError(400, f"body is not valid gzip ({exc})") from None
    if len(out) > limit or inflater.unconsumed_tail:
        raise ProtocolError(413, f"decompressed body is over {limit} bytes")
    if not inflater.eof:
        raise ProtocolError(400, "gzip body is truncated")
    return out


def response(status: int, request_id: str, error: str | None = None) -> dict[str, Any]:
    """Function-URL response in Firehose's documented shape."""
    body: dict[str, Any] = {"requestId": request_id, "timestamp": int(time.time() * 1000)}
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
