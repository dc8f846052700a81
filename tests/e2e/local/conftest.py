"""``bxb-stream local --serve`` as a user runs it: a separate process, driven through its banner,
its status endpoint, its query relay and signals. Each server gets its own data dir and a
``cdk.json`` with its own name, so streams and buckets never mix, even on a shared endpoint."""

from __future__ import annotations

import itertools
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[3]
_servers = itertools.count()


def clean_env() -> dict[str, str]:
    """This environment without AWS settings: what a new user's shell has."""
    return {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}


@dataclass
class Served:
    proc: subprocess.Popen[str]
    log: Path
    data_dir: Path
    config: Path
    banner: dict[str, str] = field(default_factory=dict)

    @property
    def output(self) -> str:
        return self.log.read_text()

    def wait_banner(self, timeout: float = 180.0) -> Served:
        deadline = time.monotonic() + timeout
        for _ in range(int(timeout / 0.1) + 1):
            text = self.output
            if "runner health" in text and "try :" in text:
                break
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"no banner (exit {self.proc.poll()}):\n{text}")
            time.sleep(0.1)
        lines = text.splitlines()
        try_at = next(i for i, line in enumerate(lines) if line.lstrip().startswith("try :"))
        self.banner = {
            "endpoint": re.search(r"Kinesis/S3 endpoint : (\S+)", text).group(1),
            "stream": re.search(r"stream (\S+),", text).group(1),
            "relay": re.search(r"ClickHouse \(read\)\s+: (\S+)", text).group(1),
            "databases": re.search(r"databases (.+)", text).group(1).strip(),
            "status": re.search(r"runner health\s+: (\S+)", text).group(1),
            "produce": lines[try_at].split("try :", 1)[1].strip(),
            "wait": lines[try_at + 1].strip(),
            "usage": lines[try_at + 2].strip(),
        }
        return self

    @property
    def databases(self) -> list[str]:
        return self.banner["databases"].split(", ")

    def status(self) -> dict[str, Any]:
        with urllib.request.urlopen(self.banner["status"], timeout=10) as response:
            return json.loads(response.read())

    def wait_status(self, predicate: Callable[[dict[str, Any]], bool], timeout: float = 60.0) -> dict[str, Any]:
        """Poll the runners' health until ``predicate`` holds for every path (bounded); returns the status."""
        deadline = time.monotonic() + timeout
        for _ in range(int(timeout / 0.05) + 1):
            status = self.status()
            if all(predicate(h) for h in status.values()):
                return status
            if time.monotonic() > deadline:
                break
            time.sleep(0.05)
        raise AssertionError(f"runners never reached the state wanted: {status}")

    def run(self, command: str, timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
        """A banner command, run by a shell as printed, from the repository root, without AWS settings."""
        return subprocess.run(
            command, shell=True, cwd=ROOT, env=clean_env(), capture_output=True, text=True, timeout=timeout
        )

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def wait_exit(self, timeout: float = 120.0) -> int:
        return self.proc.wait(timeout=timeout)

    def moto_child(self) -> int | None:
        """The pid of our moto child, if the server started one."""
        for task in Path(f"/proc/{self.proc.pid}/task").glob("*/children"):
            for pid in task.read_text().split():
                if "moto_child" in Path(f"/proc/{pid}/cmdline").read_text():
                    return int(pid)
        return None


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Callable[..., Served]]:
    started: list[Served] = []
    config = tmp_path / "cdk.json"
    context = json.loads((ROOT / "cdk.json").read_text())["context"]
    context["bxb:name"] = f"serve-{os.getpid()}-{next(_servers)}"
    config.write_text(json.dumps({"context": context}))

    def start(*args: str, data_dir: Path | None = None) -> Served:
        data_dir = data_dir or tmp_path / "data"
        log = tmp_path / f"server-{len(started)}.log"
        command = [sys.executable, "-m", "bxb_stream", "local", "--serve", "--data-dir", str(data_dir)]
        command += ["--config", str(config), *args]
        with log.open("w") as out:
            proc = subprocess.Popen(command, cwd=ROOT, env=clean_env(), stdout=out, stderr=subprocess.STDOUT, text=True)
        served = Served(proc, log, data_dir, config)
        started.append(served)
        return served.wait_banner()

    yield start
    for served in started:
        if served.proc.poll() is None:
            served.proc.send_signal(signal.SIGKILL)
            served.proc.wait(timeout=30)


# ---------------------------------------------------------------------------- events and their truth

DAY = timedelta(days=1)


def write_events(path: Path, run: str, n: int, customers: int = 5) -> Counter[tuple[str, str]]:
    """``n`` distinct valid events over the last hour; returns (events, sum of value) by (customer, code)."""
    now = int(time.time())
    truth: Counter[tuple[str, str]] = Counter()
    with path.open("w") as f:
        for i in range(n):
            customer, code = f"cus_{i % customers}", ("api_calls", "seats")[i % 2]
            event = {"transaction_id": f"{run}-{i}", "external_customer_id": customer, "code": code,
                     "timestamp": now - i % 3_000, "value": i % 10}  # fmt: skip
            f.write(json.dumps(event) + "\n")
            truth[(customer, code)] += 1
    return truth


def produce_command(served: Served, events: Path, *extra: str) -> list[str]:
    banner = served.banner
    command = [sys.executable, "-m", "bxb_stream", "produce", "--endpoint-url", banner["endpoint"]]
    return [*command, "--stream", banner["stream"], "--file", str(events), "--legacy-limits", "--quiet", *extra]


def usage_by_pair(served: Served, database: str, pairs: list[tuple[str, str]]) -> Counter[tuple[str, str]]:
    """Event counts per (customer, code) over three days around now, through the query relay."""
    from bxb_stream.clickhouse.usage import query_usage
    from bxb_stream.local.relay import RelayClient

    client = RelayClient(served.banner["relay"])
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return Counter(
        {
            pair: query_usage(client, database, "default", pair[0], pair[1], today - DAY, today + 2 * DAY).event_count
            for pair in pairs
        }
    )


def wait_usage(served: Served, truth: Counter[tuple[str, str]], timeout: float = 180.0) -> None:
    """Until every database's usage equals ``truth`` exactly (bounded); then assert it."""
    deadline = time.monotonic() + timeout
    pairs = sorted(truth)
    for _ in range(int(timeout / 0.5) + 1):
        seen = {db: usage_by_pair(served, db, pairs) for db in served.databases}
        if all(counts == truth for counts in seen.values()) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    for db, counts in seen.items():
        assert counts == truth, (db, counts - truth, truth - counts)


@pytest.fixture
def events_kit() -> Any:
    import types

    return types.SimpleNamespace(
        write_events=write_events, produce_command=produce_command, wait_usage=wait_usage, clean_env=clean_env
    )
