"""The local pipeline end to end: producer -> Kinesis -> Firehose runners -> ClickHouse, both paths.

Runs on the session's engine and moto server (an AWS-compatible endpoint, as
``--endpoint-url`` would give), with a fresh config name per test so streams,
buckets and databases never mix.
"""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from testkit.local import LocalPipelines

from bxb_stream.clickhouse.usage import query_usage
from bxb_stream.deployment import PipelineConfig
from bxb_stream.local.pipeline import DataDirInUse, LocalOptions, LocalPipeline, RunnerFailed
from bxb_stream.local.reconcile import HOUR_MS, reconcile
from bxb_stream.local.relay import RelayClient, RelayServer

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture
def make_pipeline(moto_s3, tmp_path):
    pipelines = LocalPipelines(moto_s3, tmp_path, "local")
    # Conflicting resends must follow their originals (LocalPipeline.resends); only tests that
    # send them in a second wave ask for them.
    yield lambda **options: pipelines.build(**{"conflict_share": 0.0, **options})
    pipelines.close()


def reconciled(pipeline: LocalPipeline) -> dict:
    results = {}
    for path in pipeline.paths:
        result = reconcile(
            pipeline.expected, pipeline.produced.events, pipeline.counts(path), pipeline.usage_rows(path)
        )
        diffs = [line for line in result.lines if not line.ok]
        assert not diffs, (path, diffs)
        assert not result.usage_mismatches, (path, result.usage_mismatches[:5])
        results[path] = result
    return results


def test_both_paths_reconcile_exactly(make_pipeline):
    pipeline = make_pipeline(
        events=3_000,
        aggregate=True,
        duplicate_share=0.05,
        invalid_share=0.03,
        late_share=0.03,
        conflict_share=0.02,
        backdated_share=0.03,
    )
    first_wave, resends = pipeline.resends(pipeline.prepare())
    pipeline.produce(first_wave)
    first_put = pipeline.produced.first_put
    assert pipeline.wait_settled()  # the resends come once the originals are stored, as a client's would
    progress: list[int] = []
    produced = pipeline.produce(resends, on_progress=progress.append)
    assert produced.events == 3_000 and produced.failures == 0
    assert progress[-1] == len(resends)  # each wave reports its own events (the CLI adds the first wave)
    assert produced.first_put == first_put  # end-to-end times count from the first wave's first put
    assert produced.records < 150  # KPL aggregation: many events per Kinesis record
    assert pipeline.wait_settled()
    results = reconciled(pipeline)
    expected = pipeline.expected
    for path, result in results.items():
        lines = {line.category: line.measured for line in result.lines}
        assert lines["billed"] == expected.kinds["stored"] > 2_400
        assert lines["duplicates (counted, not billed)"] == expected.kinds["duplicate"] > 50
        assert lines["conflicts (stored apart, not billed)"] == expected.kinds["conflict"] > 20
        assert lines["late (set aside, not billed)"] == expected.kinds["late"] > 30
        assert sum(v for k, v in lines.items() if k.startswith("rejected")) == expected.kinds["invalid"] > 30
        assert lines["unaccounted for"] == 0
        assert result.usage_rows == len(expected.usage)
        assert len(pipeline.latencies_ms(path)) == expected.kinds["stored"]

    # Usage through the public query API equals the ground truth for the busiest customer.
    (org, customer, code, hour), (count, _, _) = max(expected.usage.items(), key=lambda kv: kv[1][0])
    start = datetime.fromtimestamp(hour / 1000, tz=UTC)
    end = datetime.fromtimestamp((hour + HOUR_MS) / 1000, tz=UTC)
    for runtime in pipeline.paths.values():
        usage = query_usage(pipeline.client, runtime.database, org, customer, code, start, end)
        assert usage.event_count == count


def test_killing_the_runner_mid_stream_loses_and_double_counts_nothing(make_pipeline, ch_wait):
    pipeline = make_pipeline(events=4_000, paths=("s3",), duplicate_share=0.02, invalid_share=0.01, late_share=0.01)
    workload = pipeline.prepare()
    pipeline.produce(workload[:2_000])
    runtime = pipeline.paths["s3"]
    # Until the runner has delivered part of the stream and holds more. The runner keeps going on its
    # thread, so the check is on one snapshot taken by the wait (a re-read could see the buffer flushed).
    held = ch_wait(
        lambda: (s.delivered, s.in_flight) if (s := runtime.runner.stats).delivered > 0 and s.in_flight > 0 else None,
        timeout=120,
        interval=0.02,
        what="the S3 runner to hold records after delivering some",
    )
    assert held[0] > 0 and held[1] > 0
    pipeline.restart_runner("s3", graceful=False)  # a kill: whatever it buffered is abandoned
    pipeline.produce(workload[2_000:])
    assert pipeline.wait_settled()
    reconciled(pipeline)


