"""The moto server of ``bxb-stream local``, run as ``python -m bxb_stream.local.moto_child``.

Serves moto on 127.0.0.1 one request at a time (``journal.SerializedApp``), with its state
replayed from and journalled to ``--journal`` when given. Prints one JSON line once it
listens (``{"port": N, "replayed": N}``, or ``{"error": "..."}``) and stops when its stdin
closes: the parent closes it to stop us, and so does the parent's death, even by SIGKILL.
It ignores SIGINT and SIGTERM sent to the terminal's process group, so the parent's
shutdown can still flush to it.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import logging
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

from bxb_stream.local.journal import Journal, MotoClock, SerializedApp, replay

BIND_WAIT_S = 10.0  # a port (or journal) held by the previous run's child, still shutting down


class ChildError(RuntimeError):
    pass


def build(port: int, journal_path: Path | None = None) -> tuple[Any, Journal | None, int]:
    """A bound werkzeug server for moto (serve it with ``serve_forever``), its journal, and the entries replayed."""
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
    from werkzeug.serving import make_server

    app = DomainDispatcherApplication(create_backend_app)
    journal = clock = None
    replayed = 0
    if journal_path is not None:
        _lock(journal_path.with_name(journal_path.name + ".lock"))
        journal, clock = Journal(journal_path), MotoClock()
        replayed = replay(app, journal, clock)
    deadline = time.monotonic() + BIND_WAIT_S
    while True:
        try:
            server = make_server(
                "127.0.0.1", port, SerializedApp(app, journal, clock), threaded=True, request_handler=MotoRequestHandler
            )
            break
        except OSError as exc:
            if port == 0 or time.monotonic() > deadline:
                raise ChildError(f"cannot listen on 127.0.0.1:{port}: {exc.strerror or exc}") from exc
            time.sleep(0.2)
    server.daemon_threads = True
    return server, journal, replayed


def _lock(path: Path) -> None:
    """Hold an exclusive lock on the journal for the life of this process (released at exit)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = path.open("w")
    deadline = time.monotonic() + BIND_WAIT_S
    while True:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            _held.append(handle)
            return
        except BlockingIOError as exc:
            if time.monotonic() > deadline:
                raise ChildError(f"another bxb-stream local is using {path.parent}") from exc
            time.sleep(0.2)


_held: list[Any] = []


def main(argv: list[str] | None = None) -> int:
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no line per request
    parser = argparse.ArgumentParser(prog="moto_child")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--journal", type=Path)
    args = parser.parse_args(argv)
    try:
        server, journal, replayed = build(args.port, args.journal)
    except (ChildError, OSError) as exc:
        print(json.dumps({"error": str(exc)}), flush=True)
        return 1
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    print(json.dumps({"port": server.server_address[1], "replayed": replayed}), flush=True)
    sys.stdin.read()
    server.shutdown()
    if journal is not None:
        journal.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
