"""Planner inputs: the workload and the pipeline's configured buffers, validated on construction.

Every setting the CDK app also has takes its default from the same place the app does,
``bxb_stream.deployment.PipelineConfig`` (``Pipeline.from_config`` reads a given one, e.g. from
a ``cdk.json``): delivery paths, buffers, Lambda memory, the archive's lifecycle.

Units: bytes are binary (KiB/MiB/GiB) as AWS bills them; a month is 730 hours (AWS's calculator convention).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any

from bxb_runtime.settings import ConfigError
from bxb_stream.clickhouse.settings import ClickHouseSettings
from bxb_stream.deployment import PipelineConfig
from bxb_stream.plan.errors import PlanError

KIB = 1024
MIB = 1024 * KIB
GIB = 1024 * MIB
HOURS_PER_MONTH = 730
SECONDS_PER_MONTH = HOURS_PER_MONTH * 3600

PATHS = ("s3", "http")
GLACIER_CLASSES = ("instant", "flexible")
# The deployed storage class (bxb:s3.glacier_storage_class) <-> the planner's price class.
GLACIER_CLASS_OF_STORAGE = {"GLACIER_IR": "instant", "GLACIER": "flexible"}
PATHS_OF_DELIVERY = {"s3": ("s3",), "http": ("http",), "both": PATHS}

# What deploys when nothing is configured: the CDK app's own defaults.
DEPLOYED = PipelineConfig()
# ClickHouse's defaults, as `bxb-stream clickhouse apply` deploys them.
CLICKHOUSE = ClickHouseSettings.__dataclass_fields__
DEDUP_WINDOW_DAYS = CLICKHOUSE["dedup_window_days"].default

# Benchmark defaults. They stand for the figures bench/transform.py and bench/http_ingest.py measure;
# pass --transform-rps / --ingest-rps with your own measurement.
DEFAULT_TRANSFORM_RPS = 150_000  # records per second of Lambda duration at BENCH_MEMORY_MB
DEFAULT_INGEST_RPS = 100_000  # rows per second of ingest Lambda duration (HTTP path) at BENCH_MEMORY_MB
BENCH_MEMORY_MB = 1024  # the Lambda memory the rps figures stand for
# Lambda gives CPU in proportion to memory, one vCPU at 1,769 MB (docs.aws.amazon.com/lambda/latest/dg/
# configuration-memory.html); the handlers are single-threaded, so more memory than that adds no speed.
ONE_VCPU_MB = 1769


def rps_at(rps: float, memory_mb: int) -> float:
    """A throughput measured at ``BENCH_MEMORY_MB``, scaled to the CPU share of ``memory_mb``."""
    return rps * min(memory_mb, ONE_VCPU_MB) / min(BENCH_MEMORY_MB, ONE_VCPU_MB)


def paths_of(delivery: str) -> tuple[str, ...]:
    """``bxb:delivery`` (s3, http, both) as the planner's paths."""
    return PATHS_OF_DELIVERY[delivery]


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
    paths: tuple[str, ...] = paths_of(DEPLOYED.delivery)
    retention_hours: int = DEPLOYED.stream.retention_hours

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
    """Buffers, lifecycle, Lambda memory and benchmark figures. Deployable settings default to
    the CDK app's defaults (``DEPLOYED``); ``from_config`` takes them from a given config."""

    processor_buffer_seconds: int = DEPLOYED.s3.processor_buffer_interval_seconds
    processor_buffer_mib: float = DEPLOYED.s3.processor_buffer_size_mib
    s3_buffer_seconds: int = DEPLOYED.s3.buffer_interval_seconds
    s3_buffer_mib: float = DEPLOYED.s3.buffer_size_mib
    http_buffer_seconds: int = DEPLOYED.http.buffer_interval_seconds
    http_buffer_mib: float = DEPLOYED.http.buffer_size_mib
    s3queue_poll_min_ms: int = CLICKHOUSE["polling_min_timeout_ms"].default
    s3queue_poll_max_ms: int = CLICKHOUSE["polling_max_timeout_ms"].default
    s3queue_poll_backoff_ms: int = CLICKHOUSE["polling_backoff_ms"].default
    # The billing resolver and the usage refresh: one run each per interval, each taking at most
    # its batch of rows, so together they bound how fast usage can follow the stream.
    refresh_seconds: int = CLICKHOUSE["refresh_seconds"].default
    resolve_batch_rows: int = CLICKHOUSE["resolve_batch_rows"].default
    usage_batch_rows: int = CLICKHOUSE["usage_batch_rows"].default
    active_partitions: int = 2  # S3 prefixes written per buffer interval: this hour + older arrivals, one organization
    parquet_ratio: float = 0.15  # Parquet (Snappy) bytes per raw JSON byte; measure yours
    # Days of data the archive holds when its storage is costed. It is a horizon, not an expiry:
    # the billing archive is kept forever unless expiration_days says otherwise.
    archive_days: int = 365
    expiration_days: int = DEPLOYED.s3.expiration_days  # 0: never expire (the deployed default)
    infrequent_access_days: int = DEPLOYED.s3.infrequent_access_days
    glacier_days: int = DEPLOYED.s3.glacier_days
    glacier_class: str = GLACIER_CLASS_OF_STORAGE[DEPLOYED.s3.glacier_storage_class]
    transform_rps: float = DEFAULT_TRANSFORM_RPS
    ingest_rps: float = DEFAULT_INGEST_RPS
    transform_memory_mb: int = DEPLOYED.transform_memory_mib
    ingest_memory_mb: int = DEPLOYED.http.ingest_memory_mib
    lambda_overhead_ms: float = 10.0  # per-invocation fixed cost (decode, response), beyond per-record work
    kinesis_poll_seconds: float = 1.0  # Firehose reads each shard about once a second
    delivery_seconds: float = 2.0  # Firehose write to S3 / HTTP round trip, assumed
    dedup_window_days: int = DEDUP_WINDOW_DAYS  # for the idempotency-table comparison only

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
        for name in ("refresh_seconds", "resolve_batch_rows", "usage_batch_rows"):  # as `clickhouse apply` checks them
            try:
                ClickHouseSettings.check_value(name, getattr(self, name), key="--" + name.replace("_", "-"))
            except ConfigError as exc:
                raise PlanError(f"{exc.key} {exc.problem}") from None
        _positive("--partitions", self.active_partitions)
        _in_range("--parquet-ratio", self.parquet_ratio, 0.001, 10)
        _in_range("--archive-days", self.archive_days, 1, 36_500)
        _in_range("--expiration-days", self.expiration_days, 0, 36_500)
        if not 0 < self.infrequent_access_days < self.glacier_days:
            raise PlanError("the lifecycle needs 0 < infrequent_access_days < glacier_days")
        if self.glacier_class not in GLACIER_CLASSES:
            raise PlanError(f"--glacier-class must be instant or flexible, got {self.glacier_class!r}")
        _positive("--transform-rps", self.transform_rps)
        _positive("--ingest-rps", self.ingest_rps)
        _in_range("--transform-memory-mb", self.transform_memory_mb, 128, 10_240)
        _in_range("--ingest-memory-mb", self.ingest_memory_mb, 128, 10_240)
        if self.lambda_overhead_ms < 0 or self.kinesis_poll_seconds < 0 or self.delivery_seconds < 0:
            raise PlanError("latency/overhead constants must be zero or more")

    @classmethod
    def from_config(cls, config: PipelineConfig, **overrides: Any) -> Pipeline:
        """The deployable settings of ``config`` (a cdk.json's), then ``overrides`` (None = keep)."""
        storage = config.s3.glacier_storage_class
        if storage not in GLACIER_CLASS_OF_STORAGE:
            raise PlanError(f"bxb:s3.glacier_storage_class {storage} has no price in the planner (GLACIER_IR, GLACIER)")
        processor = config.s3 if config.s3_enabled else config.http  # one processor buffer for both paths
        values: dict[str, Any] = {
            "processor_buffer_seconds": processor.processor_buffer_interval_seconds,
            "processor_buffer_mib": processor.processor_buffer_size_mib,
            "s3_buffer_seconds": config.s3.buffer_interval_seconds,
            "s3_buffer_mib": config.s3.buffer_size_mib,
            "http_buffer_seconds": config.http.buffer_interval_seconds,
            "http_buffer_mib": config.http.buffer_size_mib,
            "expiration_days": config.s3.expiration_days,
            "infrequent_access_days": config.s3.infrequent_access_days,
            "glacier_days": config.s3.glacier_days,
            "glacier_class": GLACIER_CLASS_OF_STORAGE[storage],
            "transform_memory_mb": config.transform_memory_mib,
            "ingest_memory_mb": config.http.ingest_memory_mib,
        }
        names = {f.name for f in fields(cls)}
        unknown = set(overrides) - names
        if unknown:
            raise TypeError(f"unknown Pipeline settings: {sorted(unknown)}")
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)


def _positive(name: str, value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value <= 0:
        raise PlanError(f"{name} must be a positive number, got {value!r}")


def _in_range(name: str, value: float, low: float, high: float) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise PlanError(f"{name} must be in [{low:g}, {high:g}], got {value!r}")
