"""local.journal: which requests are journalled, one request at a time, a torn tail, replay."""

from __future__ import annotations

import io
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from bxb_stream.local.journal import Journal, SerializedApp, changes_state


def environ(method: str, path: str = "/", target: str = "", body: bytes = b"") -> dict[str, Any]:
    env = {"REQUEST_METHOD": method, "PATH_INFO": path, "RAW_URI": path, "QUERY_STRING": ""}
    env.update({"wsgi.input": io.BytesIO(body), "CONTENT_LENGTH": str(len(body))})
    if target:
        env["HTTP_X_AMZ_TARGET"] = target
    return env


@pytest.mark.parametrize(
    ("method", "target", "changes"),
    [
        ("POST", "Kinesis_20131202.PutRecords", True),
        ("POST", "Kinesis_20131202.CreateStream", True),
        ("POST", "Kinesis_20131202.GetRecords", False),
        ("POST", "Kinesis_20131202.GetShardIterator", False),
        ("POST", "Kinesis_20131202.ListShards", False),
        ("POST", "Kinesis_20131202.DescribeStreamSummary", False),
        ("POST", "secretsmanager.PutSecretValue", True),
        ("POST", "secretsmanager.GetSecretValue", False),
        ("PUT", "", True),  # S3 PutObject, CopyObject, CreateBucket
        ("DELETE", "", True),
        ("POST", "", True),  # S3 DeleteObjects
        ("GET", "", False),
        ("HEAD", "", False),
    ],
)
def test_only_state_changes_are_journalled(method: str, target: str, changes: bool) -> None:
    assert changes_state(environ(method, target=target)) is changes


def test_one_request_at_a_time_and_only_successes_are_journalled(tmp_path: Path) -> None:
    active, peak = [0], [0]
    lock = threading.Lock()

    def app(env: dict[str, Any], start_response: Any) -> list[bytes]:
        with lock:
            active[0] += 1
            peak[0] = max(peak[0], active[0])
        time.sleep(0.01)  # overlap, were it allowed
        with lock:
            active[0] -= 1
        status = "400 Bad Request" if env["PATH_INFO"] == "/bad" else "200 OK"
        start_response(status, [])
        return [env["wsgi.input"].read()]

    journal = Journal(tmp_path / "j")
    served = SerializedApp(app, journal)
    answers: list[bytes] = []

    def call(i: int) -> None:
        body = f"body-{i}".encode()
        answers.append(b"".join(served(environ("PUT", "/bad" if i % 5 == 0 else f"/k{i}", body=body), lambda *a: None)))

    threads = [threading.Thread(target=call, args=(i,)) for i in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert peak[0] == 1 and len(answers) == 20
    journal.close()
    entries = list(Journal(tmp_path / "j").entries_on_disk())
    assert len(entries) == 16  # the four 400s changed nothing
    assert {body for _, body in entries} == {f"body-{i}".encode() for i in range(20) if i % 5}


def test_a_torn_tail_is_cut_off(tmp_path: Path) -> None:
    path = tmp_path / "j"
    journal = Journal(path)
    for i in range(3):
        journal.append(environ("PUT", f"/k{i}"), f"body-{i}".encode(), [])
    journal.close()
    whole = path.stat().st_size
    with path.open("ab") as f:
        f.write(b'{"n": 100, "environ": {}, "clock": []}\nonly part of the bo')  # killed mid-write
    assert [body for _, body in Journal(path).entries_on_disk()] == [b"body-0", b"body-1", b"body-2"]
    assert path.stat().st_size == whole
