"""ClickHouse access to a ``bxb-stream local --serve`` process from another terminal.

chDB is an in-process engine: only the serving process can open its data directory.
So that process answers, on loopback only, ``POST /query`` (JSON ``{"sql", "parameters"}``,
read-only statements) and ``POST /command`` (any statement: what an operator's commands
run, such as closing a period or accepting a late event). ``RelayClient`` offers the two
methods the CLI's queries use, ``query(sql, parameters).result_rows`` and
``command(sql, parameters)``: ``bxb-stream usage|periods|late|clickhouse ... --url
local+http://127.0.0.1:PORT`` use it.
``GET /status`` answers the serving process's status as JSON (the health of each
Firehose runner), when it gave one.
``POST /insert`` takes rows as Arrow (``RelayClient.insert_arrow``, for ``bxb-stream
replay archive``).
"""

from __future__ import annotations

import base64
import json
import re
import threading
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from http.server import BaseHTTPRequestHandler
from typing import Any

from bxb_stream.clickhouse import client as clickhouse_client
from bxb_stream.local.loopback import LoopbackServer

SCHEME = "local+http"
_READ_ONLY = ("select", "with", "show", "describe", "exists")
_INSERT_ARROW = re.compile(r"INSERT INTO ([A-Za-z_][A-Za-z0-9_.]*) FORMAT Arrow")


class RelayServer(LoopbackServer):
    scheme = SCHEME

    def __init__(
        self,
        client: Any,
        port: int = 0,
        status: Callable[[], Any] | None = None,
        settle: Callable[[float], Any] | None = None,
        lock: threading.Lock | None = None,
    ) -> None:
        """``settle(timeout_s)`` answers ``POST /settle`` (``bxb-stream local wait``); ``lock`` guards
        ``client``'s one session, when the serving process uses it too."""
        super().__init__(_handler(client, lock or threading.Lock(), status, settle), port=port)

    @property
    def status_url(self) -> str:
        return "http://" + self.url.split("://", 1)[1] + "/status"


@dataclass
class Result:
    result_rows: list[tuple[Any, ...]]


