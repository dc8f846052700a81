"""The runner's fast paths give exactly what the per-record paths give: Parquet rows, failures, flush
points and processor verdicts, including for a batch that holds one bad record."""

from __future__ import annotations

import base64
import binascii
import io
import json
import random
from typing import Any

import msgspec
import pyarrow.parquet as pq
import pytest

from bxb_runtime.config import EventRules
from bxb_runtime.transform import Transformer
from bxb_stream.firehose.checkpoint import ShardLedger
from bxb_stream.firehose.invocation import SourceRecord, check_response, firehose_event, judge_wire
from bxb_stream.firehose.parquet import ParquetBuffer, convert_lines, convert_record
from bxb_stream.firehose.records import Record
from bxb_stream.firehose.s3 import ErrorOutput, S3Destination, S3Writer
from bxb_stream.firehose.settings import S3Settings
from bxb_stream.producer.synthetic import generate


def transformed(n: int, seed: int = 3) -> tuple[list[bytes], list[dict[str, Any]]]:
    """Lines and partition keys exactly as the real transform emits them (values, decimals, late events)."""
    events = [msgspec.json.encode(e) for e, _ in generate(n, seed=seed, late_share=0.1, now_ms=1_790_000_000_000)]
    request = firehose_event([SourceRecord(d, 1_790_000_000_000, sequence_number=str(i)) for i, d in enumerate(events)])
    response, _ = Transformer(EventRules(organization_id="org-f"), clock=lambda: 1_790_000_000.0).process(request)
    ok = [r for r in response["records"] if r["result"] == "Ok"]
    return [base64.b64decode(r["data"]) for r in ok], [r["metadata"]["partitionKeys"] for r in ok]


def rows_one_by_one(lines: list[bytes]) -> list[list[Any]]:
    rows = [convert_record(line) for line in lines]
    return [list(column) for column in zip(*rows, strict=True)]


def test_convert_lines_gives_the_per_record_rows() -> None:
    lines, _ = transformed(600)
    assert any(b'"decimal_value"' in line for line in lines) and any(b'"value"' in line for line in lines)
    columns = convert_lines(lines)
    assert columns is not None and columns == rows_one_by_one(lines)
    fast, slow = ParquetBuffer(), ParquetBuffer()
    fast.extend(columns)
    for line in lines:
        slow.append(convert_record(line))
    assert pq.read_table(io.BytesIO(fast.to_parquet())).equals(pq.read_table(io.BytesIO(slow.to_parquet())))


@pytest.mark.parametrize(
    "bad",
    [
        b'{"transaction_id": "x"}',  # a required column missing
        b"[1, 2]",
        b"{not json",
        b"",
    ],
)
def test_convert_lines_declines_a_batch_with_one_record_it_cannot_take(bad: bytes) -> None:
    lines, _ = transformed(20)
    assert convert_lines([*lines[:10], bad, *lines[10:]]) is None


def test_convert_lines_declines_lines_only_the_openx_path_reads() -> None:
    lines, _ = transformed(5)
    upper = json.dumps({k.upper(): v for k, v in json.loads(lines[0]).items()}).encode()
    assert convert_lines([upper]) is None  # OpenX matches keys case-insensitively: convert_record decides
    assert convert_record(upper) == convert_record(lines[0])


def _destination(aws: Any, buffer_size_bytes: int) -> tuple[S3Destination, str]:
    """An S3 destination writing to a fresh bucket on the session's moto server."""
    bucket = aws.new_bucket()
    writer = S3Writer(aws.s3, bucket)
    errors = ErrorOutput(writer, "errors/!{firehose:error-output-type}/", stream_name="s", version=1)
    settings = S3Settings(bucket=bucket, buffer_size_bytes=buffer_size_bytes, buffer_interval_s=60)
    return S3Destination(settings, writer, errors, stream_name="s", monotonic=lambda: 0.0), bucket


def _items(lines: list[bytes], keys: list[dict[str, Any]]) -> list[tuple[Record, bytes, dict[str, Any]]]:
    ledger = ShardLedger("shardId-0")
    return [
        (Record(line, 1_790_000_000_000 + i, "pk", str(i), 0, ledger, ledger.add((i, 0))), line, k)
        for i, (line, k) in enumerate(zip(lines, keys, strict=True))
    ]


def _objects(aws: Any, bucket: str) -> dict[str, list[str]]:
    """Each prefix's Parquet objects as their rows (JSON text), sorted: names carry a uuid, so the
    listing order says nothing; the set of objects and what each holds is what must match."""
    out: dict[str, list[str]] = {}
    for key in aws.keys(bucket):
        if key.endswith(".parquet"):
            rows = pq.read_table(io.BytesIO(aws.get(bucket, key))).to_pylist()
            out.setdefault(key.rsplit("/", 1)[0], []).append(json.dumps(rows, default=str))
    return {prefix: sorted(objects) for prefix, objects in out.items()}


