"""Planner inputs: the workload and the pipeline's configured buffers, validated on construction.

Units: bytes are binary (KiB/MiB/GiB) as AWS bills them; a month is 730 hours (AWS's calculator convention).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from bxb_stream.plan.errors import PlanError

KIB = 1024
MIB = 1024 * KIB
GIB = 1024 * MIB
HOURS_PER_MONTH = 730
SECONDS_PER_MONTH = HOURS_PER_MONTH * 3600

PATHS = ("s3", "http")
GLACIER_CLASSES = ("instant", "flexible")

# Benchmark defaults. They stand for the figures bench/transform.py and bench/http_ingest.py measure;
# pass --transform-rps / --ingest-rps with your own measurement.
DEFAULT_TRANSFORM_RPS = 150_000  # records per second of Lambda duration at 1024 MB
DEFAULT_INGEST_RPS = 100_000  # rows per second of ingest Lambda duration (HTTP path)


@dataclass(frozen=True)
class Workload:
    events_per_sec: float
    avg_bytes: float  # record as written to Kinesis: data blob plus partition key
    peak_factor: float = 1.0
    headroom: float = 0.0  # spare capacity on top of the peak, as a fraction (0.2 = 20 %)
    aggregate: bool = False
    aggregate_bytes: int = 51_200  # KPL AggregationMaxSize
    kpl_max_buffered_ms: int = 100  # KPL RecordMaxBufferedTime: caps how many events one record can gather
    producers: int = 1
    partition_key_bytes: int = 36  # one UUID-sized key per aggregated record
    paths: tuple[str, ...] = PATHS
    retention_hours: int = 24

    def __post_init__(self) -> None:
        _positive("--events-per-sec", self.events_per_sec)
        _positive("--avg-bytes", self.avg_bytes)
        if self.avg_bytes > MIB:
            raise PlanError(f"--avg-bytes must be at most 1 MiB (the Kinesis record limit), got {self.avg_bytes:g}")
        _positive("--peak-factor", self.peak_factor)
        if self.peak_factor < 1:
            raise PlanError(f"--peak-factor must be at least 1 (peak over average), got {self.peak_factor:g}")
        if not math.isfinite(self.headroom) or self.headroom < 0:
            raise PlanError(f"--headroom must be zero or more, got {self.headroom!r}")
        if not 1 <= self.aggregate_bytes <= MIB:
            raise PlanError(f"--aggregate-bytes must be in [1, 1048576], got {self.aggregate_bytes}")
        _positive("--producers", self.producers)
        _positive("kpl_max_buffered_ms", self.kpl_max_buffered_ms)
        if not self.paths:
            raise PlanError("--paths needs at least one of: s3, http")
        unknown = [p for p in self.paths if p not in PATHS]
        if unknown:
            raise PlanError(f"--paths: unknown path {unknown[0]!r} (choose from s3, http)")
        if len(set(self.paths)) != len(self.paths):
            raise PlanError("--paths lists a path twice")
        if not 24 <= self.retention_hours <= 8760:
            raise PlanError(f"--retention-hours must be in [24, 8760] (Kinesis limits), got {self.retention_hours}")

    @property
    def bytes_per_sec(self) -> float:
        return self.events_per_sec * self.avg_bytes


@dataclass(frozen=True)
class Pipeline:
    """Buffers and benchmark figures; defaults mirror the seed design."""

    processor_buffer_seconds: int = 60
    processor_buffer_mib: float = 1.0
    s3_buffer_seconds: int = 300
    s3_buffer_mib: float = 128.0
    http_buffer_seconds: int = 60
    http_buffer_mib: float = 1.0
    s3queue_poll_min_ms: int = 1_000
    s3queue_poll_max_ms: int = 10_000
    s3queue_poll_backoff_ms: int = 1_000
    active_partitions: int = 2  # S3 prefixes written per buffer interval: on-time + late for one organization
    parquet_ratio: float = 0.15  # Parquet (Snappy) bytes per raw JSON byte; measure yours
    archive_days: int = 365  # Parquet kept this long (steady state), then expired
    glacier_class: str = "instant"
    transform_rps: float = DEFAULT_TRANSFORM_RPS
    ingest_rps: float = DEFAULT_INGEST_RPS
    transform_memory_mb: int = 1024
    ingest_memory_mb: int = 1024
    lambda_overhead_ms: float = 10.0  # per-invocation fixed cost (decode, response), beyond per-record work
    kinesis_poll_seconds: float = 1.0  # Firehose reads each shard about once a second
    delivery_seconds: float = 2.0  # Firehose write to S3 / HTTP round trip, assumed

    def __post_init__(self) -> None:
        _in_range("--processor-buffer-seconds", self.processor_buffer_seconds, 0, 900)
        _in_range("--processor-buffer-mib", self.processor_buffer_mib, 0.2, 3)
        # Parquet conversion raises the minimum buffer size to 64 MiB; dynamic partitioning the interval to 60 s.
        _in_range("--s3-buffer-seconds", self.s3_buffer_seconds, 60, 900)
        _in_range("--s3-buffer-mib", self.s3_buffer_mib, 64, 128)
        _in_range("--http-buffer-seconds", self.http_buffer_seconds, 0, 900)
        _in_range("--http-buffer-mib", self.http_buffer_mib, 1, 64)
        _positive("--s3queue-poll-min-ms", self.s3queue_poll_min_ms)
        if self.s3queue_poll_max_ms < self.s3queue_poll_min_ms:
            raise PlanError("--s3queue-poll-max-ms must be at least --s3queue-poll-min-ms")
        if self.s3queue_poll_backoff_ms < 0:
            raise PlanError("--s3queue-poll-backoff-ms must be zero or more")
        _positive("--partitions", self.active_partitions)
        _in_range("--parquet-ratio", self.parquet_ratio, 0.001, 10)
        _in_range("--archive-days", self.archive_days, 1, 36_500)
        if self.glacier_class not in GLACIER_CLASSES:
            raise PlanError(f"--glacier-class must be instant or flexible, got {self.glacier_class!r}")
        _positive("--transform-rps", self.transform_rps)
        _positive("--ingest-rps", self.ingest_rps)
        _in_range("--transform-memory-mb", self.transform_memory_mb, 128, 10_240)
        _in_range("--ingest-memory-mb", self.ingest_memory_mb, 128, 10_240)
        if self.lambda_overhead_ms < 0 or self.kinesis_poll_seconds < 0 or self.delivery_seconds < 0:
            raise PlanError("latency/overhead constants must be zero or more")


def _positive(name: str, value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value <= 0:
        raise PlanError(f"{name} must be a positive number, got {value!r}")


def _in_range(name: str, value: float, low: float, high: float) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise PlanError(f"{name} must be in [{low:g}, {high:g}], got {value!r}")
