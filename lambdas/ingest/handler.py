"""Firehose HTTP-endpoint Lambda (function URL): a thin shell over bxb_runtime.ingest.

Environment (read by ``IngestSettings.from_env``; a missing required one fails the cold start naming it):
  BXB_CLICKHOUSE_URL          e.g. https://abc.eu-west-1.aws.clickhouse.cloud:8443 (or chdb:///path locally)
  BXB_CLICKHOUSE_DATABASE     database holding events_raw and the dead-letter table
  BXB_CLICKHOUSE_SECRET_ARN   secret JSON {"username": ..., "password": ...}; unset for no credentials
  BXB_ACCESS_KEY_SECRET_ARN   secret JSON {"api_key": ...}: the key Firehose sends
  BXB_FIREHOSE_SOURCE_ARN     the delivery stream allowed to call (X-Amz-Firehose-Source-Arn)
  BXB_ORGANIZATION_ID, BXB_MULTI_TENANT (the event rules, EventRules.to_env): rows must carry this
                              organization unless multi-tenant; dead letters are stamped with it
"""

from __future__ import annotations

from typing import Any

import botocore.session
from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit

from bxb_runtime.clickhouse import client as clickhouse
from bxb_runtime.ingest import AccessKeys, IngestService, IngestSettings, Outcome

logger = Logger(service="bxb-ingest")
metrics = Metrics(namespace="bxb-stream", service="ingest")

SETTINGS = IngestSettings.from_env()
# botocore, not boto3: boto3 also imports s3transfer, about half of this module's cold import.
_secrets = botocore.session.get_session().create_client("secretsmanager")


def _client() -> Any:
    """Connect lazily, so a cold start while ClickHouse is down still answers 503."""
    return clickhouse.connect(
        SETTINGS.clickhouse_url, **clickhouse.credentials(_secrets, SETTINGS.clickhouse_secret_arn)
    )


SERVICE = IngestService(AccessKeys(_secrets, SETTINGS.access_key_secret_arn), _client, SETTINGS)


@metrics.log_metrics
@logger.inject_lambda_context(clear_state=True)
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    response, outcome = SERVICE.handle(event)
    report(outcome)
    return response


def report(outcome: Outcome) -> None:
    fields = {"requestId": outcome.request_id, "status": outcome.status}
    if outcome.status == 200:
        logger.info(
            "batch stored",
            extra={
                **fields,
                "rows": outcome.rows_inserted,
                "dead_lettered": outcome.dead_lettered,
                "dead_codes": outcome.dead_codes,
            },
        )
    else:
        logger.warning("batch refused", extra={**fields, "error": outcome.error})
    metrics.add_metric(name="RowsInserted", unit=MetricUnit.Count, value=outcome.rows_inserted)
    metrics.add_metric(name="RowsDeadLettered", unit=MetricUnit.Count, value=outcome.dead_lettered)
    metrics.add_metric(name="AuthFailures", unit=MetricUnit.Count, value=int(outcome.auth_failed))
    metrics.add_metric(name="ClickHouseUnavailable", unit=MetricUnit.Count, value=int(outcome.status == 503))
    if outcome.clickhouse_seconds:
        metrics.add_metric(
            name="ClickHouseLatency", unit=MetricUnit.Milliseconds, value=round(outcome.clickhouse_seconds * 1000, 3)
        )
