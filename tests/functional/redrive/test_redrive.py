"""bxb_stream.redrive and ``bxb-stream redrive``: key handling, what is re-sent for each kind of error
record, the move to redriven/, and a run against moto (Kinesis and S3) with error objects in the
shapes AWS writes."""

from __future__ import annotations

import base64
import gzip
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from testkit.aws import Moto

from bxb_runtime import layout
from bxb_runtime.config import EventRules
from bxb_runtime.events.validate import normalize_bytes
from bxb_runtime.transform import Transformer
from bxb_stream.cli import main
from bxb_stream.clickhouse.settings import ClickHouseSettings
from bxb_stream.error_output import PROJECT_PREFIXES, ErrorObject, ErrorRecord, KeyPattern
from bxb_stream.firehose.naming import evaluate_prefix, object_name
from bxb_stream.producer import LEGACY
from bxb_stream.redrive import (
    MoveError,
    RedriveError,
    RedriveStopped,
    StreamTarget,
    event_bytes,
    move_to_redriven,
    patterns_for,
    redrive,
    redriven_key,
)

RULES = EventRules(organization_id="org-r")
ARRIVED = datetime(2026, 5, 1, 8, 9, 10, 123000, tzinfo=UTC)
ARRIVED_MS = int(ARRIVED.timestamp() * 1000)


@pytest.fixture
def moto(moto_endpoint: str) -> Moto:
    return Moto.at(moto_endpoint)


def aws_line(raw: bytes, code: str, *, arrival_ms: int = ARRIVED_MS, style: str = "processing") -> bytes:
    """One error line as AWS writes it (captured objects), without a trailing newline."""
    data = base64.b64encode(raw).decode()
    if style == "processing":  # lambdaARN, as AWS spells it
        body = {"attemptsMade": 1, "arrivalTimestamp": arrival_ms, "errorCode": code, "errorMessage": "refused",
                "attemptEndingTimestamp": arrival_ms + 9, "rawData": data, "lambdaARN": "arn:aws:lambda:x"}  # fmt: skip
    elif style == "conversion":  # lastErrorCode / lastErrorMessage, sequence numbers, the Glue table
        body = {"attemptsMade": 1, "arrivalTimestamp": arrival_ms, "lastErrorCode": code,
                "lastErrorMessage": "bad column", "attemptEndingTimestamp": arrival_ms + 9, "rawData": data,
                "sequenceNumber": "4958", "subSequenceNumber": None,
                "dataCatalogTable": {"catalogId": None, "databaseName": "bxb", "tableName": "events"}}  # fmt: skip
    else:  # HTTP endpoint failure: subsequenceNumber and dataId
        body = {"attemptsMade": 4, "arrivalTimestamp": arrival_ms, "errorCode": code, "errorMessage": "503",
                "attemptEndingTimestamp": arrival_ms + 9, "rawData": data, "sequenceNumber": "4958",
                "subsequenceNumber": 0, "dataId": "1"}  # fmt: skip
    return json.dumps(body).encode()


def put_object(s3: Any, bucket: str, prefix: str, output_type: str, lines: list[bytes], gz: bool = False) -> str:
    """An error object under one of the project's prefixes, named as Firehose names them."""
    key = evaluate_prefix(prefix, when_ms=ARRIVED_MS, error_output_type=output_type)
    key += object_name("bxb-stream-s3", 1, ARRIVED_MS) + (".gz" if gz else "")
    body = b"\n".join(lines)  # AWS: no newline after the last line
    s3.put_object(Bucket=bucket, Key=key, Body=gzip.compress(body) if gz else body)
    return key


def record(raw: bytes, output_type: str | None, code: str, arrival_ms: int | None = ARRIVED_MS) -> ErrorRecord:
    source = ErrorObject("k", output_type, "s", 1, ARRIVED)
    return ErrorRecord(source, code, "", raw, arrival_ms, 1, None, None)


def event(tid: str, **extra: Any) -> dict[str, Any]:
    return {"transaction_id": tid, "external_customer_id": "c1", "code": "api_calls", **extra}


# --------------------------------------------------------------------------- layout and keys


