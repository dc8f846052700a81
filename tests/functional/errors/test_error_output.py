"""bxb_stream.error_output and ``bxb-stream errors``: rejected records read back from the error prefixes,
written by the in-repo Firehose runner into moto S3 (and, for layouts it does not write, by hand)."""

from __future__ import annotations

import base64
import gzip
import json
import random
import socket
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from testkit.aws import Moto

from bxb_runtime import layout
from bxb_runtime.config import EventRules
from bxb_stream.cli import main
from bxb_stream.error_output import (
    PROJECT_PREFIXES,
    KeyPattern,
    PrefixPatternError,
    Scan,
    TimeRange,
    parse_object,
    read_records,
    summarize,
    validator_reason,
)
from bxb_stream.firehose.naming import evaluate_prefix, object_name
from bxb_stream.firehose.runner import DeliveryStream
from bxb_stream.firehose.settings import (
    DeliveryStreamSettings,
    HttpSettings,
    ProcessorSettings,
    S3Settings,
    SourceSettings,
)

RULES = EventRules(organization_id="org-e")
GOOD = {"transaction_id": "t", "external_customer_id": "c1", "code": "api_calls", "value": 1}
REJECTED = {  # raw record -> the validator's code for it
    b'{"transaction_id":"t-typo","external_customer_id":"c1","code":"x","timestmap":1}': "unknown_field:timestmap",
    b'{"transaction_id":"t-nocode","external_customer_id":"c1"}': "missing_field:code",
    b"not json at all": "not_json",
    b'{"transaction_id":"t-org","external_customer_id":"c1","code":"x","organization_id":"other"}': (
        "organization_mismatch"
    ),
}


@pytest.fixture
def moto(moto_endpoint: str) -> Moto:
    return Moto.at(moto_endpoint)


def _source(stream: str, endpoint: str) -> SourceSettings:
    return SourceSettings(stream_name=stream, endpoint_url=endpoint, poll_interval_s=0.05)


def run_firehose(moto: Moto, settings: DeliveryStreamSettings, produced: int) -> DeliveryStream:
    runner = DeliveryStream(settings, rules=RULES, kinesis_client=moto.kinesis, s3_client=moto.s3)
    assert runner.run_until(lambda r: r.stats.records_read >= produced, timeout_s=30)
    runner.close()
    return runner


@pytest.fixture
def s3_path_errors(moto: Moto) -> Iterator[tuple[Moto, str, DeliveryStream]]:
    """The S3 path's runner, with the real transform, over good and rejected records."""
    stream, bucket = moto.stream_and_bucket()
    goods = [json.dumps(GOOD | {"transaction_id": f"t{i}"}).encode() for i in range(5)]
    moto.put(stream, [*goods, *REJECTED])
    settings = DeliveryStreamSettings(
        name=f"fh-{stream}",
        source=_source(stream, moto.endpoint),
        processor=ProcessorSettings(buffer_interval_s=0),
        s3=S3Settings(bucket=bucket, buffer_interval_s=0),
    )
    yield moto, bucket, run_firehose(moto, settings, len(goods) + len(REJECTED))


def test_transform_rejections_read_back_with_their_reasons(s3_path_errors: Any) -> None:
    moto, bucket, runner = s3_path_errors
    assert runner.stats.error_records == {"Lambda.ProcessingFailed": len(REJECTED)}
    scan = Scan()
    records = list(read_records(moto.s3, bucket, scan=scan))
    assert sorted(r.raw for r in records) == sorted(REJECTED)
    assert scan.objects >= 1 and scan.unreadable_lines == 0
    for r in records:
        assert r.error_code == "Lambda.ProcessingFailed" and r.source.output_type == "processing-failed"
        assert r.source.key.startswith("errors/processing-failed/") and r.attempts == 1
        assert r.arrival_ms is not None and r.source.oldest_arrival <= r.arrival + timedelta(seconds=1)
        assert r.source.stream == f"fh-{runner.settings.source.stream_name}" and r.lambda_arn
    (group,) = summarize(records, samples=2, reason=validator_reason(RULES))
    assert (group.error_code, group.count, len(group.samples)) == ("Lambda.ProcessingFailed", 4, 2)
    assert group.output_types == {"processing-failed": 4}
    assert group.reasons == {code: 1 for code in REJECTED.values()}  # each named by the validator


