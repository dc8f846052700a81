"""Kinesis, S3 and Secrets Manager for a local run: moto's server on loopback, or any
AWS-compatible endpoint (LocalStack, a separate moto) given by ``--endpoint-url`` or
``AWS_ENDPOINT_URL``. Whatever the endpoint, the stream, bucket and secret are created
there when missing.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3

# moto and most emulators accept any keys; real ones are never needed locally.
LOCAL_CREDENTIALS = {"aws_access_key_id": "local", "aws_secret_access_key": "local"}


# The moto child: serve on a free loopback port, print it, stop when stdin closes.
_MOTO_CHILD = """
import sys
from moto.server import ThreadedMotoServer
server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
server.start()
print(server.get_host_and_port()[1], flush=True)
sys.stdin.read()
server.stop()
"""


class MotoServer:
    """moto's server on 127.0.0.1: in a child process (its CPU work then never holds this
    process's GIL; GetRecords alone costs ~5 CPU-seconds per million events) or a thread."""

    def __init__(self, mode: str = "process") -> None:
        self.child: subprocess.Popen[str] | None = None
        self.server: Any = None
        if mode == "process":
            self.child = subprocess.Popen(
                [sys.executable, "-c", _MOTO_CHILD],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                text=True,
            )
            assert self.child.stdout is not None
            port = int(self.child.stdout.readline())  # printed once it listens
        elif mode == "thread":
            from moto.server import ThreadedMotoServer

            self.server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
            self.server.start()
            port = self.server.get_host_and_port()[1]
        else:
            raise ValueError(f"moto runs as a 'process' or a 'thread', not {mode!r}")
        self.endpoint = f"http://127.0.0.1:{port}"

    def peak_rss_mb(self) -> float:
        """The child's high-water RSS (0 in thread mode: it is part of this process's)."""
        if self.child is None:
            return 0.0
        for line in Path(f"/proc/{self.child.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        return 0.0

    def cpu_seconds(self) -> float:
        """The child's user + system CPU time so far (0 in thread mode)."""
        if self.child is None:
            return 0.0
        fields = Path(f"/proc/{self.child.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime

    def stop(self) -> None:
        if self.child is not None:
            assert self.child.stdin is not None
            self.child.stdin.close()
            try:
                self.child.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.child.kill()
                self.child.wait(timeout=10)
            self.child = None
        if self.server is not None:
            self.server.stop()
            self.server = None


@dataclass
class AwsStandIn:
    endpoint_url: str | None = None  # None: start moto's server on 127.0.0.1
    region: str = "us-east-1"
    moto_mode: str = "process"
    _server: MotoServer | None = field(default=None, repr=False)

    def start(self) -> AwsStandIn:
        if self.endpoint_url is None:
            self._server = MotoServer(self.moto_mode)
            self.endpoint_url = self._server.endpoint
        # Child code (boto3 clients built elsewhere, the S3Queue named collection) reads these.
        os.environ.setdefault("AWS_ACCESS_KEY_ID", LOCAL_CREDENTIALS["aws_access_key_id"])
        os.environ.setdefault("AWS_SECRET_ACCESS_KEY", LOCAL_CREDENTIALS["aws_secret_access_key"])
        os.environ.setdefault("AWS_DEFAULT_REGION", self.region)
        return self

    @property
    def started_moto(self) -> bool:
        return self._server is not None

    def client(self, service: str) -> Any:
        return boto3.client(service, endpoint_url=self.endpoint_url, region_name=self.region)

    def ensure_stream(self, name: str, shards: int, timeout_s: float = 30.0) -> None:
        kinesis = self.client("kinesis")
        with contextlib.suppress(kinesis.exceptions.ResourceInUseException):  # it exists: use it
            kinesis.create_stream(StreamName=name, ShardCount=shards)
        deadline = time.monotonic() + timeout_s
        for _ in range(int(timeout_s / 0.2) + 1):
            status = kinesis.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]["StreamStatus"]
            if status == "ACTIVE":
                return
            if time.monotonic() > deadline:
                break
            time.sleep(0.2)
        raise TimeoutError(f"stream {name} did not become ACTIVE within {timeout_s}s")

    def ensure_bucket(self, name: str) -> None:
        s3 = self.client("s3")
        with contextlib.suppress(s3.exceptions.BucketAlreadyOwnedByYou, s3.exceptions.BucketAlreadyExists):
            s3.create_bucket(Bucket=name)

    def ensure_secret(self, name: str, value: dict[str, str]) -> str:
        """The secret's ARN; its value is set to ``value`` (a new version if it existed)."""
        secrets = self.client("secretsmanager")
        try:
            return secrets.create_secret(Name=name, SecretString=json.dumps(value))["ARN"]
        except secrets.exceptions.ResourceExistsException:
            return secrets.put_secret_value(SecretId=name, SecretString=json.dumps(value))["ARN"]

    def peak_rss_mb(self) -> float:
        return self._server.peak_rss_mb() if self._server is not None else 0.0

    def cpu_seconds(self) -> float:
        """moto's CPU time so far, when it runs in its own process."""
        return self._server.cpu_seconds() if self._server is not None else 0.0

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None