def test_redriven_prefix_is_outside_every_error_prefix_and_queue_glob() -> None:
    prefixes = layout.TOP_LEVEL_PREFIXES
    assert layout.REDRIVEN_PREFIX in prefixes
    assert not [(a, b) for a in prefixes for b in prefixes if a != b and b.startswith(a)]  # none nests
    # Every key the error prefixes hold, once redriven, is no longer one of theirs.
    for prefix in (*PROJECT_PREFIXES, ""):
        for output_type in ("processing-failed", "format-conversion-failed", "http-endpoint-failed"):
            key = evaluate_prefix(prefix, when_ms=ARRIVED_MS, error_output_type=output_type)
            key += object_name("bxb-stream-s3", 1, ARRIVED_MS)
            assert KeyPattern(prefix).parse(key) is not None
            assert all(KeyPattern(p).parse(redriven_key(key)) is None for p in (*PROJECT_PREFIXES, ""))
    # ClickHouse's S3Queue reads events/** only.
    settings = ClickHouseSettings(bucket_url="https://b.s3.us-east-1.amazonaws.com", named_collection="c")
    assert settings.url_for(settings.events_prefix).endswith("/events/**")
    assert redriven_key("errors/processing-failed/x") == "redriven/errors/processing-failed/x"


def test_a_prefix_under_redriven_is_refused() -> None:
    with pytest.raises(RedriveError, match="copy it back"):
        patterns_for(["redriven/errors/!{firehose:error-output-type}/!{timestamp:yyyy/MM/dd}/"])
    assert len(patterns_for(["", *PROJECT_PREFIXES])) == 4  # the bucket's root is fine: keys are matched whole


# --------------------------------------------------------------------------- what is sent again


def test_a_record_refused_by_the_transform_is_sent_as_put() -> None:
    raw = json.dumps(event("t1", timestamp="2026-05-01T08:00:00Z", value=1.5)).encode()
    assert event_bytes(record(raw, "processing-failed", "Lambda.ProcessingFailed")) == raw
    assert event_bytes(record(b"not json", "processing-failed", "Lambda.ProcessingFailed")) == b"not json"
    # The in-repo runner's plain prefix has no type folder: a Lambda code means "as put".
    assert event_bytes(record(raw, None, "Lambda.FunctionError")) == raw


def test_a_record_without_timestamp_keeps_its_original_arrival() -> None:
    raw = b'{"transaction_id":"t2","external_customer_id":"c1","code":"api_calls","value":2}'
    sent = event_bytes(record(raw, "processing-failed", "Lambda.ProcessingFailed"))
    assert json.loads(sent) == {**json.loads(raw), "timestamp": "2026-05-01T08:09:10.123Z"}
    assert normalize_bytes(sent, RULES, arrival_ms=ARRIVED_MS + 86_400_000, ingested_ms=0).timestamp == ARRIVED_MS
    nulled = b'{"transaction_id":"t3","external_customer_id":"c1","code":"x","timestamp":null,"decimal_value":"0.10"}'
    assert json.loads(event_bytes(record(nulled, "processing-failed", "Lambda.ProcessingFailed")))["timestamp"] == (
        "2026-05-01T08:09:10.123Z"
    )
    assert b'"0.10"' in event_bytes(record(nulled, "processing-failed", "Lambda.ProcessingFailed"))
    # No arrival known: left to the producer, which stamps it.
    assert event_bytes(record(raw, "processing-failed", "Lambda.ProcessingFailed", arrival_ms=None)) == raw


@pytest.mark.parametrize("output_type", ["format-conversion-failed", "http-endpoint-failed", None])
def test_a_transformed_line_goes_back_as_the_event_it_came_from(output_type: str | None) -> None:
    original = event("t4", timestamp=1777622950.5, value=3.25, decimal_value="12.000000000000000001",
                     properties={"b": [1, {"z": None}], "a": "x"})  # fmt: skip
    data = base64.b64encode(json.dumps(original).encode()).decode()
    answer, _ = Transformer(RULES).process(
        {"records": [{"recordId": "1", "approximateArrivalTimestamp": ARRIVED_MS, "data": data}]}
    )
    line = answer["records"][0]
    transformed = base64.b64decode(line["data"])
    code = "DataFormatConversion.MalformedData" if output_type != "http-endpoint-failed" else "HttpEndpoint.Error"
    sent = event_bytes(record(transformed, output_type, code))
    as_sent = json.loads(sent)
    assert "ingested_at" not in as_sent and "arrived_at" not in as_sent
    assert as_sent["timestamp"] == "2026-05-01T08:09:10.500Z" and as_sent["organization_id"] == "org-r"
    # Through the transform again, it is the same event (pipeline-set fields aside).
    later = ARRIVED_MS + 3_600_000
    again, first = normalize_bytes(sent, RULES, arrival_ms=later, ingested_ms=later), json.loads(transformed)
    for name in ("transaction_id", "external_customer_id", "code", "timestamp", "properties", "value", "decimal_value"):
        assert getattr(again, name) == first[name], name