def test_http_endpoint_failures_read_back_from_the_backup(moto: Moto) -> None:
    stream, bucket = moto.stream_and_bucket()
    with socket.socket() as s:  # a loopback port nobody listens on: every POST fails
        s.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{s.getsockname()[1]}/"
    goods = [json.dumps(GOOD | {"transaction_id": f"h{i}"}).encode() for i in range(3)]
    moto.put(stream, [*goods, b"not json at all"])
    settings = DeliveryStreamSettings(
        name=f"fh-http-{stream}",
        source=_source(stream, moto.endpoint),
        processor=ProcessorSettings(buffer_interval_s=0),
        http=HttpSettings(url=url, backup_bucket=bucket, buffer_interval_s=0, retry_duration_s=0),
    )
    runner = run_firehose(moto, settings, 4)
    assert sum(runner.stats.backed_up.values()) == 3
    records = list(read_records(moto.s3, bucket))
    by_prefix: dict[str, list[Any]] = {}
    for r in records:
        by_prefix.setdefault(r.source.key.split("/", 1)[0], []).append(r)
    assert sorted(by_prefix) == ["http-backup", "http-backup-errors"]
    (transform_failure,) = by_prefix["http-backup-errors"]
    assert transform_failure.raw == b"not json at all" and transform_failure.source.output_type == "processing-failed"
    backed_up = by_prefix["http-backup"]
    lines = sorted((json.loads(r.raw) for r in backed_up), key=lambda line: line["transaction_id"])  # as transformed
    assert [line["transaction_id"] for line in lines] == ["h0", "h1", "h2"]
    assert all(line["organization_id"] == "org-e" for line in lines)
    assert len({r.error_code for r in backed_up}) == 1 and backed_up[0].error_message


# --------------------------------------------------------------------------- key patterns


NAME = "bxb-stream-s3-1-2026-05-01-08-09-10-" + str(uuid.UUID(int=7))
WRITTEN = datetime(2026, 5, 1, 8, 9, 10, tzinfo=UTC)


@pytest.mark.parametrize(
    ("prefix", "key", "output_type"),
    [
        ("", f"processing-failed/2026/05/01/08/{NAME}", "processing-failed"),  # no error prefix
        ("", f"2026/05/01/08/{NAME}", None),  # data, not errors
        ("my-errors/", f"my-errors/format-conversion-failed/2026/05/01/08/{NAME}", "format-conversion-failed"),
        ("my-errors/", f"my-errors/2026/05/01/08/{NAME}", None),  # all-data backup of delivered records
        ("my-errors/", f"my-errors/{NAME}", "untyped"),  # the in-repo runner's plain-prefix layout
        (layout.FIREHOSE_ERROR_PREFIX, f"errors/processing-failed/2026/05/01/{NAME}", "processing-failed"),
        (layout.FIREHOSE_ERROR_PREFIX, f"errors/processing-failed/2026/05/{NAME}", None),
        (layout.FIREHOSE_ERROR_PREFIX, f"events/processing-failed/2026/05/01/{NAME}", None),
        (layout.FIREHOSE_ERROR_PREFIX, f"errors/processing-failed/2026/05/01/{NAME}.parquet", "processing-failed"),
        (
            "e/!{firehose:random-string}/!{firehose:error-output-type}/d=!{timestamp:yyyy'-'MM'-'dd}/",
            f"e/AbCdEfGhIj1/splunk-failed/d=2026-05-01/{NAME}",
            "splunk-failed",
        ),
    ],
)
def test_key_patterns(prefix: str, key: str, output_type: str | None) -> None:
    parsed = KeyPattern(prefix).parse(key)
    if output_type is None:
        assert parsed is None
        return
    assert parsed is not None
    assert parsed.output_type == (None if output_type == "untyped" else output_type)
    assert (parsed.stream, parsed.version, parsed.oldest_arrival) == ("bxb-stream-s3", 1, WRITTEN)


