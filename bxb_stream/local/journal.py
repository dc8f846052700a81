"""moto's server for a local run: one request at a time, and its state kept on disk.

**One request at a time.** moto's backends are not safe for concurrent requests: Kinesis
``put_record`` gives two concurrent PutRecords the same sequence number, so one record
overwrites the other (two producers at once lost about 1% of their events), and GetRecords
iterates a shard's OrderedDict that a PutRecords may be appending to ("OrderedDict mutated
during iteration", a 500). ``SerializedApp`` holds one lock around moto's own work; request
bodies are read before it and responses written after it, so only CPU work moto does under
the GIL anyway is serialised.

**State on disk.** moto keeps everything in memory. Its own recorder (``MOTO_ENABLE_RECORDING``)
logs every request, reads included, as base64 JSON, and replays them over HTTP at the time of
the replay. The ``Journal`` keeps only the requests that changed state and succeeded, in the
order they were applied (it is written under the same lock), with raw bodies and every
reading of moto's clock they made (``MotoClock``), and ``replay`` applies them in-process,
handing moto the same readings. Kinesis sequence numbers and ApproximateArrivalTimestamps
therefore come back exactly, so a Firehose checkpoint still names the same record, and the
transform judges lateness as before.

Durability: an entry is written and flushed before its response is sent, so it survives the
process being killed (SIGKILL), not the machine losing power (no fsync). A torn last entry (a
kill mid-write) was never answered, so its client retries it; replay drops it. The journal
grows with everything ever put (Kinesis data and S3 objects); ``--fresh`` starts a new one.
"""

from __future__ import annotations

import io
import json
import threading
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime
from pathlib import Path
from typing import IO, Any

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]

_READS = ("Get", "List", "Describe")  # X-Amz-Target operations that change nothing
_READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# moto modules whose objects carry a creation time that clients see.
_CLOCKED_MODULES = ("moto.kinesis.models", "moto.s3.models")


def changes_state(environ: dict[str, Any]) -> bool:
    """True for a request that may change moto's state (JSON-protocol writes; REST writes)."""
    target = environ.get("HTTP_X_AMZ_TARGET")
    if target:
        return not target.rsplit(".", 1)[-1].startswith(_READS)
    return environ.get("REQUEST_METHOD", "GET") not in _READ_METHODS


def _read_body(environ: dict[str, Any]) -> bytes:
    """The whole request body; the environ gets a fresh stream over it (chunked or not)."""
    stream = environ["wsgi.input"]
    length = environ.get("CONTENT_LENGTH")
    if length:
        body = stream.read(int(length))
    elif environ.get("wsgi.input_terminated"):  # chunked: werkzeug de-chunks up to the end
        body = stream.read()
    else:
        body = b""
    environ["wsgi.input"] = io.BytesIO(body)
    environ["CONTENT_LENGTH"] = str(len(body))
    environ.pop("HTTP_TRANSFER_ENCODING", None)
    return body


class Journal:
    """An append-only file of state-changing requests: a JSON header line, then the raw body."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._out: IO[bytes] | None = None
        self.entries = 0

    def entries_on_disk(self) -> Iterator[tuple[dict[str, Any], bytes]]:
        """Every complete entry, in order; stops at a torn tail and cuts it off the file."""
        if not self.path.exists():
            return
        good = 0
        with self.path.open("rb") as f:
            while True:
                line = f.readline()
                if not line.endswith(b"\n"):
                    break
                try:
                    header = json.loads(line)
                except ValueError:
                    break
                body = f.read(header["n"])
                if len(body) != header["n"]:
                    break
                good = f.tell()
                yield header, body
        if good != self.path.stat().st_size:
            with self.path.open("r+b") as f:
                f.truncate(good)

    def append(self, environ: dict[str, Any], body: bytes, clock: list[str]) -> None:
        if self._out is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._out = self.path.open("ab")
        fields = {k: v for k, v in environ.items() if isinstance(v, str) and k != "CONTENT_LENGTH"}
        header = json.dumps({"n": len(body), "environ": fields, "clock": clock}).encode()
        self._out.write(header + b"\n" + body)
        self._out.flush()  # to the OS before the client hears back: survives a kill
        self.entries += 1

    def close(self) -> None:
        if self._out is not None:
            self._out.close()
            self._out = None


class MotoClock:
    """moto's ``utcnow`` (creation and arrival times), read while serving and played back on replay."""

    def __init__(self) -> None:
        import importlib

        self.readings: list[str] | None = None  # collected while a journalled request runs
        self.playback: Iterator[str] | None = None  # handed out while a journalled request replays
        self._modules = [importlib.import_module(name) for name in _CLOCKED_MODULES]
        self._real = self._modules[0].utcnow
        for module in self._modules:
            module.utcnow = self.utcnow

    def utcnow(self) -> datetime:
        if self.playback is not None:
            reading = next(self.playback, None)
            if reading is not None:
                return datetime.fromisoformat(reading)
        now = self._real()
        if self.readings is not None:
            self.readings.append(now.isoformat())
        return now


class SerializedApp:
    """moto's WSGI app, one request at a time; successful state changes go to the journal."""

    def __init__(self, app: WsgiApp, journal: Journal | None = None, clock: MotoClock | None = None) -> None:
        self.app = app
        self.journal = journal
        self.clock = clock
        self.lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        body = _read_body(environ)
        record = self.journal is not None and changes_state(environ)
        answer: list[Any] = []

        def capture(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Callable[[bytes], None]:
            answer[:] = [status, headers, exc_info]
            return chunks.append

        chunks: list[bytes] = []
        with self.lock:
            readings: list[str] = []
            if record and self.clock is not None:
                self.clock.readings = readings
            try:
                result = self.app(environ, capture)
                try:
                    chunks.extend(result)
                finally:
                    close = getattr(result, "close", None)
                    if close is not None:
                        close()
            finally:
                if self.clock is not None:
                    self.clock.readings = None
            if record and answer and answer[0][:1] == "2":
                assert self.journal is not None
                self.journal.append(environ, body, readings)
        start_response(*answer)
        return chunks


def replay(app: WsgiApp, journal: Journal, clock: MotoClock) -> int:
    """Apply every journalled request to a fresh moto, handing it the clock readings it made then."""
    from werkzeug.test import EnvironBuilder

    base = EnvironBuilder().get_environ()
    applied = 0
    for header, body in journal.entries_on_disk():
        environ = dict(base)
        environ.update(header["environ"])
        environ["wsgi.input"] = io.BytesIO(body)
        environ["CONTENT_LENGTH"] = str(len(body))
        clock.playback = iter(header["clock"])
        try:
            for _ in app(environ, lambda *_: None):
                pass
        finally:
            clock.playback = None
        applied += 1
    return applied
