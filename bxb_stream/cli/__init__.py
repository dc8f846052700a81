"""bxb-stream: the ingestion pipeline for bxb's usage-based billing events.

Each subcommand lives in its own module in this package and exposes
``register(subparsers)``, which adds its parser and sets ``func`` to a
function taking the parsed args and returning an exit code. Modules are
discovered, so adding a command means adding a module.

Failures, one pattern for every command: a command raises ``UserError`` for a
problem it finds itself and lets the known exceptions of what it calls propagate;
``main`` prints each as one line, ``bxb-stream <command>: error: <cause>``, on stderr
and exits non-zero (2 unless the error says otherwise). Only a bug shows a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import pkgutil
import sys
from collections.abc import Sequence

from bxb_stream.cli._failures import UserError, explain
from bxb_stream.cli._parser import Parser
from bxb_stream.local import relay as _relay  # noqa: F401  (registers local+http:// for every --url)

__all__ = ["Parser", "UserError", "build_parser", "dispatch", "main"]


def build_parser() -> Parser:
    parser = Parser(prog="bxb-stream", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        module.register(sub)
    return parser


# Libraries that log an error they also raise: the raised one is reported, once, by main.
QUIET_LOGGERS = ("clickhouse_connect",)


def main(argv: Sequence[str] | None = None) -> int:
    return dispatch(build_parser().parse_args(argv))


def dispatch(args: argparse.Namespace) -> int:
    """Run the parsed command; an expected failure becomes one line on stderr and a non-zero exit."""
    for name in QUIET_LOGGERS:
        logging.getLogger(name).addHandler(logging.NullHandler())
    try:
        return int(args.func(args) or 0)
    except Exception as exc:
        message = explain(exc, target=getattr(args, "url", None))
        if message is None:
            raise  # a bug: keep the traceback
        print(f"{_prog(args)}: error: {message}", file=sys.stderr)
        return exc.exit_code if isinstance(exc, UserError) else 2


def _prog(args: argparse.Namespace) -> str:
    """``bxb-stream <command> [<action>]``, as typed (an action is the ``<command>_command`` value)."""
    command = getattr(args, "command", "") or ""
    action = getattr(args, f"{command}_command", "") or ""
    return " ".join(part for part in ("bxb-stream", command, action) if part)


if __name__ == "__main__":
    sys.exit(main())
