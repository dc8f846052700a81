"""S3 delivery stream end to end against moto: buffering, Parquet, prefixes, names, error objects, stats."""

import base64
import json
import re
from datetime import UTC, datetime
from typing import Any

from bxb_runtime.config import EventRules
from bxb_stream.firehose.clock import ManualClock
from bxb_stream.firehose.runner import DeliveryStream
from bxb_stream.firehose.settings import ProcessorSettings

NAME = r"(?P<stream>fh-s-[0-9a-f]+)-1-(?P<time>\d{4}-\d\d-\d\d-\d\d-\d\d-\d\d)-[0-9a-f-]{36}"


def drain(runner: DeliveryStream, produced: int, timeout: float = 20.0) -> None:
    assert runner.run_until(lambda r: r.stats.records_read >= produced, timeout_s=timeout)


def test_interval_flush_parquet_prefixes_and_error_objects(aws: Any, kit: Any) -> None:
    stream, bucket = aws.new_stream(shards=2), aws.new_bucket()
    datas = [kit.line(i, org="org-a") for i in range(40)] + [kit.line(100 + i, org="org-b") for i in range(20)]
    datas += [b"drop-1", b"drop-2", b"drop-3", b"fail-1", b"fail-2"]
    datas += [kit.line(200, timestamp="yesterday"), kit.line(201, organization_id="org-c")]
    aws.put(stream, datas)
    clock = ManualClock(start=kit.NOW_MS / 1000)
    transform = kit.EchoTransform()
    settings = kit.s3_settings(stream, bucket, aws.endpoint, buffer_interval_s=60)
    runner = DeliveryStream(settings, handler=transform, kinesis_client=aws.kinesis, s3_client=aws.s3, clock=clock)
    drain(runner, len(datas))
    before = runner.stats
    assert before.delivered == 0 and before.in_flight == 61  # buffered, the interval has not passed
    assert aws.keys(bucket, "events/") == []
    clock.advance(61)
    runner.poll_once()

    stats = runner.stats
    assert stats.records_read == 67 and stats.delivered == 61 and stats.dropped == 3
    assert stats.error_records == {"Lambda.ProcessingFailed": 2, "DataFormatConversion.MalformedData": 1}
    assert stats.error_outputs == {"processing-failed": 2, "format-conversion-failed": 1}
    assert stats.in_flight == 0 and stats.balanced and stats.transformed_ok == 62

    keys = aws.keys(bucket)
    data_keys = [k for k in keys if not k.startswith("errors/")]
    prefixes = sorted({k.rsplit("/", 1)[0] for k in data_keys})
    assert prefixes == [
        "events/organization_id=org-a/date=2026-01-02/hour=03",
        "events/organization_id=org-b/date=2026-01-02/hour=03",
        "events/organization_id=org-c/date=2026-01-02/hour=03",
    ]
    for key in data_keys:
        match = re.fullmatch(NAME + r"\.parquet", key.rsplit("/", 1)[1])
        assert match and match["stream"] == settings.name
    rows = aws.parquet_rows(bucket, "events/organization_id=org-a/")
    assert sorted(r["transaction_id"] for r in rows) == sorted(f"tx-{i}" for i in range(40))
    assert len(aws.parquet_rows(bucket, "events/organization_id=org-b/")) == 20

    # Objects are named and dated by the arrival of their oldest record.
    arrivals = [int(r["approximateArrivalTimestamp"]) for r in transform.seen]
    oldest = datetime.fromtimestamp(min(arrivals) / 1000, tz=UTC)
    day = oldest.strftime("%Y/%m/%d")
    processing = aws.error_lines(bucket, f"errors/processing-failed/{day}/")
    assert sorted(base64.b64decode(e["rawData"]) for e in processing) == [b"fail-1", b"fail-2"]
    line = processing[0]
    assert list(line)[:6] == [
        "attemptsMade", "arrivalTimestamp", "errorCode", "errorMessage", "attemptEndingTimestamp", "rawData",
    ]  # fmt: skip
    assert line["errorCode"] == "Lambda.ProcessingFailed" and line["attemptsMade"] == 1
    assert line["lambdaArn"] == settings.processor.lambda_arn and line["arrivalTimestamp"] in arrivals
    assert line["attemptEndingTimestamp"] == int(clock.time() * 1000) - 61_000
    conversion = aws.error_lines(bucket, f"errors/format-conversion-failed/{day}/")
    assert len(conversion) == 1 and conversion[0]["errorCode"] == "DataFormatConversion.MalformedData"
    assert json.loads(base64.b64decode(conversion[0]["rawData"]))["transaction_id"] == "tx-200"
    assert "timestamp" in conversion[0]["errorMessage"]
    for key in keys:
        assert re.fullmatch(NAME + r"(\.parquet)?", key.rsplit("/", 1)[1])


