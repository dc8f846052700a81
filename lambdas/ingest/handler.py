"""Firehose HTTP-endpoint Lambda (function URL): a thin shell over bxb_stream.ingest.

Environment:
  BXB_CLICKHOUSE_URL          e.g. https://abc.eu-west-1.aws.clickhouse.cloud:8443 (or chdb:///path locally)
  BXB_CLICKHOUSE_DATABASE     database holding events_raw and the dead-letter table
  BXB_CLICKHOUSE_SECRET_ARN   secret JSON {"username": ..., "password": ...}; unset for no credentials
  BXB_ACCESS_KEY_SECRET_ARN   secret JSON {"api_key": ...}: the key Firehose sends
  BXB_FIREHOSE_SOURCE_ARN     the delivery stream allowed to call (X-Amz-Firehose-Source-Arn)
  BXB_ORGANIZATION_ID, BXB_MULTI_TENANT (the event rules, EventRules.to_env): rows must carry this
                              organization unless multi-tenant; dead letters are stamped with it
"""

from __future__ import annotations

import json
import os
from typing import Any

import boto3
import clickhouse_connect
from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit

from bxb_stream.ingest import AccessKeys, IngestService, IngestSettings, Outcome

logger = Logger(service="bxb-ingest")
metrics = Metrics(namespace="bxb-stream", service="ingest")

_secrets = boto3.client("secretsmanager")


def _client() -> Any:
    """Connect lazily, so a cold start while ClickHouse is down still answers 503."""
    kwargs: dict[str, Any] = {"connect_timeout": 5, "send_receive_timeout": 60}
    secret_arn = os.environ.get("BXB_CLICKHOUSE_SECRET_ARN")
    if secret_arn:
        creds = json.loads(_secrets.get_secret_value(SecretId=secret_arn)["SecretString"])
        kwargs.update(username=creds["username"], password=creds["password"])
    return clickhouse_connect.get_client(dsn=os.environ["BXB_CLICKHOUSE_URL"], **kwargs)


SERVICE = IngestService(
    AccessKeys(_secrets, os.environ["BXB_ACCESS_KEY_SECRET_ARN"]),
    _client,
    IngestSettings.from_env(os.environ),
)


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