@pytest.mark.parametrize("buffer_size_bytes", [64 * 1024 * 1024, 9_000])  # by interval, and many size flushes
def test_add_many_matches_add_one_by_one_with_a_bad_record_and_a_missing_key(aws: Any, buffer_size_bytes: int) -> None:
    lines, keys = transformed(300)
    lines[7] = json.dumps({**json.loads(lines[7]), "timestamp": "yesterday"}).encode()  # fails conversion
    keys[11] = {k: v for k, v in keys[11].items() if k != "hour"}  # fails partitioning
    keys[12] = {**keys[12], "hour": int(keys[12]["hour"])}  # an int value: partitioned by its str(), as add does
    fast, fast_bucket = _destination(aws, buffer_size_bytes)
    slow, slow_bucket = _destination(aws, buffer_size_bytes)
    fast_failures = fast.add_many(_items(lines, keys))
    slow_failures = [f for item in _items(lines, keys) if (f := slow.add(*item)) is not None]
    fast.flush_all()
    slow.flush_all()
    summary = [(f.record.ordinal, f.output_type, f.code, f.message) for f in fast_failures]
    assert summary == [(f.record.ordinal, f.output_type, f.code, f.message) for f in slow_failures]
    assert [code for _, _, code, _ in summary] == [
        "DataFormatConversion.MalformedData",
        "DynamicPartitioning.MetadataExtractionFailed",
    ]
    fast_objects, slow_objects = _objects(aws, fast_bucket), _objects(aws, slow_bucket)
    assert fast_objects == slow_objects
    stored_rows = sum(len(json.loads(o)) for objects in fast_objects.values() for o in objects)
    assert stored_rows == 298  # every record but the two failures, once
    if buffer_size_bytes < 64 * 1024 * 1024:
        assert sum(map(len, fast_objects.values())) > 10  # size flushes happened, at the same records
    assert fast.stats.delivered == slow.stats.delivered == 298


# ---------------------------------------------------------------------------------------- the processor's judge


def _request(n: int) -> tuple[dict[str, Any], list[str]]:
    request = firehose_event([SourceRecord(f"r{i}".encode(), 1, sequence_number=str(i)) for i in range(n)])
    return request, [r["recordId"] for r in request["records"]]


def _ok(rid: str, data: bytes = b"x\n", **extra: Any) -> dict[str, Any]:
    return {"recordId": rid, "result": "Ok", "data": base64.b64encode(data).decode(), **extra}


def _responses(ids: list[str]) -> list[Any]:
    keys = {"partitionKeys": {"stream": "events", "hour": "03"}}
    a, b, c = ids
    return [
        {"records": [_ok(a, metadata=keys), _ok(b, metadata=keys), _ok(c, b"y", metadata=keys)]},
        {"records": [_ok(a), {"recordId": b, "result": "Dropped", "data": ""}, {"recordId": c, "result": "Maybe"}]},
        {"records": [_ok(a), {"recordId": b, "result": "ProcessingFailed", "data": "??"}, _ok(c)]},
        {"records": [_ok(a), {**_ok(b), "data": "maTo="}, {**_ok(c), "data": "%%%"}]},  # odd and bad base64
        {"records": [_ok(a), {**_ok(b), "data": 5}, {**_ok(c), "data": None}]},
        {"records": [_ok(a, metadata=None), _ok(b, metadata={}), _ok(c, metadata={"partitionKeys": None})]},
        {"records": [_ok(a, metadata=[]), _ok(b, metadata={"partitionKeys": {"n": 1}}), _ok(c, metadata=0)]},
        {"records": [_ok(a, metadata={"partitionKeys": ["x"]}), _ok(b), _ok(c)]},
        {"records": [_ok(b), _ok(a), _ok(c)]},  # reordered
        {"records": [_ok(a), _ok(a), _ok(b), _ok(c)]},  # duplicated
        {"records": [_ok(a), _ok(c)]},  # missing
        {"records": [_ok(a), _ok(b), _ok(c), _ok("stranger")]},  # extra
        {"records": [_ok(a), _ok(b), {"recordId": c, "result": None}, "junk"]},
        {"records": "nope"},
        {"nothing": []},
        None,
        [1, 2],
    ]


def test_judge_wire_gives_check_response_verdicts() -> None:
    request, ids = _request(3)
    for response in _responses(ids):
        verdicts = check_response(request, response)
        judged = judge_wire(ids, msgspec.json.encode(response))
        assert judged.results == [v.result for v in verdicts], response
        assert judged.datas == [v.data for v in verdicts], response
        assert judged.keys == [v.partition_keys for v in verdicts], response
        assert judged.errors == [v.error for v in verdicts], response


def test_judge_wire_counts_unknown_ids() -> None:
    _, ids = _request(3)
    body = msgspec.json.encode({"records": [*(_ok(i) for i in ids), _ok("stranger"), "junk"]})
    assert judge_wire(ids, body).unknown_ids == 2


def test_msgspec_base64_is_never_more_lenient_than_strict_a2b() -> None:
    """The typed judge reads data with msgspec; what it accepts must decode identically with a2b strict."""
    rng = random.Random(5)
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    odd = "=-_ \n\t.\x00é"
    decode = msgspec.json.Decoder(bytes).decode
    for _ in range(20_000):
        if rng.random() < 0.5:
            text = "".join(
                rng.choice(alphabet + odd if rng.random() < 0.3 else alphabet) for _ in range(rng.randrange(12))
            )
        else:
            text = base64.b64encode(rng.randbytes(rng.randrange(9))).decode()
            if text and rng.random() < 0.5:
                i = rng.randrange(len(text))
                text = text[:i] + rng.choice(alphabet + odd) + text[i + 1 :]
        try:
            ours = decode(msgspec.json.encode(text))
        except msgspec.ValidationError:
            continue  # declined: the general path decides with a2b itself
        assert binascii.a2b_base64(text, strict_mode=True) == ours, text


def test_ledger_add_run_matches_add() -> None:
    one, run = ShardLedger("s"), ShardLedger("s")
    singles = [one.add((7, sub)) for sub in range(5)]
    first = run.add_run(7, 5)
    assert list(range(first, first + 5)) == singles and run.last_read == one.last_read == (7, 4)
    for ledger in (one, run):
        ledger.resolve(singles[0])
        ledger.resolve(singles[1])
        ledger.advance()
    assert run.committed == one.committed == (7, 1) and run.unresolved == one.unresolved == 3
