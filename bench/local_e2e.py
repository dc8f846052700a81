"""The local pipeline at volume: 1,000,000 events through the S3 path with KPL aggregation.

Prints events/s from the first put until the last event is queryable in ClickHouse,
the latency each event added beyond the configured buffer interval, and peak RSS.
Targets (issue 7): >= 100,000 events/s on this 2-core machine; added latency <= buffer
interval + 2 s (p50); peak RSS <= 4 GB. The last line is one JSON object with every figure.

    python bench/local_e2e.py [--events 1000000] [--buffer-seconds 2]
"""

from __future__ import annotations

import argparse
import json
import logging
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bxb_stream.cli.local import tune_gc
from bxb_stream.deployment import PipelineConfig
from bxb_stream.local.pipeline import LocalOptions, LocalPipeline
from bxb_stream.local.reconcile import reconcile


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--buffer-seconds", type=float, default=2.0)
    parser.add_argument("--shards", type=int, default=4)
    args = parser.parse_args()
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    tune_gc()  # as bxb-stream local does

    options = LocalOptions(
        events=args.events,
        paths=("s3",),
        aggregate=True,
        data_dir=Path(tempfile.mkdtemp(prefix="bxb-bench-e2e-")),
        buffer_seconds=args.buffer_seconds,
        shards=args.shards,
        timeout_s=1800,
    )
    pipeline = LocalPipeline(PipelineConfig(), options)
    pipeline.start()
    try:
        workload = pipeline.prepare()  # the input, made before the clock starts
        before = resource.getrusage(resource.RUSAGE_SELF)
        own_cpu_before = before.ru_utime + before.ru_stime
        produced = pipeline.produce(workload)
        put_seconds = produced.last_put - produced.first_put
        runner_done: list[float] = []

        def note_runner_done(progress: dict[str, Any]) -> None:
            counts = progress["s3"]
            if not runner_done and counts.read >= produced.events and not counts.in_flight:
                runner_done.append(time.time())

        settled = pipeline.wait_settled(note_runner_done)
        queryable_at = time.time()
        objects = pipeline.paths["s3"].stats()[-1].objects_written
        stages = {k: round(v, 2) for k, v in pipeline.paths["s3"].runner.stages.seconds.items()}
        result = reconcile(pipeline.expected, produced.events, pipeline.counts("s3"), pipeline.usage_rows("s3"))
        latencies = pipeline.latencies_ms("s3")
        moto_rss_mb = pipeline.aws.peak_rss_mb()
        moto_cpu_s = pipeline.aws.cpu_seconds()
        usage = resource.getrusage(resource.RUSAGE_SELF)
        own_cpu_s = usage.ru_utime + usage.ru_stime - own_cpu_before
    finally:
        pipeline.stop()

    elapsed = queryable_at - produced.first_put
    p50 = latencies[len(latencies) // 2] / 1000
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] / 1000
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 + moto_rss_mb  # this process + moto
    figures = {
        "events": produced.events,
        "kinesis_records": produced.records,
        "put_seconds": round(put_seconds, 2),
        "put_events_per_s": round(produced.events / put_seconds),
        "first_put_to_all_queryable_s": round(elapsed, 2),
        "first_put_to_runner_done_s": round((runner_done or [queryable_at])[0] - produced.first_put, 2),
        "s3_objects": objects,
        "runner_stages_s": stages,
        "events_per_s": round(produced.events / elapsed),
        "buffer_interval_s": args.buffer_seconds,
        "latency_p50_s": round(p50, 2),
        "latency_p99_s": round(p99, 2),
        "added_latency_p50_s": round(p50 - args.buffer_seconds, 2),
        "added_latency_p99_s": round(p99 - args.buffer_seconds, 2),
        "peak_rss_mb": round(rss_mb),
        # CPU seconds from the first put (moto: its whole life, a few of them before): against
        # 2 cores x the run, they show where a 2-core budget goes.
        "cpu_s_this_process": round(own_cpu_s, 1),
        "cpu_s_moto": round(moto_cpu_s, 1),
        "cpu_s_per_million_events": round((own_cpu_s + moto_cpu_s) * 1e6 / produced.events, 1),
        "reconciled": settled and result.ok,
        "target_events_per_s": 100_000,
        "target_added_latency_s": 2.0,
        "target_peak_rss_mb": 4096,
    }
    figures["targets_met"] = (
        figures["reconciled"]
        and figures["events_per_s"] >= 100_000
        and figures["added_latency_p50_s"] <= 2.0
        and figures["peak_rss_mb"] <= 4096
    )
    print(f"{produced.events:,} events in {produced.records:,} aggregated records, S3 path, one process")
    print(f"put: {put_seconds:.1f}s ({figures['put_events_per_s']:,}/s); all queryable after {elapsed:.1f}s")
    runner_s = figures["first_put_to_runner_done_s"]
    print(
        f"runner delivered everything after {runner_s}s ({objects:,} Parquet objects); "
        f"ClickHouse caught up {elapsed - runner_s:.1f}s later"
    )
    print("runner stages (s): " + ", ".join(f"{k} {v}" for k, v in stages.items()))
    print(f"end to end: {figures['events_per_s']:,} events/s (target >= 100,000)")
    print(
        f"latency put -> queryable: p50 {p50:.2f}s, p99 {p99:.2f}s; beyond the {args.buffer_seconds}s buffer: "
        f"p50 {figures['added_latency_p50_s']}s (target <= 2s)"
    )
    print(
        f"CPU: this process {own_cpu_s:.1f}s, moto {moto_cpu_s:.1f}s = {figures['cpu_s_per_million_events']} s per "
        f"million events (2 cores at 100,000 events/s have 20 s per million)"
    )
    print(f"peak RSS {rss_mb:.0f} MB (target <= 4096); reconciled: {figures['reconciled']}")
    print(json.dumps(figures))
    return 0 if figures["targets_met"] else 1


if __name__ == "__main__":
    sys.exit(main())
