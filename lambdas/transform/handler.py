"""Firehose data-transformation Lambda: a thin shell over bxb_runtime.transform."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit, single_metric

from bxb_runtime.config import EventRules
from bxb_runtime.transform import BatchStats, Transformer, load_hooks

NAMESPACE, SERVICE = "bxb-stream", "transform"
logger = Logger(service=f"bxb-{SERVICE}")
metrics = Metrics(namespace=NAMESPACE, service=SERVICE)

RULES = EventRules.from_env()
TRANSFORMER = Transformer(RULES, load_hooks(RULES.hooks))  # hooks load once, at cold start


@metrics.log_metrics
@logger.inject_lambda_context(clear_state=True)
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    response, stats = TRANSFORMER.process(event)
    report(stats, invocation_id=event.get("invocationId", ""))
    return response


def report(stats: BatchStats, invocation_id: str) -> None:
    """One structured log line per rejection; EMF counts per result and per reason."""
    for rejection in stats.rejections:
        logger.warning(
            "record rejected",
            extra={"recordId": rejection.record_id, "error_code": rejection.code, "error": rejection.message},
        )
    metrics.add_metric(name="RecordsIn", unit=MetricUnit.Count, value=stats.records_in)
    metrics.add_metric(name="ResponseBytes", unit=MetricUnit.Bytes, value=stats.response_bytes)
    for result, count in stats.results.items():
        metrics.add_metric(name=f"Records{result}", unit=MetricUnit.Count, value=count)
    for reason, count in stats.reasons.items():
        # One EMF blob per reason, so each code is its own CloudWatch dimension value.
        with single_metric(
            name="RecordsByReason",
            unit=MetricUnit.Count,
            value=count,
            namespace=NAMESPACE,
            default_dimensions={"service": SERVICE, "Reason": reason},
        ):
            pass
    logger.info("batch transformed", extra={"invocationId": invocation_id, "results": dict(stats.results)})