def test_a_line_that_is_not_a_transformed_event_is_sent_unchanged() -> None:
    junk = b'{"transaction_id":"t5","ingested_at":1}'
    assert event_bytes(record(junk, "format-conversion-failed", "DataFormatConversion.MalformedData")) == junk


# --------------------------------------------------------------------------- the move


def test_move_copies_then_deletes(moto: Moto) -> None:
    _, bucket = moto.stream_and_bucket()
    key = put_object(moto.s3, bucket, layout.FIREHOSE_ERROR_PREFIX, "processing-failed", [aws_line(b"x", "c")])
    head = moto.s3.head_object(Bucket=bucket, Key=key)
    target = move_to_redriven(moto.s3, bucket, key, head["ETag"], head["ContentLength"])
    assert target == f"redriven/{key}" and moto.keys(bucket) == {target}
    assert moto.s3.get_object(Bucket=bucket, Key=target)["Body"].read() == aws_line(b"x", "c")


class _BrokenS3:
    """moto's S3, except for one call that fails or lies as a real outage could (moto cannot be told to)."""

    def __init__(
        self, s3: Any, *, changed: bool = False, delete_fails: bool = False, copy_is_short: bool = False
    ) -> None:
        self.s3, self.changed, self.delete_fails, self.copy_is_short = s3, changed, delete_fails, copy_is_short

    def copy_object(self, **kwargs: Any) -> Any:
        from botocore.exceptions import ClientError

        if self.changed:  # S3 refuses a CopySourceIfMatch that no longer matches; moto ignores the condition
            raise ClientError({"Error": {"Code": "PreconditionFailed", "Message": "At least one"}}, "CopyObject")
        return self.s3.copy_object(**kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.s3, name)

    def head_object(self, **kwargs: Any) -> Any:
        head = self.s3.head_object(**kwargs)
        return {**head, "ContentLength": head["ContentLength"] - 1} if self.copy_is_short else head

    def delete_object(self, **kwargs: Any) -> Any:
        from botocore.exceptions import ClientError

        if self.delete_fails:
            raise ClientError({"Error": {"Code": "AccessDenied", "Message": "no"}}, "DeleteObject")
        return self.s3.delete_object(**kwargs)


def test_move_never_deletes_without_a_whole_copy(moto: Moto) -> None:
    _, bucket = moto.stream_and_bucket()
    key = put_object(moto.s3, bucket, layout.FIREHOSE_ERROR_PREFIX, "processing-failed", [aws_line(b"x", "c")])
    head = moto.s3.head_object(Bucket=bucket, Key=key)
    with pytest.raises(MoveError, match="copy failed: PreconditionFailed"):
        move_to_redriven(_BrokenS3(moto.s3, changed=True), bucket, key, head["ETag"], head["ContentLength"])
    assert moto.keys(bucket) == {key}
    with pytest.raises(MoveError, match="bytes, not"):
        move_to_redriven(_BrokenS3(moto.s3, copy_is_short=True), bucket, key, head["ETag"], head["ContentLength"])
    assert key in moto.keys(bucket)
    with pytest.raises(MoveError, match=r"copied to .* but not deleted"):
        move_to_redriven(_BrokenS3(moto.s3, delete_fails=True), bucket, key, head["ETag"], head["ContentLength"])
    assert moto.keys(bucket) == {key, redriven_key(key)}


# --------------------------------------------------------------------------- a run


def aws_objects(moto: Moto, bucket: str) -> dict[str, str]:
    """One object of each kind both delivery streams write, in AWS's shapes."""
    good = [json.dumps(event(f"p{i}", timestamp="2026-05-01T08:00:00Z")).encode() for i in range(3)]
    transformed = json.dumps(
        {
            "transaction_id": "h1",
            "external_customer_id": "c1",
            "code": "api_calls",
            "timestamp": ARRIVED_MS,
            "properties": "{}",
            "organization_id": "org-r",
            "ingested_at": ARRIVED_MS,
            "arrived_at": ARRIVED_MS,
        }
    ).encode()
    conversion = json.loads(transformed) | {"transaction_id": "f1"}
    return {
        "processing": put_object(
            moto.s3,
            bucket,
            layout.FIREHOSE_ERROR_PREFIX,
            "processing-failed",
            [aws_line(g, "Lambda.ProcessingFailed") for g in good],
            gz=True,
        ),
        # The same event refused on both paths: sent once.
        "http-processing": put_object(
            moto.s3,
            bucket,
            layout.FIREHOSE_HTTP_BACKUP_ERROR_PREFIX,
            "processing-failed",
            [aws_line(good[0], "Lambda.ProcessingFailed")],
        ),
        "conversion": put_object(
            moto.s3,
            bucket,
            layout.FIREHOSE_ERROR_PREFIX,
            "format-conversion-failed",
            [aws_line(json.dumps(conversion).encode(), "DataFormatConversion.MalformedData", style="conversion")],
        ),
        "http": put_object(
            moto.s3,
            bucket,
            layout.FIREHOSE_HTTP_BACKUP_PREFIX,
            "http-endpoint-failed",
            [aws_line(transformed, "HttpEndpoint.ResponseCodeError", style="http")],
        ),
        # Still invalid: stays where it is, with the validator's code.
        "mixed": put_object(
            moto.s3,
            bucket,
            layout.FIREHOSE_ERROR_PREFIX,
            "processing-failed",
            [
                aws_line(json.dumps(event("m1")).encode(), "Lambda.ProcessingFailed"),
                aws_line(b'{"transaction_id":"m2","timestmap":1}', "Lambda.ProcessingFailed"),
            ],
        ),
        "unknown-shape": put_object(
            moto.s3,
            bucket,
            layout.FIREHOSE_ERROR_PREFIX,
            "processing-failed",
            [b'{"rawData":"eA==","status":"what is this"}'],
        ),
    }