class RelayClient:
    def __init__(self, url: str, timeout_s: float = 60.0) -> None:
        if not url.startswith(f"{SCHEME}://127.0.0.1:") and not url.startswith(f"{SCHEME}://localhost:"):
            raise ValueError(f"the local query relay listens on loopback only, got {url!r}")
        self._base = "http://" + url.split("://", 1)[1].rstrip("/")
        self._timeout = timeout_s

    def query(self, sql: str, parameters: dict[str, Any] | None = None) -> Result:
        payload = self._post("query", sql, parameters)
        readers = [_reader(name) for name in payload.get("types", [])]
        return Result([tuple(read(v) for read, v in zip(readers, row, strict=True)) for row in payload["rows"]])

    def command(self, sql: str, parameters: dict[str, Any] | None = None) -> Any:
        return self._post("command", sql, parameters)["result"]

    def settle(self, timeout_s: float) -> dict[str, Any]:
        """Wait (in the serving process) until what is in the stream now is billed or accounted for."""
        saved, self._timeout = self._timeout, timeout_s + 60
        try:
            return self._post("settle", "", None, {"timeout_s": timeout_s})
        finally:
            self._timeout = saved

    def insert_arrow(self, table: str, arrow_table: Any, settings: dict[str, Any] | None = None) -> int:
        """Insert a pyarrow Table into ``table`` (as clickhouse-connect's ``insert_arrow``); returns its rows."""
        import pyarrow as pa

        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, arrow_table.schema) as writer:
            writer.write_table(arrow_table)
        arrow = base64.b64encode(sink.getvalue().to_pybytes()).decode()
        extra = {"arrow": arrow, "settings": settings or {}}
        return int(self._post("insert", f"INSERT INTO {table} FORMAT Arrow", None, extra)["result"])

    def _post(
        self, verb: str, sql: str, parameters: dict[str, Any] | None, extra: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        request_body = {"sql": sql, "parameters": parameters or {}, **(extra or {})}
        body = json.dumps(request_body, default=_jsonable).encode()
        request = urllib.request.Request(f"{self._base}/{verb}", data=body, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=self._timeout) as response:
                payload = json.loads(response.read())
        except urllib.error.HTTPError as err:  # the relay explains a refused statement in its body
            payload = json.loads(err.read() or b"{}") or {"error": f"HTTP {err.code}"}
        if "error" in payload:
            raise RuntimeError(f"{verb} failed: {payload['error']}")
        return payload


def _reader(type_name: str) -> Any:
    """JSON value -> the Python value clickhouse-connect gives for a column of this type."""
    bare = type_name.removeprefix("Nullable(").removeprefix("SimpleAggregateFunction(")
    if bare.startswith(("DateTime", "Date")):
        return lambda v: None if v is None else datetime.fromisoformat(v)
    if "Decimal" in bare:
        return lambda v: None if v is None else Decimal(v)
    return lambda v: v


def _insert_arrow(client: Any, lock: threading.Lock, sql: str, request: dict[str, Any]) -> int:
    """``INSERT INTO <table> FORMAT Arrow`` with the rows as a base64 Arrow IPC stream."""
    import pyarrow as pa

    statement = _INSERT_ARROW.fullmatch(sql)
    if statement is None:
        raise ValueError("/insert takes INSERT INTO <table> FORMAT Arrow")
    rows = pa.ipc.open_stream(base64.b64decode(request["arrow"])).read_all()
    with lock:
        client.insert_arrow(statement.group(1), rows, settings=request.get("settings") or None)
    return rows.num_rows


def _jsonable(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(getattr(value, "summary", None), dict):  # a command with no result (SYSTEM ...): its summary
        return value.summary
    if isinstance(value, datetime | date):
        return value.isoformat()
    return value


def _handler(
    client: Any, lock: threading.Lock, status: Callable[[], Any] | None, settle: Callable[[float], Any] | None
) -> type[BaseHTTPRequestHandler]:
    class Relay(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path.rstrip("/") == "/status" and status is not None:
                self._answer(200, status())
            else:
                self._answer(404, {"error": "GET /status, or POST /query, /command or /insert"})

        def do_POST(self) -> None:
            try:
                request = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
                sql, parameters = str(request["sql"]), request.get("parameters") or {}
                payload: dict[str, Any]
                if self.path == "/query":
                    if not sql.lstrip().lower().startswith(_READ_ONLY):
                        raise PermissionError("only read-only statements go to /query; use /command")
                    with lock:  # one session: clickhouse-connect clients are not shared across threads
                        result = client.query(sql, parameters=parameters)
                    payload = {
                        "rows": [[_jsonable(v) for v in row] for row in result.result_rows],
                        # So the client reads datetimes and decimals back as what they were.
                        "types": [t.name for t in result.column_types],
                    }
                elif self.path == "/command":
                    with lock:
                        payload = {"result": _jsonable(client.command(sql, parameters=parameters))}
                elif self.path == "/settle" and settle is not None:
                    payload = settle(float(request.get("timeout_s", 300)))
                elif self.path == "/insert":
                    payload = {"result": _insert_arrow(client, lock, sql, request)}
                else:
                    raise LookupError(f"no such endpoint {self.path!r}: /query, /command or /insert")
            except Exception as exc:  # the caller gets the reason; the server keeps serving
                payload, code = {"error": f"{type(exc).__name__}: {exc}"}, 400
            else:
                code = 200
            self._answer(code, payload)

        def _answer(self, code: int, payload: Any) -> None:
            data = json.dumps(payload).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            return

    return Relay


clickhouse_client.register(SCHEME, RelayClient)  # clickhouse.client.connect("local+http://...")
