"""``bxb-stream replay kinesis``: the local pipeline's stream (moto) read again from a timestamp through the
in-repo Firehose runner; what it writes is ingested by the pipeline's S3Queue and bills nothing twice."""

from __future__ import annotations

import json
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from bxb_runtime.clickhouse import tables as t
from bxb_stream.cli import main
from bxb_stream.clickhouse import ledger
from bxb_stream.firehose.settings import SettingsError, SourceSettings
from bxb_stream.producer.synthetic import Expect
from bxb_stream.replay.kinesis import KinesisReplayError, check_retention, replay


def test_start_at_must_carry_a_time_zone() -> None:
    with pytest.raises(SettingsError, match="timezone-aware"):
        SourceSettings(stream_name="s", start_at=datetime(2026, 5, 1))


def test_replay_from_a_timestamp_reads_only_what_arrived_since_and_bills_nothing_twice(make_s3_pipeline: Any) -> None:
    pipeline = make_s3_pipeline(events=900, duplicate_share=0.03, invalid_share=0.03, late_share=0.03)
    workload = pipeline.prepare()
    before_at, since_at = workload[:450], workload[450:]
    pipeline.produce(before_at)
    assert pipeline.wait_settled()
    time.sleep(0.05)  # moto stamps arrivals from the clock: keep both waves apart from the timestamp
    at = datetime.now(UTC)
    time.sleep(0.05)
    pipeline.produce(since_at)
    assert pipeline.wait_settled()
    assert pipeline.targets is not None
    database = pipeline.paths["s3"].database
    was = ledger.verdict_counts(pipeline.client, database)
    kinesis, s3 = pipeline.aws.client("kinesis"), pipeline.aws.client("s3")

    seen: list[int] = []
    report = replay(
        pipeline.config, stream=pipeline.targets.stream, bucket=pipeline.targets.bucket, at=at, kinesis=kinesis,
        s3=s3, timeout_s=120, on_progress=lambda stats: seen.append(stats.records_read),
    )  # fmt: skip
    assert report.records_read == len(since_at) == seen[-1]
    assert report.rejected == Counter(e.error_code for _, e in since_at if e.kind is Expect.INVALID)
    valid = sum(1 for _, e in since_at if e.kind is not Expect.INVALID)
    assert report.delivered + report.dropped == valid and report.delivered > 300
    assert report.data_objects and all(
        k.startswith("events/organization_id=") and f"/{pipeline.config.name}-replay-1-" in k
        for k in report.data_objects
    )
    assert report.error_objects and all(k.startswith("errors/processing-failed/") for k in report.error_objects)

    # S3Queue ingests the replay's objects: every row a duplicate of a stored one.
    assert pipeline.wait_settled()
    now = ledger.verdict_counts(pipeline.client, database)
    assert now[t.Verdict.DUPLICATE] - was[t.Verdict.DUPLICATE] == report.delivered
    for verdict in (t.Verdict.BILLED, t.Verdict.LATE, t.Verdict.CONFLICT):
        assert now[verdict] == was[verdict]
    assert now[t.Verdict.BILLED] == pipeline.expected.kinds[Expect.STORED.value]


def test_a_timestamp_outside_the_retention_is_refused(make_s3_pipeline: Any) -> None:
    pipeline = make_s3_pipeline(events=0)
    assert pipeline.targets is not None
    kinesis = pipeline.aws.client("kinesis")
    now = datetime.now(UTC)
    assert check_retention(kinesis, pipeline.targets.stream, now - timedelta(hours=23), now) == 24
    with pytest.raises(KinesisReplayError, match=r"before .* retention \(24 h"):
        check_retention(kinesis, pipeline.targets.stream, now - timedelta(hours=25), now)
    with pytest.raises(KinesisReplayError, match="in the future"):
        check_retention(kinesis, pipeline.targets.stream, now + timedelta(minutes=5), now)


def test_replay_kinesis_command(make_s3_pipeline: Any, capsys: Any) -> None:
    pipeline = make_s3_pipeline(events=200)
    pipeline.produce()
    assert pipeline.wait_settled()
    assert pipeline.targets is not None
    base = ["replay", "kinesis", "--stream", pipeline.targets.stream, "--bucket", pipeline.targets.bucket,
            "--endpoint-url", str(pipeline.aws.endpoint_url)]  # fmt: skip
    assert main([*base, "--at-timestamp", "1h", "--format", "json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["records_read"] == 200 and doc["data_objects"] == len(doc["data_object_keys"]) > 0
    assert main([*base, "--at-timestamp", "2d"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "retention" in err and err.startswith("bxb-stream replay kinesis: error: ")
    assert main([*base[:2], "--stream", "no-such-stream", "--bucket", "b", "--endpoint-url",
                 str(pipeline.aws.endpoint_url), "--at-timestamp", "1h"]) == 2  # fmt: skip
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "ResourceNotFoundException" in err
