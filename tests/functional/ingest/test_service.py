"""The HTTP ingest endpoint against the embedded ClickHouse engine, with function-URL-shaped events."""

from __future__ import annotations

import base64
import gzip
import json
import re
import socket
from collections.abc import Callable
from decimal import Decimal
from typing import Any, get_type_hints

import boto3
import clickhouse_connect
import pytest
from moto import mock_aws

from bxb_runtime.config import EventRules
from bxb_runtime.events.lines import to_line
from bxb_runtime.events.validate import normalize
from bxb_runtime.ingest import AccessKeys, IngestService, IngestSettings, Limits
from bxb_runtime.ingest.protocol import MAX_RECORDS
from bxb_runtime.ingest.rows import Trust
from bxb_runtime.wire import firehose_http as wire

NOW_MS = 1_790_000_000_000
KEY = "k3y-current-0123456789"


def line(tid: str, **changes: Any) -> bytes:
    raw = {"transaction_id": tid, "external_customer_id": "cust_1", "code": "api_calls", "value": 2.5, **changes}
    return to_line(normalize(raw, EventRules(organization_id="org_1"), arrival_ms=NOW_MS, ingested_ms=NOW_MS))


def fn_url_event(
    records: list[bytes],
    *,
    request_id: str = "req-1",
    key: str | None = KEY,
    gzipped: bool = False,
    body: bytes | None = None,
) -> dict[str, Any]:
    """An event as a Lambda function URL delivers it: lower-case headers, base64 body."""
    if body is None:
        payload = {
            "requestId": request_id,
            "timestamp": NOW_MS,
            "records": [{"data": base64.b64encode(r).decode()} for r in records],
        }
        body = json.dumps(payload).encode()
    headers = {
        "content-type": "application/json",
        "x-amz-firehose-protocol-version": "1.0",
        "x-amz-firehose-request-id": request_id,
        "x-amz-firehose-source-arn": "arn:aws:firehose:us-east-1:123456789012:deliverystream/bxb-http",
        "x-amz-firehose-common-attributes": '{"commonAttributes":{}}',
    }
    if key is not None:
        headers["x-amz-firehose-access-key"] = key
    if gzipped:
        body = gzip.compress(body)
        headers["content-encoding"] = "gzip"
    return {
        "version": "2.0",
        "rawPath": "/",
        "headers": headers,
        "requestContext": {"http": {"method": "POST", "path": "/"}},
        "body": base64.b64encode(body).decode(),
        "isBase64Encoded": True,
    }


# ----------------------------------------------------------------------------- fixtures


@pytest.fixture
def secrets():
    with mock_aws():
        client = boto3.client("secretsmanager", region_name="us-east-1")
        client.create_secret(Name="bxb/firehose-access-key", SecretString=json.dumps({"api_key": KEY}))
        yield client


@pytest.fixture
def service(secrets, ingest_db) -> Callable[..., IngestService]:
    def build(
        client_factory: Callable[[], Any] | None = None,
        limits: Limits | None = None,
        keys: AccessKeys | None = None,
        **settings: Any,
    ) -> IngestService:
        return IngestService(
            keys or AccessKeys(secrets, "bxb/firehose-access-key"),
            client_factory or ingest_db.client_factory,
            IngestSettings(database=ingest_db.database, trust=Trust("org_1"), limits=limits or Limits(), **settings),
            clock=lambda: NOW_MS / 1000 + 30,  # the ingest runs half a minute after the transform
        )

    return build


def stored(ingest_db, request_id: str | None = None) -> list[tuple]:
    return ingest_db.client.query(
        f"SELECT transaction_id, toUnixTimestamp64Milli(timestamp), value FROM {ingest_db.database}.events_raw "
        "ORDER BY transaction_id"
    ).result_rows


def dead(ingest_db) -> list[tuple]:
    return ingest_db.client.query(
        f"SELECT request_id, record_index, error_code, raw FROM {ingest_db.database}.events_dead_letter "
        "ORDER BY request_id, record_index"
    ).result_rows


def status(response: dict) -> int:
    return response["statusCode"]


def body(response: dict) -> dict:
    assert response["headers"]["Content-Length"] == str(len(response["body"]))
    assert response["headers"]["Content-Type"] == "application/json"
    return json.loads(response["body"])


# ----------------------------------------------------------------------------- tests