def test_size_flush(aws: Any, kit: Any) -> None:
    stream, bucket = aws.new_stream(), aws.new_bucket()
    datas = [kit.line(i) for i in range(30)]
    size = len(datas[0]) + 1  # each transformed line is the JSON plus a newline
    aws.put(stream, datas)
    settings = kit.s3_settings(stream, bucket, aws.endpoint, buffer_size_bytes=size * 8, buffer_interval_s=900)
    runner = DeliveryStream(settings, handler=kit.EchoTransform(), kinesis_client=aws.kinesis, s3_client=aws.s3)
    drain(runner, 30)
    keys = aws.keys(bucket)
    assert len(keys) == 3  # 3 x 8 records reached the size; 6 wait for the interval
    assert all(len(aws.parquet_rows(bucket, k)) == 8 for k in keys)
    assert runner.stats.delivered == 24 and runner.stats.in_flight == 6
    runner.flush()
    assert len(aws.keys(bucket)) == 4 and runner.stats.delivered == 30 and runner.stats.balanced


def test_processor_buffer_interval_and_size(aws: Any, kit: Any) -> None:
    stream, bucket = aws.new_stream(), aws.new_bucket()
    aws.put(stream, [kit.line(i) for i in range(20)])
    clock = ManualClock(start=kit.NOW_MS / 1000)
    transform = kit.EchoTransform()
    settings = kit.s3_settings(stream, bucket, aws.endpoint)
    settings = type(settings)(**{**settings.__dict__, "processor": ProcessorSettings(buffer_interval_s=30)})
    runner = DeliveryStream(settings, handler=transform, kinesis_client=aws.kinesis, s3_client=aws.s3, clock=clock)
    for _ in range(3):
        runner.poll_once()
    assert runner.stats.records_read == 20 and transform.calls == 0  # under the 1 MiB hint, before 30 s
    clock.advance(30)
    runner.poll_once()
    assert transform.calls == 1 and transform.batch_sizes == [20]
    assert runner.stats.delivered == 20


def test_lambda_failure_exhausted_lands_in_error_output(aws: Any, kit: Any) -> None:
    stream, bucket = aws.new_stream(), aws.new_bucket()
    aws.put(stream, [kit.line(i) for i in range(5)])
    calls = []

    def broken(event: dict[str, Any]) -> dict[str, Any]:
        calls.append(event["invocationId"])
        raise MemoryError("Runtime exited with error: signal: killed")

    clock = ManualClock(start=kit.NOW_MS / 1000)
    settings = kit.s3_settings(stream, bucket, aws.endpoint)
    runner = DeliveryStream(settings, handler=broken, kinesis_client=aws.kinesis, s3_client=aws.s3, clock=clock)
    drain(runner, 5)
    assert len(calls) == 4 and len(set(calls)) == 1
    lines = aws.error_lines(bucket, "errors/processing-failed/")
    assert len(lines) == 5 and {e["errorCode"] for e in lines} == {"Lambda.FunctionError"}
    assert {e["attemptsMade"] for e in lines} == {4}
    assert runner.stats.error_records == {"Lambda.FunctionError": 5} and runner.stats.balanced


def test_real_transformer_path(aws: Any, kit: Any) -> None:
    stream, bucket = aws.new_stream(shards=2), aws.new_bucket()
    good = [
        json.dumps({"transaction_id": f"t{i}", "external_customer_id": "c1", "code": "api", "value": i}).encode()
        for i in range(50)
    ]
    aws.put(stream, [*good, good[0], b"not json"])
    settings = kit.s3_settings(stream, bucket, aws.endpoint)
    runner = DeliveryStream(
        settings, rules=EventRules(organization_id="org-r"), kinesis_client=aws.kinesis, s3_client=aws.s3
    )
    drain(runner, 52)
    runner.flush()
    stats = runner.stats
    rows = aws.parquet_rows(bucket, "events/organization_id=org-r/")
    assert len(rows) == stats.delivered == stats.transformed_ok
    assert stats.delivered + stats.dropped + sum(stats.error_records.values()) == 52 and stats.balanced
    assert stats.transform_reasons["not_json"] == 1
    assert stats.delivered == 50 and stats.dropped == 1  # the repeated transaction id is dropped in-batch
    assert {r["transaction_id"] for r in rows} <= {f"t{i}" for i in range(50)}
