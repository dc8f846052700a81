"""Fixtures shared by every test folder: the ONE embedded ClickHouse engine and a moto S3 server.

- ``clickhouse_engine`` (session): the process's chDB engine (``bxb_stream.clickhouse.engine``).
  It is started in ``pytest_configure``, before test modules are imported, because importing
  chdb first would shut S3Queue down for the process. Never open another chdb path in tests.
- ``moto_s3`` (session): a moto server on 127.0.0.1 (random port) with fake credentials.
- ``clickhouse_stack`` (session): a factory; ``clickhouse_stack()`` makes a fresh bucket and a
  fresh database with the full schema applied (S3Queue polling fast, usage refreshed every
  second) and returns a ``ClickHouseStack``. Databases are dropped before moto stops.
- ``clickhouse_db`` (session): one such stack, for tests that only need the tables.

Hypothesis profiles (env ``HYPOTHESIS_PROFILE``): ``default`` is fast (100 examples per property),
``ci`` is thorough (1000). A test's own ``@settings(max_examples=...)`` wins over both; only tests
whose examples are expensive (a moto round trip each) set one.
"""

from __future__ import annotations

import atexit
import io
import itertools
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings

from bxb_stream.clickhouse import engine as ch_engine

settings.register_profile("default", max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("ci", settings.get_profile("default"), max_examples=1000)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))

_TEST_KEYS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}
TEST_NAMED_COLLECTION = "bxb_test_s3"


# The suite's layers, one folder each; tests/unit is pure (tests/unit/conftest.py guards it at run time).
LAYERS = ("unit", "functional", "e2e")
# Fixtures that start moto or reach the embedded engine: a unit test using one belongs in tests/functional.
HEAVY_FIXTURES = frozenset({"clickhouse_engine", "clickhouse_stack", "clickhouse_db", "moto_s3", "moto_endpoint"})


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    tests_dir = Path(__file__).parent
    misplaced = []
    for item in items:
        parts = item.path.relative_to(tests_dir).parts if item.path.is_relative_to(tests_dir) else ()
        layer = parts[0] if parts and parts[0] in LAYERS else None
        if layer is None:
            raise pytest.UsageError(f"{item.nodeid}: every test lives under tests/unit, tests/functional or tests/e2e")
        item.add_marker(layer)
        heavy = HEAVY_FIXTURES.intersection(getattr(item, "fixturenames", ()))
        if layer == "unit" and heavy:
            misplaced.append(f"{item.nodeid} uses {', '.join(sorted(heavy))}")
    if misplaced:
        raise pytest.UsageError(
            "unit tests may not use moto or chDB (move them to tests/functional):\n" + "\n".join(misplaced)
        )


def pytest_configure(config: pytest.Config) -> None:
    data_dir = tempfile.mkdtemp(prefix="bxb-clickhouse-")
    atexit.register(shutil.rmtree, data_dir, True)  # registered first, so it runs after the engine closes
    ch_engine.start(data_dir)


@pytest.fixture(scope="session")
def clickhouse_engine() -> ch_engine.Engine:
    running = ch_engine.current()
    assert running is not None, "tests/conftest.py pytest_configure starts the engine"
    return running


@dataclass
class MotoS3:
    endpoint_url: str
    region: str = "us-east-1"

    def client(self) -> Any:
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            region_name=self.region,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )


@pytest.fixture(scope="session")
def moto_s3() -> Iterator[MotoS3]:
    from moto.server import ThreadedMotoServer

    saved = {k: os.environ.get(k) for k in _TEST_KEYS}
    os.environ.update(_TEST_KEYS)  # fake keys only: the named collection is created from them
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield MotoS3(f"http://{host}:{port}")
    server.stop()
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture(scope="session")
def moto_endpoint(moto_s3: MotoS3) -> str:
    """The session's moto server (it serves Kinesis, S3 and Secrets Manager alike)."""
    return moto_s3.endpoint_url


# Waits poll a condition and return as soon as it holds; the bound only decides how long a broken run
# takes to fail. It is generous because the machine may be shared (2 cores, other suites running).
WAIT_SECONDS = 120.0


def wait_until(
    predicate: Callable[[], Any], timeout: float = WAIT_SECONDS, interval: float = 0.1, what: str = ""
) -> Any:
    """Poll until ``predicate()`` is truthy; bounded in time and in attempts."""
    deadline = time.monotonic() + timeout
    for _ in range(int(timeout / interval) + 1):
        result = predicate()
        if result:
            return result
        if time.monotonic() >= deadline:
            break
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what or predicate}")