def test_keys_the_runner_names_parse_back() -> None:
    rng = random.Random(3)
    when_ms = int(WRITTEN.timestamp() * 1000)
    for prefix in (*PROJECT_PREFIXES, "", "e/!{firehose:random-string}/!{firehose:error-output-type}/"):
        for output_type in ("processing-failed", "format-conversion-failed", "http-endpoint-failed"):
            evaluated = evaluate_prefix(prefix, when_ms=when_ms, error_output_type=output_type, rng=rng)
            key = evaluated + object_name("bxb-stream-http", 3, when_ms)
            parsed = KeyPattern(prefix).parse(key)
            assert parsed is not None, key
            assert parsed.output_type in (output_type, None) and parsed.version == 3
            assert parsed.oldest_arrival == WRITTEN


@pytest.mark.parametrize(
    "prefix", ["errors/!{timestamp:yyyy}/", "errors/!{firehose:nope}/!{firehose:error-output-type}"]
)
def test_bad_prefixes_are_refused(prefix: str) -> None:
    with pytest.raises(PrefixPatternError):
        KeyPattern(prefix)


# --------------------------------------------------------------------------- objects and time ranges


def error_line(raw: bytes, code: str, arrival: datetime, **extra: Any) -> bytes:
    body = {
        "attemptsMade": 1,
        "arrivalTimestamp": int(arrival.timestamp() * 1000),
        "errorCode": code,
        "errorMessage": f"{code} happened",
        "attemptEndingTimestamp": int(arrival.timestamp() * 1000) + 5,
        "rawData": base64.b64encode(raw).decode(),
        **extra,
    }
    return json.dumps(body).encode() + b"\n"


def put_error_object(
    s3: Any, bucket: str, output_type: str, oldest: datetime, lines: list[bytes], gz: bool = False
) -> str:
    key = f"errors/{output_type}/{oldest:%Y/%m/%d}/bxb-stream-s3-1-{oldest:%Y-%m-%d-%H-%M-%S}-{uuid.uuid4()}"
    body = b"".join(lines)
    s3.put_object(Bucket=bucket, Key=key, Body=gzip.compress(body) if gz else body)
    return key


def test_gzip_and_unreadable_lines() -> None:
    obj = KeyPattern("").parse(f"processing-failed/2026/05/01/08/{NAME}")
    assert obj is not None
    body = error_line(b"x", "Lambda.ProcessingFailed", WRITTEN) + b'{"no": "errorCode"}\n\n' + b"garbage\n"
    plain, packed = parse_object(body, obj), parse_object(gzip.compress(body), obj)
    assert [r.raw for r in plain.records] == [r.raw for r in packed.records] == [b"x"]
    assert plain.unreadable_lines == packed.unreadable_lines == 2


def test_time_range_filters_records_and_skips_objects(moto: Moto) -> None:
    _, bucket = moto.stream_and_bucket()
    t0 = datetime(2026, 5, 1, 8, tzinfo=UTC)
    put_error_object(moto.s3, bucket, "processing-failed", t0, [error_line(b"a", "Lambda.ProcessingFailed", t0)])
    put_error_object(
        moto.s3,
        bucket,
        "format-conversion-failed",
        t0 + timedelta(hours=1),
        [
            error_line(b"b", "DataFormatConversion.MalformedData", t0 + timedelta(hours=1)),
            error_line(b"c", "DataFormatConversion.MalformedData", t0 + timedelta(hours=2)),
        ],
        gz=True,
    )
    three = t0 + timedelta(hours=3)
    put_error_object(moto.s3, bucket, "processing-failed", three, [error_line(b"d", "Lambda.FunctionError", three)])
    everything = sorted(r.raw for r in read_records(moto.s3, bucket))
    assert everything == [b"a", b"b", b"c", b"d"]
    scan = Scan()
    middle = TimeRange(t0 + timedelta(minutes=30), t0 + timedelta(minutes=90))
    assert [r.raw for r in read_records(moto.s3, bucket, period=middle, scan=scan)] == [b"b"]
    assert scan.objects == 2  # the object whose oldest record came after the range is not even read
    later = TimeRange(start=t0 + timedelta(minutes=90), end=three)
    assert [r.raw for r in read_records(moto.s3, bucket, period=later)] == [b"c"]
    groups = summarize(read_records(moto.s3, bucket), samples=1)
    assert [(g.error_code, g.count, len(g.samples)) for g in groups] == [
        ("DataFormatConversion.MalformedData", 2, 1),
        ("Lambda.FunctionError", 1, 1),
        ("Lambda.ProcessingFailed", 1, 1),
    ]
    assert groups[0].first_arrival_ms == int((t0 + timedelta(hours=1)).timestamp() * 1000)
    with pytest.raises(ValueError):
        TimeRange(t0, t0)


