"""Unit tests are pure: no subprocess, no network (moto, loopback servers), no embedded engine.

The guard below makes a unit test that reaches for one fail at once, naming what it did; the
collection check in tests/conftest.py refuses the moto and chDB fixtures before anything runs.
"""

from __future__ import annotations

import socket
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest

from bxb_stream.clickhouse import engine


def _refuse(what: str) -> Any:
    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError(f"a unit test may not {what}: move it to tests/functional or tests/e2e")

    return refuse


@pytest.fixture(autouse=True)
def _pure(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(subprocess.Popen, "__init__", _refuse("start a subprocess"))
    monkeypatch.setattr(socket.socket, "connect", _refuse("open a network connection"))
    monkeypatch.setattr(socket.socket, "bind", _refuse("listen on a socket"))
    monkeypatch.setattr(engine.Engine, "client", _refuse("use the embedded ClickHouse engine"))
    yield