def test_redrive_sends_each_record_once_and_moves_what_is_complete(moto: Moto) -> None:
    stream, bucket = moto.stream_and_bucket()
    keys = aws_objects(moto, bucket)
    dry = redrive(moto.s3, bucket, None, rules=RULES)
    assert dry.dry_run and moto.stream_data(stream) == [] and set(keys.values()) == moto.keys(bucket)
    assert dry.records == 8 and dry.refused == {"unknown_field:timestmap": 1}
    assert {c.error_code: c.count for c in dry.codes} == {
        "Lambda.ProcessingFailed": 6, "DataFormatConversion.MalformedData": 1, "HttpEndpoint.ResponseCodeError": 1,
    }  # fmt: skip

    seen: list[tuple[int, int]] = []
    target = StreamTarget(stream, moto.kinesis, LEGACY)
    report = redrive(moto.s3, bucket, target, rules=RULES, on_progress=lambda o, r: seen.append((o, r)))
    sent = [json.loads(d) for d in moto.stream_data(stream)]
    assert sorted(e["transaction_id"] for e in sent) == ["f1", "h1", "m1", "p0", "p1", "p2"]
    assert report.sent == 7 and report.identical == 1  # p0 twice in the bucket, once in the stream
    assert report.refused == {"unknown_field:timestmap": 1} and report.refusals[0].key == keys["mixed"]
    assert not report.complete
    kept = {o.key: o.problem for o in report.kept}
    assert kept == {
        keys["mixed"]: "records still refused: unknown_field:timestmap 1",
        keys["unknown-shape"]: "1 lines are not error records",
    }
    moved = {k for name, k in keys.items() if name not in ("mixed", "unknown-shape")}
    assert moto.keys(bucket) == {keys["mixed"], keys["unknown-shape"]} | {redriven_key(k) for k in moved}
    assert seen[-1] == (6, 8)  # objects read, records handed over

    # Again: only the objects left in place are read; their good record goes again (a duplicate downstream).
    again = redrive(moto.s3, bucket, target, rules=RULES)
    assert again.listed == 2 and again.sent == 1 and len(moto.stream_data(stream)) == 7


def test_a_time_range_keeps_objects_it_only_partly_covers(moto: Moto) -> None:
    from bxb_stream.error_output import TimeRange

    stream, bucket = moto.stream_and_bucket()
    lines = [aws_line(json.dumps(event(f"r{i}", timestamp="2026-05-01T08:00:00Z")).encode(),
                      "Lambda.ProcessingFailed", arrival_ms=ARRIVED_MS + i * 3_600_000) for i in range(2)]  # fmt: skip
    key = put_object(moto.s3, bucket, layout.FIREHOSE_ERROR_PREFIX, "processing-failed", lines)
    period = TimeRange(ARRIVED, ARRIVED + timedelta(minutes=30))
    report = redrive(moto.s3, bucket, StreamTarget(stream, moto.kinesis, LEGACY), period=period, rules=RULES)
    assert report.sent == 1 and [o.problem for o in report.objects] == ["1 of 2 records are outside the time range"]
    assert moto.keys(bucket) == {key}


def test_a_missing_stream_stops_the_run_and_moves_nothing(moto: Moto) -> None:
    _, bucket = moto.stream_and_bucket()
    keys = aws_objects(moto, bucket)
    with pytest.raises(RedriveStopped, match="ResourceNotFoundException") as stopped:
        redrive(moto.s3, bucket, StreamTarget("no-such-stream", moto.kinesis, LEGACY), rules=RULES)
    assert stopped.value.report.sent == 0 and moto.keys(bucket) == set(keys.values())


