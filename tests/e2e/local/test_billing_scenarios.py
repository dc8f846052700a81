"""Billing scenarios end to end, on both paths at once, through the local pipeline.

Every scenario has its own customer, so each one's usage is checked on its own against a
ground truth this test writes down by hand (what a billing engineer expects), not against
anything the pipeline computes. Both paths run side by side, each into its own database;
one scenario also runs both paths into one database.
"""

from __future__ import annotations

import base64
import json
import time
import urllib.request
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from testkit.local import LocalPipelines

from bxb_runtime.clickhouse import tables as t
from bxb_runtime.config import EventRules
from bxb_runtime.events.lines import to_line
from bxb_runtime.events.validate import normalize
from bxb_runtime.layout import ARCHIVE_PREFIX, EVENTS_PREFIX
from bxb_stream.clickhouse import late, ledger, periods, status
from bxb_stream.clickhouse.usage import query_usage, query_usage_raw
from bxb_stream.local.pipeline import LocalPipeline
from bxb_stream.producer.synthetic import Expect, Expectation

pytestmark = pytest.mark.slow

CODE = "api_calls"
NOW = datetime.now(UTC).replace(microsecond=0)
HOUR = timedelta(hours=1)


def hour_of(when: datetime) -> datetime:
    return when.replace(minute=0, second=0, microsecond=0)


def event(tid: str, customer: str, when: datetime | None, value: float = 1.0, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"transaction_id": tid, "external_customer_id": customer, "code": CODE, "value": value}
    if when is not None:
        body["timestamp"] = when.isoformat(timespec="milliseconds")
    return {**body, **extra}


class Scenarios:
    """A running pipeline (both paths) and ways to send events as different clients would."""

    def __init__(self, pipeline: LocalPipeline) -> None:
        self.pipeline = pipeline
        self.kinesis = pipeline.aws.client("kinesis")

    def produce(self, *events: dict[str, Any]) -> None:
        """Through the project's producer (it stamps a missing timestamp at put)."""
        self.pipeline.produce([(e, Expectation(Expect.DUPLICATE)) for e in events])

    def put_raw(self, *datas: bytes) -> None:
        """As a client that is not the project's producer: bytes as they are, one PutRecords call."""
        records = [{"Data": d, "PartitionKey": "raw"} for d in datas]
        response = self.kinesis.put_records(StreamName=self.pipeline.targets.stream, Records=records)
        assert response["FailedRecordCount"] == 0
        self.pipeline.produced.events += len(datas)

    def settle(self) -> None:
        assert self.pipeline.wait_settled()

    def usage(self, path: str, customer: str, start: datetime, hours: int = 1) -> tuple[int, float]:
        db = self.pipeline.paths[path].database
        client = self.pipeline.client
        got = query_usage(client, db, "default", customer, CODE, start, start + hours * HOUR)
        assert got == query_usage_raw(client, db, "default", customer, CODE, start, start + hours * HOUR)
        return got.event_count, got.value_sum

    def verdicts(self, path: str, tid: str) -> list[str]:
        rows = self.pipeline.client.query(
            f"SELECT verdict FROM {self.pipeline.paths[path].database}.{t.LEDGER} "
            "WHERE transaction_id = %(tid)s ORDER BY landing_mark, verdict",
            parameters={"tid": tid},
        ).result_rows
        return [str(v) for (v,) in rows]


@pytest.fixture
def scenarios(moto_s3, tmp_path):
    pipelines = LocalPipelines(moto_s3, tmp_path, "bill")
    yield Scenarios(pipelines.build(events=0))
    pipelines.close()


