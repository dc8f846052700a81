"""Expected failures of a command, as one line for the person who ran it.

A command raises ``UserError`` for a problem it detects itself, and lets the known
exceptions of the libraries it calls propagate; ``explain`` turns both into one line.
Anything else is a bug, and keeps its traceback.

Exception types that belong to other packages are matched here by type (imported lazily,
so a command that never touches ClickHouse does not import its client), never by editing
those packages: ``ConfigError`` (bxb_runtime.config), ``PlanError`` (bxb_stream.plan),
``ClientUrlError`` (bxb_stream.clickhouse.client), ``UsageQueryError``
(bxb_stream.clickhouse.usage), ``PeriodError`` and ``LateError`` (bxb_stream.clickhouse.periods,
.late), ``MigrationError`` (bxb_stream.clickhouse.migrations),
``EngineError`` (bxb_stream.clickhouse.engine), ``HookConfigError`` (bxb_runtime.transform.hooks),
the local query relay's refusals
(``bxb_stream.local.relay``), clickhouse-connect's errors, botocore's, and OS errors.
"""

from __future__ import annotations

import os
import re
import urllib.error
from collections.abc import Callable
from typing import Any

MAX_MESSAGE_CHARS = 400


class UserError(Exception):
    """A failure the user can fix; the message names the cause. ``exit_code`` defaults to 2."""

    def __init__(self, message: str, exit_code: int = 2) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def explain(exc: BaseException, target: str | None = None) -> str | None:
    """One line naming the cause of an expected failure, or None for an unexpected one.

    ``target`` is what the command talks to (its ``--url``), for errors that do not say."""
    for kind, describe in _known(target):
        if isinstance(exc, kind):
            text = describe(exc)
            if text is not None:
                return one_line(text)
    return None


def one_line(text: str) -> str:
    first = " ".join(str(text).split())
    return first if len(first) <= MAX_MESSAGE_CHARS else first[: MAX_MESSAGE_CHARS - 3] + "..."


def _os_error(exc: OSError) -> str:
    if exc.filename is not None:
        target = os.fsdecode(exc.filename)
        return f"cannot open {target}: {exc.strerror or exc}"
    return str(exc)


def _url_error(exc: urllib.error.URLError, target: str | None = None) -> str:
    where = _redact(target) if target else "the server"
    if isinstance(exc.reason, ConnectionRefusedError):
        return f"connection refused by {where}: is it running?"
    return f"cannot reach {where}: {exc.reason}"


def _redact(url: str) -> str:
    from bxb_stream.clickhouse.client import redact

    return redact(url)


def _boto(exc: BaseException) -> str | None:
    from bxb_stream.aws_errors import classify

    failure = classify(exc)
    if failure is None:
        return None
    operation = getattr(exc, "operation_name", None)
    if failure.message and failure.code not in failure.message and operation:
        return f"AWS {operation}: {failure.code}: {failure.message}"
    return failure.message


_CH_SERVER_ERROR = re.compile(r"(Code: \d+\. DB::Exception: .*?)(?: \(version [^)]*\))?\s*$", re.S)
_CH_URL = re.compile(r"\((https?://[^)\s]+)\)\s*$")
_CH_NETWORK = (
    ("connection refused", "connection refused"),
    ("name or service not known", "unknown host"),
    ("failed to resolve", "unknown host"),
    ("timed out", "timed out"),
    ("max retries exceeded", "cannot connect"),
)


def _clickhouse(exc: BaseException) -> str:
    """clickhouse-connect's message holds the whole HTTP exchange: keep the server's own
    error (``Code: N. DB::Exception: ...``), or the network cause and the server's URL."""
    text = " ".join(str(exc).split())
    lower = text.lower()
    for needle, cause in _CH_NETWORK:
        if needle in lower:
            url = _CH_URL.search(text)
            return f"ClickHouse{' at ' + url.group(1) if url else ''} is unreachable: {cause}"
    server = _CH_SERVER_ERROR.search(text)
    return f"ClickHouse: {server.group(1) if server else text}"


def _relay(exc: BaseException) -> str | None:
    """The local query relay's own refusals: a failed query, a URL off loopback."""
    if _raised_in(exc, "bxb_stream.local.relay"):
        return f"the local query relay: {exc}"
    return None


def _raised_in(exc: BaseException, module: str) -> bool:
    tb = exc.__traceback__
    last = None
    for _ in range(1000):  # bounded walk to the innermost frame
        if tb is None:
            break
        last, tb = tb, tb.tb_next
    return last is not None and last.tb_frame.f_globals.get("__name__") == module


Describe = Callable[[Any], str | None]


def _known(target: str | None) -> list[tuple[Any, Describe]]:
    """(exception type(s), describer) rows, first match wins; a describer may decline with None."""
    from bxb_runtime.config import ConfigError
    from bxb_stream.plan.errors import PlanError

    table: list[tuple[Any, Describe]] = [
        (UserError, str),
        (ConfigError, str),
        (PlanError, str),
    ]
    table += _optional("bxb_stream.clickhouse.client", "ClientUrlError", str)
    table += _optional("bxb_stream.clickhouse.usage", "UsageQueryError", str)
    table += _optional("bxb_stream.clickhouse.periods", "PeriodError", str)
    table += _optional("bxb_stream.clickhouse.late", "LateError", str)
    table += _optional("bxb_stream.clickhouse.migrations", "MigrationError", str)
    table += _optional("bxb_stream.clickhouse.engine", "EngineError", str)
    table += _optional("bxb_runtime.transform.hooks", "HookConfigError", lambda exc: f"hooks: {exc}")
    table += _optional("clickhouse_connect.driver.exceptions", "Error", _clickhouse)
    table += _optional("botocore.exceptions", "BotoCoreError", _boto)
    table += _optional("botocore.exceptions", "ClientError", _boto)
    table += [
        (urllib.error.URLError, lambda exc: _url_error(exc, target)),
        ((RuntimeError, ValueError), _relay),
        (OSError, _os_error),  # FileNotFoundError, PermissionError, ConnectionError, ...
    ]
    return table


def _optional(module: str, name: str, describe: Describe) -> list[tuple[Any, Describe]]:
    """A row for ``module.name`` if that module is already imported: if it is not, nothing
    the command ran can have raised its exceptions."""
    import sys

    loaded = sys.modules.get(module)
    kind = getattr(loaded, name, None) if loaded is not None else None
    return [(kind, describe)] if kind is not None else []
