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
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3

JOURNAL_FILE = "requests.journal"
ENDPOINT_FILE = "endpoint.json"
# moto and most emulators accept any keys; real ones are never needed locally.
LOCAL_CREDENTIALS = {"aws_access_key_id": "local", "aws_secret_access_key": "local"}


class AwsStandInError(RuntimeError):
    """The local AWS stand-in cannot start as asked (its port is taken, its state is in use)."""


class MotoServer:
    """moto's server on 127.0.0.1, one request at a time (``journal.SerializedApp``): in a child
    process (its CPU work then never holds this process's GIL; GetRecords alone costs ~5
    CPU-seconds per million events) or a thread. In a child, ``journal`` keeps its state on
    disk across restarts, and ``port`` asks for a fixed port (the previous run's, on resume).
    """

    def __init__(self, mode: str = "process", *, port: int = 0, journal: Path | None = None) -> None:
        self.child: subprocess.Popen[str] | None = None
        self.server: Any = None
        self.replayed = 0
        if mode == "process":
            command = [sys.executable, "-m", "bxb_stream.local.moto_child", "--port", str(port)]
            if journal is not None:
                command += ["--journal", str(journal)]
            if journal is not None:
                journal.parent.mkdir(parents=True, exist_ok=True)
            log = journal.with_name("moto.log").open("ab") if journal is not None else subprocess.DEVNULL
            self.child = subprocess.Popen(
                command,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log,
                text=True,
                start_new_session=True,  # Ctrl-C in a terminal reaches us, not moto: we stop it after flushing
            )
            if journal is not None:
                log.close()  # type: ignore[union-attr]
            assert self.child.stdout is not None
            line = self.child.stdout.readline()  # printed once it listens
            ready = json.loads(line) if line.startswith("{") else {"error": f"moto exited ({line.strip()!r})"}
            if "error" in ready:
                self.stop()
                raise AwsStandInError(f"the local AWS stand-in did not start: {ready['error']}")
            port, self.replayed = int(ready["port"]), int(ready.get("replayed", 0))
        elif mode == "thread":
            if journal is not None:
                raise ValueError("moto keeps a journal in process mode only")
            from bxb_stream.local.moto_child import build

            self.server, _, _ = build(port)
            threading.Thread(target=self.server.serve_forever, name="moto", daemon=True).start()
            port = self.server.server_address[1]
        else:
            raise ValueError(f"moto runs as a 'process' or a 'thread', not {mode!r}")
        self.endpoint = f"http://127.0.0.1:{port}"

    def exited(self) -> int | None:
        """The child's exit code if it has died (it never stops on its own), else None."""
        return self.child.poll() if self.child is not None else None

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
            self.server.shutdown()
            self.server.server_close()
            self.server = None


@dataclass
class AwsStandIn:
    endpoint_url: str | None = None  # None: start moto's server on 127.0.0.1
    region: str = "us-east-1"
    moto_mode: str = "process"
    state_dir: Path | None = None  # our moto journals its state here, and listens on the same port again
    _server: MotoServer | None = field(default=None, repr=False)

    def start(self) -> AwsStandIn:
        if self.endpoint_url is None:
            port, journal = 0, None
            if self.state_dir is not None:
                journal = self.state_dir / JOURNAL_FILE
                saved = self.state_dir / ENDPOINT_FILE
                if saved.exists():  # the S3Queue tables in ClickHouse name this port
                    port = int(json.loads(saved.read_text())["port"])
            self._server = MotoServer(self.moto_mode, port=port, journal=journal)
            self.endpoint_url = self._server.endpoint
            if self.state_dir is not None:
                port = int(self.endpoint_url.rsplit(":", 1)[1])
                (self.state_dir / ENDPOINT_FILE).write_text(json.dumps({"port": port}))
        # Child code (boto3 clients built elsewhere, the S3Queue named collection) reads these.
        os.environ.setdefault("AWS_ACCESS_KEY_ID", LOCAL_CREDENTIALS["aws_access_key_id"])
        os.environ.setdefault("AWS_SECRET_ACCESS_KEY", LOCAL_CREDENTIALS["aws_secret_access_key"])
        os.environ.setdefault("AWS_DEFAULT_REGION", self.region)
        return self

    @property
    def started_moto(self) -> bool:
        return self._server is not None

    def check(self) -> None:
        """Raise ``AwsStandInError`` if the moto we started has died: nothing can go on without it."""
        code = self._server.exited() if self._server is not None else None
        if code is not None:
            raise AwsStandInError(f"the local AWS stand-in (moto) exited unexpectedly with code {code}")

    @property
    def replayed(self) -> int:
        """Requests our moto replayed from its journal at start (0 on a fresh start)."""
        return self._server.replayed if self._server is not None else 0

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
