from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest


@dataclass
class IngestDb:
    client: Any
    database: str

    def client_factory(self) -> Any:
        return self.client


@pytest.fixture
def ingest_db(clickhouse_stack) -> IngestDb:
    """A fresh database with the project's full schema, on the shared embedded engine."""
    stack = clickhouse_stack(polling_min_timeout_ms=1_000, polling_max_timeout_ms=5_000)
    return IngestDb(stack.client, stack.database)