def test_happy_path_stores_every_row_and_echoes_the_request_id(service, ingest_db):
    response, outcome = service().handle(fn_url_event([line("a"), line("b", value=None, decimal_value="1.25")]))
    assert status(response) == 200
    assert body(response)["requestId"] == "req-1" and "errorMessage" not in body(response)
    assert outcome.rows_inserted == 2 and outcome.dead_lettered == 0
    assert stored(ingest_db) == [("a", NOW_MS, 2.5), ("b", NOW_MS, None)]
    decimal = ingest_db.client.query(
        f"SELECT toString(decimal_value) FROM {ingest_db.database}.events_raw WHERE transaction_id = 'b'"
    ).result_rows
    assert decimal == [("1.25",)]


def test_gzip_body(service, ingest_db):
    response, _ = service().handle(fn_url_event([line("g1"), line("g2")], gzipped=True))
    assert status(response) == 200
    assert [row[0] for row in stored(ingest_db)] == ["g1", "g2"]


@pytest.mark.parametrize("key", [None, "", "wrong-key", KEY + "x", KEY[:-1]])
def test_missing_or_wrong_key_is_401_and_stores_nothing(service, ingest_db, key):
    response, outcome = service().handle(fn_url_event([line("a")], key=key))
    assert status(response) == 401 and outcome.auth_failed
    assert body(response)["requestId"] == "req-1" and body(response)["errorMessage"]
    assert stored(ingest_db) == []


class ManualClock:
    """The key cache's monotonic clock, moved by the test instead of waiting."""

    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


def test_key_rotation_accepts_current_and_previous(service, secrets, ingest_db):
    clock = ManualClock()
    svc = service(keys=AccessKeys(secrets, "bxb/firehose-access-key", clock=clock))
    assert status(svc.handle(fn_url_event([line("a")], request_id="r1"))[0]) == 200
    secrets.put_secret_value(SecretId="bxb/firehose-access-key", SecretString=json.dumps({"api_key": "k3y-next"}))
    clock.now += 301  # past the cache TTL (300 s)
    assert status(svc.handle(fn_url_event([line("b")], request_id="r2", key="k3y-next"))[0]) == 200
    assert status(svc.handle(fn_url_event([line("c")], request_id="r3", key=KEY))[0]) == 200  # AWSPREVIOUS
    secrets.put_secret_value(SecretId="bxb/firehose-access-key", SecretString=json.dumps({"api_key": "k3y-third"}))
    clock.now += 301
    assert status(svc.handle(fn_url_event([line("d")], request_id="r4", key=KEY))[0]) == 401  # two rotations ago
    assert [row[0] for row in stored(ingest_db)] == ["a", "b", "c"]


def test_a_new_key_is_picked_up_without_waiting_for_the_ttl(service, secrets, ingest_db):
    clock = ManualClock()
    svc = service(keys=AccessKeys(secrets, "bxb/firehose-access-key", clock=clock))
    assert status(svc.handle(fn_url_event([line("a")], request_id="r1"))[0]) == 200
    secrets.put_secret_value(SecretId="bxb/firehose-access-key", SecretString=json.dumps({"api_key": "fresh"}))
    # Within the unknown-key refresh floor (30 s) the cache is not re-read: a wrong key cannot hammer the secret.
    clock.now += 10
    assert status(svc.handle(fn_url_event([line("b")], request_id="r2", key="fresh"))[0]) == 401
    clock.now += 21  # past the floor, well before the TTL
    assert status(svc.handle(fn_url_event([line("b")], request_id="r3", key="fresh"))[0]) == 200
    assert [row[0] for row in stored(ingest_db)] == ["a", "b"]


def test_a_replayed_request_id_stores_nothing_twice(service, ingest_db):
    svc = service()
    event = fn_url_event([line("a"), line("b"), b"not json\n"], request_id="replay-1")
    for _ in range(3):
        response, _ = svc.handle(event)
        assert status(response) == 200
    assert [row[0] for row in stored(ingest_db)] == ["a", "b"]
    assert len(dead(ingest_db)) == 1


