"""Fixtures for the Firehose runner tests: a moto server (Kinesis + S3), a loopback HTTP
endpoint with scripted answers, a small deterministic transform, and event helpers."""

from __future__ import annotations

import base64
import gzip
import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import boto3
import pytest

from bxb_runtime.config import EventRules
from bxb_stream.firehose.settings import (
    DeliveryStreamSettings,
    HttpSettings,
    ProcessorSettings,
    S3Settings,
    SourceSettings,
)

CREDS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing", "region_name": "us-east-1"}


@dataclass
class Aws:
    endpoint: str
    kinesis: Any
    s3: Any

    def new_stream(self, shards: int = 1) -> str:
        name = f"s-{uuid.uuid4().hex[:10]}"
        self.kinesis.create_stream(StreamName=name, ShardCount=shards)
        return name

    def new_bucket(self) -> str:
        name = f"b-{uuid.uuid4().hex[:10]}"
        self.s3.create_bucket(Bucket=name)
        return name

    def put(self, stream: str, datas: list[bytes], partition_key: str | None = None) -> None:
        for start in range(0, len(datas), 500):
            chunk = datas[start : start + 500]
            entries = [{"Data": d, "PartitionKey": partition_key or f"pk{start + i}"} for i, d in enumerate(chunk)]
            response = self.kinesis.put_records(StreamName=stream, Records=entries)
            assert response["FailedRecordCount"] == 0

    def keys(self, bucket: str, prefix: str = "") -> list[str]:
        out: list[str] = []
        for page in self.s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            out.extend(o["Key"] for o in page.get("Contents", []))
        return sorted(out)

    def get(self, bucket: str, key: str) -> bytes:
        return self.s3.get_object(Bucket=bucket, Key=key)["Body"].read()

    def error_lines(self, bucket: str, prefix: str) -> list[dict[str, Any]]:
        return [json.loads(line) for key in self.keys(bucket, prefix) for line in self.get(bucket, key).splitlines()]

    def parquet_rows(self, bucket: str, prefix: str) -> list[dict[str, Any]]:
        import io

        import pyarrow.parquet as pq

        rows: list[dict[str, Any]] = []
        for key in self.keys(bucket, prefix):
            if key.endswith(".parquet"):
                rows.extend(pq.read_table(io.BytesIO(self.get(bucket, key))).to_pylist())
        return rows


@pytest.fixture
def aws(moto_endpoint: str) -> Aws:
    return Aws(
        moto_endpoint,
        boto3.client("kinesis", endpoint_url=moto_endpoint, **CREDS),
        boto3.client("s3", endpoint_url=moto_endpoint, **CREDS),
    )


# ---------------------------------------------------------------------------- events and a test transform

NOW_MS = int(time.time() * 1000)


def event(i: int, org: str = "org-a", **over: Any) -> dict[str, Any]:
    """A normalised event, as the transform emits it (every non-nullable column present)."""
    body = {
        "transaction_id": f"tx-{i}",
        "external_customer_id": f"cust-{i % 7}",
        "code": "api_calls",
        "timestamp": NOW_MS,
        "properties": "{}",
        "value": float(i),
        "organization_id": org,
        "ingested_at": NOW_MS,
        "arrived_at": NOW_MS,
    }
    body.update(over)
    return body


def line(i: int, **over: Any) -> bytes:
    return json.dumps(event(i, **over)).encode()


# The real Transformer's rules for runner tests: multi-tenant, so each event names its organization.
RULES = EventRules(organization_id="", multi_tenant=True)


def raw_line(i: int, org: str = "org-a") -> bytes:
    """A producer's event (what the real Transformer takes): timestamp in seconds, no pipeline fields."""
    return json.dumps(
        {
            "transaction_id": f"tx-{i}",
            "external_customer_id": f"cust-{i % 7}",
            "code": "api_calls",
            "timestamp": NOW_MS // 1000,
            "value": float(i),
            "organization_id": org,
        }
    ).encode()