def test_serve_relay_answers_usage_from_another_process(make_pipeline):
    pipeline = make_pipeline(events=500, paths=("http",))
    pipeline.produce()
    assert pipeline.wait_settled()
    relay = RelayServer(pipeline.client).start()
    try:
        (org, customer, code, hour), (count, _, _) = max(pipeline.expected.usage.items(), key=lambda kv: kv[1][0])
        start = datetime.fromtimestamp(hour / 1000, tz=UTC).isoformat()
        end = datetime.fromtimestamp((hour + HOUR_MS) / 1000, tz=UTC).isoformat()
        database = pipeline.paths["http"].database
        result = subprocess.run(
            [sys.executable, "-m", "bxb_stream", "usage", "--url", relay.url, "--database", database,
             "--organization-id", org, "--customer", customer, "--code", code, "--from", start, "--to", end],
            capture_output=True, text=True, cwd=ROOT, timeout=60, check=False,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        answer = json.loads(result.stdout)
        assert answer["event_count"] == count
        with pytest.raises(RuntimeError, match="read-only"):
            RelayClient(relay.url).query(f"DROP DATABASE {database}")
    finally:
        relay.stop()


def test_transient_aws_errors_are_retried_and_everything_reconciles(make_pipeline, aws_faults):
    """The incident of issue 16: GetRecords answered 500 (and the connection reset) on the HTTP path,
    S3 throttled the S3 path's PUTs. Both paths retry, report it, and reconcile exactly."""
    from botocore.exceptions import ConnectionClosedError

    pipeline = make_pipeline(events=2_000, aggregate=True)
    for runtime in pipeline.paths.values():
        runtime.runner.retrier.base_s = runtime.runner.retrier.cap_s = 0.01
    http, s3 = pipeline.paths["http"].runner, pipeline.paths["s3"].runner
    reset = ConnectionClosedError(endpoint_url=pipeline.targets.endpoint_url)
    aws_faults(http.source.client, "GetRecords", [(500, ""), (500, ""), reset, (500, "InternalFailure")])
    aws_faults(s3.writer.client, "PutObject", [(503, "SlowDown"), (503, "SlowDown")])
    pipeline.produce()
    assert pipeline.wait_settled()
    reconciled(pipeline)
    assert len(aws_faults.injected) == 6
    health = pipeline.health()
    assert health["http"].retries == {"GetRecords: 500": 2, "GetRecords: ConnectionClosedError": 1,
                                      "GetRecords: InternalFailure": 1}  # fmt: skip
    assert health["s3"].retries == {"PutObject: SlowDown": 2}
    assert {h.state for h in health.values()} == {"running"}


def test_a_runner_that_cannot_go_on_fails_the_pipeline_loudly(make_pipeline, aws_faults):
    # moto enforces no IAM: the access-denied a real bucket policy would give is scripted.
    pipeline = make_pipeline(events=300, paths=("s3",))
    aws_faults(pipeline.paths["s3"].runner.writer.client, "PutObject", forever=(403, "AccessDenied"))
    pipeline.produce()
    with pytest.raises(RunnerFailed, match=r"s3: .*AccessDenied"):
        pipeline.wait_settled()
    health = pipeline.health()["s3"]
    assert health.state == "failed" and "AccessDenied" in health.error


def test_zero_events_settle_at_once_and_reconcile(make_pipeline):
    pipeline = make_pipeline(events=0, paths=("s3",))
    assert pipeline.produce().events == 0
    assert pipeline.wait_settled()
    assert reconciled(pipeline)["s3"].ok


def test_stop_is_bounded_when_s3_never_answers(make_pipeline, aws_faults, ch_wait):
    """Shutdown gives up a flush that cannot finish: what it held stays before its checkpoint."""
    pipeline = make_pipeline(events=500, paths=("s3",))
    runner = pipeline.paths["s3"].runner
    aws_faults(runner.writer.client, "PutObject", forever=(500, ""))
    pipeline.produce()
    ch_wait(lambda: runner.stats.records_read >= 500, timeout=120, interval=0.05, what="the runner to read all 500")
    shutdown = pipeline.stop(timeout_s=1.0)
    assert not shutdown.clean
    stats = runner.stats
    assert stats.delivered == 0 and shutdown.in_flight["s3"] == 500 - stats.dropped > 400  # only drops settled
    assert any("cut short" in problem for problem in shutdown.problems), shutdown.problems
    assert pipeline.health()["s3"].state == "stopped"


def test_serving_stops_when_a_runner_cannot_go_on(make_pipeline, aws_faults):
    from rich.console import Console

    from bxb_stream.cli import local as cli_local

    pipeline = make_pipeline(events=100, paths=("s3",))
    aws_faults(pipeline.paths["s3"].runner.writer.client, "PutObject", forever=(404, "NoSuchBucket"))
    pipeline.produce()
    console = Console(record=True, width=300)
    with pytest.raises(RunnerFailed, match="NoSuchBucket"):
        cli_local._serve(pipeline, console, max_seconds=120)  # would serve for 2 minutes
    assert "runner health" in console.export_text()


def test_a_data_dir_in_use_is_neither_wiped_nor_shared(make_pipeline, moto_s3):
    running = make_pipeline(events=0, paths=("s3",))
    kept = running.options.data_dir / "checkpoints-kept.json"
    kept.write_text("{}")
    second = LocalPipeline(PipelineConfig(name="local-other"), LocalOptions(data_dir=running.options.data_dir,
                           endpoint_url=moto_s3.endpoint_url, paths=("s3",)))  # fmt: skip
    with pytest.raises(DataDirInUse, match="another bxb-stream local is running on"):
        second.start()
    assert kept.exists()