@dataclass
class ClickHouseStack:
    """A bucket and a database with the whole schema, wired to each other."""

    settings: Any  # ClickHouseSettings
    client: Any
    s3: Any
    bucket: str
    _keys: itertools.count = field(default_factory=itertools.count)

    @property
    def database(self) -> str:
        return self.settings.database

    def put_events(self, prefix: str, events: Sequence[Mapping[str, Any]], key: str | None = None) -> str:
        """Write ``events`` as one Parquet object (the project's Arrow schema) under ``prefix``."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        from bxb_runtime.events.schema import arrow_schema

        schema = arrow_schema()
        table = pa.Table.from_pylist([dict(e) for e in events], schema=schema)
        buf = io.BytesIO()
        pq.write_table(table, buf, compression="snappy")
        key = key or f"{prefix}bxb-events-1-2026-01-01-00-00-00-{next(self._keys):08d}.parquet"
        self.s3.put_object(Bucket=self.bucket, Key=key, Body=buf.getvalue())
        return key

    def count(self, table: str, final: bool = False) -> int:
        return int(self.client.command(f"SELECT count() FROM {self.database}.{table}{' FINAL' if final else ''}"))

    def wait_count(self, table: str, expected: int, timeout: float = WAIT_SECONDS) -> None:
        wait_until(lambda: self.count(table) >= expected, timeout, what=f"{expected} rows in {table}")
        assert self.count(table) == expected

    def wait_processed(self, keys: Sequence[str], timeout: float = WAIT_SECONDS) -> None:
        """Until S3Queue has processed every object in ``keys`` (its Keeper state, not the row count:
        an identical file may be dropped by insert deduplication and add no rows)."""
        from bxb_stream.clickhouse import status

        def done() -> bool:
            failed = status.queue_files(self.client, self.database, "Failed")
            assert not failed, f"S3Queue failed files: {failed}"
            processed = {path for path, _ in status.queue_files(self.client, self.database, "Processed")}
            return set(keys) <= processed

        wait_until(done, timeout, what=f"S3Queue to process {list(keys)}")

    def refresh(self) -> None:
        """Run the resolver and the usage refresh now (tests never wait for their schedule)."""
        from bxb_stream.clickhouse import status

        status.refresh_now(self.client, self.database)

    def wait_usage_caught_up(self, timeout: float = WAIT_SECONDS) -> None:
        """Until every landed row is resolved and every billed one is in usage_hourly."""
        from bxb_stream.clickhouse import status

        def caught_up() -> bool:
            status.refresh_now(self.client, self.database)
            return status.usage_caught_up(self.client, self.database)

        wait_until(caught_up, timeout, what="the resolver and usage_hourly to take every landed row")


@pytest.fixture(scope="session")
def clickhouse_stack(clickhouse_engine: ch_engine.Engine, moto_s3: MotoS3) -> Iterator[Callable[..., ClickHouseStack]]:
    from bxb_stream.clickhouse import migrations
    from bxb_stream.clickhouse.settings import ClickHouseSettings

    client = clickhouse_engine.client()
    s3 = moto_s3.client()
    counter = itertools.count()
    made: list[str] = []

    def make(**overrides: Any) -> ClickHouseStack:
        n = next(counter)
        bucket = f"bxb-test-{os.getpid()}-{n}"
        s3.create_bucket(Bucket=bucket)
        options: dict[str, Any] = {
            "bucket_url": f"{moto_s3.endpoint_url}/{bucket}",  # path-style, as moto serves it
            "database": f"bxb_test_{n}",
            "named_collection": TEST_NAMED_COLLECTION,
            "polling_min_timeout_ms": 100,
            "polling_max_timeout_ms": 300,
            "polling_backoff_ms": 100,
            "s3_retry_attempts": 2,  # a dead endpoint must fail fast, not hang
            "refresh_seconds": 3600,  # tests run the resolver and the usage refresh themselves (refresh())
        }
        options.update(overrides)
        settings = ClickHouseSettings(**options)
        if settings.named_collection:
            migrations.ensure_named_collection_from_env(client, settings)
        migrations.apply(client, settings)
        made.append(settings.database)
        return ClickHouseStack(settings, client, s3, bucket)

    yield make
    for db in made:  # stop the queues while moto still answers
        client.command(f"DROP DATABASE IF EXISTS {db} SYNC")


@pytest.fixture(scope="session")
def clickhouse_db(clickhouse_stack: Callable[..., ClickHouseStack]) -> ClickHouseStack:
    return clickhouse_stack()


@pytest.fixture(scope="session")
def ch_wait() -> Callable[..., Any]:
    """``wait_until`` for test modules (conftest modules are not importable in importlib mode)."""
    return wait_until


class AwsFaults:
    """Scripted failures of one operation of a boto3 client, through botocore's own ``before-call``
    hook, so they surface exactly as a real answer would (a ``ClientError``, or a connection error).

    A stand-in for what moto cannot produce on demand: a 500 from GetRecords, throttling, a reset
    connection, an access-denied. ``script`` entries are used once each, in order: ``(status, code)``
    for an error answer, or an exception to raise. ``forever`` then answers every later call."""

    def __init__(self) -> None:
        self.injected: list[str] = []

    def __call__(
        self, client: Any, operation: str, script: Sequence[Any] = (), forever: Any = None
    ) -> Callable[[], None]:
        from botocore.awsrequest import AWSResponse

        pending = list(script)

        def answer(**_: Any) -> Any:
            failure = pending.pop(0) if pending else forever
            if failure is None:
                return None  # the real call goes ahead
            self.injected.append(f"{operation}: {failure}")
            if isinstance(failure, BaseException):
                raise failure
            status, code = failure
            parsed = {"Error": {"Code": code, "Message": f"injected {status} {code}"}}
            parsed["ResponseMetadata"] = {"HTTPStatusCode": status, "HTTPHeaders": {}}
            return AWSResponse("http://injected", status, {}, None), parsed

        event = f"before-call.{client.meta.service_model.service_id.hyphenize()}.{operation}"
        client.meta.events.register(event, answer)
        return lambda: client.meta.events.unregister(event, answer)


@pytest.fixture
def aws_faults() -> AwsFaults:
    return AwsFaults()
