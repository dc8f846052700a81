"""One config mechanism (bxb_runtime.settings): every settings object reads, checks and names its keys alike."""

from __future__ import annotations

import pytest

from bxb_runtime.config import EventRules
from bxb_runtime.ingest.service import IngestSettings
from bxb_runtime.settings import ConfigError
from bxb_stream.clickhouse.settings import ClickHouseSettings
from bxb_stream.deployment import PipelineConfig
from bxb_stream.firehose.settings import HttpSettings, ProcessorSettings, SourceSettings

INGEST_ENV = {"BXB_CLICKHOUSE_URL": "https://ch.example.com:8443", "BXB_ACCESS_KEY_SECRET_ARN": "arn:key"}


@pytest.mark.parametrize(
    ("read", "key", "words"),
    [
        (lambda: EventRules.from_env({"BXB_FUTURE_SKEW_SECONDS": "soon"}), "BXB_FUTURE_SKEW_SECONDS", "integer"),
        (lambda: EventRules.from_env({"BXB_MAX_RECORD_BYTES": "10"}), "BXB_MAX_RECORD_BYTES", "[256, 1000000]"),
        (lambda: EventRules.from_env({"BXB_MULTI_TENANT": "maybe"}), "BXB_MULTI_TENANT", "true or false"),
        (lambda: EventRules.from_env({"BXB_ORGANIZATION_ID": ""}), "BXB_ORGANIZATION_ID", "required unless"),
        (lambda: IngestSettings.from_env({}), "BXB_CLICKHOUSE_URL", "required"),
        (lambda: IngestSettings.from_env({"BXB_CLICKHOUSE_URL": "x"}), "BXB_ACCESS_KEY_SECRET_ARN", "required"),
        (
            lambda: IngestSettings.from_env({**INGEST_ENV, "BXB_CLICKHOUSE_DATABASE": "bxb-prod"}),
            "BXB_CLICKHOUSE_DATABASE",
            "identifier",
        ),
        (
            lambda: IngestSettings.from_env({**INGEST_ENV, "BXB_ORGANIZATION_ID": "a b"}),
            "BXB_ORGANIZATION_ID",
            "must match",
        ),
        (
            lambda: ClickHouseSettings.from_env(
                {"BXB_CLICKHOUSE_BUCKET_URL": "http://h/b", "BXB_CLICKHOUSE_GRACE_DAYS": "0"}, named_collection="nc"
            ),
            "BXB_CLICKHOUSE_GRACE_DAYS",
            "integer in [1, 3660]",
        ),
        (lambda: ClickHouseSettings.from_env({}, named_collection="nc"), "BXB_CLICKHOUSE_BUCKET_URL", "required"),
        (
            lambda: PipelineConfig.from_context({"bxb:rules.max_properties_depth": "99"}),
            "bxb:rules.max_properties_depth",
            "[1, 64]",
        ),
        (lambda: ProcessorSettings(buffer_size_bytes=4 << 20), "processor.buffer_size_bytes", "[1, 3145728]"),
        (lambda: SourceSettings("s", poll_interval_s=-1), "source.poll_interval_s", "[0.0, 60.0]"),
        (lambda: HttpSettings("http://x", access_key="k" * 5000), "http.access_key", "4096"),
    ],
)
def test_every_error_names_the_key_it_came_from(read, key, words):
    with pytest.raises(ConfigError) as caught:
        read()
    assert caught.value.key == key
    assert words in caught.value.problem and repr(key) in str(caught.value)


def test_the_ingest_lambda_reads_its_settings_and_the_rules_from_one_environment():
    env = {**INGEST_ENV, "BXB_CLICKHOUSE_DATABASE": "billing", "BXB_ORGANIZATION_ID": "acme", "BXB_MULTI_TENANT": "1"}
    settings = IngestSettings.from_env({**env, "BXB_FIREHOSE_SOURCE_ARN": "arn:fh"})
    assert (settings.database, settings.clickhouse_url, settings.access_key_secret_arn) == (
        "billing",
        "https://ch.example.com:8443",
        "arn:key",
    )
    assert (settings.trust.organization_id, settings.trust.multi_tenant, settings.source_arn) == (
        "acme",
        True,
        "arn:fh",
    )
    assert settings.clickhouse_secret_arn == ""  # blank: no credentials


def test_defaults_are_declared_once_and_round_trip_through_the_environment():
    rules = EventRules(organization_id="acme", future_skew_seconds=60, hooks="")
    assert EventRules.from_env(rules.to_env()) == rules
    assert IngestSettings().database == ClickHouseSettings("http://h/b", named_collection="n").database
    assert PipelineConfig().clickhouse.database == IngestSettings().database
    config = PipelineConfig.from_context({"bxb:delivery": "both", "bxb:clickhouse.url": "https://ch.example.com"})
    ingest = IngestSettings.from_env({**config.ingest_env(), "BXB_ACCESS_KEY_SECRET_ARN": "arn:key"})
    assert (ingest.clickhouse_url, ingest.database) == (config.clickhouse.url, config.clickhouse.database)
