"""User hooks: loading, enrichment, filtering, and failures that stay with one record."""

from __future__ import annotations

import base64
import json
import sys
import types

import pytest

from bxb_runtime.config import EventRules
from bxb_runtime.transform import DROP, HookConfigError, Transformer, load_hooks
from bxb_runtime.transform.example_hooks import customer_tier, drop_test_customers
from bxb_runtime.wire.firehose_processor import Result

NOW_MS = 1_790_000_000_000


@pytest.fixture
def hook_module(monkeypatch):
    """A throw-away module of hooks, importable by name like a team's own package."""
    module = types.ModuleType("team_hooks")

    def explode(event):
        raise RuntimeError("lookup service down")

    def add_field(event):
        return {**event, "tier": "gold"}

    def wrong_type(event):
        return {**event, "value": "a lot"}

    def move_org(event):
        return {**event, "organization_id": "other"}

    def double(event):
        return {**event, "value": (event["value"] or 1.0) * 2}

    def drop_all(event):
        return DROP

    def drop_all_with_none(event):  # hooks written before DROP
        return None

    def stamp(event):  # ingested_at is the pipeline's, not the hook's
        return {**event, "ingested_at": 0}

    def blank_code(event):
        return {**event, "code": "  "}

    def float_timestamp(event):
        return {**event, "timestamp": event["timestamp"] / 1000}

    def list_properties(event):
        return {**event, "properties": ["a"]}

    def drop_code(event):
        return {k: v for k, v in event.items() if k != "code"}

    for fn in (explode, add_field, wrong_type, move_org, double, drop_all, drop_all_with_none, stamp, blank_code,
               float_timestamp, list_properties, drop_code):  # fmt: skip
        setattr(module, fn.__name__, fn)
    module.not_callable = 42
    monkeypatch.setitem(sys.modules, "team_hooks", module)
    return module


def run(hooks: str, *events: dict, rules: EventRules | None = None):
    rules = rules or EventRules(organization_id="org_1", hooks=hooks)
    transformer = Transformer(rules, load_hooks(hooks), clock=lambda: NOW_MS / 1000)
    request = {
        "records": [
            {
                "recordId": str(i),
                "approximateArrivalTimestamp": NOW_MS,
                "data": base64.b64encode(json.dumps(e).encode()).decode(),
            }
            for i, e in enumerate(events)
        ]
    }
    response, stats = transformer.process(request)
    assert stats.balanced
    return response["records"], stats


def ev(customer: str = "cust_1", tid: str = "tx", **extra) -> dict:
    return {"transaction_id": tid, "external_customer_id": customer, "code": "api_calls", **extra}


def line(record: dict) -> dict:
    return json.loads(base64.b64decode(record["data"]))


def test_load_hooks_parses_module_function_entries(hook_module):
    hooks = load_hooks(" team_hooks:double , bxb_runtime.transform.example_hooks:customer_tier ,")
    assert [h.name for h in hooks] == ["double", "customer_tier"]
    assert load_hooks("") == ()


@pytest.mark.parametrize(
    ("spec", "problem"),
    [
        ("team_hooks", "must look like 'module:function'"),
        ("no_such_module_xyz:f", "cannot import"),
        ("team_hooks:missing", "is not a callable"),
        ("team_hooks:not_callable", "is not a callable"),
    ],
)
def test_bad_hook_configuration_fails_at_cold_start(hook_module, spec, problem):
    with pytest.raises(HookConfigError, match=problem):
        load_hooks(spec)


def test_hooks_run_in_order_and_change_the_event(hook_module):
    records, _ = run("team_hooks:double,team_hooks:double", ev(value=1.5))
    assert records[0]["result"] == "Ok"
    assert line(records[0])["value"] == 6.0


@pytest.mark.parametrize("hook", ["drop_all", "drop_all_with_none"])
def test_a_hook_drops_with_the_drop_sentinel_or_none(hook_module, hook):
    records, stats = run(f"team_hooks:double,team_hooks:{hook},team_hooks:explode", ev(tid="a"), ev(tid="b"))
    assert [r["result"] for r in records] == [Result.DROPPED, Result.DROPPED]  # later hooks never run
    assert stats.reasons == {f"hook_dropped:{hook}": 2}
    assert repr(DROP) == "DROP"


def test_a_hook_exception_fails_that_record_only(hook_module):
    records, stats = run("team_hooks:explode", ev(tid="a"), ev(tid="b"))
    assert [r["result"] for r in records] == ["ProcessingFailed", "ProcessingFailed"]
    assert stats.reasons["hook_failed:explode"] == 2
    assert "lookup service down" in stats.rejections[0].message


@pytest.mark.parametrize(
    ("hook", "code"),
    [
        ("add_field", "hook_failed:unknown_field:tier"),
        ("wrong_type", "hook_failed:wrong_type:value"),
        ("move_org", "hook_failed:organization_mismatch"),
        ("stamp", "hook_failed:reserved_field:ingested_at"),
        ("blank_code", "hook_failed:empty_field:code"),
        ("float_timestamp", "hook_failed:wrong_type:timestamp"),
        ("list_properties", "hook_failed:wrong_type:properties"),
        ("drop_code", "hook_failed:missing_field:code"),
    ],
)
def test_what_a_hook_returns_is_checked_against_the_schema(hook_module, hook, code):
    records, stats = run(f"team_hooks:{hook}", ev(value=1.0))
    assert records[0]["result"] == "ProcessingFailed"
    assert stats.reasons == {code: 1}


def test_example_filter_drops_test_customers(monkeypatch):
    monkeypatch.setenv("BXB_TEST_CUSTOMER_PREFIXES", "test_,qa_")
    from bxb_runtime.transform import example_hooks

    example_hooks._test_prefixes.cache_clear()
    records, stats = run(
        "bxb_runtime.transform.example_hooks:drop_test_customers",
        ev("test_alice", "1"),
        ev("cust_bob", "2"),
        ev("qa_carol", "3"),
    )
    assert [r["result"] for r in records] == ["Dropped", "Ok", "Dropped"]
    assert stats.reasons["hook_dropped:drop_test_customers"] == 2
    assert drop_test_customers({"external_customer_id": "cust"}) == {"external_customer_id": "cust"}


def test_example_enrichment_adds_the_customer_tier(monkeypatch):
    monkeypatch.setenv("BXB_CUSTOMER_TIERS", json.dumps({"cust_gold": "gold"}))
    from bxb_runtime.transform import example_hooks

    example_hooks._tiers.cache_clear()
    records, _ = run(
        "bxb_runtime.transform.example_hooks:customer_tier",
        ev("cust_gold", "1", properties={"plan": "pro"}),
        ev("cust_other", "2"),
    )
    assert json.loads(line(records[0])["properties"]) == {"customer_tier": "gold", "plan": "pro"}
    assert json.loads(line(records[1])["properties"]) == {"customer_tier": "standard"}
    assert customer_tier({"external_customer_id": "x", "properties": {}})["properties"]["customer_tier"] == "standard"
