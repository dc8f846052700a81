from __future__ import annotations

import pytest

from bxb_runtime.config import EventRules

NOW_MS = 1_790_000_000_000  # 2026-09-21, fixed so tests do not depend on the clock


@pytest.fixture
def rules() -> EventRules:
    return EventRules(organization_id="org_1")


@pytest.fixture
def now_ms() -> int:
    return NOW_MS


@pytest.fixture
def valid_event() -> dict:
    return {
        "transaction_id": "tx_1",
        "external_customer_id": "cust_1",
        "code": "api_calls",
        "timestamp": NOW_MS / 1000 - 60,
        "properties": {"region": "eu-west-1", "plan": "pro"},
        "value": 3.5,
    }
