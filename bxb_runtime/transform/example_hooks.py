"""Two example hooks. Enable with ``BXB_HOOKS``, e.g.::

BXB_HOOKS="bxb_runtime.transform.example_hooks:drop_test_customers,bxb_runtime.transform.example_hooks:customer_tier"
"""

from __future__ import annotations

import json
import os
from functools import cache
from typing import Any

from bxb_runtime.transform.hooks import DROP

TEST_CUSTOMER_PREFIXES_ENV = "BXB_TEST_CUSTOMER_PREFIXES"
CUSTOMER_TIERS_ENV = "BXB_CUSTOMER_TIERS"


@cache
def _test_prefixes() -> tuple[str, ...]:
    raw = os.environ.get(TEST_CUSTOMER_PREFIXES_ENV, "test_,qa_")
    return tuple(p.strip() for p in raw.split(",") if p.strip())


@cache
def _tiers() -> dict[str, str]:
    return json.loads(os.environ.get(CUSTOMER_TIERS_ENV, "{}"))


def drop_test_customers(event: dict[str, Any]) -> Any:
    """Filter: drop events of test customers (ids starting with a configured prefix)."""
    if event["external_customer_id"].startswith(_test_prefixes()):
        return DROP
    return event


def customer_tier(event: dict[str, Any]) -> dict[str, Any]:
    """Enrich: add ``properties.customer_tier`` from a JSON map in ``BXB_CUSTOMER_TIERS``."""
    tier = _tiers().get(event["external_customer_id"], "standard")
    event["properties"] = {**event["properties"], "customer_tier": tier}
    return event
