"""The constructs' pure ``default_*_props(config)`` functions and the Powertools switch."""

from __future__ import annotations

from typing import Any

from bxb_stream.deployment import LOG_RETENTION_DAYS, PipelineConfig
from stacks.functions import (
    INGEST_REQUIREMENTS,
    POWERTOOLS_REQUIREMENTS,
    TRANSFORM_REQUIREMENTS,
    Powertools,
    default_transform_function_props,
)
from stacks.http_ingest import (
    SOURCE_ARN_ENV,
    default_access_key_props,
    default_function_url_props,
    default_ingest_function_props,
)
from stacks.logs import RETENTION

from .conftest import CH_URL, Synth

HTTP = PipelineConfig.from_context({"bxb:delivery": "both", "bxb:clickhouse.url": CH_URL})
KEY: Any = object()  # the props functions only pass the key through


def test_transform_props_follow_config() -> None:
    config = PipelineConfig.from_context({"bxb:transform_reserved_concurrency": 7, "bxb:transform_memory_mib": 1024})
    props = default_transform_function_props(config)
    assert (props.function_dir, props.requirements) == ("lambdas/transform", TRANSFORM_REQUIREMENTS)
    assert (props.memory_mib, props.reserved_concurrency) == (1024, 7)
    assert dict(props.environment) == config.rules.to_env()


def test_ingest_props_carry_the_source_arn_and_the_cap() -> None:
    props = default_ingest_function_props(HTTP, "arn:aws:firehose:eu-west-1:111122223333:deliverystream/x")
    assert props.requirements == INGEST_REQUIREMENTS
    assert props.reserved_concurrency == HTTP.http.ingest_max_concurrency == 10
    assert props.environment[SOURCE_ARN_ENV] == "arn:aws:firehose:eu-west-1:111122223333:deliverystream/x"
    assert {k: v for k, v in props.environment.items() if k != SOURCE_ARN_ENV} == HTTP.ingest_env()


def test_access_key_props_use_the_stack_key_only_when_configured() -> None:
    assert default_access_key_props(HTTP, KEY)["encryption_key"] is KEY
    off = PipelineConfig.from_context({**HTTP.to_context(), "bxb:encrypt_with_stack_key": False})
    assert default_access_key_props(off, KEY)["encryption_key"] is None
    generator = default_access_key_props(HTTP, KEY)["generate_secret_string"]
    assert (generator.generate_string_key, generator.password_length) == ("api_key", 64)


def test_function_url_is_unsigned_and_buffered() -> None:
    props = default_function_url_props()
    assert (props["auth_type"].value, props["invoke_mode"].value) == ("NONE", "BUFFERED")


def test_powertools_comes_from_the_layer_or_is_bundled() -> None:
    layer, bundle = Powertools("layer", 27), Powertools("bundle", 27)
    assert layer.requirements(TRANSFORM_REQUIREMENTS) == TRANSFORM_REQUIREMENTS
    assert bundle.requirements(TRANSFORM_REQUIREMENTS) == TRANSFORM_REQUIREMENTS + POWERTOOLS_REQUIREMENTS
    (pin,) = POWERTOOLS_REQUIREMENTS
    assert pin.startswith("aws-lambda-powertools==")  # the version the tests run with


def test_bundled_powertools_drops_the_layer_and_changes_the_asset(full: Synth, plain: Synth) -> None:
    for construct in (plain.stack.transform, plain.stack.http.ingest):
        props = plain.template["Resources"][plain.logical_id(construct.function)]["Properties"]
        assert "Layers" not in props
        twin = full.template["Resources"][full.logical_id(construct.function)]["Properties"]
        assert "Layers" in twin
        # The asset hash covers the requirements, so the bundle is a different asset.
        assert props["Code"]["S3Key"] != twin["Code"]["S3Key"]


def test_log_retention_choices_are_the_configs() -> None:
    assert sorted(RETENTION) == sorted(LOG_RETENTION_DAYS)
