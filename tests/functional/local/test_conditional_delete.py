"""An endpoint without conditional DeleteObject (LocalStack): detected, rendered as 'keep', moved by us.

moto implements ``DeleteObject`` with ``If-Match``, so it cannot produce LocalStack's answer. The
stand-in here is a loopback HTTP proxy in front of the session's moto server that answers every
DELETE carrying a precondition header exactly as LocalStack 2026.3 does (501 NotImplemented) and
forwards everything else, so boto3, the Firehose runners and ClickHouse's S3Queue all meet the
real failure on the wire. ``make test-localstack`` runs the same checks against LocalStack itself.
"""

from __future__ import annotations

import http.client
import itertools
import logging
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

import boto3
import pytest

from bxb_runtime.clickhouse import tables as t
from bxb_runtime.layout import ARCHIVE_PREFIX, EVENTS_PREFIX, partition_prefix
from bxb_stream.deployment import PipelineConfig
from bxb_stream.local import capabilities
from bxb_stream.local.archiver import ProcessedArchiver
from bxb_stream.local.pipeline import LocalOptions, LocalPipeline
from bxb_stream.local.reconcile import reconcile

_names = itertools.count()
_PRECONDITIONS = ("if-match", "x-amz-if-match-last-modified-time", "x-amz-if-match-size")
# LocalStack's body for it (its S3 provider raises NotImplemented with the header's name).
_NOT_IMPLEMENTED = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>NotImplemented</Code>'
    b"<Message>A header you provided implies functionality that is not implemented</Message>"
    b"<Header>If-Match</Header></Error>"
)


class NoConditionalDeleteProxy:
    """moto behind a proxy that refuses conditional deletes the way LocalStack does (or as ``answer`` says)."""

    def __init__(self, upstream: str, answer: tuple[int, bytes] = (501, _NOT_IMPLEMENTED)) -> None:
        self.upstream = urlsplit(upstream).netloc
        self.answer = answer
        self.refused = 0  # conditional deletes answered with ``answer``
        self.deleted: list[str] = []  # paths of the plain deletes passed on
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _handle(self) -> None:
                body = self._body()
                if self.command == "DELETE" and any(h in _PRECONDITIONS for h in map(str.lower, self.headers)):
                    proxy.refused += 1
                    status_code, payload = proxy.answer
                    self._reply(status_code, [("Content-Type", "application/xml")], payload)
                    return
                if self.command == "DELETE":
                    proxy.deleted.append(self.path)
                upstream = http.client.HTTPConnection(proxy.upstream, timeout=60)
                try:
                    upstream.request(self.command, self.path, body=body, headers=dict(self.headers))
                    response = upstream.getresponse()
                    payload = response.read()
                    headers = [(k, v) for k, v in response.getheaders() if k.lower() not in _HOP_BY_HOP]
                    self._reply(response.status, headers, payload, head=self.command == "HEAD")
                finally:
                    upstream.close()

            def _body(self) -> bytes:
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    chunks = []
                    for _ in range(1_000_000):  # bounded: one chunk per line pair
                        size = int(self.rfile.readline().split(b";")[0], 16)
                        chunk = self.rfile.read(size)
                        self.rfile.readline()
                        if size == 0:
                            break
                        chunks.append(chunk)
                    del self.headers["Transfer-Encoding"]
                    body = b"".join(chunks)
                    self.headers["Content-Length"] = str(len(body))
                    return body
                return self.rfile.read(int(self.headers.get("Content-Length") or 0))

            def _reply(self, code: int, headers: list[tuple[str, str]], payload: bytes, head: bool = False) -> None:
                self.send_response_only(code)
                for key, value in headers:
                    if key.lower() != "content-length":
                        self.send_header(key, value)
                length = next((v for k, v in headers if k.lower() == "content-length"), str(len(payload)))
                self.send_header("Content-Length", length if head else str(len(payload)))
                self.end_headers()
                if not head:
                    self.wfile.write(payload)

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _handle

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
        self.thread.start()
        self.endpoint_url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def s3(self) -> Any:
        return boto3.client("s3", endpoint_url=self.endpoint_url, region_name="us-east-1")

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


_HOP_BY_HOP = ("connection", "keep-alive", "transfer-encoding", "date", "server")


@pytest.fixture
def proxy(moto_s3) -> Iterator[NoConditionalDeleteProxy]:
    standin = NoConditionalDeleteProxy(moto_s3.endpoint_url)
    yield standin
    standin.stop()


def _bucket(s3: Any) -> str:
    name = f"bxb-probe-test-{next(_names)}"
    s3.create_bucket(Bucket=name)
    return name


def _keys(s3: Any, bucket: str, prefix: str = "") -> list[str]:
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return sorted(obj["Key"] for page in pages for obj in page.get("Contents", []))


