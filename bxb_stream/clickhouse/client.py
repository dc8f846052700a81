"""One way to get a clickhouse-connect client from a URL: a server, or the embedded engine.

- ``https://user:password@host:8443`` (or http) : a ClickHouse server
- ``chdb:///abs/path``                          : the embedded engine on that directory
- ``embedded``                                  : the embedded engine on ``$BXB_CLICKHOUSE_DATA_DIR``
                                                  (default ``.bxb/clickhouse``)
- ``local+http://127.0.0.1:PORT``               : read-only queries through a running
                                                  ``bxb-stream local --serve`` (it owns the engine);
                                                  ``bxb_stream.local.relay`` registers this scheme
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from bxb_stream.clickhouse import engine

DEFAULT_DATA_DIR = ".bxb/clickhouse"


class ClientUrlError(ValueError):
    pass


# More schemes, registered by the tooling that serves them (the local query relay): the client
# module never imports upward.
_SCHEMES: dict[str, Callable[[str], Any]] = {}


def register(scheme: str, factory: Callable[[str], Any]) -> None:
    """``connect`` builds a client for ``scheme://...`` URLs with ``factory(url)``."""
    _SCHEMES[scheme] = factory


def connect(url: str) -> Any:
    parts = urlsplit(url)
    if url == "embedded":
        return engine.start(os.environ.get("BXB_CLICKHOUSE_DATA_DIR", DEFAULT_DATA_DIR)).client()
    if parts.scheme == "chdb":
        path = parts.path if not parts.netloc else ""
        if not path or parts.netloc in ("memory", ":memory:"):
            raise ClientUrlError(f"the embedded engine needs a directory, like chdb:///tmp/bxb-ch; got {url!r}")
        return engine.start(path).client()
    if parts.scheme in _SCHEMES:
        return _SCHEMES[parts.scheme](url)
    if parts.scheme in ("http", "https") and parts.hostname:
        import clickhouse_connect

        return clickhouse_connect.get_client(dsn=url)
    raise ClientUrlError(
        "--url must be http(s)://[user:password@]host:port, chdb:///path, embedded or local+http://127.0.0.1:PORT; "
        f"got {redact(url)!r}"
    )


def redact(url: str) -> str:
    """``url`` without its password, for messages and logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = f"{parts.username}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))
