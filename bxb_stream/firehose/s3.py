"""S3 destination: buffer by size and interval per partition, convert to Parquet, write objects;
and the error output, which writes failed records in Firehose's error-object shape.

A record is resolved (its checkpoint may advance) only after the PUT that holds it
returned, so a crash before that re-reads it instead of losing it. A PUT that fails
transiently is retried until it succeeds (``retry.Retrier``); one that cannot succeed
(no such bucket, access denied) raises and stops the runner.
"""

from __future__ import annotations

import random
import threading
import time
from bisect import bisect_left
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from itertools import accumulate
from operator import itemgetter
from time import perf_counter
from typing import Any

from bxb_stream.firehose.naming import PrefixError, evaluate_prefix, object_name, partition_fields
from bxb_stream.firehose.parquet import ConversionError, ParquetBuffer, convert_lines, convert_record
from bxb_stream.firehose.records import (
    FORMAT_CONVERSION_FAILED,
    PARTITIONING_FAILED,
    Failure,
    Record,
    error_line,
    resolve_all,
)
from bxb_stream.firehose.retry import Retrier
from bxb_stream.firehose.settings import S3Settings
from bxb_stream.firehose.timing import PARQUET, S3_PUT, Stages

PUT_CONCURRENCY = 8  # Firehose writes partitions in parallel too


def _nothing() -> None:
    pass