def test_billing_scenarios_on_both_paths(scenarios: Scenarios) -> None:
    s = scenarios
    on_time = NOW - timedelta(minutes=20)
    late_open = NOW - timedelta(days=3) + timedelta(minutes=1)  # own hour: at :59, the hour after NOW - 3 days
    closed = NOW - timedelta(days=6)  # in the period closed below

    # -- first wave: originals, and copies a client or the network makes at once
    s.produce(event("exact", "c-exact", on_time), event("exact", "c-exact", on_time))  # an exact resend
    no_ts = json.dumps(event("no-ts", "c-no-ts", None)).encode()
    s.put_raw(no_ts)  # a client without timestamps; the pipeline uses the arrival time
    lost = json.dumps(event("lost", "c-lost", on_time)).encode()
    s.put_raw(lost)
    s.put_raw(lost)  # the producer's retry after a lost PutRecords response: the same bytes again
    s.produce(event("shared", "c-shared-a", on_time))  # one transaction_id, two customers (second below)
    s.produce(event("changed", "c-changed", on_time, value=5.0))  # a different value is sent later
    s.produce(event("three-days", "c-late-open", late_open, value=3.0))
    # The runner killed mid-stream: what it held is read again from the checkpoints, billed once.
    s.produce(*(event(f"kill-{i}", "c-kill", on_time) for i in range(200)))
    s.pipeline.restart_runner("s3", graceful=False)
    s.pipeline.restart_runner("http", graceful=False)
    s.produce(*(event(f"kill-{i}", "c-kill", on_time) for i in range(200, 300)))
    s.settle()

    # -- later: resends, a closed period, a re-read Parquet file, a retried HTTP request
    time.sleep(5)
    s.put_raw(no_ts)  # the same JSON, five seconds later: another arrival time, the same event
    s.produce(event("shared", "c-shared-b", on_time))
    s.produce(event("changed", "c-changed", on_time, value=7.0))
    for runtime in s.pipeline.paths.values():
        periods.close(s.pipeline.client, runtime.database, "default", NOW - timedelta(days=4), closed_by="invoice-run")
    s.produce(event("closed", "c-closed", closed, value=2.0))
    _read_a_parquet_file_again(s)
    _retry_an_http_request(s)
    s.settle()

    for path in ("s3", "http"):
        assert s.usage(path, "c-exact", hour_of(on_time)) == (1, 1.0)
        assert s.verdicts(path, "exact") in (["billed"], ["billed", "duplicate"])  # dropped in batch, or later
        assert s.usage(path, "c-no-ts", hour_of(NOW) - 2 * HOUR, hours=4) == (1, 1.0)
        assert s.verdicts(path, "no-ts") == ["billed", "duplicate"]
        assert s.usage(path, "c-lost", hour_of(on_time)) == (1, 1.0)
        assert s.usage(path, "c-shared-a", hour_of(on_time)) == (1, 1.0)
        assert s.usage(path, "c-shared-b", hour_of(on_time)) == (0, 0.0)
        assert s.verdicts(path, "shared") == ["billed", "conflict"]
        assert s.usage(path, "c-changed", hour_of(on_time)) == (1, 5.0)
        assert s.verdicts(path, "changed") == ["billed", "conflict"]
        assert s.usage(path, "c-late-open", hour_of(late_open)) == (1, 3.0)  # into its own hour
        assert s.usage(path, "c-kill", hour_of(on_time)) == (300, 300.0)
        assert s.usage(path, "c-closed", hour_of(closed)) == (0, 0.0)  # set aside until accepted
        assert s.verdicts(path, "closed") == ["late"]
        assert s.usage(path, "c-reread", hour_of(on_time)) == (40, 40.0)
    http = s.pipeline.paths["http"].database
    assert s.usage("http", "c-retried", hour_of(on_time)) == (3, 3.0)
    assert ledger.verdict_counts(s.pipeline.client, http)["duplicate"] >= 2

    # -- the late event accepted: billed into its original, closed hour; reported as such
    for path, runtime in s.pipeline.paths.items():
        decision = late.decide(
            s.pipeline.client, runtime.database, "default", "accept", "ops", transaction_ids=["closed"]
        )
        assert decision.closed_hours == [hour_of(closed)]
        status.refresh_now(s.pipeline.client, runtime.database)
        assert s.usage(path, "c-closed", hour_of(closed)) == (1, 2.0)
        assert s.verdicts(path, "closed") == ["late", "accepted"]

    # Nothing is unaccounted for: every copy that entered has exactly one verdict.
    for runtime in s.pipeline.paths.values():
        landed = int(s.pipeline.client.command(f"SELECT count() FROM {runtime.database}.{t.EVENTS_RAW}"))
        judged = ledger.verdict_counts(s.pipeline.client, runtime.database)
        assert landed == sum(judged[v] for v in ("billed", "duplicate", "conflict", "late"))