class EchoTransform:
    """A small, honest transform for contract tests: JSON objects pass through as Ok with partition
    keys; data starting with ``drop`` is Dropped, ``fail`` is ProcessingFailed. Counts its calls.

    Kept where a test needs what the real Transformer cannot give on demand: a verdict scripted by the
    record's bytes (Dropped/ProcessingFailed side by side with Ok), fixed partition keys to assert
    prefixes, output lines exactly one byte longer than the input (size-flush arithmetic that counts
    records per object), or its call and batch counts. Tests about delivery alone use the real Transformer
    (``rules=kit.RULES`` with ``kit.raw_line``)."""

    def __init__(self) -> None:
        self.calls = 0
        self.batch_sizes: list[int] = []
        self.seen: list[dict[str, Any]] = []

    def __call__(self, event: dict[str, Any]) -> dict[str, Any]:
        self.calls += 1
        self.batch_sizes.append(len(event["records"]))
        out = []
        for record in event["records"]:
            self.seen.append(record)
            data = base64.b64decode(record["data"])
            if data.startswith(b"drop"):
                out.append({"recordId": record["recordId"], "result": "Dropped", "data": record["data"]})
                continue
            if data.startswith(b"fail"):
                out.append({"recordId": record["recordId"], "result": "ProcessingFailed", "data": record["data"]})
                continue
            obj = json.loads(data)
            keys = {
                "organization_id": str(obj.get("organization_id", "none")),
                "date": "2026-01-02",
                "hour": "03",
            }
            payload = base64.b64encode(json.dumps(obj).encode() + b"\n").decode()
            out.append(
                {"recordId": record["recordId"], "result": "Ok", "data": payload, "metadata": {"partitionKeys": keys}}
            )
        return {"records": out}


# ---------------------------------------------------------------------------- settings


def s3_settings(stream: str, bucket: str, endpoint: str, **s3_over: Any) -> DeliveryStreamSettings:
    return DeliveryStreamSettings(
        name=f"fh-{stream}",
        source=SourceSettings(stream_name=stream, endpoint_url=endpoint, poll_interval_s=0.05),
        processor=ProcessorSettings(buffer_interval_s=0),
        s3=S3Settings(bucket=bucket, **{"buffer_interval_s": 0, **s3_over}),
    )


def http_settings(stream: str, bucket: str, endpoint: str, url: str, **http_over: Any) -> DeliveryStreamSettings:
    return DeliveryStreamSettings(
        name=f"fh-http-{stream}",
        source=SourceSettings(stream_name=stream, endpoint_url=endpoint, poll_interval_s=0.05),
        processor=ProcessorSettings(buffer_interval_s=0),
        http=HttpSettings(
            url=url,
            access_key="k3y",
            common_attributes={"env": "test"},
            backup_bucket=bucket,
            **{"buffer_interval_s": 0, "retry_duration_s": 30, **http_over},
        ),
    )


# ---------------------------------------------------------------------------- loopback HTTP endpoint


@dataclass
class Received:
    headers: dict[str, str]
    raw: bytes
    body: dict[str, Any]


@dataclass
class Endpoint:
    """Answers with the scripted statuses in order, then 200; records every request."""

    url: str = ""
    script: list[int] = field(default_factory=list)
    received: list[Received] = field(default_factory=list)
    wrong_request_id: int = 0  # answer this many 200s with a foreign requestId
    lock: threading.Lock = field(default_factory=threading.Lock)

    def answer(self, request: Received) -> tuple[int, bytes]:
        with self.lock:
            self.received.append(request)
            status = self.script.pop(0) if self.script else 200
            request_id = request.body["requestId"]
            if status == 200 and self.wrong_request_id:
                self.wrong_request_id -= 1
                request_id = "someone-else"
        body = {"requestId": request_id, "timestamp": int(time.time() * 1000)}
        if status != 200:
            body["errorMessage"] = f"scripted {status}"
        return status, json.dumps(body).encode()

    @property
    def records(self) -> list[bytes]:
        return [base64.b64decode(r["data"]) for req in self.received for r in req.body["records"]]


@pytest.fixture
def endpoint() -> Iterator[Endpoint]:
    state = Endpoint()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers["Content-Length"]))
            text = gzip.decompress(raw) if self.headers.get("Content-Encoding") == "gzip" else raw
            status, body = state.answer(Received(dict(self.headers.items()), raw, json.loads(text)))
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}/ingest"
    yield state
    server.shutdown()
    server.server_close()


def until(predicate: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


@pytest.fixture
def kit() -> Any:
    """The helpers above, for test modules (pytest's importlib mode does not make conftest importable)."""
    import types

    return types.SimpleNamespace(
        event=event,
        line=line,
        raw_line=raw_line,
        RULES=RULES,
        EchoTransform=EchoTransform,
        s3_settings=s3_settings,
        http_settings=http_settings,
        until=until,
        NOW_MS=NOW_MS,
    )