class S3Writer:
    """PUTs objects to one bucket, retrying transient failures for as long as it takes."""

    def __init__(
        self,
        client: Any,
        bucket: str,
        *,
        sleep: Callable[[float], None] = time.sleep,
        stages: Stages | None = None,
        retrier: Retrier | None = None,
    ) -> None:
        self.client = client
        self.stages = stages or Stages()
        self.bucket = bucket
        self.retrier = retrier or Retrier(f"s3 {bucket}", sleep=sleep)
        self.objects = 0
        self.bytes = 0
        self.keys: list[str] = []
        self._lock = threading.Lock()

    def put(self, key: str, body: bytes) -> None:
        """Thread-safe: the destination PUTs a flush's objects concurrently."""
        started = perf_counter()
        # On an error that cannot pass (or shutdown) records stay unresolved: their checkpoint stays before them.
        self.retrier.call("PutObject", self.client.put_object, Bucket=self.bucket, Key=key, Body=body)
        with self._lock:
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
        self._executor: ThreadPoolExecutor | None = None
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
            self._flush([key])
        return None

    def add_many(self, items: Sequence[tuple[Record, bytes, dict[str, str]]]) -> list[Failure]:
        """Buffer one invocation's Ok records; returns those that cannot be partitioned or converted.

        The same outcome as ``add`` on each record in turn (rows, failures, and flushes at the same
        record), done per partition: records are grouped by partition key, and each group converts in
        one ``convert_lines`` call, falling back to ``add``'s per-record conversion for a group that
        holds a record it cannot take, so a bad record still fails alone.
        """
        groups, failed = self._group(items)
        for key, indexes in groups.items():
            group = [items[i] for i in indexes]
            columns = None
            if self.settings.parquet:
                started = perf_counter()
                columns = convert_lines([data for _, data, _ in group])
                self.writer.stages.lap(PARQUET, started)
                if columns is None:  # someone in this group needs the per-record verdict
                    failed.extend((i, f) for i, item in zip(indexes, group, strict=True) if (f := self.add(*item)))
                    continue
            self._append(key, group, columns)
        failed.sort(key=itemgetter(0))  # in record order, as ``add`` one by one would return them
        return [failure for _, failure in failed]

    def _group(
        self, items: Sequence[tuple[Record, bytes, dict[str, str]]]
    ) -> tuple[dict[tuple[str, ...], list[int]], list[tuple[int, Failure]]]:
        """Record indexes by partition key (in record order), and the records with a key missing."""
        fields = self._fields
        getter = itemgetter(*fields) if len(fields) > 1 else None
        raw: dict[Any, list[int]] = {}
        failed: list[tuple[int, Failure]] = []
        for i, (record, data, keys) in enumerate(items):
            try:
                value = getter(keys) if getter is not None else tuple(keys[f] for f in fields)
            except KeyError:
                failure = self.add(record, data, keys)  # add builds the partitioning failure
                assert failure is not None
                failed.append((i, failure))
                continue
            indexes = raw.get(value)
            if indexes is None:
                raw[value] = [i]
            else:
                indexes.append(i)
        groups: dict[tuple[str, ...], list[int]] = {}
        for value, indexes in raw.items():
            key = tuple(map(str, value))  # as add does: 1 and "1" are the same partition
            if key in groups:
                groups[key] = sorted(groups[key] + indexes)
            else:
                groups[key] = indexes
        return groups, failed

    def _append(
        self, key: tuple[str, ...], group: list[tuple[Record, bytes, dict[str, str]]], columns: list[list[Any]] | None
    ) -> None:
        """Append a converted group to its buffer, flushing at the record where ``add`` would have."""
        limit = self.settings.buffer_size_bytes
        ends = list(accumulate(len(data) for _, data, _ in group))  # group bytes up to and including each record
        start = 0
        while start < len(group):
            buffer = self._buffers.get(key)
            if buffer is None:
                keys = dict(zip(self._fields, key, strict=True))
                buffer = self._buffers[key] = _Buffer(keys, self.monotonic(), self.settings.parquet)
            before = ends[start - 1] if start else 0
            # The first record that brings the buffer to its size limit closes this part (add flushes there).
            stop = min(bisect_left(ends, limit - buffer.size + before, lo=start) + 1, len(group))
            part = group[start:stop]
            buffer.records.extend([record for record, _, _ in part])
            if columns is not None:
                buffer.rows.extend([column[start:stop] for column in columns])  # type: ignore[union-attr]
            else:
                buffer.lines.extend([data for _, data, _ in part])
            buffer.size += ends[stop - 1] - before
            oldest = min([record.arrival_ms for record, _, _ in part])
            if buffer.oldest_ms is None or oldest < buffer.oldest_ms:
                buffer.oldest_ms = oldest
            if buffer.size >= limit:
                self._flush([key])
            start = stop

    def next_due_in(self) -> float | None:
        if not self._buffers:
            return None
        oldest = min(b.opened for b in self._buffers.values())
        return max(0.0, oldest + self.settings.buffer_interval_s - self.monotonic())

    def flush_due(self) -> int:
        """Write every buffer whose interval has passed; returns the number of objects written."""
        now = self.monotonic()
        due = [k for k, b in self._buffers.items() if now - b.opened >= self.settings.buffer_interval_s]
        return self._flush(due)

    def flush_all(self) -> int:
        return self._flush(list(self._buffers))

    def _flush(self, keys: list[tuple[str, ...]]) -> int:
        """Encode each buffer, PUT the objects concurrently (dynamic partitioning flushes many
        small objects at once, and each PUT mostly waits), then settle their records."""
        objects = [obj for obj in map(self._object, keys) if obj is not None]
        if len(objects) > 1:
            list(self._pool().map(lambda obj: self.writer.put(obj[1], obj[2]), objects))
        elif objects:
            self.writer.put(objects[0][1], objects[0][2])
        for buffer, _, body in objects:
            resolve_all(buffer.records)
            self.stats.delivered += len(buffer.records)
            self.stats.objects += 1
            self.stats.bytes += len(body)
        if objects:
            self.on_settled()
        return len(objects)

    def _object(self, key: tuple[str, ...]) -> tuple[_Buffer, str, bytes] | None:
        """Take one buffer out: (buffer, object key, body), or None when its prefix cannot be built."""
        buffer = self._buffers.pop(key)
        oldest = buffer.oldest_ms or 0
        try:
            prefix = evaluate_prefix(self.settings.prefix, when_ms=oldest, partition_keys=buffer.keys, rng=self.rng)
        except PrefixError as exc:  # a partition value the prefix cannot use: the records are failed, not lost
            self.errors.write([Failure(r, PARTITIONING_FAILED, "S3.InvalidPrefix", str(exc)) for r in buffer.records])
            return None
        started = perf_counter()
        body = buffer.rows.to_parquet() if buffer.rows is not None else b"".join(buffer.lines)
        self.writer.stages.lap(PARQUET, started)
        return buffer, prefix + object_name(self.stream_name, self.version, oldest, self._extension), body

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None

    def _pool(self) -> ThreadPoolExecutor:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=PUT_CONCURRENCY, thread_name_prefix="s3-put")
        return self._executor
