"""Checkpoints: a runner that dies mid-stream and restarts loses nothing and delivers nothing twice;
two delivery streams read one Kinesis stream independently."""

from collections import Counter
from pathlib import Path
from typing import Any

from bxb_stream.firehose.runner import DeliveryStream


def delivered_ids(aws: Any, bucket: str) -> Counter[str]:
    return Counter(r["transaction_id"] for r in aws.parquet_rows(bucket, ""))


def test_crash_and_restart_resumes_after_what_was_delivered(aws: Any, kit: Any, tmp_path: Path) -> None:
    stream, bucket = aws.new_stream(shards=2), aws.new_bucket()
    # Interleave two orgs so their partitions flush at different times: the checkpoint must then carry
    # runs of delivered records beyond the first undelivered one.
    first = [kit.raw_line(i, org="org-a" if i % 3 else "org-b") for i in range(60)]
    aws.put(stream, first)
    size = 215  # one transformed line, about (the real Transformer adds the pipeline fields)
    settings = kit.s3_settings(stream, bucket, aws.endpoint, buffer_size_bytes=size * 7, buffer_interval_s=900)

    crashed = DeliveryStream(settings, rules=kit.RULES, kinesis_client=aws.kinesis, s3_client=aws.s3, data_dir=tmp_path)
    assert crashed.run_until(lambda r: r.stats.records_read >= 60, timeout_s=20)
    before = crashed.stats
    assert 0 < before.delivered < 60 and before.in_flight == 60 - before.delivered
    ids_before = delivered_ids(aws, bucket)
    assert sum(ids_before.values()) == before.delivered
    checkpoint = tmp_path / f"checkpoints-{settings.name}.json"
    assert checkpoint.exists() and "resolved_runs" in checkpoint.read_text()
    del crashed  # killed: its buffers are gone, nothing flushed

    aws.put(stream, [kit.raw_line(100 + i, org="org-a") for i in range(10)])
    restarted = DeliveryStream(
        settings, rules=kit.RULES, kinesis_client=aws.kinesis, s3_client=aws.s3, data_dir=tmp_path
    )
    assert restarted.run_until(lambda r: r.stats.records_read >= 70 - before.delivered, timeout_s=20)
    restarted.flush()
    after = restarted.stats
    ids = delivered_ids(aws, bucket)
    expected = {f"tx-{i}" for i in range(60)} | {f"tx-{100 + i}" for i in range(10)}
    assert set(ids) == expected  # nothing lost
    assert max(ids.values()) == 1  # nothing delivered twice
    assert after.records_read == 70 - before.delivered and after.delivered == after.records_read
    assert after.skipped_already_settled > 0  # re-read, recognised as delivered by the first run
    assert after.balanced and after.in_flight == 0

    # A third start finds nothing left to do.
    third = DeliveryStream(settings, rules=kit.RULES, kinesis_client=aws.kinesis, s3_client=aws.s3, data_dir=tmp_path)
    for _ in range(3):
        third.poll_once()
    assert third.stats.records_read == 0


def test_kpl_aggregate_partly_delivered_before_a_crash(aws: Any, kit: Any, tmp_path: Path) -> None:
    from bxb_stream import kpl

    stream, bucket = aws.new_stream(), aws.new_bucket()
    agg = kpl.Aggregator(max_size=1_000_000)
    for i in range(29):  # org-a: the 15 even ones (one full buffer), org-b: 14 odd ones (never flushed)
        assert agg.add(kpl.UserRecord("k", None, kit.line(i, org="org-b" if i % 2 else "org-a"))) is None
    blob = agg.flush()
    assert blob is not None
    aws.kinesis.put_record(StreamName=stream, Data=bytes(blob), PartitionKey="k")
    size = len(kit.line(0)) + 1
    settings = kit.s3_settings(stream, bucket, aws.endpoint, buffer_size_bytes=size * 15, buffer_interval_s=900)

    crashed = DeliveryStream(
        settings, handler=kit.EchoTransform(), kinesis_client=aws.kinesis, s3_client=aws.s3, data_dir=tmp_path
    )
    assert crashed.run_until(lambda r: r.stats.records_read >= 29, timeout_s=20)
    assert crashed.stats.delivered == 15 and crashed.stats.in_flight == 14
    del crashed  # killed with org-b still buffered

    restarted = DeliveryStream(
        settings, handler=kit.EchoTransform(), kinesis_client=aws.kinesis, s3_client=aws.s3, data_dir=tmp_path
    )
    assert restarted.run_until(lambda r: r.stats.records_read >= 14, timeout_s=20)
    restarted.flush()
    stats = restarted.stats
    assert stats.records_read == 14 and stats.skipped_already_settled == 15 and stats.delivered == 14
    ids = delivered_ids(aws, bucket)
    assert set(ids) == {f"tx-{i}" for i in range(29)} and max(ids.values()) == 1


def test_two_delivery_streams_read_independently(aws: Any, kit: Any, tmp_path: Path, endpoint: Any) -> None:
    stream, bucket, backup = aws.new_stream(shards=2), aws.new_bucket(), aws.new_bucket()
    aws.put(stream, [kit.raw_line(i) for i in range(25)])
    s3_path = DeliveryStream(
        kit.s3_settings(stream, bucket, aws.endpoint), rules=kit.RULES,
        kinesis_client=aws.kinesis, s3_client=aws.s3, data_dir=tmp_path,
    )  # fmt: skip
    http_path = DeliveryStream(
        kit.http_settings(stream, backup, aws.endpoint, endpoint.url), rules=kit.RULES,
        kinesis_client=aws.kinesis, s3_client=aws.s3, data_dir=tmp_path,
    )  # fmt: skip
    assert s3_path.run_until(lambda r: r.stats.delivered >= 25, timeout_s=20)
    assert http_path.run_until(lambda r: r.stats.delivered >= 25, timeout_s=20)
    assert sum(delivered_ids(aws, bucket).values()) == 25 and len(endpoint.records) == 25
    assert len(list(tmp_path.glob("checkpoints-*.json"))) == 2