def test_records_that_do_not_fit_the_schema_are_dead_lettered_and_the_rest_stored(service, ingest_db):
    bad_json = b"{oops\n"
    unknown = line("x")[:-2] + b',"extra":1}\n'
    missing = b'{"transaction_id":"y"}\n'
    bad_decimal = line("z")[:-2] + b',"decimal_value":"abc"}\n'
    records = [line("ok1"), bad_json, unknown, missing, bad_decimal, line("ok2"), b""]  # b"": an empty record
    event = fn_url_event(records)
    event_body = json.loads(base64.b64decode(event["body"]))
    event_body["records"].append({"data": "***"})  # not base64
    event = fn_url_event([], body=json.dumps(event_body).encode())
    response, outcome = service().handle(event)
    assert status(response) == 200
    assert [row[0] for row in stored(ingest_db)] == ["ok1", "ok2"]
    assert [(r[1], r[2]) for r in dead(ingest_db)] == [
        (1, "not_json"),
        (2, "bad_line"),
        (3, "bad_line"),
        (4, "bad_decimal"),
        (6, "not_json"),
        (7, "not_base64"),
    ]
    assert dead(ingest_db)[0][3] == base64.b64encode(b"{oops\n").decode()  # the record as received, for replay
    assert dead(ingest_db)[-1][3] == "***"
    assert outcome.rows_inserted + outcome.dead_lettered == len(records) + 1  # nothing lost


@pytest.mark.parametrize(
    "raw_body",
    [b"not json", b"[]", b'{"requestId": "req-1"}', b'{"requestId":"req-1","timestamp":1,"records":[{"x":1}]}'],
)
def test_malformed_body_is_400(service, ingest_db, raw_body):
    response, _ = service().handle(fn_url_event([], body=raw_body))
    assert status(response) == 400 and body(response)["errorMessage"]
    assert stored(ingest_db) == []


def _with_body_text(event: dict[str, Any], text: str) -> dict[str, Any]:
    return {**event, "body": text}


def _request_body(**fields: Any) -> bytes:
    return json.dumps({"requestId": "req-1", "timestamp": NOW_MS, "records": [], **fields}).encode()


def _gzip_event(raw: bytes) -> dict[str, Any]:
    event = fn_url_event([], body=b"{}")
    event["headers"]["content-encoding"] = "gzip"
    return {**event, "body": base64.b64encode(raw).decode()}


