"""Price sheets: every rate the planner uses, as data with its source and the date it was read.

A sheet is JSON::

    {"region": "us-east-1", "currency": "USD", "read_on": "YYYY-MM-DD", "notes": "...",
     "prices": {"kinesis.provisioned.shard_hour": {"usd": 0.015, "unit": "shard-hour",
                                                   "source": "https://...", "read_on": "YYYY-MM-DD"},
                "firehose.ingest_gb": {"tiers": [{"up_to_gb": 512000, "usd": 0.029}, ...], ...}}}

Rates may be zero (e.g. a mode without a per-stream charge) but never negative or missing.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from bxb_stream.plan.errors import PlanError

DEFAULT_REGION = "us-east-1"

# Every key a sheet must carry. Tiered keys hold "tiers" instead of "usd".
REQUIRED_KEYS: tuple[str, ...] = (
    "kinesis.provisioned.shard_hour",
    "kinesis.provisioned.put_payload_units_per_million",
    "kinesis.provisioned.extended_retention_shard_hour",
    "kinesis.ondemand.stream_hour",
    "kinesis.ondemand.data_in_gb",
    "kinesis.ondemand.data_out_gb",
    "kinesis.ondemand.extended_retention_gb_month",
    "kinesis.long_term_retention_gb_month",
    "firehose.ingest_gb",
    "firehose.format_conversion_gb",
    "firehose.dynamic_partitioning_gb",
    "firehose.dynamic_partitioning_per_1000_objects",
    "lambda.arm64_gb_second",
    "lambda.requests_per_million",
    "s3.standard_gb_month",
    "s3.standard_ia_gb_month",
    "s3.glacier_instant_gb_month",
    "s3.glacier_flexible_gb_month",
    "s3.put_per_1000",
    "s3.list_per_1000",
    "s3.get_per_1000",
    "s3.transition_ia_per_1000",
    "s3.transition_glacier_instant_per_1000",
    "s3.transition_glacier_flexible_per_1000",
    "dynamodb.ondemand.write_request_units_per_million",
    "dynamodb.storage_gb_month",
)
TIERED_KEYS = frozenset({"firehose.ingest_gb"})


@dataclass(frozen=True)
class Tier:
    up_to_gb: float  # math.inf for the last tier
    usd: float


@dataclass(frozen=True)
class PriceSheet:
    region: str
    read_on: str
    source_file: str
    rates: dict[str, float] = field(default_factory=dict)
    tiers: dict[str, tuple[Tier, ...]] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)

    def rate(self, key: str) -> float:
        try:
            return self.rates[key]
        except KeyError:
            raise PlanError(f"price sheet {self.source_file}: missing price key {key!r}") from None

    def tiered_cost(self, key: str, quantity: float) -> float:
        """Cost of ``quantity`` units under a tiered price, filling the cheapest-first tiers in order."""
        cost, floor = 0.0, 0.0
        for tier in self.tiers[key]:
            span = min(quantity, tier.up_to_gb) - floor
            if span <= 0:
                break
            cost += span * tier.usd
            floor = tier.up_to_gb
        return cost


def available_regions() -> list[str]:
    folder = resources.files("bxb_stream.plan") / "prices"
    return sorted(p.name.removesuffix(".json") for p in folder.iterdir() if p.name.endswith(".json"))


def load_prices(region: str | None = None, path: str | Path | None = None) -> PriceSheet:
    """Load the bundled sheet for ``region`` or the file at ``path`` (which wins)."""
    if path is not None:
        file = Path(path)
        try:
            text = file.read_text(encoding="utf-8")
        except OSError as exc:
            raise PlanError(f"cannot read price file {str(file)!r}: {exc.strerror or exc}") from None
        sheet = parse_prices(text, str(file))
        if region is not None and sheet.region != region:
            raise PlanError(f"price file {str(file)!r} is for region {sheet.region!r}, not {region!r}")
        return sheet
    region = region or DEFAULT_REGION
    regions = available_regions()
    if region not in regions:
        raise PlanError(
            f"unknown region {region!r}: no bundled price sheet (have: {', '.join(regions)}); "
            "pass --prices FILE with that region's prices"
        )
    resource = resources.files("bxb_stream.plan") / "prices" / f"{region}.json"
    return parse_prices(resource.read_text(encoding="utf-8"), f"{region}.json")


def parse_prices(text: str, source_file: str) -> PriceSheet:
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise PlanError(f"price file {source_file}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("prices"), dict):
        raise PlanError(f"price file {source_file}: expected an object with a 'prices' object")
    for top in ("region", "read_on"):
        if not isinstance(doc.get(top), str) or not doc[top]:
            raise PlanError(f"price file {source_file}: missing {top!r}")
    prices: dict[str, Any] = doc["prices"]
    rates: dict[str, float] = {}
    tiers: dict[str, tuple[Tier, ...]] = {}
    sources: dict[str, str] = {}
    for key in REQUIRED_KEYS:
        entry = prices.get(key)
        if entry is None:
            raise PlanError(f"price file {source_file}: missing price key {key!r}")
        if not isinstance(entry, dict):
            raise PlanError(f"price file {source_file}: {key!r} must be an object")
        if not isinstance(entry.get("source"), str) or not entry["source"]:
            raise PlanError(f"price file {source_file}: {key!r} has no 'source'")
        sources[key] = entry["source"]
        if key in TIERED_KEYS:
            tiers[key] = _parse_tiers(entry.get("tiers"), key, source_file)
            rates[key] = tiers[key][0].usd
        else:
            rates[key] = _rate(entry.get("usd"), key, source_file)
    return PriceSheet(doc["region"], doc["read_on"], source_file, rates, tiers, sources)


def _rate(value: object, key: str, source_file: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise PlanError(f"price file {source_file}: {key!r} needs a numeric 'usd', got {value!r}")
    if value < 0:
        raise PlanError(f"price file {source_file}: {key!r} is negative ({value})")
    return float(value)


def _parse_tiers(raw: object, key: str, source_file: str) -> tuple[Tier, ...]:
    if not isinstance(raw, list) or not raw:
        raise PlanError(f"price file {source_file}: {key!r} needs a non-empty 'tiers' list")
    out: list[Tier] = []
    previous = 0.0
    for i, item in enumerate(raw):
        if not isinstance(item, dict):
            raise PlanError(f"price file {source_file}: {key!r} tier {i} must be an object")
        bound = item.get("up_to_gb")
        last = i == len(raw) - 1
        if bound is None and last:
            upper = math.inf
        elif isinstance(bound, int | float) and not isinstance(bound, bool) and bound > previous:
            upper = float(bound)
        else:
            raise PlanError(f"price file {source_file}: {key!r} tier {i} has a bad 'up_to_gb' ({bound!r})")
        out.append(Tier(upper, _rate(item.get("usd"), f"{key} tier {i}", source_file)))
        previous = upper
    if out[-1].up_to_gb != math.inf:
        raise PlanError(f"price file {source_file}: {key!r} last tier needs 'up_to_gb': null")
    return tuple(out)
