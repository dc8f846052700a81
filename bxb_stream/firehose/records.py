"""The unit the runner moves around: one user record (after KPL de-aggregation) and its fate."""

from __future__ import annotations

import binascii
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import msgspec

from bxb_stream.firehose.invocation import SourceRecord

if TYPE_CHECKING:
    from bxb_stream.firehose.checkpoint import ShardLedger

# Error output types: the value of !{firehose:error-output-type} and of the error folder.
PROCESSING_FAILED = "processing-failed"
FORMAT_CONVERSION_FAILED = "format-conversion-failed"
PARTITIONING_FAILED = "partitioning-failed"
HTTP_ENDPOINT_FAILED = "http-endpoint-failed"


class Record:
    """One user record read from Kinesis, with its place in its shard's ledger."""

    __slots__ = ("arrival_ms", "data", "ledger", "ordinal", "partition_key", "sequence_number", "subsequence_number")

    def __init__(
        self,
        data: bytes,
        arrival_ms: int,
        partition_key: str,
        sequence_number: str,
        subsequence_number: int,
        ledger: ShardLedger,
        ordinal: int,
    ) -> None:
        self.data = data
        self.arrival_ms = arrival_ms
        self.partition_key = partition_key
        self.sequence_number = sequence_number
        self.subsequence_number = subsequence_number
        self.ledger = ledger
        self.ordinal = ordinal

    @property
    def shard_id(self) -> str:
        return self.ledger.shard_id

    def source(self) -> SourceRecord:
        return SourceRecord(
            data=self.data,
            arrival_ms=self.arrival_ms,
            partition_key=self.partition_key,
            shard_id=self.ledger.shard_id,
            sequence_number=self.sequence_number,
            subsequence_number=self.subsequence_number,
        )

    def resolve(self) -> None:
        """Mark this record settled for good: delivered, dropped, or durably in an error output."""
        self.ledger.resolve(self.ordinal)


class Failure:
    """A record bound for an error output, with Firehose's reasons."""

    __slots__ = ("attempts", "code", "data", "ended_ms", "message", "output_type", "record")

    def __init__(
        self,
        record: Record,
        output_type: str,
        code: str,
        message: str,
        *,
        attempts: int = 1,
        ended_ms: int = 0,
        data: bytes | None = None,
    ) -> None:
        self.record = record
        self.output_type = output_type
        self.code = code
        self.message = message
        self.attempts = attempts
        self.ended_ms = ended_ms
        self.data = record.data if data is None else data  # what rawData holds


def error_line(failure: Failure, extra: dict[str, Any] | None = None) -> bytes:
    """One line of a Firehose error object, in the order Firehose writes the fields."""
    record = failure.record
    body: dict[str, Any] = {
        "attemptsMade": failure.attempts,
        "arrivalTimestamp": record.arrival_ms,
        "errorCode": failure.code,
        "errorMessage": failure.message,
        "attemptEndingTimestamp": failure.ended_ms,
        "rawData": binascii.b2a_base64(failure.data, newline=False).decode("ascii"),
        "sequenceNumber": record.sequence_number,
        "subsequenceNumber": record.subsequence_number,
    }
    if extra:
        body.update(extra)
    return msgspec.json.encode(body) + b"\n"


def resolve_all(records: Iterable[Record]) -> None:
    for record in records:
        record.ledger.resolve(record.ordinal)
