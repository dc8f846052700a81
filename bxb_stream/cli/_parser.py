"""The argument parser every ``bxb-stream`` command uses.

- No abbreviations (``allow_abbrev=False``): ``--stream`` never matches ``--str``.
- An unknown flag is named before anything else is checked, so a typo (``--streem``) is
  reported as such rather than as the required ``--stream`` being missing.
- Errors are one line on stderr with exit code 2; ``--help`` shows the full usage.
- Help and descriptions are plain text: a docstring used as a description loses its RST
  literal quoting (double backticks), and its paragraphs are kept.
- An option without help text takes it from ``SHARED_HELP`` when its meaning is the same in
  every command (the synthetic workload's knobs), so that meaning is written once.
"""

from __future__ import annotations

import argparse
import difflib
import re
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, NoReturn

_RST_LITERAL = re.compile(r"``([^`]+)``")
_NEGATIVE_NUMBER = re.compile(r"^-\d+$|^-\d*\.\d+$")

# Options that mean the same thing wherever they appear (dest -> help).
SHARED_HELP: dict[str, str] = {
    "seed": "seed of the synthetic generator: the same seed gives the same events",
    "customers": "distinct external_customer_id values in the synthetic workload",
    "duplicate_share": "fraction of synthetic events sent twice with the same transaction_id (0-1)",
    "invalid_share": "fraction of synthetic events that break a schema rule (0-1)",
    "late_share": "fraction of synthetic events older than the grace, set aside as late (0-1)",
    "conflict_share": "fraction of synthetic events that resend a transaction_id with another value (0-1)",
    "backdated_share": "fraction of synthetic events a few days old, in an open period: billed (0-1)",
}


CLICKHOUSE_URL_HELP = (
    "ClickHouse: http(s)://user:pass@host:port, chdb:///path, embedded, "
    "or local+http://127.0.0.1:PORT (a running bxb-stream local --serve)"
)


def add_clickhouse_target(parser: argparse.ArgumentParser) -> None:
    """``--url`` and ``--database``: where a command reads or writes the billing tables."""
    parser.add_argument("--url", required=True, help=CLICKHOUSE_URL_HELP)
    parser.add_argument("--database", default="bxb", help="database of the tables (default bxb)")


def utc_time(text: str) -> datetime:
    """An argparse type: ISO-8601; a time without an offset means UTC."""
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO-8601 time: {text!r}") from None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


def plain(text: str | None) -> str | None:
    """``text`` without RST literal quoting (double backticks around a word are dropped)."""
    return None if text is None else _RST_LITERAL.sub(r"\1", text)


class Parser(argparse.ArgumentParser):
    """``argparse.ArgumentParser`` with the behaviour described in the module docstring."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs["allow_abbrev"] = False
        kwargs.setdefault("formatter_class", _Formatter)
        for key in ("description", "epilog"):
            kwargs[key] = plain(kwargs.get(key))
        super().__init__(*args, **kwargs)

    def add_argument(self, *args: Any, **kwargs: Any) -> argparse.Action:
        action = super().add_argument(*args, **kwargs)
        _fill_help(action)
        return action

    def add_argument_group(self, *args: Any, **kwargs: Any) -> Any:
        return _filling_help(super().add_argument_group(*args, **kwargs))

    def add_mutually_exclusive_group(self, **kwargs: Any) -> Any:
        return _filling_help(super().add_mutually_exclusive_group(**kwargs))

    def add_subparsers(self, **kwargs: Any) -> Any:
        kwargs.setdefault("parser_class", type(self))
        return super().add_subparsers(**kwargs)

    def parse_known_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        argv = list(sys.argv[1:] if args is None else args)
        self._reject_unknown_options(argv)
        return super().parse_known_args(argv, namespace)

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")

    def _reject_unknown_options(self, argv: list[str]) -> None:
        """Name the first flag this parser does not know, before argparse checks required ones.

        A parser with subcommands checks only the flags before the subcommand's name; the
        subcommand's own parser checks the rest when argparse hands them over.
        """
        known = {s for action in self._actions for s in action.option_strings}
        commands: set[str] = set()
        for action in self._actions:
            if isinstance(action, argparse._SubParsersAction):
                commands.update(action.choices)
        for token in argv:
            if token == "--" or token in commands:
                return
            if not token.startswith("-") or token == "-" or _NEGATIVE_NUMBER.match(token):
                continue
            flag = token.split("=", 1)[0]
            if flag not in known:
                close = difflib.get_close_matches(flag, sorted(known), n=1)
                hint = f"; did you mean {close[0]}?" if close else ""
                self.error(f"unrecognized argument {flag}{hint}")


class _Formatter(argparse.HelpFormatter):
    """Wraps each paragraph of a description on its own, so docstring paragraphs stay apart."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        paragraphs = [p for p in text.strip().split("\n\n") if p.strip()]
        return "\n\n".join(super(_Formatter, self)._fill_text(p, width, indent) for p in paragraphs)


def _filling_help(group: Any) -> Any:
    """``group`` (of options), its ``add_argument`` filling help as the parser's does."""
    add = group.add_argument

    def add_argument(*args: Any, **kwargs: Any) -> argparse.Action:
        action = add(*args, **kwargs)
        _fill_help(action)
        return action

    group.add_argument = add_argument
    return group


def _fill_help(action: argparse.Action) -> None:
    if action.help is None and action.dest in SHARED_HELP:
        action.help = SHARED_HELP[action.dest]
    elif action.help is not argparse.SUPPRESS:
        action.help = plain(action.help)


def walk(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    """``parser`` and every subcommand parser below it, depth first."""
    found = [parser]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                found.extend(walk(child))
    return found
