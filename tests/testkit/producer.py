"""Fixtures for the producer tests (unit and functional): a moto server on loopback, and a scripted Kinesis stub.

moto plays Kinesis for the happy paths; it never throttles, so throttling and
partial failures come from ``StubKinesis``, which scripts PutRecords answers.
"""

from __future__ import annotations

import itertools
from typing import Any

import pytest

_names = itertools.count()


@pytest.fixture(autouse=True)
def _fake_aws(monkeypatch: pytest.MonkeyPatch) -> None:
    # Never reach real AWS: fake credentials, a fixed region, no ambient endpoint.
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.delenv("AWS_ENDPOINT_URL_KINESIS", raising=False)


@pytest.fixture
def kinesis(moto_endpoint: str) -> Any:
    import boto3

    return boto3.client("kinesis", endpoint_url=moto_endpoint, region_name="us-east-1")


@pytest.fixture
def make_stream(kinesis: Any) -> Any:
    def make(shards: int = 2) -> str:
        name = f"events-{next(_names)}"
        kinesis.create_stream(StreamName=name, ShardCount=shards)
        return name

    return make


def read_stream(client: Any, stream: str) -> list[dict[str, Any]]:
    """Every record in the stream, shard by shard, in sequence order (bounded reads)."""
    out: list[dict[str, Any]] = []
    for shard in client.list_shards(StreamName=stream)["Shards"]:
        iterator = client.get_shard_iterator(
            StreamName=stream, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        for _ in range(1000):
            resp = client.get_records(ShardIterator=iterator, Limit=10_000)
            for rec in resp["Records"]:
                out.append({"shard": shard["ShardId"], "pk": rec["PartitionKey"], "data": rec["Data"]})
            if not resp["Records"] or not resp.get("NextShardIterator"):
                break
            iterator = resp["NextShardIterator"]
    return out


@pytest.fixture
def read() -> Any:
    return read_stream


def client_error(code: str, status: int = 400, message: str = "scripted") -> Exception:
    from botocore.exceptions import ClientError

    return ClientError(
        {"Error": {"Code": code, "Message": message}, "ResponseMetadata": {"HTTPStatusCode": status}}, "PutRecords"
    )


class StubKinesis:
    """PutRecords with scripted answers. Each call takes the next step of ``script``:

    - ``None``: every entry succeeds;
    - an exception: the whole call raises it;
    - a dict ``{index: error_code}``: those entries fail, the rest succeed.

    ``stored`` keeps what "Kinesis" acknowledged, so tests can count duplicates and losses.
    """

    def __init__(self, script: list[Any] | None = None) -> None:
        self.script = list(script or [])
        self.calls: list[list[dict[str, Any]]] = []
        self.stored: list[dict[str, Any]] = []

    def put_records(self, *, Records: list[dict[str, Any]], **stream: Any) -> dict[str, Any]:
        assert set(stream) <= {"StreamName", "StreamARN"}
        self.calls.append([dict(r) for r in Records])
        step = self.script.pop(0) if self.script else None
        if isinstance(step, Exception):
            raise step
        failing = step or {}
        results = []
        for i, rec in enumerate(Records):
            if i in failing:
                results.append({"ErrorCode": failing[i], "ErrorMessage": f"scripted {failing[i]}"})
            else:
                self.stored.append(dict(rec))
                results.append({"SequenceNumber": str(len(self.stored)), "ShardId": "shardId-000000000000"})
        return {"FailedRecordCount": len(failing), "Records": results}

    def list_shards(self, **_: Any) -> dict[str, Any]:
        return {
            "Shards": [
                {
                    "ShardId": "shardId-000000000000",
                    "HashKeyRange": {"StartingHashKey": "0"},
                    "SequenceNumberRange": {"StartingSequenceNumber": "1"},
                }
            ]
        }


@pytest.fixture
def stub() -> type[StubKinesis]:
    return StubKinesis


@pytest.fixture
def err() -> Any:
    return client_error