def _read_a_parquet_file_again(s: Scenarios) -> None:
    """Forty events through the S3 path, then their archived Parquet object copied back under
    events/ with a new name: S3Queue reads the same file a second time."""
    s.produce(*(event(f"reread-{i}", "c-reread", NOW - timedelta(minutes=20)) for i in range(40)))
    s.settle()
    s3 = s.pipeline.aws.client("s3")
    bucket = s.pipeline.targets.bucket
    keys = [
        o["Key"]
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=ARCHIVE_PREFIX + EVENTS_PREFIX)
        for o in page.get("Contents", [])
    ]
    db = s.pipeline.paths["s3"].database
    source = s.pipeline.client.query(
        f"SELECT any(source) FROM {db}.{t.EVENTS_RAW} WHERE transaction_id = 'reread-0'"
    ).result_rows[0][0]
    archived = ARCHIVE_PREFIX + source
    assert archived in keys
    again = source.rsplit("/", 1)[0] + "/read-again-" + source.rsplit("/", 1)[1]
    s3.copy_object(Bucket=bucket, Key=again, CopySource={"Bucket": bucket, "Key": archived})
    for _ in range(200):  # until S3Queue has taken it (it moves it to archive/)
        if "Contents" not in s3.list_objects_v2(Bucket=bucket, Prefix=again):
            break
        time.sleep(0.1)
    else:
        raise AssertionError("S3Queue did not read the copied file")


def _retry_an_http_request(s: Scenarios) -> None:
    """A Firehose request to the ingest endpoint answered but the answer lost: Firehose sends the
    same request (same id) again. And the same events in a new request, as a later retry would."""
    rules = EventRules(organization_id="default")
    arrival = int((NOW - timedelta(minutes=19)).timestamp() * 1000)
    lines = [
        to_line(normalize(event(f"retried-{i}", "c-retried", NOW - timedelta(minutes=20)), rules,
                          arrival_ms=arrival, ingested_ms=arrival + 1000))
        for i in range(3)
    ]  # fmt: skip
    settings = s.pipeline.paths["http"].runner.settings
    for request_id in ("retry-1", "retry-1", "retry-2"):
        body = json.dumps(
            {
                "requestId": request_id,
                "timestamp": arrival,
                "records": [{"data": base64.b64encode(x).decode()} for x in lines],
            }
        ).encode()
        request = urllib.request.Request(
            s.pipeline.targets.ingest_url,
            data=body,
            method="POST",
            headers={
                "Content-Type": "application/json",
                "X-Amz-Firehose-Request-Id": request_id,
                "X-Amz-Firehose-Access-Key": s.pipeline.targets.access_key,
                "X-Amz-Firehose-Source-Arn": settings.arn,
            },
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            assert response.status == 200


def test_both_paths_into_one_database_bill_each_event_once(moto_s3, tmp_path) -> None:
    """Deployed, both delivery streams may write one database: every event lands twice
    (Parquet via S3Queue, and the HTTP insert); each is billed once."""
    pipelines = LocalPipelines(moto_s3, tmp_path, "bill_one")
    try:
        pipeline = pipelines.build(events=0, shared_database=True)
        database = pipeline.options.database
        on_time = NOW - timedelta(minutes=10)
        pipeline.produce(
            [(event(f"both-{i}", "c-both", on_time, value=0.5), Expectation(Expect.STORED)) for i in range(150)]
        )
        assert pipeline.wait_settled()
        got = query_usage(
            pipeline.client, database, "default", "c-both", CODE, hour_of(on_time), hour_of(on_time) + HOUR
        )
        assert (got.event_count, got.value_sum, got.decimal_value_sum) == (150, 75.0, Decimal(0))
        counts = ledger.verdict_counts(pipeline.client, database)
        assert counts["billed"] == 150 and counts["duplicate"] == 150  # the other path's copy of each
    finally:
        pipelines.close()
