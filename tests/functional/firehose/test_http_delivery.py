"""HTTP endpoint delivery stream against a loopback endpoint: request shape, retries, backup."""

import base64
import gzip
import json
from typing import Any

from bxb_stream.firehose.clock import ManualClock
from bxb_stream.firehose.http import HttpDestination
from bxb_stream.firehose.runner import DeliveryStream
from bxb_stream.firehose.settings import MIB, HttpSettings


def runner_for(aws: Any, kit: Any, endpoint: Any, n: int = 5, **http: Any) -> tuple[DeliveryStream, str, ManualClock]:
    stream, bucket = aws.new_stream(), aws.new_bucket()
    aws.put(stream, [kit.line(i) for i in range(n)])
    clock = ManualClock(start=kit.NOW_MS / 1000)
    settings = kit.http_settings(stream, bucket, aws.endpoint, endpoint.url, **http)
    runner = DeliveryStream(
        settings, handler=kit.EchoTransform(), kinesis_client=aws.kinesis, s3_client=aws.s3, clock=clock
    )
    return runner, bucket, clock


def settle(runner: DeliveryStream, n: int) -> None:
    assert runner.run_until(lambda r: r.stats.records_read >= n and r.stats.in_flight == 0, timeout_s=20)


def test_request_shape_and_gzip(aws: Any, kit: Any, endpoint: Any) -> None:
    runner, _, clock = runner_for(aws, kit, endpoint, n=5)
    settle(runner, 5)
    assert len(endpoint.received) == 1
    request = endpoint.received[0]
    headers = {k.lower(): v for k, v in request.headers.items()}
    assert headers["x-amz-firehose-protocol-version"] == "1.0"
    assert headers["x-amz-firehose-access-key"] == "k3y"
    assert headers["x-amz-firehose-source-arn"] == runner.settings.arn
    assert json.loads(headers["x-amz-firehose-common-attributes"]) == {"commonAttributes": {"env": "test"}}
    assert headers["content-type"] == "application/json" and headers["content-encoding"] == "gzip"
    assert headers["x-amz-firehose-request-id"] == request.body["requestId"]
    assert json.loads(gzip.decompress(request.raw)) == request.body  # the body really is gzip
    assert request.body["timestamp"] == int(clock.time() * 1000)
    sent = [json.loads(base64.b64decode(r["data"])) for r in request.body["records"]]
    assert [e["transaction_id"] for e in sent] == [f"tx-{i}" for i in range(5)]
    assert all(base64.b64decode(r["data"]).endswith(b"\n") for r in request.body["records"])  # the Ok lines
    assert runner.stats.delivered == 5 and runner.stats.http_requests == 1 and runner.stats.balanced


def test_uncompressed_when_gzip_is_off(aws: Any, kit: Any, endpoint: Any) -> None:
    runner, _, _ = runner_for(aws, kit, endpoint, n=2, gzip=False)
    settle(runner, 2)
    request = endpoint.received[0]
    assert "Content-Encoding" not in request.headers and json.loads(request.raw) == request.body


def test_503_is_retried_with_the_same_request_id(aws: Any, kit: Any, endpoint: Any) -> None:
    endpoint.script = [503, 503]
    runner, _, clock = runner_for(aws, kit, endpoint, n=3)
    settle(runner, 3)
    assert len(endpoint.received) == 3
    ids = {r.body["requestId"] for r in endpoint.received}
    header_ids = {r.headers["X-Amz-Firehose-Request-Id"] for r in endpoint.received}
    assert len(ids) == 1 and ids == header_ids
    assert 0.85 <= clock.slept[0] <= 1.15 and 1.7 <= clock.slept[1] <= 2.3  # 1 s, doubling, +-15%
    assert runner.stats.delivered == 3 and runner.destination.stats.retries == 2
    assert runner.destination.stats.statuses == {"503": 2, "200": 1}


def test_mismatched_request_id_counts_as_failure(aws: Any, kit: Any, endpoint: Any) -> None:
    endpoint.wrong_request_id = 1
    runner, _, _ = runner_for(aws, kit, endpoint, n=2)
    settle(runner, 2)
    assert len(endpoint.received) == 2 and runner.stats.delivered == 2


