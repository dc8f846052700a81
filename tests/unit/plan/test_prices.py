"""Price sheets: bundled data carries a source and date for every price; bad sheets fail by name."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from bxb_stream.plan.errors import PlanError
from bxb_stream.plan.prices import REQUIRED_KEYS, available_regions, load_prices


def test_bundled_sheet_has_every_price_with_source_and_date(price_doc: dict[str, Any]) -> None:
    assert "us-east-1" in available_regions()
    assert set(REQUIRED_KEYS) <= set(price_doc["prices"])
    for key, entry in price_doc["prices"].items():
        assert entry["source"].startswith("https://aws.amazon.com/"), key
        assert entry["read_on"] >= price_doc["read_on"], key  # the sheet's date is its oldest reading


def test_missing_key_is_named(write_prices: Callable[..., Path]) -> None:
    with pytest.raises(PlanError, match=r"missing price key 'lambda\.arm64_gb_second'"):
        load_prices(path=write_prices({"lambda.arm64_gb_second": None}))


def test_negative_price_is_named(write_prices: Callable[..., Path]) -> None:
    with pytest.raises(PlanError, match=r"'s3\.put_per_1000' is negative"):
        load_prices(path=write_prices({"s3.put_per_1000": -0.005}))


def test_non_numeric_price(write_prices: Callable[..., Path]) -> None:
    with pytest.raises(PlanError, match="numeric"):
        load_prices(path=write_prices({"s3.put_per_1000": "cheap"}))


def test_zero_price_is_allowed(write_prices: Callable[..., Path]) -> None:
    assert load_prices(path=write_prices({"kinesis.ondemand.stream_hour": 0})).rate("kinesis.ondemand.stream_hour") == 0


def test_unknown_region_without_file() -> None:
    with pytest.raises(PlanError, match=r"unknown region 'eu-west-9'.*--prices"):
        load_prices("eu-west-9")


def test_file_for_another_region(write_prices: Callable[..., Path]) -> None:
    path = write_prices(region="eu-west-1")
    assert load_prices(path=path).region == "eu-west-1"
    with pytest.raises(PlanError, match="is for region 'eu-west-1', not 'us-east-1'"):
        load_prices("us-east-1", path)


def test_unreadable_and_malformed_files(tmp_path: Path) -> None:
    with pytest.raises(PlanError, match="cannot read price file"):
        load_prices(path=tmp_path / "nope.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{", encoding="utf-8")
    with pytest.raises(PlanError, match="not valid JSON"):
        load_prices(path=bad)


def test_bad_tiers(tmp_path: Path, price_doc: dict[str, Any]) -> None:
    doc = json.loads(json.dumps(price_doc))
    doc["prices"]["firehose.ingest_gb"]["tiers"][-1]["up_to_gb"] = 10
    path = tmp_path / "p.json"
    path.write_text(json.dumps(doc), encoding="utf-8")
    with pytest.raises(PlanError, match=r"firehose\.ingest_gb"):
        load_prices(path=path)