# --------------------------------------------------------------------------- the command


def test_redrive_command(moto: Moto, capsys: pytest.CaptureFixture[str], tmp_path: Any) -> None:
    stream, bucket = moto.stream_and_bucket()
    keys = aws_objects(moto, bucket)
    cdk = tmp_path / "cdk.json"
    cdk.write_text(json.dumps({"context": {"bxb:rules.organization_id": "org-r"}}))
    base = ["redrive", "--bucket", bucket, "--endpoint-url", moto.endpoint, "--config", str(cdk)]
    assert main([*base, "--dry-run"]) == 1  # some records would still be refused
    out = capsys.readouterr().out
    assert "8 rejected records would be re-submitted" in out and "7 records would be sent, 1 refused" in out
    assert moto.stream_data(stream) == []
    assert main([*base, "--stream", stream, "--legacy-limits", "--format", "json"]) == 1
    doc = json.loads(capsys.readouterr().out)
    assert (doc["sent"], doc["moved"], doc["refused"]) == (7, 4, {"unknown_field:timestmap": 1})
    assert {k["key"] for k in doc["kept"]} == {keys["mixed"], keys["unknown-shape"]}
    assert json.loads(doc["refusal_samples"][0]["data"])["transaction_id"] == "m2"
    assert doc["unreadable_lines"] == 1
    # Fixed by hand: the invalid record's object and the odd one removed; what is left is complete.
    moto.s3.delete_object(Bucket=bucket, Key=keys["mixed"])
    moto.s3.delete_object(Bucket=bucket, Key=keys["unknown-shape"])
    assert main([*base, "--stream", stream]) == 0
    assert "nothing to redrive" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ([], "--stream is required"),
        (["--dry-run", "--prefix", "redriven/errors/"], "copy it back to its original key"),
        (["--dry-run", "--prefix", "errors/!{timestamp:yyyy}/"], "error-output-type"),
        (["--dry-run", "--since", "2026-05-02", "--until", "2026-05-01"], "is not before"),
        (["--stream", "no-such-stream"], "ResourceNotFoundException"),
    ],
)
def test_redrive_command_failures_are_one_line(
    moto: Moto, capsys: pytest.CaptureFixture[str], extra: list[str], message: str
) -> None:
    _, bucket = moto.stream_and_bucket()
    aws_objects(moto, bucket)
    assert main(["redrive", "--bucket", bucket, "--endpoint-url", moto.endpoint, *extra]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err, err
    assert err.startswith("bxb-stream redrive: error: ")


def test_split_refused_moves_mixed_objects_and_keeps_the_refused_lines_apart(moto: Moto) -> None:
    stream, bucket = moto.stream_and_bucket()
    keys = aws_objects(moto, bucket)
    target = StreamTarget(stream, moto.kinesis, LEGACY)
    report = redrive(moto.s3, bucket, target, rules=RULES, split_refused=True)
    (mixed,) = [o for o in report.objects if o.key == keys["mixed"]]
    assert mixed.moved_to == redriven_key(keys["mixed"]) and mixed.split_to is not None
    assert mixed.split_to.startswith(keys["mixed"].rsplit("/", 1)[0] + "/")  # beside it, under the error prefix
    split_body = moto.s3.get_object(Bucket=bucket, Key=mixed.split_to)["Body"].read()
    assert split_body == aws_line(b'{"transaction_id":"m2","timestmap":1}', "Lambda.ProcessingFailed")
    assert not report.complete  # a record is still refused
    assert [o.key for o in report.kept] == [keys["unknown-shape"]]
    sent = len(moto.stream_data(stream))
    # Next time only the refused line is read: nothing is sent, and an object that is all refused stays.
    again = redrive(moto.s3, bucket, target, rules=RULES, split_refused=True)
    assert sorted(o.key for o in again.objects) == sorted([mixed.split_to, keys["unknown-shape"]])
    assert again.sent == 0 and not again.moved and len(moto.stream_data(stream)) == sent
    # A move that failed after the split was written: splitting again writes the same object.
    source = {"Bucket": bucket, "Key": redriven_key(keys["mixed"])}
    moto.s3.copy_object(Bucket=bucket, Key=keys["mixed"], CopySource=source)
    before = moto.keys(bucket)
    third = redrive(moto.s3, bucket, target, rules=RULES, split_refused=True)
    assert [o.split_to for o in third.moved] == [mixed.split_to] and moto.keys(bucket) == before - {keys["mixed"]}
