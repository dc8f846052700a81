"""The ingest's request parsing, rows and settings, without an engine: the branches the service
tests (tests/functional/ingest) do not reach."""

from __future__ import annotations

import base64
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from testkit.native import read_block

from bxb_runtime.config import EventRules
from bxb_runtime.events.lines import to_line
from bxb_runtime.events.validate import normalize
from bxb_runtime.ingest import IngestSettings, Limits
from bxb_runtime.ingest.protocol import ProtocolError, decode_records, parse_request, source_arn
from bxb_runtime.ingest.rows import Trust, build_batch

NOW_MS = 1_790_000_000_000
ARN = "arn:aws:firehose:us-east-1:123456789012:deliverystream/bxb-http"
REQUIRED = {"BXB_CLICKHOUSE_URL": "https://ch.example:8443", "BXB_ACCESS_KEY_SECRET_ARN": "arn:aws:secretsmanager:x"}


def body(*records: bytes, request_id: str = "req-1") -> bytes:
    return json.dumps(
        {
            "requestId": request_id,
            "timestamp": NOW_MS,
            "records": [{"data": base64.b64encode(r).decode()} for r in records],
        }
    ).encode()


def line(tid: str, org: str) -> bytes:
    raw = {"transaction_id": tid, "external_customer_id": "c", "code": "api", "organization_id": org}
    rules = EventRules(organization_id="", multi_tenant=True)
    return to_line(normalize(raw, rules, arrival_ms=NOW_MS, ingested_ms=NOW_MS))


@pytest.mark.parametrize("as_text", [True, False], ids=["str body", "bytes body"])
def test_a_body_not_marked_base64_is_read_as_it_is(as_text: bool) -> None:
    raw = body(b"x", b"y")
    event = {"headers": {"X-Amz-Firehose-Source-Arn": ARN}, "body": raw.decode() if as_text else raw}
    request = parse_request(event, Limits())
    assert request.request_id == "req-1" and request.lines == [b"x", b"y"]
    assert source_arn(event) == ARN  # header names are matched case-insensitively
    assert list(request.texts) == [base64.b64encode(b"x").decode(), base64.b64encode(b"y").decode()]


def test_the_decoded_size_is_checked_too() -> None:
    raw = body(b"x" * 3_000)
    limit = len(raw) - 1
    encoded = base64.b64encode(raw).decode()
    assert len(encoded) <= limit * 4 // 3 + 4  # passes the cheap check on the base64 text
    with pytest.raises(ProtocolError) as caught:
        parse_request({"body": encoded, "isBase64Encoded": True}, Limits(max_body_bytes=limit))
    assert caught.value.status == 413 and f"limit {limit}" in caught.value.message
    with pytest.raises(ProtocolError) as plain:
        parse_request({"body": raw.decode()}, Limits(max_body_bytes=limit))
    assert plain.value.status == 413


def test_multi_tenant_trust_stores_every_organization() -> None:
    lines = [line("a", "acme"), line("b", "globex")]
    texts = [base64.b64encode(x).decode() for x in lines]
    batch = build_batch("req-1", texts, lines, Trust(multi_tenant=True), now_ms=NOW_MS)
    assert batch.rows == 2 and batch.dead_rows == 0
    assert read_block(batch.body)["organization_id"] == ("String", ["acme", "globex"])
    single = build_batch("req-1", texts, lines, Trust("acme"), now_ms=NOW_MS)
    assert single.rows == 1 and single.dead_codes == {"organization_mismatch": 1}


def test_settings_from_the_lambda_environment() -> None:
    settings = IngestSettings.from_env(
        {
            "BXB_CLICKHOUSE_DATABASE": "billing",
            "BXB_ORGANIZATION_ID": "acme",
            "BXB_FIREHOSE_SOURCE_ARN": ARN,
            **REQUIRED,
        }
    )
    assert (settings.database, settings.source_arn) == ("billing", ARN)
    assert settings.trust == Trust(organization_id="acme", multi_tenant=False)
    defaults = IngestSettings.from_env({"BXB_MULTI_TENANT": "true", "BXB_ORGANIZATION_ID": "", **REQUIRED})
    assert (defaults.database, defaults.source_arn, defaults.trust.multi_tenant) == ("bxb", "", True)


# Record texts: base64 of any bytes, or any text at all (escaped or raw non-ASCII in the body).
_record_texts = st.lists(
    st.one_of(st.binary(max_size=40).map(lambda b: base64.b64encode(b).decode()), st.text(max_size=12)),
    max_size=8,
)


@settings(deadline=None)
@given(_record_texts, st.booleans())
def test_the_fast_reading_gives_what_the_careful_one_gives(texts, ascii_body):
    """msgspec's base64 (every record sound) and the per-record pybase64 path agree on every request."""
    raw = json.dumps(
        {"requestId": "r", "timestamp": 1, "records": [{"data": t} for t in texts]}, ensure_ascii=ascii_body
    )
    request = parse_request({"body": raw}, Limits())
    assert request.lines == decode_records(texts)
    assert list(request.texts) == texts and len(request.texts) == len(texts)


def test_a_body_that_is_not_utf8_is_400() -> None:
    with pytest.raises(ProtocolError) as caught:
        parse_request({"body": '{"requestId": "\ud800", "timestamp": 1, "records": []}'}, Limits())
    assert caught.value.status == 400 and "UTF-8" in caught.value.message
