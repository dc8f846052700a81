"""The ingest Lambda's ClickHouse client: a server URL, and credentials from a Secrets Manager secret."""

from __future__ import annotations

import json
from typing import Any

# Firehose waits up to 3 minutes for an answer; connect fast, and leave the insert a minute.
CONNECT_TIMEOUT_S, SEND_RECEIVE_TIMEOUT_S = 5, 60


def credentials(secrets_client: Any, secret_arn: str) -> dict[str, str]:
    """``{"username", "password"}`` from the secret's JSON; no secret, no credentials."""
    if not secret_arn:
        return {}
    secret = json.loads(secrets_client.get_secret_value(SecretId=secret_arn)["SecretString"])
    return {"username": secret["username"], "password": secret["password"]}


def connect(url: str, **credentials: str) -> Any:
    """A clickhouse-connect client for ``url`` (https://host:8443, or chdb:///path in local runs and tests)."""
    import clickhouse_connect

    return clickhouse_connect.get_client(
        dsn=url, connect_timeout=CONNECT_TIMEOUT_S, send_receive_timeout=SEND_RECEIVE_TIMEOUT_S, **credentials
    )
