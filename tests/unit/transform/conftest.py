from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from bxb_runtime.config import EventRules
from bxb_runtime.transform import Transformer
from bxb_stream.firehose.invocation import SourceRecord, firehose_event

NOW_MS = 1_790_000_000_000
SAMPLES = Path(__file__).parent / "samples"


@pytest.fixture
def rules() -> EventRules:
    return EventRules(organization_id="org_1")


@pytest.fixture
def transformer(rules: EventRules) -> Transformer:
    return Transformer(rules, clock=lambda: NOW_MS / 1000)


@pytest.fixture
def make_request() -> Callable[..., dict[str, Any]]:
    """Firehose request from events (dicts are JSON-encoded; bytes are sent as they are)."""

    def build(*events: dict[str, Any] | bytes, arrival_ms: int = NOW_MS) -> dict[str, Any]:
        records = [
            SourceRecord(e if isinstance(e, bytes) else json.dumps(e).encode(), arrival_ms, sequence_number=str(i))
            for i, e in enumerate(events)
        ]
        return firehose_event(records)

    return build


@pytest.fixture
def sample() -> Callable[[str], dict[str, Any]]:
    return lambda name: json.loads((SAMPLES / name).read_text())


@pytest.fixture
def make_event() -> Callable[..., dict[str, Any]]:
    def build(tid: str = "tx_1", **changes: Any) -> dict[str, Any]:
        base = {"transaction_id": tid, "external_customer_id": "cust_1", "code": "api_calls"}
        base["timestamp"] = NOW_MS / 1000 - 60
        return {**base, **changes}

    return build