def test_backup_after_the_retry_duration(aws: Any, kit: Any, endpoint: Any) -> None:
    endpoint.script = [503] * 50
    runner, bucket, clock = runner_for(aws, kit, endpoint, n=4, retry_duration_s=5)
    settle(runner, 4)
    # waits of ~1 s and ~2 s fit in 5 s; the next (~4 s) would not.
    assert len(endpoint.received) == 3 and len(clock.slept) == 2
    lines = aws.error_lines(bucket, "http-backup/")
    assert len(lines) == 4
    assert {e["errorCode"] for e in lines} == {"HttpEndpoint.ResponseCodeError"}
    assert {e["attemptsMade"] for e in lines} == {3}
    assert "503" in lines[0]["errorMessage"] and "scripted 503" in lines[0]["errorMessage"]
    assert lines[0]["requestId"] == endpoint.received[0].body["requestId"]
    sent = sorted(json.loads(base64.b64decode(e["rawData"]))["transaction_id"] for e in lines)
    assert sent == [f"tx-{i}" for i in range(4)]
    stats = runner.stats
    assert stats.backed_up == {"HttpEndpoint.ResponseCodeError": 4} and stats.delivered == 0 and stats.balanced


def test_413_goes_to_backup_without_retry(aws: Any, kit: Any, endpoint: Any) -> None:
    endpoint.script = [413]
    runner, bucket, clock = runner_for(aws, kit, endpoint, n=3)
    settle(runner, 3)
    assert len(endpoint.received) == 1 and clock.slept == []
    assert len(aws.error_lines(bucket, "http-backup/")) == 3
    assert runner.stats.backed_up == {"HttpEndpoint.ResponseCodeError": 3}


def test_unreachable_endpoint_is_backed_up(aws: Any, kit: Any, endpoint: Any) -> None:
    import socket

    with socket.socket() as s:  # a loopback port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    endpoint.url = f"http://127.0.0.1:{port}/x"
    runner, bucket, _ = runner_for(aws, kit, endpoint, n=2, retry_duration_s=0)
    settle(runner, 2)
    assert runner.stats.backed_up == {"HttpEndpoint.ConnectionFailed": 2}
    assert len(aws.error_lines(bucket, "http-backup/")) == 2


def test_processing_failures_go_to_the_backup_buckets_error_prefix(aws: Any, kit: Any, endpoint: Any) -> None:
    stream, bucket = aws.new_stream(), aws.new_bucket()
    aws.put(stream, [kit.line(1), b"fail-x", b"drop-y"])
    settings = kit.http_settings(stream, bucket, aws.endpoint, endpoint.url)
    runner = DeliveryStream(settings, handler=kit.EchoTransform(), kinesis_client=aws.kinesis, s3_client=aws.s3)
    settle(runner, 3)
    assert endpoint.records and len(endpoint.records) == 1
    lines = aws.error_lines(bucket, "http-backup-errors/processing-failed/")  # as the CDK stack sets it
    assert [base64.b64decode(e["rawData"]) for e in lines] == [b"fail-x"]
    stats = runner.stats
    assert (stats.delivered, stats.dropped, sum(stats.error_records.values())) == (1, 1, 1)


def test_buffer_size_triggers_and_batches_split(aws: Any, kit: Any, endpoint: Any) -> None:
    runner, _, _ = runner_for(aws, kit, endpoint, n=12, buffer_size_bytes=len(kit.line(0)) * 4, buffer_interval_s=900)
    assert runner.run_until(lambda r: r.stats.records_read >= 12, timeout_s=20)
    assert len(endpoint.received) == 3 and runner.stats.delivered == 12  # 4 records' worth per request
    assert all(len(r.body["records"]) == 4 for r in endpoint.received)


def test_batches_hold_at_most_10000_records_and_64_mib() -> None:
    settings = HttpSettings(url="http://127.0.0.1:9/", buffer_size_bytes=64 * MIB, backup_bucket="b")
    dest = HttpDestination(settings, backup=None, source_arn="arn")  # type: ignore[arg-type]
    assert dest.batches([b"x"] * 25_000) == [(0, 10_000), (10_000, 20_000), (20_000, 25_000)]
    big = dest.batches([b"y" * (5 * MIB)] * 20)  # 5 MiB records, ~6.7 MiB base64 each
    assert [b - a for a, b in big] == [9, 9, 2]


def test_interval_triggers_http_flush(aws: Any, kit: Any, endpoint: Any) -> None:
    runner, _, clock = runner_for(aws, kit, endpoint, n=3, buffer_interval_s=60)
    assert runner.run_until(lambda r: r.stats.records_read >= 3, timeout_s=20)
    runner.poll_once()
    assert endpoint.received == []
    clock.advance(60)
    runner.poll_once()
    assert len(endpoint.received) == 1 and runner.stats.delivered == 3
