"""S3 destination: buffer by size and interval per partition, convert to Parquet, write objects;
and the error output, which writes failed records in Firehose's error-object shape.

A record is resolved (its checkpoint may advance) only after the PUT that holds it
returned, so a crash before that re-reads it instead of losing it.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from time import perf_counter
from typing import Any

from bxb_stream.firehose.naming import PrefixError, evaluate_prefix, object_name, partition_fields
from bxb_stream.firehose.parquet import ConversionError, ParquetBuffer, convert_record
from bxb_stream.firehose.records import (
    FORMAT_CONVERSION_FAILED,
    PARTITIONING_FAILED,
    Failure,
    Record,
    error_line,
    resolve_all,
)
from bxb_stream.firehose.settings import S3Settings
from bxb_stream.firehose.timing import PARQUET, S3_PUT, Stages

PUT_ATTEMPTS = 5


def _nothing() -> None:
    pass


class S3Writer:
    """PUTs objects to one bucket, retrying transient failures a bounded number of times."""

    def __init__(
        self, client: Any, bucket: str, *, sleep: Callable[[float], None] = time.sleep, stages: Stages | None = None
    ) -> None:
        self.client = client
        self.stages = stages or Stages()
        self.bucket = bucket
        self.sleep = sleep
        self.objects = 0
        self.bytes = 0
        self.keys: list[str] = []

    def put(self, key: str, body: bytes) -> None:
        started = perf_counter()
        for attempt in range(1, PUT_ATTEMPTS + 1):
            try:
                self.client.put_object(Bucket=self.bucket, Key=key, Body=body)
                break
            except Exception:
                if attempt == PUT_ATTEMPTS:
                    raise  # records stay unresolved, so their checkpoint does not move past them
                self.sleep(0.2 * 2**attempt)
        self.stages.lap(S3_PUT, started)
        self.objects += 1
        self.bytes += len(body)
        self.keys.append(key)


@dataclass
class ErrorStats:
    records: Counter[str] = field(default_factory=Counter)  # by error code
    by_output_type: Counter[str] = field(default_factory=Counter)
    objects: int = 0


class ErrorOutput:
    """Writes failed records under the error prefix, one object per error-output type per call."""

    def __init__(
        self,
        writer: S3Writer,
        prefix: str,
        *,
        stream_name: str,
        version: int,
        lambda_arn: str | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.writer = writer
        self.prefix = prefix
        self.stream_name = stream_name
        self.version = version
        self.lambda_arn = lambda_arn
        self.rng = rng or random.Random()
        self.stats = ErrorStats()
        self.on_settled: Callable[[], None] = _nothing  # the runner saves checkpoints here, right after a PUT

    def write(self, failures: Sequence[Failure], extra: dict[str, Any] | None = None) -> None:
        groups: dict[str, list[Failure]] = {}
        for failure in failures:
            groups.setdefault(failure.output_type, []).append(failure)
        for output_type, group in groups.items():
            fields = dict(extra or {})
            if self.lambda_arn and output_type != FORMAT_CONVERSION_FAILED:
                fields.setdefault("lambdaArn", self.lambda_arn)
            body = b"".join(error_line(f, fields) for f in group)
            oldest = min(f.record.arrival_ms for f in group)
            key = evaluate_prefix(self.prefix, when_ms=oldest, error_output_type=output_type, rng=self.rng)
            self.writer.put(key + object_name(self.stream_name, self.version, oldest), body)
            resolve_all(f.record for f in group)
            self.on_settled()
            self.stats.objects += 1
            self.stats.by_output_type[output_type] += len(group)
            self.stats.records.update(f.code for f in group)


class _Buffer:
    __slots__ = ("keys", "lines", "oldest_ms", "opened", "records", "rows", "size")

    def __init__(self, keys: dict[str, str], opened: float, parquet: bool) -> None:
        self.keys = keys
        self.records: list[Record] = []
        self.rows = ParquetBuffer() if parquet else None
        self.lines: list[bytes] = []
        self.size = 0
        self.oldest_ms: int | None = None
        self.opened = opened


@dataclass
class S3Stats:
    delivered: int = 0  # records in objects written
    objects: int = 0
    bytes: int = 0


class S3Destination:
    """Firehose's extended S3 destination, with dynamic partitioning on the Lambda's partition keys."""

    def __init__(
        self,
        settings: S3Settings,
        writer: S3Writer,
        errors: ErrorOutput,
        *,
        stream_name: str,
        version: int = 1,
        monotonic: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
    ) -> None:
        self.settings = settings
        self.writer = writer
        self.errors = errors
        self.stream_name = stream_name
        self.version = version
        self.monotonic = monotonic
        self.rng = rng or random.Random()
        self.stats = S3Stats()
        self._fields = partition_fields(settings.prefix) if settings.dynamic_partitioning else ()
        self._buffers: dict[tuple[str, ...], _Buffer] = {}
        self._extension = ".parquet" if settings.parquet else ""
        self.on_settled: Callable[[], None] = _nothing

    @property
    def buffered(self) -> int:
        return sum(len(b.records) for b in self._buffers.values())

    def add(self, record: Record, data: bytes, partition_keys: dict[str, str]) -> Failure | None:
        """Buffer one transformed record; a record that cannot be partitioned or converted comes back failed."""
        try:
            key = tuple(str(partition_keys[f]) for f in self._fields)
        except KeyError as exc:
            return Failure(
                record,
                PARTITIONING_FAILED,
                "DynamicPartitioning.MetadataExtractionFailed",
                f"partition key {exc.args[0]!r} missing from the Lambda's metadata",
                data=data,
            )
        row = None
        if self.settings.parquet:
            started = perf_counter()
            try:
                row = convert_record(data)
            except ConversionError as exc:
                return Failure(record, FORMAT_CONVERSION_FAILED, exc.code, str(exc), data=data)
            finally:
                self.writer.stages.lap(PARQUET, started)
        buffer = self._buffers.get(key)
        if buffer is None:
            keys = dict(zip(self._fields, key, strict=True))
            buffer = self._buffers[key] = _Buffer(keys, self.monotonic(), self.settings.parquet)
        buffer.records.append(record)
        if row is not None:
            buffer.rows.append(row)  # type: ignore[union-attr]
        else:
            buffer.lines.append(data)
        buffer.size += len(data)
        if buffer.oldest_ms is None or record.arrival_ms < buffer.oldest_ms:
            buffer.oldest_ms = record.arrival_ms
        if buffer.size >= self.settings.buffer_size_bytes:
            self._flush(key)
        return None

    def next_due_in(self) -> float | None:
        if not self._buffers:
            return None
        oldest = min(b.opened for b in self._buffers.values())
        return max(0.0, oldest + self.settings.buffer_interval_s - self.monotonic())

    def flush_due(self) -> int:
        """Write every buffer whose interval has passed; returns the number of objects written."""
        now = self.monotonic()
        due = [k for k, b in self._buffers.items() if now - b.opened >= self.settings.buffer_interval_s]
        for key in due:
            self._flush(key)
        return len(due)

    def flush_all(self) -> int:
        keys = list(self._buffers)
        for key in keys:
            self._flush(key)
        return len(keys)

    def _flush(self, key: tuple[str, ...]) -> None:
        buffer = self._buffers[key]
        oldest = buffer.oldest_ms or 0
        try:
            prefix = evaluate_prefix(self.settings.prefix, when_ms=oldest, partition_keys=buffer.keys, rng=self.rng)
        except PrefixError as exc:  # a partition value the prefix cannot use: the records are failed, not lost
            del self._buffers[key]
            self.errors.write([Failure(r, PARTITIONING_FAILED, "S3.InvalidPrefix", str(exc)) for r in buffer.records])
            return
        started = perf_counter()
        body = buffer.rows.to_parquet() if buffer.rows is not None else b"".join(buffer.lines)
        self.writer.stages.lap(PARQUET, started)
        self.writer.put(prefix + object_name(self.stream_name, self.version, oldest, self._extension), body)
        del self._buffers[key]
        resolve_all(buffer.records)
        self.on_settled()
        self.stats.delivered += len(buffer.records)
        self.stats.objects += 1
        self.stats.bytes += len(body)
