"""Fixtures for the planner tests: the bundled price sheet, a price-file writer and an isolated CLI runner."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from bxb_stream.cli import Parser, dispatch
from bxb_stream.cli import plan as plan_cli
from bxb_stream.plan.prices import PriceSheet, load_prices


@pytest.fixture(scope="session")
def prices() -> PriceSheet:
    return load_prices("us-east-1")


@pytest.fixture(scope="session")
def price_doc() -> dict[str, Any]:
    path = Path(plan_cli.__file__).parents[1] / "plan" / "prices" / "us-east-1.json"
    return json.loads(path.read_text(encoding="utf-8"))


@pytest.fixture
def write_prices(tmp_path: Path, price_doc: dict[str, Any]) -> Callable[..., Path]:
    """Write a copy of the bundled sheet with some prices changed (None removes the key)."""

    def write(changes: dict[str, Any] | None = None, **top: Any) -> Path:
        doc = json.loads(json.dumps(price_doc))
        for key, value in (changes or {}).items():
            if value is None:
                del doc["prices"][key]
            else:
                doc["prices"][key]["usd"] = value
        doc.update(top)
        path = tmp_path / "prices.json"
        path.write_text(json.dumps(doc), encoding="utf-8")
        return path

    return write


@pytest.fixture
def run_plan(capsys: pytest.CaptureFixture[str]) -> Callable[..., tuple[int, str, str]]:
    """Run ``bxb-stream plan ARGS`` through its own parser (so other subcommands cannot affect these
    tests) and the CLI's one failure path."""

    def run(*argv: str) -> tuple[int, str, str]:
        parser = Parser(prog="bxb-stream")
        plan_cli.register(parser.add_subparsers(dest="command", required=True))
        try:
            args = parser.parse_args(["plan", *argv])
            code = dispatch(args)
        except SystemExit as exc:  # argparse usage errors
            code = int(exc.code or 0)
        out = capsys.readouterr()
        return code, out.out, out.err

    return run
