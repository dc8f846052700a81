"""The local pipeline against a real LocalStack: run by ``make test-localstack`` only.

The file name does not match pytest's ``test_*.py`` on purpose: ``make test`` (and CI) never
collect it, and ``scripts/localstack/run.py`` names it explicitly, after starting LocalStack
and exporting its endpoint as ``BXB_LOCALSTACK_ENDPOINT``. Without that variable every test
here fails, saying so: it never skips.
"""

from __future__ import annotations

import itertools
import logging
import os
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest

from bxb_runtime.clickhouse import tables as t
from bxb_runtime.layout import ARCHIVE_PREFIX, EVENTS_PREFIX, partition_prefix
from bxb_stream.clickhouse import migrations, status
from bxb_stream.deployment import PipelineConfig
from bxb_stream.local import capabilities
from bxb_stream.local import settings as local_settings
from bxb_stream.local.pipeline import LocalOptions, LocalPipeline
from bxb_stream.local.reconcile import reconcile

ENDPOINT_VARIABLE = "BXB_LOCALSTACK_ENDPOINT"
_names = itertools.count()


@pytest.fixture(scope="module")
def endpoint() -> str:
    url = os.environ.get(ENDPOINT_VARIABLE)
    if not url:
        pytest.fail(f"{ENDPOINT_VARIABLE} is not set: run these through `make test-localstack`")
    return url


@pytest.fixture(scope="module")
def s3(endpoint: str) -> Any:
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "test")  # LocalStack takes any keys
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "test")
    return boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")


@pytest.fixture
def bucket(s3: Any) -> str:
    name = f"bxb-ls-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=name)
    return name


def _keys(s3: Any, bucket: str, prefix: str) -> list[str]:
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return sorted(obj["Key"] for page in pages for obj in page.get("Contents", []))


def test_localstack_refuses_a_conditional_delete_so_the_probe_says_unsupported(s3, bucket):
    assert capabilities.probe(s3, bucket) == capabilities.EndpointCapabilities(conditional_delete=False)
    assert _keys(s3, bucket, capabilities.PROBE_PREFIX) == []


@pytest.fixture
def move_queue(clickhouse_engine, endpoint, s3, bucket) -> Iterator[tuple[Any, str]]:
    """A database whose S3Queue moves what it ingests (the deployed default), on LocalStack."""
    targets = local_settings.LocalTargets(endpoint_url=endpoint, region="us-east-1", stream="unused", bucket=bucket)
    settings = local_settings.clickhouse_settings(f"ls_move_{next(_names)}", targets, move_processed=True)
    client = clickhouse_engine.client()
    migrations.ensure_named_collection_from_env(client, settings)
    migrations.apply(client, settings)
    yield client, settings.database
    client.command(f"DROP DATABASE IF EXISTS {settings.database} SYNC")


def test_s3queue_own_move_leaves_the_original_on_localstack(move_queue, s3, bucket, ch_wait):
    """Why the pipeline moves objects itself there: S3Queue copies, but its conditional delete gets 501."""
    import io

    import pyarrow as pa
    import pyarrow.parquet as pq

    from bxb_runtime.events.schema import arrow_schema

    client, database = move_queue
    at = datetime(2026, 3, 1, 10, tzinfo=UTC)
    row = {"transaction_id": "t1", "organization_id": "acme", "external_customer_id": "c", "code": "api_calls"}
    row |= {"timestamp": at, "properties": "{}", "value": 1.0, "ingested_at": at, "arrived_at": at}
    buf = io.BytesIO()
    pq.write_table(pa.Table.from_pylist([row], schema=arrow_schema()), buf)
    key = partition_prefix("acme", "2026-03-01", "10") + "move-probe.parquet"
    s3.put_object(Bucket=bucket, Key=key, Body=buf.getvalue())

    def processed_and_copied() -> bool:
        processed = {path for path, _ in status.queue_files(client, database, "Processed")}
        return key in processed and bool(_keys(s3, bucket, ARCHIVE_PREFIX))

    ch_wait(processed_and_copied, timeout=60, what="S3Queue to ingest the object and copy it to archive/")
    assert int(client.command(f"SELECT count() FROM {database}.{t.EVENTS_RAW}")) == 1
    assert _keys(s3, bucket, ARCHIVE_PREFIX) == [ARCHIVE_PREFIX + key]
    assert _keys(s3, bucket, EVENTS_PREFIX) == [key]  # the original stays: a queue that forgets reads it again


def test_both_paths_reconcile_exactly_on_localstack_and_leave_nothing_to_read_twice(
    clickhouse_engine, endpoint, s3, tmp_path, caplog
):
    n = next(_names)
    pipeline = LocalPipeline(
        PipelineConfig(name=f"ls-route-{n}-{uuid.uuid4().hex[:6]}"),
        LocalOptions(
            events=3_000,
            paths=("s3", "http"),
            aggregate=True,
            data_dir=tmp_path / "run",
            endpoint_url=endpoint,
            database=f"ls_route_{n}",
            buffer_seconds=1.0,
            timeout_s=240,
            shards=2,
        ),
    )
    with caplog.at_level(logging.WARNING, logger="bxb_stream.local.pipeline"):
        pipeline.start()
    try:
        assert pipeline.capabilities.conditional_delete is False
        assert "answers a conditional DeleteObject with 501" in caplog.text
        queue = f"{pipeline.paths['s3'].database}.{t.EVENTS_QUEUE}"
        ddl = pipeline.client.query(f"SHOW CREATE TABLE {queue}").result_rows[0][0]
        assert "after_processing = 'keep'" in ddl

        first_wave, resends = pipeline.resends(pipeline.prepare())
        pipeline.produce(first_wave)
        assert pipeline.wait_settled()  # conflicting resends follow their stored originals, as a client's would
        produced = pipeline.produce(resends)
        assert produced.events == 3_000 and produced.failures == 0
        assert pipeline.wait_settled()
        expected = pipeline.expected
        for path in pipeline.paths:
            result = reconcile(expected, produced.events, pipeline.counts(path), pipeline.usage_rows(path))
            assert [line for line in result.lines if not line.ok] == [], path
            assert not result.usage_mismatches, (path, result.usage_mismatches[:5])
            lines = {line.category: line.measured for line in result.lines}
            assert lines["billed"] == expected.kinds["stored"] > 2_000
            assert lines["duplicates (counted, not billed)"] == expected.kinds["duplicate"] > 0
            assert lines["conflicts (stored apart, not billed)"] == expected.kinds["conflict"] > 0
            assert lines["late (set aside, not billed)"] == expected.kinds["late"] > 0
            assert lines["unaccounted for"] == 0
    finally:
        pipeline.stop()
        for runtime in pipeline.paths.values():
            pipeline.client.command(f"DROP DATABASE IF EXISTS {runtime.database} SYNC")
    assert pipeline.targets is not None and pipeline.archiver is not None
    bucket = pipeline.targets.bucket
    assert _keys(s3, bucket, EVENTS_PREFIX) == []  # nothing left where a queue would read it again
    assert len(_keys(s3, bucket, ARCHIVE_PREFIX + EVENTS_PREFIX)) == len(pipeline.archiver.moved) > 0