GOOD_GZIP = gzip.compress(_request_body(records=[{"data": base64.b64encode(b"x").decode()}]))
BAD_REQUESTS = {
    "body not base64": (lambda: _with_body_text(fn_url_event([line("a")]), "%%% not base64 %%%"), "not valid base64"),
    "empty requestId": (
        lambda: {**fn_url_event([], body=_request_body(requestId="")), "headers": {"x-amz-firehose-access-key": KEY}},
        "requestId is empty",
    ),
    "too many records": (
        lambda: fn_url_event([], body=_request_body(records=[{"data": "eA=="}] * (MAX_RECORDS + 1))),
        f"at most {MAX_RECORDS}",
    ),
    "not gzip": (lambda: _gzip_event(b"this is not gzip at all"), "not valid gzip"),
    "truncated gzip": (lambda: _gzip_event(GOOD_GZIP[: len(GOOD_GZIP) // 2]), "truncated"),
}


@pytest.mark.parametrize("make", [m for m, _ in BAD_REQUESTS.values()], ids=list(BAD_REQUESTS))
def test_bad_requests_are_400_with_the_reason_and_store_nothing(service, ingest_db, make):
    reason = next(r for m, r in BAD_REQUESTS.values() if m is make)
    response, outcome = service().handle(make())
    assert status(response) == 400 and outcome.status == 400
    assert reason in body(response)["errorMessage"]
    assert outcome.rows_inserted == 0 and stored(ingest_db) == [] and dead(ingest_db) == []


def test_exactly_max_records_is_accepted(service, ingest_db):
    records = [line(f"m{i}") for i in range(MAX_RECORDS)]
    response, outcome = service().handle(fn_url_event(records, request_id="max-1", gzipped=True))
    assert status(response) == 200 and outcome.rows_inserted == MAX_RECORDS
    assert len(stored(ingest_db)) == MAX_RECORDS


def test_request_id_in_header_and_body_must_match(service, ingest_db):
    event = fn_url_event([line("a")])
    event["headers"]["x-amz-firehose-request-id"] = "other"
    assert status(service().handle(event)[0]) == 400


def test_the_documented_default_limits_are_6_mib_and_64_mib(service, ingest_db):
    assert Limits() == Limits(max_body_bytes=6 * 1024 * 1024, max_decompressed_bytes=64 * 1024 * 1024)
    svc = service()  # the default Limits()
    pad = {"requestId": "req-1", "timestamp": NOW_MS, "records": []}
    # One byte over 6 MiB on the wire: refused before decoding.
    over_wire = json.dumps({**pad, "pad": "x" * (6 * 1024 * 1024)}).encode()
    response, _ = svc.handle(fn_url_event([], body=over_wire))
    assert status(response) == 413 and str(6 * 1024 * 1024) in body(response)["errorMessage"]
    # Small on the wire, over 64 MiB inflated: refused without inflating it all.
    over_inflated = json.dumps({**pad, "pad": "x" * (64 * 1024 * 1024)}).encode()
    response, _ = svc.handle(fn_url_event([], body=over_inflated, gzipped=True))
    assert status(response) == 413 and str(64 * 1024 * 1024) in body(response)["errorMessage"]
    # Just under 6 MiB on the wire: accepted whole.
    records = [line(f"big{i:03d}", properties={"p": "y" * 15_000}) for i in range(300)]
    event = fn_url_event(records, request_id="under-1")
    assert 5.5 * 1024 * 1024 < len(base64.b64decode(event["body"])) < 6 * 1024 * 1024
    response, outcome = svc.handle(event)
    assert status(response) == 200 and outcome.rows_inserted == 300
    assert [row[0] for row in stored(ingest_db)] == [f"big{i:03d}" for i in range(300)]


def test_body_over_the_limit_is_413(service, ingest_db):
    svc = service(limits=Limits(max_body_bytes=2_000))
    response, _ = svc.handle(fn_url_event([line(f"t{i}") for i in range(20)]))
    assert status(response) == 413
    assert stored(ingest_db) == []


def test_gzip_bomb_is_413_without_inflating_it(service, ingest_db):
    bomb = json.dumps({"requestId": "req-1", "timestamp": 1, "records": [], "pad": "0" * 50_000_000}).encode()
    event = fn_url_event([], body=bomb, gzipped=True)
    assert len(base64.b64decode(event["body"])) < 100_000  # tiny on the wire
    svc = service(limits=Limits(max_body_bytes=6 * 1024 * 1024, max_decompressed_bytes=10 * 1024 * 1024))
    response, _ = svc.handle(event)
    assert status(response) == 413 and "decompressed" in body(response)["errorMessage"]


def test_clickhouse_down_is_503_and_nothing_is_stored(service, ingest_db):
    with socket.socket() as s:  # a loopback port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]

    def unreachable() -> Any:
        return clickhouse_connect.get_client(host="127.0.0.1", port=port, connect_timeout=1, send_receive_timeout=2)

    event = fn_url_event([line("a")], request_id="down-1")
    response, outcome = service(client_factory=unreachable).handle(event)
    assert status(response) == 503 and "ClickHouse" in body(response)["errorMessage"]
    assert outcome.rows_inserted == 0
    assert stored(ingest_db) == []
    # Firehose retries the same request once ClickHouse is back: stored once.
    assert status(service().handle(event)[0]) == 200
    assert [row[0] for row in stored(ingest_db)] == ["a"]


def test_dead_letter_insert_failing_after_the_events_insert_is_503_and_the_retry_stores_once(service, ingest_db):
    """The case the per-table dedup tokens exist for: events_raw took the rows, then the dead-letter
    insert failed. The embedded engine refuses it for real (a CHECK constraint no row can meet)."""
    table = f"{ingest_db.database}.events_dead_letter"
    event = fn_url_event([line("a"), b"not json\n", line("b")], request_id="half-1")
    svc = service()
    ingest_db.client.command(f"ALTER TABLE {table} ADD CONSTRAINT refuse_all CHECK 0")
    try:
        response, outcome = svc.handle(event)
    finally:
        ingest_db.client.command(f"ALTER TABLE {table} DROP CONSTRAINT refuse_all")
    assert status(response) == 503 and "ClickHouse unavailable" in body(response)["errorMessage"]
    assert outcome.rows_inserted == 0 and outcome.dead_lettered == 0  # nothing reported as committed
    assert [row[0] for row in stored(ingest_db)] == ["a", "b"]  # the events insert had gone through
    assert dead(ingest_db) == []
    for _ in range(2):  # Firehose retries the same request, maybe more than once
        response, outcome = svc.handle(event)
        assert status(response) == 200 and outcome.rows_inserted == 2 and outcome.dead_lettered == 1
    assert [row[0] for row in stored(ingest_db)] == ["a", "b"]  # deduplicated by the request's token
    assert [(r[0], r[1], r[2]) for r in dead(ingest_db)] == [("half-1", 1, "not_json")]


def test_old_events_land_like_any_other_the_resolver_decides_lateness(service, ingest_db):
    old = line("old", timestamp=(NOW_MS - 40 * 86_400_000) / 1000)
    response, outcome = service().handle(fn_url_event([line("new"), old], request_id="late-1"))
    assert status(response) == 200 and outcome.rows_inserted == 2
    assert [row[0] for row in stored(ingest_db)] == ["new", "old"]


def test_fields_the_transform_sets_are_checked_again(service, ingest_db):
    """The ingest does not trust the body: another organization, an ingested_at the transform cannot
    have written, or an arrival after the transform ran are dead letters, the rest is stored."""
    other_org = line("a")[:-2].replace(b'"org_1"', b'"org_2"') + b"}\n"
    stale = line("b").replace(str(NOW_MS).encode(), str(NOW_MS - 8 * 86_400_000).encode())
    future = line("c").replace(
        b'"ingested_at":' + str(NOW_MS).encode(), b'"ingested_at":' + str(NOW_MS + 3_600_000).encode()
    )
    arrived_late = line("d").replace(
        b'"arrived_at":' + str(NOW_MS).encode(), b'"arrived_at":' + str(NOW_MS + 1).encode()
    )
    response, outcome = service().handle(fn_url_event([line("ok"), other_org, stale, future, arrived_late]))
    assert status(response) == 200 and outcome.rows_inserted == 1
    assert [row[0] for row in stored(ingest_db)] == ["ok"]
    assert [(r[1], r[2]) for r in dead(ingest_db)] == [
        (1, "organization_mismatch"),
        (2, "ingested_at_out_of_range"),
        (3, "ingested_at_out_of_range"),
        (4, "arrived_after_ingested"),
    ]


def test_values_clickhouse_could_not_parse_are_dead_letters_not_a_failed_insert(service, ingest_db):
    """A decimal in non-ASCII digits, or a timestamp past DateTime64's range, would fail the whole
    insert (a 503 on every retry); each is refused alone and the rest is stored."""
    arabic_digits = line("a")[:-2] + ',"decimal_value":"\u0661\u0662"}\n'.encode()
    beyond = line("b").replace(b'"timestamp":' + str(NOW_MS).encode(), b'"timestamp":10413792000000')
    assert beyond != line("b")
    response, outcome = service().handle(fn_url_event([line("ok"), arabic_digits, beyond]))
    assert status(response) == 200 and outcome.rows_inserted == 1
    assert [row[0] for row in stored(ingest_db)] == ["ok"]
    assert [(r[1], r[2]) for r in dead(ingest_db)] == [(1, "bad_decimal"), (2, "bad_line")]


def test_timestamps_land_to_the_millisecond_across_the_range(service, ingest_db):
    # Sent as DateTime64(3) ticks in the Native block: the milliseconds as they are.
    edges = [946_684_800_000, 946_684_800_001, 1_790_000_000_010, 1_790_000_000_100, 10_413_791_999_999]
    records = [
        line(f"t{i}").replace(b'"timestamp":' + str(NOW_MS).encode(), b'"timestamp":' + str(ms).encode())
        for i, ms in enumerate(edges)
    ]
    response, outcome = service().handle(fn_url_event(records, request_id="edges-1"))
    assert status(response) == 200 and outcome.rows_inserted == len(edges)
    assert [row[1] for row in stored(ingest_db)] == edges
    times = ingest_db.client.query(
        f"SELECT toUnixTimestamp64Milli(ingested_at), toUnixTimestamp64Milli(arrived_at) "
        f"FROM {ingest_db.database}.events_raw"
    ).result_rows
    assert set(times) == {(NOW_MS, NOW_MS)}


@pytest.mark.parametrize(
    "fields",
    [
        {"decimal_value": "-99999999999999999999.999999999999999999"},  # Decimal(38, 18)'s widest
        {"decimal_value": "0.000000000000000001"},
        {"decimal_value": "12", "value": None},
        {"value": -1.7976931348623157e308, "properties": json.dumps({"note": "é" * 200}, ensure_ascii=False)},
        {"properties": json.dumps({"receipt": "🧾"}, ensure_ascii=False)},
        {"value": 5e-324, "properties": json.dumps({"blob": "x" * 20_000})},  # past the prefix table
        {"external_customer_id": "客户_7", "properties": "{}"},
    ],
    ids=["decimal widest", "decimal smallest", "decimal integer", "latin-1", "astral", "20 kB", "non-ASCII id"],
)
def test_every_value_lands_exactly_as_validated(service, ingest_db, fields):
    """The Native block carries each value as the line had it: text as UTF-8, floats bit for bit, the
    decimal's text converted by ClickHouse without rounding."""
    edited = {**json.loads(line("a")), **fields}
    sent = [json.dumps(edited, ensure_ascii=False).encode() + b"\n", line("b")]
    response, outcome = service().handle(fn_url_event(sent))
    assert status(response) == 200 and outcome.rows_inserted == 2
    names = ["transaction_id", "external_customer_id", "code", "properties", "value", "decimal_value"]
    got = ingest_db.client.query(f"SELECT {', '.join(names)} FROM {ingest_db.database}.events_raw ORDER BY 1")
    expected = [json.loads(x) for x in sent]
    for e in expected:
        e["decimal_value"] = Decimal(e["decimal_value"]) if e.get("decimal_value") is not None else None
    assert got.result_rows == [tuple(e.get(name) for name in names) for e in expected]


def test_a_request_from_another_delivery_stream_is_refused(service, ingest_db):
    svc = service(source_arn="arn:aws:firehose:us-east-1:123456789012:deliverystream/bxb-stream-http")
    response, _ = svc.handle(fn_url_event([line("a")]))  # the fixture's stream is .../bxb-http
    assert status(response) == 401 and "delivery stream" in body(response)["errorMessage"]
    assert stored(ingest_db) == []


def test_each_record_is_decoded_from_base64_exactly_once(service, ingest_db, monkeypatch):
    from bxb_runtime.ingest import protocol

    decoded: list[int] = []
    real = protocol.b64decode

    def counting(text: Any, validate: bool = False) -> bytes:
        decoded.append(len(text))
        return real(text, validate=validate)

    monkeypatch.setattr(protocol, "b64decode", counting)
    records = [line("a"), line("b"), b"not json\n"]
    response, outcome = service().handle(fn_url_event(records))
    assert status(response) == 200 and outcome.rows_inserted == 2 and outcome.dead_lettered == 1
    # Every record is base64: msgspec decoded them while reading the body, so the only pybase64
    # call is the function URL's transport encoding of the whole body.
    assert len(decoded) == 1
    assert set(body(response)) <= set(get_type_hints(wire.Response))
    # The dead letter still keeps the record exactly as received, read back from the body.
    assert dead(ingest_db) == [("req-1", 2, "not_json", base64.b64encode(b"not json\n").decode())]
    # One record is not: the request is read the careful way, one decode per record.
    decoded.clear()
    event = fn_url_event([line("c"), b"x"], request_id="req-2")
    payload = json.loads(base64.b64decode(event["body"]))
    payload["records"][1]["data"] = "not base64!"
    event["body"] = base64.b64encode(json.dumps(payload).encode()).decode()
    response, outcome = service().handle(event)
    assert status(response) == 200 and outcome.rows_inserted == 1 and outcome.dead_codes == {"not_base64": 1}
    assert len(decoded) == 1 + 2
    assert dead(ingest_db)[-1] == ("req-2", 1, "not_base64", "not base64!")


def test_a_request_whose_every_record_is_dead_stores_only_dead_letters(service, ingest_db):
    event = fn_url_event([b"not json\n", b'{"transaction_id":"y"}\n'], request_id="all-dead-1")
    response, outcome = service().handle(event)
    assert status(response) == 200 and outcome.rows_inserted == 0 and outcome.dead_lettered == 2
    assert stored(ingest_db) == []
    assert [(r[0], r[1], r[2]) for r in dead(ingest_db)] == [
        ("all-dead-1", 0, "not_json"),
        ("all-dead-1", 1, "bad_line"),
    ]


@pytest.mark.parametrize(
    ("secret", "problem"),
    [
        ("not json", 'must be JSON {"api_key": "..."}'),
        (json.dumps({"key": KEY}), 'must be JSON {"api_key": "..."}'),
        (json.dumps(["api_key"]), 'must be JSON {"api_key": "..."}'),
        (json.dumps({"api_key": ""}), "empty api_key"),
        (json.dumps({"api_key": 7}), "empty api_key"),
    ],
)
def test_a_malformed_access_key_secret_is_named(secrets, secret, problem):
    secrets.put_secret_value(SecretId="bxb/firehose-access-key", SecretString=secret)
    with pytest.raises(ValueError, match=re.escape(problem)):
        AccessKeys(secrets, "bxb/firehose-access-key").accepts(KEY)
