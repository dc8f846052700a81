"""Seeded synthetic billing workload, with an expectation tag per event for reconciliation.

Used by ``bxb-stream produce --synthetic``, the local pipeline and the benchmarks::

    for event, expect in generate(10_000, seed=7, duplicate_share=0.02, invalid_share=0.01, late_share=0.01):
        ...  # event: a dict, or bytes for events that are not even JSON

``expect.kind`` says what the pipeline should do with the event:

- ``stored``: valid and in an open period (up to a few days old with ``backdated_share``);
  billed once, into its own hour.
- ``late``: valid but more than ``grace_days`` older than now; set aside (``events_late``).
- ``duplicate``: a byte-identical re-send of an earlier stored/late event (same
  ``transaction_id``); counted, never billed.
- ``conflict``: an earlier stored event's ``transaction_id`` sent again with another
  ``value``; stored as a conflict, never billed. It is only a conflict if the original
  was stored first: a caller that needs exact expectations sends these after the rest
  has been stored (``bxb-stream local`` does).
- ``invalid``: rejected by the validator with ``expect.error_code``.

Customers follow a Zipf-like distribution (a few customers send most events), the
codes carry realistic properties, and the same seed gives the same events.
"""

from __future__ import annotations

import bisect
import enum
import itertools
import json
import random
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

DEFAULT_CODES = ("api_calls", "storage_gb", "compute_seconds", "seats", "bandwidth_bytes")
_REGIONS = ("us-east-1", "eu-west-1", "ap-southeast-2", "sa-east-1")
_ENDPOINTS = ("/v1/invoices", "/v1/customers", "/v1/events", "/v1/plans", "/v1/wallets")
_INSTANCES = ("t3.micro", "m7g.large", "c7i.2xlarge", "r6a.xlarge")
_PLANS = ("starter", "growth", "enterprise")
# How far back on-time events are spread; backdated ones go back up to _BACKDATED_MS (inside the grace).
_ON_TIME_SPREAD_MS = 3_600_000
_BACKDATED_MS = 5 * 86_400_000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_RECENT = 1024  # duplicates re-send one of the last this-many valid events


class Expect(enum.StrEnum):
    STORED = "stored"
    LATE = "late"
    DUPLICATE = "duplicate"
    CONFLICT = "conflict"
    INVALID = "invalid"


@dataclass(frozen=True, slots=True)
class Expectation:
    kind: Expect
    transaction_id: str | None = None  # None when the event has none (or it is not JSON)
    external_customer_id: str | None = None
    code: str | None = None
    timestamp_ms: int | None = None  # what the pipeline should store, for valid events
    error_code: str | None = None  # the validator's EventError.code, for invalid events


def _zipf_cumulative(n: int, s: float) -> list[float]:
    return list(itertools.accumulate(1.0 / (k**s) for k in range(1, n + 1)))


def _iso(ms: int) -> str:
    return (_EPOCH + timedelta(milliseconds=ms)).isoformat(timespec="milliseconds")  # exact, no float


def generate(
    n: int,
    *,
    seed: int = 0,
    organization_id: str | None = None,
    customers: int = 1_000,
    codes: tuple[str, ...] = DEFAULT_CODES,
    duplicate_share: float = 0.0,
    invalid_share: float = 0.0,
    late_share: float = 0.0,
    conflict_share: float = 0.0,
    backdated_share: float = 0.0,
    now_ms: int | None = None,
    grace_days: int = 35,
    zipf_s: float = 1.1,
) -> Iterator[tuple[dict[str, Any] | bytes, Expectation]]:
    """Yield ``n`` (event, expectation) pairs. Deterministic for a given seed and ``now_ms``."""
    if n < 0 or customers < 1 or not codes:
        raise ValueError("need n >= 0, customers >= 1 and at least one code")
    shares = (duplicate_share, invalid_share, late_share, conflict_share, backdated_share)
    if any(not 0.0 <= s <= 1.0 for s in shares) or sum(shares) > 1.0:
        raise ValueError("duplicate/invalid/late/conflict/backdated shares must each be in [0, 1] and sum to at most 1")
    rng = random.Random(seed)
    now = now_ms if now_ms is not None else time.time_ns() // 1_000_000
    grace_ms = grace_days * 86_400_000
    cumulative = _zipf_cumulative(customers, zipf_s)
    total = cumulative[-1]
    customer_ids = [f"cus_{seed:x}_{k:06d}" for k in range(customers)]
    dup_cut = duplicate_share
    inv_cut = dup_cut + invalid_share
    late_cut = inv_cut + late_share
    conflict_cut = late_cut + conflict_share
    backdated_cut = conflict_cut + backdated_share
    recent: list[tuple[dict[str, Any], Expectation]] = []
    variants: dict[str, int] = {}  # transaction_id -> conflicting copies made of it, so each is new
    for _ in range(n):
        roll = rng.random()
        if late_cut <= roll < conflict_cut and recent:
            event, original = recent[rng.randrange(len(recent))]
            if original.kind is Expect.STORED:
                changed = _copy(event)
                tid = str(original.transaction_id)
                variants[tid] = variants.get(tid, 0) + 1
                changed["value"] = float(changed.get("value") or 0) + variants[tid]  # same transaction, another amount
                yield (
                    changed,
                    Expectation(
                        Expect.CONFLICT,
                        original.transaction_id,
                        original.external_customer_id,
                        original.code,
                        original.timestamp_ms,
                    ),
                )
                continue
        if roll < dup_cut and recent:
            event, original = recent[rng.randrange(len(recent))]
            yield (
                _copy(event),
                Expectation(
                    Expect.DUPLICATE,
                    original.transaction_id,
                    original.external_customer_id,
                    original.code,
                    original.timestamp_ms,
                ),
            )
            continue
        customer = customer_ids[bisect.bisect_left(cumulative, rng.random() * total)]
        code = codes[rng.randrange(len(codes))]
        if inv_cut <= roll < late_cut:
            # Late: between 1 minute and 5 days past the grace.
            ts_ms = now - grace_ms - rng.randint(60_000, 5 * 86_400_000)
            kind = Expect.LATE
        elif conflict_cut <= roll < backdated_cut:
            ts_ms = now - rng.randrange(_ON_TIME_SPREAD_MS, _BACKDATED_MS)  # days late, in an open period: billed
            kind = Expect.STORED
        else:
            ts_ms = now - rng.randrange(_ON_TIME_SPREAD_MS)
            kind = Expect.STORED
        event, ts_ms = _event(rng, customer, code, ts_ms, organization_id)
        if dup_cut <= roll < inv_cut:
            bad, error_code = _spoil(rng, event, now)
            yield (
                bad,
                Expectation(
                    Expect.INVALID,
                    event["transaction_id"] if isinstance(bad, dict) and "transaction_id" in bad else None,
                    customer,
                    code,
                    None,
                    error_code,
                ),
            )
            continue
        expect = Expectation(kind, event["transaction_id"], customer, code, ts_ms)
        if len(recent) < _RECENT:
            recent.append((event, expect))
        else:
            recent[rng.randrange(_RECENT)] = (event, expect)
        yield event, expect


