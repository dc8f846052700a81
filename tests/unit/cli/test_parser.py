"""The parser tree of ``bxb-stream``: help on every option, plain text, no abbreviations, unknown flags named."""

from __future__ import annotations

import argparse

import pytest

from bxb_stream.cli import UserError, build_parser, dispatch, main
from bxb_stream.cli._parser import walk

PARSERS = walk(build_parser())


def test_the_tree_has_every_command() -> None:
    progs = {p.prog for p in PARSERS}
    for command in ("produce", "transform", "plan", "local", "usage", "errors", "clickhouse ddl", "clickhouse apply"):
        assert f"bxb-stream {command}" in progs


@pytest.mark.parametrize("parser", PARSERS, ids=lambda p: p.prog)
def test_every_option_has_plain_help_and_no_abbreviations(parser: argparse.ArgumentParser) -> None:
    assert parser.allow_abbrev is False
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        if isinstance(action, argparse._SubParsersAction):
            for choice in action._choices_actions:
                assert choice.help, f"{parser.prog} {choice.dest}: a subcommand without help"
            continue
        name = "/".join(action.option_strings) or action.dest
        assert action.help, f"{parser.prog} {name}: no help text"
    text = parser.format_help()
    assert "``" not in text, f"{parser.prog}: RST markup in --help"
    assert "%(" not in text


def test_a_typo_is_named_before_a_missing_required_flag(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["produce", "--streem", "events", "--synthetic", "3"])
    assert exit_info.value.code == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("bxb-stream produce: error: unrecognized argument --streem; did you mean --stream?")


@pytest.mark.parametrize(
    ("argv", "flag"),
    [
        (["produce", "--str", "s", "--synthetic", "3"], "--str"),  # an abbreviation of --stream
        (["plan", "--events", "10", "--avg-bytes", "100"], "--events"),  # of --events-per-sec
        (["clickhouse", "ddl", "--bucket=http://h/b"], "--bucket"),  # of --bucket-url
        (["--verbose", "plan"], "--verbose"),  # before the command
    ],
)
def test_abbreviations_and_unknown_flags_are_refused(
    argv: list[str], flag: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"unrecognized argument {flag}" in err


def test_values_that_look_like_flags_still_parse() -> None:
    parser = build_parser()
    args = parser.parse_args(["produce", "--stream=events", "--file", "-", "--rate", "5"])
    assert (args.stream, args.file, args.rate) == ("events", "-", 5.0)
    args = parser.parse_args(["plan", "--events-per-sec", "-5", "--avg-bytes", "100"])
    assert args.events_per_sec == -5.0  # refused later by the planner, naming --events-per-sec


def test_a_bug_keeps_its_traceback() -> None:
    def broken(_: argparse.Namespace) -> int:
        raise KeyError("a bug")

    with pytest.raises(KeyError):
        dispatch(argparse.Namespace(command="x", func=broken))


def test_a_user_error_is_one_line_with_its_exit_code(capsys: pytest.CaptureFixture[str]) -> None:
    def refuses(_: argparse.Namespace) -> int:
        raise UserError("no such thing\nsecond line", exit_code=3)

    assert dispatch(argparse.Namespace(command="clickhouse", clickhouse_command="apply", func=refuses)) == 3
    assert capsys.readouterr().err == "bxb-stream clickhouse apply: error: no such thing second line\n"
