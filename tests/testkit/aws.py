"""A fresh stream and bucket on the session's moto server, with the reads tests need of them.

Shared by the error-output and redrive tests, which both put records through a local
Firehose and then read back what it wrote."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import boto3

CREDS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing", "region_name": "us-east-1"}


@dataclass
class Moto:
    endpoint: str
    kinesis: Any
    s3: Any

    @classmethod
    def at(cls, endpoint: str) -> Moto:
        return cls(
            endpoint,
            boto3.client("kinesis", endpoint_url=endpoint, **CREDS),
            boto3.client("s3", endpoint_url=endpoint, **CREDS),
        )

    def stream_and_bucket(self) -> tuple[str, str]:
        stream, bucket = f"s-{uuid.uuid4().hex[:10]}", f"b-{uuid.uuid4().hex[:10]}"
        self.kinesis.create_stream(StreamName=stream, ShardCount=1)
        self.s3.create_bucket(Bucket=bucket)
        return stream, bucket

    def put(self, stream: str, datas: list[bytes]) -> None:
        entries = [{"Data": d, "PartitionKey": f"pk{i}"} for i, d in enumerate(datas)]
        assert self.kinesis.put_records(StreamName=stream, Records=entries)["FailedRecordCount"] == 0

    def keys(self, bucket: str) -> set[str]:
        pages = self.s3.get_paginator("list_objects_v2").paginate(Bucket=bucket)
        return {o["Key"] for page in pages for o in page.get("Contents", [])}

    def stream_data(self, stream: str) -> list[bytes]:
        shard = self.kinesis.list_shards(StreamName=stream)["Shards"][0]["ShardId"]
        iterator = self.kinesis.get_shard_iterator(StreamName=stream, ShardId=shard, ShardIteratorType="TRIM_HORIZON")
        return [r["Data"] for r in self.kinesis.get_records(ShardIterator=iterator["ShardIterator"])["Records"]]
