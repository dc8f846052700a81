"""The ``cdk.json`` context a plan suggests, checked to be context the CDK app accepts.

Key names live in one dict (planner setting -> context key) so they stay aligned with the CDK app's config,
``bxb_stream.deployment.PipelineConfig`` (keys ``bxb:<section>.<name>``). A suggestion is the base
config (the app's defaults, or a given cdk.json) with the planned values laid over it, and it is
built into a ``PipelineConfig`` before it is shown: a value the app would refuse stops the plan
with the app's own message. It never carries an archive expiry the user did not ask for, and the
HTTP path only comes with ClickHouse's URL (the app needs it).
"""

from __future__ import annotations

from typing import Any

from bxb_runtime.config import ConfigError
from bxb_stream.deployment import PipelineConfig
from bxb_stream.plan.compute import Plan
from bxb_stream.plan.errors import PlanError

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
    "expiration_days": "bxb:s3.expiration_days",
    "http_buffer_seconds": "bxb:http.buffer_interval_seconds",
    "http_buffer_mib": "bxb:http.buffer_size_mib",
    "http_processor_buffer_seconds": "bxb:http.processor_buffer_interval_seconds",
    "http_processor_buffer_mib": "bxb:http.processor_buffer_size_mib",
    "ingest_memory_mb": "bxb:http.ingest_memory_mib",
    "clickhouse_url": "bxb:clickhouse.url",
}
# Planner values -> the config's spelling.
STREAM_MODE_VALUES: dict[str, str] = {"provisioned": "provisioned", "on-demand": "on-demand"}
GLACIER_CLASS_VALUES: dict[str, str] = {"instant": "GLACIER_IR", "flexible": "GLACIER"}


class NoSuggestion(PlanError):
    """The plan is fine, but no context can be suggested that the CDK app would accept."""


def _paths_value(paths: tuple[str, ...]) -> str:
    return "both" if set(paths) == {"s3", "http"} else paths[0]


def _num(x: float) -> int | float:
    return int(x) if float(x).is_integer() else x


def cdk_context(
    plan: Plan, base: PipelineConfig | None = None, *, clickhouse_url: str = "", mode: str | None = None
) -> dict[str, Any]:
    """Context for the cheaper Kinesis mode (or ``mode``); shard_count only when provisioned.

    ``base`` is what the context is pasted over (default: the app's defaults); ``clickhouse_url``
    is required for the HTTP path unless ``base`` has one. Raises ``NoSuggestion`` when the
    context could not deploy, naming why."""
    base = base or PipelineConfig()
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
        if p.expiration_days != base.s3.expiration_days:  # only an expiry asked for on this plan
            values["expiration_days"] = p.expiration_days
    if "http" in w.paths:
        url = clickhouse_url or base.clickhouse.url
        if not url:
            raise NoSuggestion(
                "the HTTP path needs ClickHouse's URL (bxb:clickhouse.url); pass --clickhouse-url for cdk.json context"
            )
        values["clickhouse_url"] = url
        values["http_buffer_seconds"] = p.http_buffer_seconds
        values["http_buffer_mib"] = _num(p.http_buffer_mib)
        values["http_processor_buffer_seconds"] = p.processor_buffer_seconds
        values["http_processor_buffer_mib"] = _num(p.processor_buffer_mib)
        values["ingest_memory_mb"] = p.ingest_memory_mb
    context = {CDK_CONTEXT_KEYS[k]: v for k, v in values.items()}
    check_deploys(context, base)
    return context


def check_deploys(context: dict[str, Any], base: PipelineConfig) -> PipelineConfig:
    """The config the CDK app would build from ``base`` with ``context`` pasted over it."""
    try:
        return PipelineConfig.from_context({**base.to_context(), **context})
    except ConfigError as exc:
        raise NoSuggestion(f"the suggested context would not deploy: {exc}") from None
