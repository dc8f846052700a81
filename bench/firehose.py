"""Local Firehose runner throughput: N synthetic events, KPL-aggregated, Kinesis -> transform -> Parquet -> S3.

1. Start moto's server on 127.0.0.1 (in a child process by default, so its CPU work does not
   hold this process's GIL; ``--moto thread`` runs it in-process as ``bxb-stream local`` does).
2. Put N events with the producer library (``aggregate=True, limits=LEGACY``), timed on its own.
3. Run one S3-destination ``DeliveryStream`` (the real transform, Parquet on) until every
   record has been read, then ``close()`` it, which processes and writes what is buffered.
   The runner's rate is N over that wall time; waiting out the S3 buffer interval is
   configured latency, not throughput, so it is not part of the figure.
4. Print the rate, the time per stage (``bxb_stream.firehose.timing``), peak RSS, and as the
   last line one JSON object with every figure, the targets and ``targets_met``.

Target: runner >= 150,000 events/s (leaving room for the producer and ClickHouse in the
100k/s end-to-end budget of issue 7), peak RSS (this process + moto) <= 4 GiB.

Run: /work/venv/bin/python bench/firehose.py [--events N] [--shards 4] [--moto process|thread] [--gc-gen0 N]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import boto3

from bxb_stream.firehose.runner import DeliveryStream
from bxb_stream.firehose.settings import (
    MIB,
    DeliveryStreamSettings,
    ProcessorSettings,
    S3Settings,
    SourceSettings,
)
from bxb_stream.firehose.timing import STAGES
from bxb_stream.local.aws import MotoServer
from bxb_stream.producer import Producer
from bxb_stream.producer import limits as L
from bxb_stream.producer.synthetic import generate

TARGET_RUNNER_EPS = 150_000
TARGET_PEAK_RSS_MB = 4096
CREDS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing", "region_name": "us-east-1"}


def produce(endpoint: str, stream: str, n: int, seed: int) -> float:
    """Put n synthetic events, KPL-aggregated; returns the seconds it took."""
    kinesis = boto3.client("kinesis", endpoint_url=endpoint, **CREDS)
    started = time.perf_counter()
    producer = Producer(stream, client=kinesis, aggregate=True, limits=L.LEGACY, linger_ms=None)
    rejected = producer.put_many(event for event, _ in generate(n, seed=seed))
    failures = producer.close()
    if rejected or failures:
        raise SystemExit(f"producer: {len(rejected)} rejected, {len(failures)} failed")
    return time.perf_counter() - started


def settings(args: argparse.Namespace, endpoint: str, stream: str, bucket: str) -> DeliveryStreamSettings:
    return DeliveryStreamSettings(
        name=f"bench-{stream}",
        source=SourceSettings(stream_name=stream, endpoint_url=endpoint, poll_interval_s=0.05),
        processor=ProcessorSettings(
            buffer_size_bytes=int(args.processor_buffer_mb * MIB), buffer_interval_s=args.processor_interval
        ),
        s3=S3Settings(
            bucket=bucket, buffer_size_bytes=int(args.s3_buffer_mb * MIB), buffer_interval_s=args.s3_interval
        ),
    )


def run_runner(args: argparse.Namespace, endpoint: str, stream: str, bucket: str) -> tuple[float, DeliveryStream]:
    """Run the delivery stream until all N records are read, then close it; returns its wall seconds."""
    clients = {"kinesis_client": boto3.client("kinesis", endpoint_url=endpoint, **CREDS)}
    clients["s3_client"] = boto3.client("s3", endpoint_url=endpoint, **CREDS)
    delivery = DeliveryStream(settings(args, endpoint, stream, bucket), **clients)
    n = args.events
    started = time.perf_counter()
    read_all = delivery.run_until(lambda d: d.source.stats.user_records >= n, timeout_s=args.timeout)
    delivery.close()
    elapsed = time.perf_counter() - started
    if not read_all:
        raise SystemExit(f"runner read only {delivery.source.stats.user_records} of {n} in {args.timeout} s")
    return elapsed, delivery


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--shards", type=int, default=4)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--moto", choices=("process", "thread"), default="process")
    parser.add_argument("--processor-interval", type=float, default=1.0)
    parser.add_argument("--processor-buffer-mb", type=float, default=1.0)  # Firehose's default hint
    parser.add_argument("--s3-interval", type=float, default=5.0)
    parser.add_argument("--s3-buffer-mb", type=float, default=64.0)  # the minimum with format conversion
    parser.add_argument("--timeout", type=float, default=600.0)
    # The runner allocates several container objects per record; CPython's default gen-0 threshold (700)
    # then runs many collections over a large live heap. A service may raise it; 0 keeps the default.
    parser.add_argument("--gc-gen0", type=int, default=0)
    args = parser.parse_args()
    if args.gc_gen0:
        gc.set_threshold(args.gc_gen0, *gc.get_threshold()[1:])

    moto = MotoServer(args.moto)
    try:
        kinesis = boto3.client("kinesis", endpoint_url=moto.endpoint, **CREDS)
        stream, bucket = "bench-events", "bench-lake"
        kinesis.create_stream(StreamName=stream, ShardCount=args.shards)
        boto3.client("s3", endpoint_url=moto.endpoint, **CREDS).create_bucket(Bucket=bucket)
        produce_s = produce(moto.endpoint, stream, args.events, args.seed)
        print(f"produced {args.events:,} events in {produce_s:.2f} s ({args.events / produce_s:,.0f} events/s)")
        runner_s, delivery = run_runner(args, moto.endpoint, stream, bucket)
        moto_rss = moto.peak_rss_mb()
    finally:
        moto.stop()

    stats = delivery.stats
    if stats.delivered != args.events or not stats.balanced:
        raise SystemExit(f"runner delivered {stats.delivered} of {args.events} (balanced={stats.balanced}): {stats}")
    eps = args.events / runner_s
    stages = {name: round(delivery.stages.seconds[name], 3) for name in STAGES}
    stages["other"] = round(runner_s - sum(stages.values()), 3)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    cpu = os.times()
    print(f"runner: {args.events:,} events in {runner_s:.2f} s = {eps:,.0f} events/s")
    print(f"  kinesis records {stats.kinesis_records_read:,}, invocations {stats.invocations:,}", end="")
    print(f", objects {stats.objects_written}")
    for name, seconds in stages.items():
        print(f"  {name:<12} {seconds:7.2f} s  {100 * seconds / runner_s:5.1f} %")
    print(f"peak RSS: this process {rss:,.0f} MB, moto {moto_rss:,.0f} MB", end="")
    print(f"; CPU user {cpu.user:.1f} s, sys {cpu.system:.1f} s")
    figures = {
        "events": args.events,
        "shards": args.shards,
        "moto": args.moto,
        "gc_threshold": list(gc.get_threshold()),
        "produce_s": round(produce_s, 3),
        "produce_eps": round(args.events / produce_s),
        "runner_s": round(runner_s, 3),
        "runner_eps": round(eps),
        "stages_s": stages,
        "kinesis_records": stats.kinesis_records_read,
        "invocations": stats.invocations,
        "objects": stats.objects_written,
        "peak_rss_mb": round(rss),
        "moto_peak_rss_mb": round(moto_rss),
    }
    targets = {"runner_eps": TARGET_RUNNER_EPS, "peak_rss_mb": TARGET_PEAK_RSS_MB}
    met = eps >= TARGET_RUNNER_EPS and rss + moto_rss <= TARGET_PEAK_RSS_MB
    print(json.dumps({**figures, "targets": targets, "targets_met": met}))


if __name__ == "__main__":
    main()
