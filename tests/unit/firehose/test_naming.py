import random
import re

import pytest

from bxb_stream.firehose.naming import PrefixError, evaluate_prefix, java_datetime, object_name, partition_fields
from bxb_stream.firehose.settings import DATA_PREFIX, ERROR_PREFIX, HTTP_BACKUP_ERROR_PREFIX, HTTP_BACKUP_PREFIX

WHEN = 1_767_323_045_678  # 2026-01-02T03:04:05.678Z
KEYS = {"organization_id": "acme", "date": "2025-12-31", "hour": "23"}


def test_data_prefix_uses_the_lambdas_partition_keys() -> None:
    got = evaluate_prefix(DATA_PREFIX, when_ms=WHEN, partition_keys=KEYS)
    assert got == "events/organization_id=acme/date=2025-12-31/hour=23/"
    assert partition_fields(DATA_PREFIX) == ("organization_id", "date", "hour")


def test_error_and_backup_prefixes_use_type_and_utc_time() -> None:
    assert evaluate_prefix(ERROR_PREFIX, when_ms=WHEN, error_output_type="processing-failed") == (
        "errors/processing-failed/2026/01/02/"
    )
    assert evaluate_prefix(HTTP_BACKUP_PREFIX, when_ms=WHEN, error_output_type="http-endpoint-failed") == (
        "http-backup/"  # a static prefix, as the CDK stack configures it
    )
    assert evaluate_prefix(HTTP_BACKUP_ERROR_PREFIX, when_ms=WHEN, error_output_type="processing-failed") == (
        "http-backup-errors/processing-failed/2026/01/02/"
    )


def test_default_prefixes() -> None:
    assert evaluate_prefix("", when_ms=WHEN) == "2026/01/02/03/"
    assert evaluate_prefix("", when_ms=WHEN, error_output_type="format-conversion-failed") == (
        "format-conversion-failed/2026/01/02/03/"
    )


def test_java_patterns_with_literals_and_random_string() -> None:
    assert java_datetime("yyyy'-'MM'-'dd' at 'HH:mm:ss", _dt()) == "2026-01-02 at 03:04:05"
    got = evaluate_prefix("x/!{firehose:random-string}/", when_ms=WHEN, rng=random.Random(1))
    assert re.fullmatch(r"x/[A-Za-z0-9]{11}/", got)
    assert got != evaluate_prefix("x/!{firehose:random-string}/", when_ms=WHEN, rng=random.Random(2))


def test_missing_partition_key_and_misplaced_expressions_raise() -> None:
    with pytest.raises(PrefixError, match="organization_id"):
        evaluate_prefix(DATA_PREFIX, when_ms=WHEN, partition_keys={"stream": "events"})
    with pytest.raises(PrefixError):
        evaluate_prefix(ERROR_PREFIX, when_ms=WHEN)  # error-output-type outside an error prefix
    with pytest.raises(PrefixError):
        evaluate_prefix("!{timestamp:QQQ}/", when_ms=WHEN)


def test_object_name_is_stream_version_oldest_arrival_uuid() -> None:
    name = object_name("bxb-events", 3, WHEN, ".parquet")
    assert re.fullmatch(r"bxb-events-3-2026-01-02-03-04-05-[0-9a-f-]{36}\.parquet", name)
    assert object_name("s", 1, WHEN) != object_name("s", 1, WHEN)


def _dt():  # type: ignore[no-untyped-def]
    from datetime import UTC, datetime

    return datetime.fromtimestamp(WHEN / 1000, tz=UTC)
