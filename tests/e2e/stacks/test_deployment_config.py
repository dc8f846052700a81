"""bxb_stream.deployment: the one config object behind cdk.json, -c overrides and the local runner."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from bxb_runtime.config import ConfigError, EventRules
from bxb_stream.deployment import (
    DATA_PREFIX,
    ERROR_PREFIX,
    HTTP_BACKUP_ERROR_PREFIX,
    HTTP_BACKUP_PREFIX,
    PARQUET_PREFIXES,
    PipelineConfig,
    context_keys,
)

REPO = Path(__file__).resolve().parents[3]
CDK_JSON = REPO / "cdk.json"


def test_shipped_cdk_json_lists_every_key_with_its_default() -> None:
    context = json.loads(CDK_JSON.read_text())["context"]
    assert {k for k in context if k.startswith("bxb:")} == set(context_keys())
    assert PipelineConfig.from_cdk_json(CDK_JSON) == PipelineConfig()


def test_cdk_json_settings() -> None:
    cdk = json.loads(CDK_JSON.read_text())
    assert cdk["app"] == "python app.py"
    assert cdk["notices"] is False
    assert cdk["context"]["cli-telemetry"] is False


def test_round_trip_through_context() -> None:
    config = PipelineConfig.from_context(
        {"bxb:delivery": "both", "bxb:clickhouse.url": "https://ch.example.com:8443", "bxb:stream.mode": "provisioned"}
    )
    assert PipelineConfig.from_context(config.to_context()) == config


def test_cli_strings_are_coerced_to_field_types() -> None:
    config = PipelineConfig.from_context(
        {
            "bxb:stream.shard_count": "8",
            "bxb:rules.multi_tenant": "true",
            "bxb:rules.organization_id": "",
            "bxb:alarms.min_success_ratio": "0.95",
            "bxb:rules.future_skew_seconds": "600",
        }
    )
    assert config.stream.shard_count == 8
    assert config.rules == EventRules(organization_id="", multi_tenant=True, future_skew_seconds=600)
    assert config.alarms.min_success_ratio == 0.95


def test_non_bxb_context_is_ignored() -> None:
    assert PipelineConfig.from_context({"@aws-cdk/core:x": True, "aws:cdk:bundling-stacks": []}) == PipelineConfig()


@pytest.mark.parametrize(
    ("context", "key", "problem"),
    [
        ({"bxb:stream.mode": "serverless"}, "bxb:stream.mode", "on-demand, provisioned"),
        ({"bxb:stream.shard_count": "four"}, "bxb:stream.shard_count", "integer"),
        ({"bxb:stream.retention_hours": 12}, "bxb:stream.retention_hours", "[24, 8760]"),
        ({"bxb:delivery": "kafka"}, "bxb:delivery", "s3, http, both"),
        ({"bxb:s3.buffer_size_mib": 32}, "bxb:s3.buffer_size_mib", "[64, 128]"),
        ({"bxb:s3.buffer_interval_seconds": 30}, "bxb:s3.buffer_interval_seconds", "[60, 900]"),
        ({"bxb:http.buffer_size_mib": 5}, "bxb:http.buffer_size_mib", "[1, 3]"),
        ({"bxb:http.retry_seconds": 9000}, "bxb:http.retry_seconds", "7200"),
        ({"bxb:http.backup_mode": "none"}, "bxb:http.backup_mode", "failed, all"),
        ({"bxb:s3.glacier_days": 40}, "bxb:s3.glacier_days", "30 days after"),
        ({"bxb:rules.organization_id": "acme corp"}, "bxb:rules.organization_id", "must match"),
        ({"bxb:rules.future_skew_seconds": -1}, "bxb:rules.future_skew_seconds", "integer in"),
        ({"bxb:rules.multi_tenant": "yes"}, "bxb:rules.multi_tenant", "true or false"),
        ({"bxb:rules.hooks": "os:getcwd"}, "bxb:rules.hooks", "bxb_runtime package"),
        ({"bxb:rules.hooks": "bxb_runtime.nope:f"}, "bxb:rules.hooks", "cannot import"),
        ({"bxb:clickhouse.url": "http://ch:8123"}, "bxb:clickhouse.url", "https://"),
        ({"bxb:clickhouse.s3_principal": "clickhouse"}, "bxb:clickhouse.s3_principal", "role ARN"),
        ({"bxb:clickhouse.s3_external_id": "x"}, "bxb:clickhouse.s3_external_id", "2-1224"),
        ({"bxb:clickhouse.s3_role_session_name": "a b"}, "bxb:clickhouse.s3_role_session_name", "2-64"),
        (
            {"bxb:clickhouse.s3_principal": "arn:aws:iam::111122223333:role/CH"},
            "bxb:clickhouse.s3_external_id",
            "is required when bxb:clickhouse.s3_principal is set",
        ),
        (
            {"bxb:clickhouse.s3_principal": "111122223333"},
            "bxb:clickhouse.s3_external_id",
            "bxb:clickhouse.s3_role_session_name",
        ),
        ({"bxb:powertools": "docker"}, "bxb:powertools", "layer, bundle"),
        ({"bxb:transform_reserved_concurrency": -1}, "bxb:transform_reserved_concurrency", "[0, 10000]"),
        ({"bxb:http.ingest_max_concurrency": "many"}, "bxb:http.ingest_max_concurrency", "integer"),
        ({"bxb:encrypt_with_stack_key": "yes"}, "bxb:encrypt_with_stack_key", "true or false"),
        ({"bxb:alarms.dead_letter_rows": 0}, "bxb:alarms.dead_letter_rows", "[1, "),
        ({"bxb:alarms.email": "oncall"}, "bxb:alarms.email", "e-mail"),
        ({"bxb:alarms.topic_arn": "ops"}, "bxb:alarms.topic_arn", "SNS topic ARN"),
        ({"bxb:alarms.min_success_ratio": 2}, "bxb:alarms.min_success_ratio", "[0.0, 1.0]"),
        ({"bxb:log_retention_days": 10}, "bxb:log_retention_days", "one of"),
        ({"bxb:name": "9lives"}, "bxb:name", "a letter"),
        ({"bxb:strem.mode": "provisioned"}, "bxb:strem.mode", "unknown setting"),
        ({"bxb:delivery": "both"}, "bxb:clickhouse.url", "required when bxb:delivery includes http"),
        ({"bxb:alarms.s3_freshness_seconds": 300}, "bxb:alarms.s3_freshness_seconds", "must exceed"),
    ],
)
def test_bad_values_name_the_key(context: dict[str, object], key: str, problem: str) -> None:
    with pytest.raises(ConfigError) as caught:
        PipelineConfig.from_context(context)
    assert caught.value.key == key
    assert problem in str(caught.value)
    assert repr(key) in str(caught.value)


def test_direct_construction_validates_too() -> None:
    with pytest.raises(ConfigError, match=r"bxb:http\.buffer_size_mib"):
        replace(PipelineConfig().http, buffer_size_mib=6)


def test_embeds_event_rules_for_the_transform_environment() -> None:
    hooks = "bxb_runtime.transform.example_hooks:customer_tier"
    config = PipelineConfig.from_context({"bxb:rules.hooks": hooks, "bxb:rules.organization_id": "acme"})
    assert isinstance(config.rules, EventRules)
    env = config.transform_env()
    assert env == {  # every rule, spelled as the Lambda's environment (defaults included)
        "BXB_ORGANIZATION_ID": "acme",
        "BXB_MULTI_TENANT": "false",
        "BXB_FUTURE_SKEW_SECONDS": "300",
        "BXB_MAX_PROPERTIES_BYTES": "16384",
        "BXB_MAX_PROPERTIES_DEPTH": "8",
        "BXB_MAX_RECORD_BYTES": "65536",
        "BXB_HOOKS": hooks,
    }
    assert EventRules.from_env(env) == config.rules  # what the Lambda reads back


def test_paths_and_ingest_env() -> None:
    assert (PipelineConfig().s3_enabled, PipelineConfig().http_enabled) == (True, False)
    both = PipelineConfig.from_context({"bxb:delivery": "both", "bxb:clickhouse.url": "https://ch.example.com"})
    assert both.s3_enabled and both.http_enabled
    env = both.ingest_env()
    assert env["BXB_CLICKHOUSE_URL"] == "https://ch.example.com"
    assert env["BXB_CLICKHOUSE_DATABASE"] == "bxb"
    assert env["BXB_ORGANIZATION_ID"] == "default"  # stamped on dead letters
    assert both.http_delivery_stream_name == "bxb-stream-http"  # fixed, so the ingest function can know its ARN
    assert PipelineConfig(name="billing").http_delivery_stream_name == "billing-http"


def test_prefixes_never_overlap_the_parquet_data() -> None:
    assert DATA_PREFIX.startswith(PARQUET_PREFIXES)  # every transformed event lands under events/
    for prefix in (ERROR_PREFIX, HTTP_BACKUP_PREFIX, HTTP_BACKUP_ERROR_PREFIX):
        assert not prefix.startswith(PARQUET_PREFIXES)
        assert not any(p.startswith(prefix.split("!")[0]) for p in PARQUET_PREFIXES)
    assert "!{firehose:error-output-type}" in ERROR_PREFIX
    assert "!{firehose:error-output-type}" in HTTP_BACKUP_ERROR_PREFIX


@pytest.mark.parametrize(
    ("context", "message"),
    [
        ({"bxb:stream.mode": "serverless"}, "config 'bxb:stream.mode': must be one of on-demand, provisioned"),
        (
            {"bxb:clickhouse.s3_principal": "arn:aws:iam::111122223333:role/CH"},
            "config 'bxb:clickhouse.s3_external_id': is required when bxb:clickhouse.s3_principal is set",
        ),
    ],
)
def test_app_fails_synth_with_the_key_in_the_message(tmp_path: Path, context: dict[str, str], message: str) -> None:
    env = {
        **os.environ,
        "CDK_CONTEXT_JSON": json.dumps(context),
        "CDK_OUTDIR": str(tmp_path),
        "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": "20",
    }
    done = subprocess.run(
        [sys.executable, "app.py"], cwd=REPO, env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 1
    assert message in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr  # one line, no traceback
    assert not list(tmp_path.glob("*.template.json"))