def _copy(event: dict[str, Any]) -> dict[str, Any]:
    out = dict(event)
    if isinstance(out.get("properties"), dict):
        out["properties"] = dict(out["properties"])
    return out


def _event(
    rng: random.Random, customer: str, code: str, ts_ms: int, organization_id: str | None
) -> tuple[dict[str, Any], int]:
    """A valid event; returns it and the timestamp (ms) the pipeline will store."""
    # Timestamps arrive in every accepted form: float seconds, int seconds, ISO-8601.
    form = rng.random()
    ts: Any
    if form < 0.6:
        ts = round(ts_ms / 1000, 3)
        ts_ms = round(ts * 1000)
    elif form < 0.8:
        ts = ts_ms // 1000
        ts_ms = ts * 1000
    else:
        ts = _iso(ts_ms)
    event: dict[str, Any] = {
        "transaction_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
        "external_customer_id": customer,
        "code": code,
        "timestamp": ts,
    }
    if code == "api_calls":
        event["properties"] = {
            "endpoint": rng.choice(_ENDPOINTS),
            "method": rng.choice(("GET", "POST")),
            "status": rng.choice((200, 200, 200, 201, 404, 500)),
        }
    elif code == "storage_gb":
        event["properties"] = {"region": rng.choice(_REGIONS), "tier": rng.choice(("standard", "archive"))}
        event["decimal_value"] = f"{rng.randrange(1, 10**9) / 10**6:.6f}"
    elif code == "compute_seconds":
        event["properties"] = {"instance_type": rng.choice(_INSTANCES), "region": rng.choice(_REGIONS)}
        event["value"] = round(rng.uniform(0.1, 3600.0), 3)
    elif code == "seats":
        event["properties"] = {"plan": rng.choice(_PLANS)}
        event["value"] = rng.randint(1, 500)
    else:
        event["properties"] = {"region": rng.choice(_REGIONS), "direction": rng.choice(("egress", "ingress"))}
        event["value"] = rng.randint(1, 10**9)
    if organization_id is not None:
        event["organization_id"] = organization_id
    return event, ts_ms


def _spoil(rng: random.Random, event: dict[str, Any], now_ms: int) -> tuple[dict[str, Any] | bytes, str]:
    """Make a valid event invalid in one of several realistic ways; return it and the expected code."""
    bad = _copy(event)
    kind = rng.randrange(10)
    if kind == 0:
        del bad["code"]
        return bad, "missing_field:code"
    if kind == 1:
        del bad["external_customer_id"]
        return bad, "missing_field:external_customer_id"
    if kind == 2:
        bad["timestmap"] = bad.pop("timestamp")
        return bad, "unknown_field:timestmap"
    if kind == 3:
        bad["timestamp"] = rng.choice(("yesterday", "2024-13-45T00:00:00Z", "12/03/2024 10:00"))
        return bad, "bad_timestamp"
    if kind == 4:
        bad["external_customer_id"] = rng.randint(1, 10**6)
        return bad, "wrong_type:external_customer_id"
    if kind == 5:
        bad["value"] = str(rng.randint(1, 100))
        return bad, "wrong_type:value"
    if kind == 6:
        bad["timestamp"] = (now_ms + 2 * 86_400_000) // 1000
        return bad, "timestamp_in_future"
    if kind == 7:
        bad["transaction_id"] = "   "
        return bad, "empty_field:transaction_id"
    if kind == 8:
        bad["decimal_value"] = "twelve"
        return bad, "bad_decimal"
    # Truncated JSON, as a broken client might send.
    text = json.dumps(event, separators=(",", ":")).encode()
    return text[: max(1, len(text) // 2)], "not_json"
