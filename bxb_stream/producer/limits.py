"""Kinesis Data Streams service limits the producer batches against. The one place they live.

Checked 2026 against the Kinesis API reference as shipped in botocore 1.44.8
(``botocore/data/kinesis/2013-12-02/service-2.json``: PutRecords documentation and the
``Data`` / ``PartitionKey`` shapes), docs.aws.amazon.com/kinesis/latest/APIReference/API_PutRecords.html,
API_UpdateMaxRecordSize.html and streams/latest/dev/large-records.html:

- PutRecords: at most 500 records per request; "each record in the request can be as
  large as 10 MiB, up to a limit of 10 MiB for the entire request, including partition
  keys". The record size limit covers partition key + data blob.
- A stream's own MaxRecordSize defaults to 1 MiB (1024 KiB) for new and existing streams
  and can be raised per stream to 10 MiB (UpdateMaxRecordSize, 1024..10240 KiB). So the
  producer's default per-record limit is 1 MiB; set it higher only for streams raised.
- Partition key: 1..256 characters (Unicode); an explicit hash key is a decimal 0..2**128-1.
- Per shard, writes: 1 MiB/s and 1,000 records/s (separate from the per-call limits).

Older documents (and moto 5.2, which enforces them) say 1 MiB per record and 5 MiB per
request: ``LEGACY`` below, for talking to such emulators.
"""

from __future__ import annotations

from dataclasses import dataclass

MiB = 1024 * 1024

MAX_RECORDS_PER_REQUEST = 500
MAX_REQUEST_BYTES = 10 * MiB  # partition keys + data of every record in one PutRecords
MAX_RECORD_BYTES_CEILING = 10 * MiB  # partition key + data; needs the stream's MaxRecordSize raised
DEFAULT_STREAM_MAX_RECORD_BYTES = 1 * MiB  # a stream's MaxRecordSize unless raised
MAX_PARTITION_KEY_CHARS = 256
MAX_EXPLICIT_HASH_KEY = 2**128 - 1

SHARD_WRITE_BYTES_PER_SECOND = 1 * MiB
SHARD_WRITE_RECORDS_PER_SECOND = 1000

# KPL's default AggregationMaxSize (amazon-kinesis-producer default_config.properties).
KPL_DEFAULT_AGGREGATE_BYTES = 51_200


@dataclass(frozen=True)
class Limits:
    """The per-call limits one producer batches against."""

    max_records_per_request: int = MAX_RECORDS_PER_REQUEST
    max_request_bytes: int = MAX_REQUEST_BYTES
    max_record_bytes: int = DEFAULT_STREAM_MAX_RECORD_BYTES

    def __post_init__(self) -> None:
        if not 1 <= self.max_records_per_request <= MAX_RECORDS_PER_REQUEST:
            raise ValueError(f"max_records_per_request must be in [1, {MAX_RECORDS_PER_REQUEST}]")
        if not 1 <= self.max_record_bytes <= MAX_RECORD_BYTES_CEILING:
            raise ValueError(f"max_record_bytes must be in [1, {MAX_RECORD_BYTES_CEILING}]")
        if not self.max_record_bytes <= self.max_request_bytes <= MAX_REQUEST_BYTES:
            raise ValueError(f"max_request_bytes must be in [max_record_bytes, {MAX_REQUEST_BYTES}]")


CURRENT = Limits()
LEGACY = Limits(max_request_bytes=5 * MiB, max_record_bytes=1 * MiB)
