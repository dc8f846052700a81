"""The ``cdk.json`` context a plan suggests.

Key names live in one dict so they can be aligned with the CDK app's config (issue 5) in one place:
planner setting -> cdk.json context key.
"""

from __future__ import annotations

from typing import Any

from bxb_stream.plan.compute import Plan

CDK_CONTEXT_KEYS: dict[str, str] = {
    "stream_mode": "stream_mode",
    "shard_count": "shard_count",
    "retention_hours": "retention_hours",
    "paths": "delivery_paths",
    "processor_buffer_seconds": "firehose_processor_buffer_seconds",
    "processor_buffer_mib": "firehose_processor_buffer_mib",
    "s3_buffer_seconds": "firehose_s3_buffer_seconds",
    "s3_buffer_mib": "firehose_s3_buffer_mib",
    "http_buffer_seconds": "firehose_http_buffer_seconds",
    "http_buffer_mib": "firehose_http_buffer_mib",
}
# Values for the stream mode key, as the CDK config spells them.
STREAM_MODE_VALUES: dict[str, str] = {"provisioned": "provisioned", "on-demand": "on-demand"}


def cdk_context(plan: Plan, mode: str | None = None) -> dict[str, Any]:
    """Context for the cheaper Kinesis mode (or ``mode``); shard_count only when provisioned."""
    mode = mode or plan.kinesis.cheaper_mode
    p, w = plan.pipeline, plan.workload
    values: dict[str, Any] = {"stream_mode": STREAM_MODE_VALUES[mode]}
    if mode == "provisioned":
        values["shard_count"] = plan.kinesis.shards
    values["retention_hours"] = w.retention_hours
    values["paths"] = list(w.paths)
    values["processor_buffer_seconds"] = p.processor_buffer_seconds
    values["processor_buffer_mib"] = p.processor_buffer_mib
    if "s3" in w.paths:
        values["s3_buffer_seconds"] = p.s3_buffer_seconds
        values["s3_buffer_mib"] = p.s3_buffer_mib
    if "http" in w.paths:
        values["http_buffer_seconds"] = p.http_buffer_seconds
        values["http_buffer_mib"] = p.http_buffer_mib
    return {CDK_CONTEXT_KEYS[k]: v for k, v in values.items()}
