"""The loopback adapter that serves a function-URL handler over HTTP."""

from __future__ import annotations

import base64
import gzip
import json
import urllib.error
import urllib.request

import pytest

from bxb_stream.local.function_url import FunctionUrlServer


def post(url: str, body: bytes, headers: dict[str, str]) -> tuple[int, dict, bytes]:
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), err.read()


def test_request_becomes_a_function_url_event_and_the_response_comes_back():
    seen = []

    def handler(event):
        seen.append(event)
        return {"statusCode": 200, "headers": {"Content-Type": "application/json"}, "body": json.dumps({"ok": True})}

    with FunctionUrlServer(handler) as server:
        assert server.url.startswith("http://127.0.0.1:")
        body = gzip.compress(b'{"requestId":"r"}')
        status, headers, payload = post(
            server.url, body, {"X-Amz-Firehose-Request-Id": "r", "Content-Encoding": "gzip"}
        )
    assert status == 200 and json.loads(payload) == {"ok": True}
    assert headers["Content-Length"] == str(len(payload))
    event = seen[0]
    assert event["isBase64Encoded"] is True and base64.b64decode(event["body"]) == body
    assert event["headers"]["x-amz-firehose-request-id"] == "r"  # lower-cased, as function URLs do
    assert event["requestContext"]["http"]["method"] == "POST"


def test_status_codes_pass_through_and_a_crash_is_502():
    answers = iter([{"statusCode": 503, "body": "down"}])

    def handler(event):
        try:
            return next(answers)
        except StopIteration:
            raise RuntimeError("boom") from None

    with FunctionUrlServer(handler) as server:
        assert post(server.url, b"{}", {})[0] == 503
        assert post(server.url, b"{}", {})[0] == 502


def test_only_loopback():
    with pytest.raises(ValueError, match="loopback"):
        FunctionUrlServer(lambda e: {}, host="0.0.0.0")