def test_moto_honours_conditional_delete_so_the_probe_says_supported(moto_s3):
    s3 = moto_s3.client()
    bucket = _bucket(s3)
    assert capabilities.probe(s3, bucket) == capabilities.EndpointCapabilities(conditional_delete=True)
    assert _keys(s3, bucket) == []  # the probe object is gone


def test_a_501_to_a_conditional_delete_reads_as_unsupported_and_the_probe_cleans_up(proxy, moto_s3):
    bucket = _bucket(moto_s3.client())
    assert capabilities.probe(proxy.s3(), bucket) == capabilities.EndpointCapabilities(conditional_delete=False)
    assert proxy.refused == 1
    assert len(proxy.deleted) == 1 and capabilities.PROBE_PREFIX in proxy.deleted[0]  # the plain delete
    assert _keys(moto_s3.client(), bucket) == []


def test_any_other_answer_to_the_probe_is_an_error_that_names_it(moto_s3):
    forbidden = (403, b"<Error><Code>AccessDenied</Code><Message>not for you</Message></Error>")
    standin = NoConditionalDeleteProxy(moto_s3.endpoint_url, answer=forbidden)
    try:
        bucket = _bucket(moto_s3.client())
        with pytest.raises(capabilities.ProbeError, match="answered 403 AccessDenied: not for you"):
            capabilities.probe(standin.s3(), bucket)
    finally:
        standin.stop()


def test_the_archiver_moves_each_processed_object_to_its_archive_key_once(clickhouse_stack):
    stack = clickhouse_stack(move_processed=False)
    at = datetime(2026, 3, 1, 10, tzinfo=UTC)
    event = {"organization_id": "acme", "external_customer_id": "c", "code": "api_calls", "timestamp": at}
    event |= {"properties": "{}", "value": 1.0, "decimal_value": None, "ingested_at": at, "arrived_at": at}
    prefix = partition_prefix("acme", "2026-03-01", "10")
    keys = [stack.put_events(prefix, [{**event, "transaction_id": f"t{i}"}]) for i in range(3)]
    stack.wait_processed(keys)
    before = {key: stack.s3.get_object(Bucket=stack.bucket, Key=key)["Body"].read() for key in keys}
    archiver = ProcessedArchiver(stack.s3, stack.bucket, stack.client, stack.database)

    assert archiver.move_processed().moved == 3
    assert _keys(stack.s3, stack.bucket, EVENTS_PREFIX) == []
    assert _keys(stack.s3, stack.bucket, ARCHIVE_PREFIX) == sorted(ARCHIVE_PREFIX + key for key in keys)
    for key, body in before.items():
        assert stack.s3.get_object(Bucket=stack.bucket, Key=ARCHIVE_PREFIX + key)["Body"].read() == body
    assert archiver.move_processed().moved == 0  # nothing moved twice
    stack.wait_count(t.EVENTS_RAW, 3)  # and nothing read twice


def test_a_pipeline_on_an_endpoint_without_conditional_delete_keeps_moves_and_reconciles(proxy, tmp_path, caplog):
    n = next(_names)
    pipeline = LocalPipeline(
        PipelineConfig(name=f"nocond-t{n}"),
        LocalOptions(
            events=1_500,
            paths=("s3",),
            data_dir=tmp_path / "run",
            endpoint_url=proxy.endpoint_url,
            database=f"nocond_t{n}",
            buffer_seconds=0.5,
            timeout_s=120,
            shards=2,
            conflict_share=0.0,
        ),
    )
    with caplog.at_level(logging.WARNING, logger="bxb_stream.local.pipeline"):
        pipeline.start()
    try:
        assert pipeline.capabilities.conditional_delete is False
        assert "answers a conditional DeleteObject with 501" in caplog.text
        ddl = pipeline.client.query(f"SHOW CREATE TABLE nocond_t{n}.{t.EVENTS_QUEUE}").result_rows[0][0]
        assert "after_processing = 'keep'" in ddl and "'move'" not in ddl
        pipeline.produce()
        assert pipeline.wait_settled()
        result = reconcile(
            pipeline.expected, pipeline.produced.events, pipeline.counts("s3"), pipeline.usage_rows("s3")
        )
        assert [line for line in result.lines if not line.ok] == [] and not result.usage_mismatches
        assert result.produced == 1_500
    finally:
        pipeline.stop()
        pipeline.client.command(f"DROP DATABASE IF EXISTS nocond_t{n} SYNC")
    s3 = boto3.client("s3", endpoint_url=f"http://{proxy.upstream}", region_name="us-east-1")
    bucket = pipeline.targets.bucket
    archived = _keys(s3, bucket, ARCHIVE_PREFIX + EVENTS_PREFIX)
    # Nothing is left where a queue would read it again, and every object S3Queue took is archived.
    assert _keys(s3, bucket, EVENTS_PREFIX) == []
    assert len(archived) == len(pipeline.archiver.moved) > 0
    assert proxy.refused == 1  # the probe's; with 'keep', S3Queue never tries a conditional delete
