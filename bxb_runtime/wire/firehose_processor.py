"""Firehose's data-transformation (Lambda processor) contract: what Firehose sends, what it expects back.

Follows https://docs.aws.amazon.com/firehose/latest/dev/data-transformation.html and
https://docs.aws.amazon.com/firehose/latest/dev/data-transformation-status-model.html
(``metadata.partitionKeys``: https://docs.aws.amazon.com/firehose/latest/dev/dynamic-partitioning.html).

The transform Lambda answers with these shapes; the local Firehose (``bxb_stream.firehose``) builds the
request and judges the answer with them; the tests use the same names.
"""

from __future__ import annotations

from enum import StrEnum
from typing import NotRequired, TypedDict


class Result(StrEnum):
    """A record's ``result``. Only Ok and Dropped count as success; anything else fails the record."""

    OK = "Ok"
    DROPPED = "Dropped"
    PROCESSING_FAILED = "ProcessingFailed"


RESULTS: frozenset[str] = frozenset(Result)
# Lambda's synchronous invocation payload limit, for the request and for the response.
PAYLOAD_LIMIT_BYTES = 6 * 1024 * 1024


class KinesisRecordMetadata(TypedDict):
    """Present on each record when the source is a Kinesis data stream."""

    shardId: str
    partitionKey: str
    approximateArrivalTimestamp: int  # ms
    sequenceNumber: str
    subsequenceNumber: int


class RequestRecord(TypedDict):
    recordId: str
    approximateArrivalTimestamp: int  # ms
    data: str  # base64
    kinesisRecordMetadata: NotRequired[KinesisRecordMetadata]


class Request(TypedDict):
    invocationId: str
    deliveryStreamArn: str
    sourceKinesisStreamArn: NotRequired[str]  # Kinesis source only
    region: str
    records: list[RequestRecord]


class Metadata(TypedDict):
    partitionKeys: dict[str, str]  # read by !{partitionKeyFromLambda:<key>} in the S3 prefix


class ResponseRecord(TypedDict):
    """One answer per request record, same ``recordId``; ``data`` is the output (Ok) or any base64."""

    recordId: str
    result: Result | str
    data: str  # base64
    metadata: NotRequired[Metadata]


class Response(TypedDict):
    records: list[ResponseRecord]
