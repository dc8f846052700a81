"""Transient AWS errors: the runner retries them for as long as they last, counts and logs them,
and loses nothing; any other error stops it; shutdown ends a retry loop without losing records.

The failures are scripted through botocore's ``before-call`` hook (``aws_faults``): moto cannot
be made to answer GetRecords with a 500 on demand."""

from __future__ import annotations

import logging
import threading
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import (
    ClientError,
    ConnectionClosedError,
    EndpointConnectionError,
    NoCredentialsError,
    ReadTimeoutError,
    SSLError,
)

from bxb_stream.firehose.checkpoint import CheckpointStore
from bxb_stream.firehose.retry import Abandoned, Retrier, is_transient
from bxb_stream.firehose.runner import DeliveryStream


def client_error(status: int, code: str) -> ClientError:
    return ClientError({"Error": {"Code": code}, "ResponseMetadata": {"HTTPStatusCode": status}}, "GetRecords")


@pytest.mark.parametrize(
    ("error", "transient"),
    [
        (client_error(500, ""), True),
        (client_error(503, "SlowDown"), True),
        (client_error(429, ""), True),
        (client_error(400, "ProvisionedThroughputExceededException"), True),
        (client_error(400, "ThrottlingException"), True),
        (client_error(400, "KMSThrottlingException"), True),
        (EndpointConnectionError(endpoint_url="http://127.0.0.1:1"), True),
        (ConnectionClosedError(endpoint_url="http://127.0.0.1:1"), True),
        (ReadTimeoutError(endpoint_url="http://127.0.0.1:1"), True),
        (ConnectionResetError(104, "Connection reset by peer"), True),
        (client_error(400, "AccessDeniedException"), False),
        (client_error(400, "ResourceNotFoundException"), False),
        (client_error(404, "NoSuchBucket"), False),
        (client_error(400, "ExpiredIteratorException"), False),  # the source restarts the iterator itself
        (NoCredentialsError(), False),
        (SSLError(endpoint_url="https://x", error="bad certificate"), False),
        (ValueError("a bug"), False),
    ],
)
def test_which_errors_are_transient(error: BaseException, transient: bool) -> None:
    assert is_transient(error) is transient


def fast(runner: DeliveryStream) -> DeliveryStream:
    """Millisecond backoffs, so a test's retries cost no real time to speak of."""
    runner.retrier.base_s = runner.retrier.cap_s = 0.001
    return runner


