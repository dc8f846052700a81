"""Firehose's HTTP-endpoint delivery contract: the request Firehose posts, the answer it expects.

Follows https://docs.aws.amazon.com/firehose/latest/dev/httpdeliveryrequestresponse.html.

The ingest Lambda (``bxb_runtime.ingest``) reads requests and writes answers with these names; the local
Firehose (``bxb_stream.firehose.http``) sends and judges them; the tests use the same names.
"""

from __future__ import annotations

from typing import NotRequired, TypedDict

PROTOCOL_VERSION = "1.0"
MAX_RECORDS = 10_000  # records per request, at most
MAX_RECORD_BYTES = 1_024_000  # one record, before base64
MAX_ERROR_MESSAGE = 8_192  # characters of errorMessage Firehose keeps
MAX_ACCESS_KEY_BYTES = 4_096
# The endpoint has this long to answer.
RESPONSE_TIMEOUT_SECONDS = 180

# Header names as Firehose sends them; a Lambda function URL lower-cases them (``lower`` below).
PROTOCOL_VERSION_HEADER = "X-Amz-Firehose-Protocol-Version"
REQUEST_ID_HEADER = "X-Amz-Firehose-Request-Id"
SOURCE_ARN_HEADER = "X-Amz-Firehose-Source-Arn"
ACCESS_KEY_HEADER = "X-Amz-Firehose-Access-Key"
COMMON_ATTRIBUTES_HEADER = "X-Amz-Firehose-Common-Attributes"

# Status codes: 200 is the only success; 413 is permanent (the data goes to the S3 backup at once);
# Firehose retries any other answer within its retry window.
OK_STATUS = 200
TOO_LARGE_STATUS = 413


def lower(header: str) -> str:
    """The name as a function URL (or any HTTP/2 hop) delivers it."""
    return header.lower()


class Record(TypedDict):
    data: str  # base64


class Request(TypedDict):
    requestId: str  # also in X-Amz-Firehose-Request-Id, the same on every retry
    timestamp: int  # ms
    records: list[Record]


class Response(TypedDict):
    requestId: str  # must match the request's
    timestamp: int  # ms
    errorMessage: NotRequired[str]
