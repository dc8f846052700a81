"""The deployed configuration, translated for a local run.

Every delivery-stream setting comes from the same ``PipelineConfig`` the CDK stacks
synthesise from (buffer sizes, processor hints, retry windows, prefixes, event rules).
One thing differs on purpose: buffer *intervals*. Deployed, Parquet needs >= 60 s;
locally a run of a few seconds would wait minutes, so ``buffer_seconds`` replaces every
interval (processor, S3, HTTP) when given.
"""

from __future__ import annotations

from dataclasses import dataclass

from bxb_stream.clickhouse.settings import ClickHouseSettings
from bxb_stream.deployment import PipelineConfig
from bxb_stream.firehose.settings import (
    MIB,
    DeliveryStreamSettings,
    HttpSettings,
    ProcessorSettings,
    S3Settings,
    SourceSettings,
)

PATHS = ("s3", "http")
NAMED_COLLECTION = "bxb_local_s3"  # created from the stand-in's (fake) keys in the environment


@dataclass(frozen=True)
class LocalTargets:
    """Where the stand-ins listen: filled in once they have started."""

    endpoint_url: str
    region: str
    stream: str
    bucket: str
    ingest_url: str = ""
    access_key: str = ""


def delivery_stream(
    config: PipelineConfig, path: str, targets: LocalTargets, buffer_seconds: float | None
) -> DeliveryStreamSettings:
    source = SourceSettings(
        stream_name=targets.stream, region=targets.region, endpoint_url=targets.endpoint_url, poll_interval_s=0.2
    )
    section = config.s3 if path == "s3" else config.http
    processor = ProcessorSettings(
        buffer_size_bytes=section.processor_buffer_size_mib * MIB,
        buffer_interval_s=_interval(section.processor_buffer_interval_seconds, buffer_seconds),
    )
    name = f"{config.name}-{path}"
    if path == "s3":
        s3 = S3Settings(
            bucket=targets.bucket,
            buffer_size_bytes=config.s3.buffer_size_mib * MIB,
            buffer_interval_s=_interval(config.s3.buffer_interval_seconds, buffer_seconds),
        )
        return DeliveryStreamSettings(name, source, processor, s3=s3, region=targets.region)
    http = HttpSettings(
        url=targets.ingest_url,
        access_key=targets.access_key,
        buffer_size_bytes=config.http.buffer_size_mib * MIB,
        buffer_interval_s=_interval(config.http.buffer_interval_seconds, buffer_seconds),
        retry_duration_s=config.http.retry_seconds,
        backup_bucket=targets.bucket,
    )
    return DeliveryStreamSettings(name, source, processor, http=http, region=targets.region)


def clickhouse_settings(
    database: str, targets: LocalTargets, *, s3_queues: bool = True, move_processed: bool = True
) -> ClickHouseSettings:
    """The project's DDL against the local bucket; queues poll fast, and the resolver and the
    usage refresh run every 2 s (each run only takes what landed since the last one).

    ``s3_queues=False`` for the HTTP path's own database: its queues would take the S3 path's
    objects (each object is moved to archive/ by whichever queue ingests it first).
    ``move_processed=False`` where the endpoint cannot do S3Queue's move (``capabilities``)."""
    return ClickHouseSettings(
        bucket_url=f"{targets.endpoint_url}/{targets.bucket}",  # path-style, as moto and LocalStack serve it
        database=database,
        s3_queues=s3_queues,
        move_processed=move_processed,
        named_collection=NAMED_COLLECTION,
        polling_min_timeout_ms=100,
        polling_max_timeout_ms=500,
        polling_backoff_ms=100,
        s3_retry_attempts=2,  # a stand-in that went away must fail fast, not hang
        refresh_seconds=2,
    )


def database_for(base: str, path: str, paths: tuple[str, ...], *, shared: bool = False) -> str:
    """Deployed, both paths share one database (``shared``). Locally each path gets its own when
    both run, so each reconciles on its own; a single path uses the configured name."""
    return base if shared or len(paths) == 1 else f"{base}_{path}"


def _interval(configured: float, override: float | None) -> float:
    return configured if override is None else override