def test_transient_errors_on_every_aws_call_are_retried_and_nothing_is_lost(
    aws: Any, kit: Any, aws_faults: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    stream, bucket = aws.new_stream(shards=2), aws.new_bucket()
    aws.put(stream, [kit.raw_line(i) for i in range(200)])
    aws_faults(aws.kinesis, "ListShards", [(400, "LimitExceededException")])
    reset = ConnectionClosedError(endpoint_url=aws.endpoint)
    aws_faults(
        aws.kinesis, "GetRecords", [(500, ""), (500, ""), reset, (400, "ProvisionedThroughputExceededException")]
    )
    aws_faults(aws.s3, "PutObject", [(503, "SlowDown"), (500, "InternalError")])
    runner = fast(
        DeliveryStream(
            kit.s3_settings(stream, bucket, aws.endpoint),
            rules=kit.RULES,
            kinesis_client=aws.kinesis,
            s3_client=aws.s3,
            data_dir=tmp_path,
        )
    )
    with caplog.at_level(logging.WARNING, logger="bxb_stream.firehose"):
        assert runner.run_until(lambda r: r.stats.delivered >= 200, timeout_s=30)
    assert len(aws_faults.injected) == 7  # every scripted failure was met, and got past

    retries = runner.retrier.stats.retries
    assert retries == Counter(
        {
            "ListShards: LimitExceededException": 1,
            "GetRecords: 500": 2,
            "GetRecords: ConnectionClosedError": 1,
            "GetRecords: ProvisionedThroughputExceededException": 1,
            "PutObject: SlowDown": 1,
            "PutObject: InternalError": 1,
        }
    )
    assert not runner.retrier.stats.failing  # every operation has succeeded since
    assert "GetRecords failed (500), retrying" in caplog.text
    ids = Counter(row["transaction_id"] for row in aws.parquet_rows(bucket, "events/"))
    assert set(ids) == {f"tx-{i}" for i in range(200)} and max(ids.values()) == 1
    assert runner.stats.balanced and runner.stats.in_flight == 0


def test_an_error_that_cannot_pass_stops_the_runner(aws: Any, kit: Any, aws_faults: Any) -> None:
    stream, bucket = aws.new_stream(), aws.new_bucket()
    aws.put(stream, [kit.raw_line(i) for i in range(5)])
    aws_faults(aws.kinesis, "GetRecords", forever=(400, "AccessDeniedException"))
    runner = fast(
        DeliveryStream(
            kit.s3_settings(stream, bucket, aws.endpoint),
            rules=kit.RULES,
            kinesis_client=aws.kinesis,
            s3_client=aws.s3,
        )
    )
    with pytest.raises(ClientError, match="AccessDeniedException"):
        runner.run_until(lambda r: False, timeout_s=10)
    assert runner.retrier.stats.total == 0  # not retried: it would never pass


def test_abandon_ends_a_retry_loop_and_keeps_the_records_before_the_checkpoint(
    aws: Any, kit: Any, aws_faults: Any, tmp_path: Path
) -> None:
    stream, bucket = aws.new_stream(), aws.new_bucket()
    aws.put(stream, [kit.raw_line(i) for i in range(30)])
    aws_faults(aws.s3, "PutObject", forever=(500, ""))  # S3 never comes back
    settings = kit.s3_settings(stream, bucket, aws.endpoint, buffer_interval_s=900)
    runner = DeliveryStream(settings, rules=kit.RULES, kinesis_client=aws.kinesis, s3_client=aws.s3, data_dir=tmp_path)
    assert runner.run_until(lambda r: r.stats.records_read >= 30, timeout_s=20)
    outcome: list[BaseException] = []

    def close() -> None:
        try:
            runner.close()  # the final flush retries, without limit...
        except BaseException as exc:
            outcome.append(exc)

    closing = threading.Thread(target=close)
    closing.start()
    assert kit.until(lambda: runner.retrier.stats.total >= 2, timeout=20)
    runner.abandon()  # ...until shutdown gives up
    closing.join(timeout=20)
    assert not closing.is_alive()
    assert len(outcome) == 1 and isinstance(outcome[0], Abandoned)
    assert runner.stats.in_flight == 30 and runner.stats.delivered == 0
    saved = CheckpointStore(tmp_path / f"checkpoints-{settings.name}.json")
    assert all(ledger.committed is None for ledger in saved.ledgers.values())  # read again after a restart


def test_a_retrier_sleeping_through_a_backoff_wakes_on_abandon() -> None:
    retrier = Retrier("test", base_s=3600, cap_s=3600)  # an hour's backoff
    calls = []

    def always_down() -> None:
        calls.append(1)
        raise EndpointConnectionError(endpoint_url="http://127.0.0.1:1")

    errors: list[BaseException] = []
    worker = threading.Thread(target=lambda: errors.append(_raises(retrier.call, "GetRecords", always_down)))
    worker.start()
    for _ in range(200):  # until it sleeps in its first backoff
        if retrier.stats.total:
            break
        threading.Event().wait(0.01)
    retrier.abandon()
    worker.join(timeout=10)
    assert not worker.is_alive() and isinstance(errors[0], Abandoned) and len(calls) == 1


def _raises(fn: Any, *args: Any) -> BaseException | None:
    try:
        fn(*args)
    except BaseException as exc:
        return exc
    return None
