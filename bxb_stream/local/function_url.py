"""Serve a Lambda function-URL handler on a loopback port.

An HTTP request becomes the event a function URL would deliver (payload
format 2.0: lower-cased headers, base64 body, ``isBase64Encoded``), and the
handler's response dict becomes the HTTP response.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler
from typing import Any

from bxb_stream.local.loopback import LoopbackServer

Handler = Callable[[dict[str, Any]], dict[str, Any]]
MAX_REQUEST_BYTES = 6 * 1024 * 1024 + 64 * 1024  # a function URL's buffered-invoke ceiling, plus headers


class FunctionUrlServer(LoopbackServer):
    def __init__(self, handler: Handler, host: str = "127.0.0.1", port: int = 0) -> None:
        super().__init__(_request_handler(handler), host, port)

    @property
    def url(self) -> str:
        return super().url + "/"


def to_event(method: str, path: str, headers: dict[str, str], body: bytes) -> dict[str, Any]:
    return {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": path,
        "rawQueryString": "",
        "headers": {k.lower(): v for k, v in headers.items()},
        "requestContext": {"http": {"method": method, "path": path, "protocol": "HTTP/1.1", "sourceIp": "127.0.0.1"}},
        "body": base64.b64encode(body).decode("ascii"),
        "isBase64Encoded": True,
    }


def _request_handler(handler: Handler) -> type[BaseHTTPRequestHandler]:
    class FunctionUrl(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            if length > MAX_REQUEST_BYTES:
                self._reply({"statusCode": 413, "body": "request too large for a function URL"})
                return
            body = self.rfile.read(length)
            event = to_event("POST", self.path, dict(self.headers.items()), body)
            try:
                response = handler(event)
            except Exception as exc:  # a crashed function answers 502, as a function URL does
                response = {"statusCode": 502, "body": f"function error: {type(exc).__name__}"}
            self._reply(response)

        def _reply(self, response: dict[str, Any]) -> None:
            raw = response.get("body") or ""
            payload = base64.b64decode(raw) if response.get("isBase64Encoded") else raw.encode()
            self.send_response(int(response.get("statusCode", 200)))
            for name, value in (response.get("headers") or {}).items():
                if name.lower() != "content-length":
                    self.send_header(name, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: Any) -> None:  # quiet: the pipeline reports its own progress
            return

    return FunctionUrl
