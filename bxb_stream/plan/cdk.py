"""The ``cdk.json`` context a plan suggests.

Key names live in one dict (planner setting -> context key) so they stay aligned with the CDK app's config,
``bxb_stream.deployment.PipelineConfig`` (keys ``bxb:<section>.<name>``); tests/plan checks that it accepts them.
"""

from __future__ import annotations

from typing import Any

from bxb_stream.plan.compute import Plan

CDK_CONTEXT_KEYS: dict[str, str] = {
    "stream_mode": "bxb:stream.mode",
    "shard_count": "bxb:stream.shard_count",
    "retention_hours": "bxb:stream.retention_hours",
    "paths": "bxb:delivery",
    "transform_memory_mb": "bxb:transform_memory_mib",
    "s3_buffer_seconds": "bxb:s3.buffer_interval_seconds",
    "s3_buffer_mib": "bxb:s3.buffer_size_mib",
    "s3_processor_buffer_seconds": "bxb:s3.processor_buffer_interval_seconds",
    "s3_processor_buffer_mib": "bxb:s3.processor_buffer_size_mib",
    "glacier_class": "bxb:s3.glacier_storage_class",
    "archive_days": "bxb:s3.expiration_days",
    "http_buffer_seconds": "bxb:http.buffer_interval_seconds",
    "http_buffer_mib": "bxb:http.buffer_size_mib",
    "http_processor_buffer_seconds": "bxb:http.processor_buffer_interval_seconds",
    "http_processor_buffer_mib": "bxb:http.processor_buffer_size_mib",
    "ingest_memory_mb": "bxb:http.ingest_memory_mib",
}
# Planner values -> the config's spelling.
STREAM_MODE_VALUES: dict[str, str] = {"provisioned": "provisioned", "on-demand": "on-demand"}
GLACIER_CLASS_VALUES: dict[str, str] = {"instant": "GLACIER_IR", "flexible": "GLACIER"}


def _paths_value(paths: tuple[str, ...]) -> str:
    return "both" if set(paths) == {"s3", "http"} else paths[0]


def _num(x: float) -> int | float:
    return int(x) if float(x).is_integer() else x


def cdk_context(plan: Plan, mode: str | None = None) -> dict[str, Any]:
    """Context for the cheaper Kinesis mode (or ``mode``); shard_count only when provisioned."""
    mode = mode or plan.kinesis.cheaper_mode
    p, w = plan.pipeline, plan.workload
    values: dict[str, Any] = {"stream_mode": STREAM_MODE_VALUES[mode]}
    if mode == "provisioned":
        values["shard_count"] = plan.kinesis.shards
    values["retention_hours"] = w.retention_hours
    values["paths"] = _paths_value(w.paths)
    values["transform_memory_mb"] = p.transform_memory_mb
    if "s3" in w.paths:
        values["s3_buffer_seconds"] = p.s3_buffer_seconds
        values["s3_buffer_mib"] = _num(p.s3_buffer_mib)
        values["s3_processor_buffer_seconds"] = p.processor_buffer_seconds
        values["s3_processor_buffer_mib"] = _num(p.processor_buffer_mib)
        values["glacier_class"] = GLACIER_CLASS_VALUES[p.glacier_class]
        values["archive_days"] = p.archive_days
    if "http" in w.paths:
        values["http_buffer_seconds"] = p.http_buffer_seconds
        values["http_buffer_mib"] = _num(p.http_buffer_mib)
        values["http_processor_buffer_seconds"] = p.processor_buffer_seconds
        values["http_processor_buffer_mib"] = _num(p.processor_buffer_mib)
        values["ingest_memory_mb"] = p.ingest_memory_mb
    return {CDK_CONTEXT_KEYS[k]: v for k, v in values.items()}