# --------------------------------------------------------------------------- the command


def test_errors_command_table_and_json(
    s3_path_errors: Any, capsys: pytest.CaptureFixture[str], tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    moto, bucket, _ = s3_path_errors
    cdk = tmp_path / "cdk.json"
    cdk.write_text(json.dumps({"context": {"bxb:rules.organization_id": "org-e"}}))
    base = ["errors", "--bucket", bucket, "--endpoint-url", moto.endpoint, "--config", str(cdk)]
    assert main(base) == 0
    out = capsys.readouterr().out
    assert "4 rejected records" in out and "Lambda.ProcessingFailed" in out
    assert "unknown_field:timestmap 1" in out and "timestmap" in out  # the reason, and a decoded sample
    assert main([*base, "--format", "json", "--samples", "10"]) == 0
    doc = json.loads(capsys.readouterr().out)
    (code,) = doc["codes"]
    assert doc["records"] == code["count"] == 4 and doc["objects_read"] >= 1
    assert code["reasons"] == {c: 1 for c in REJECTED.values()}
    assert sorted(s["data"].encode() for s in code["samples"]) == sorted(REJECTED)
    assert main([*base, "--since", "1h", "--until", "2099-01-01"]) == 0
    assert "4 rejected records" in capsys.readouterr().out
    assert main([*base, "--since", "2099-01-01"]) == 0
    assert "no rejected records" in capsys.readouterr().out


def test_errors_command_failures_are_one_line(moto: Moto, capsys: pytest.CaptureFixture[str]) -> None:
    base = ["errors", "--endpoint-url", moto.endpoint]
    assert main([*base, "--bucket", f"missing-{uuid.uuid4().hex[:8]}"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "NoSuchBucket" in err
    assert main([*base, "--bucket", "b", "--prefix", "errors/!{timestamp:yyyy}/"]) == 2
    assert "error-output-type" in capsys.readouterr().err
    assert main([*base, "--bucket", "b", "--since", "2026-05-02", "--until", "2026-05-01"]) == 2
    assert "is not before" in capsys.readouterr().err


def test_every_spelling_aws_writes_or_documents() -> None:
    """Captured objects: lambdaARN, lastErrorCode/lastErrorMessage (format conversion), no newline after
    the last line; the docs: lambdaArn, ErrorCode/ErrorMessage. A line with no error code is counted."""
    obj = KeyPattern("").parse(f"format-conversion-failed/2026/05/01/08/{NAME}")
    assert obj is not None
    data = base64.b64encode(b"x").decode()
    lines = [
        {"errorCode": "Lambda.FunctionError", "errorMessage": "m1", "rawData": data, "lambdaARN": "arn:a"},
        {"errorCode": "Lambda.ProcessingFailedStatus", "rawData": data, "lambdaArn": "arn:b"},
        {
            "lastErrorCode": "DataFormatConversion.MalformedData",
            "lastErrorMessage": "m3",
            "rawData": data,
            "sequenceNumber": "1",
            "subSequenceNumber": None,
            "dataCatalogTable": {"tableName": "t"},
        },
        {"ErrorCode": "DataFormatConversion.InvalidSchema", "ErrorMessage": "m4", "rawData": data, "catalogArn": "a"},
        {"errorCode": "HttpEndpoint.ResponseCodeError", "rawData": data, "subsequenceNumber": 0, "dataId": "1"},
        {"rawData": data, "somethingElse": "no code at all"},
    ]
    contents = parse_object(b"\n".join(json.dumps(line).encode() for line in lines), obj)
    assert [(r.error_code, r.error_message, r.lambda_arn) for r in contents.records] == [
        ("Lambda.FunctionError", "m1", "arn:a"),
        ("Lambda.ProcessingFailedStatus", "", "arn:b"),
        ("DataFormatConversion.MalformedData", "m3", None),
        ("DataFormatConversion.InvalidSchema", "m4", None),
        ("HttpEndpoint.ResponseCodeError", "", None),
    ]
    assert contents.unreadable_lines == 1
    assert parse_object(b"\x1f\x8b\x08 truncated", obj).unreadable_lines == 1  # a corrupt gzip object
