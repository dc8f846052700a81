from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

import clickhouse_connect
import pytest

from bxb_stream.events.schema import clickhouse_columns

_counter = itertools.count()


@dataclass
class IngestDb:
    client: Any
    database: str

    def client_factory(self) -> Any:
        return self.client


@pytest.fixture(scope="session")
def _tmp_engine(tmp_path_factory):
    return clickhouse_connect.get_client(dsn=f"chdb://{tmp_path_factory.mktemp('ch')}")


@pytest.fixture
def ingest_db(_tmp_engine) -> IngestDb:
    db = f"ingest_{next(_counter)}"
    c = _tmp_engine
    c.command(f"CREATE DATABASE {db}")
    cols = ", ".join(f"{n} {t}" for n, t in clickhouse_columns())
    c.command(
        f"CREATE TABLE {db}.events_raw ({cols}) ENGINE=ReplacingMergeTree(ingested_at) "
        "ORDER BY (organization_id, transaction_id) SETTINGS non_replicated_deduplication_window=1000"
    )
    c.command(f"CREATE TABLE {db}.events_late AS {db}.events_raw")
    c.command(
        f"CREATE TABLE {db}.events_dead_letter (organization_id String, request_id String, record_index UInt32, "
        "raw String, error_code String, error_message String, failed_at DateTime64(3, 'UTC')) "
        "ENGINE=MergeTree ORDER BY failed_at SETTINGS non_replicated_deduplication_window=1000"
    )
    return IngestDb(c, db)
