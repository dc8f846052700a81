"""``bxb-stream produce`` end to end against the moto server."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path
from typing import Any

import pytest

from bxb_stream import kpl
from bxb_stream.cli import main
from bxb_stream.producer.synthetic import Expect, generate


def _tids(rows: list[dict[str, Any]]) -> list[str]:
    out = []
    for r in rows:
        for u in kpl.deaggregate(r["data"], r["pk"]):
            try:
                out.append(json.loads(u.data)["transaction_id"])
            except (ValueError, KeyError, TypeError):
                out.append("<invalid>")
    return out


def test_synthetic_with_aggregation_sends_valid_events_and_counts_rejections(
    moto_endpoint: str, kinesis: Any, make_stream: Any, read: Any, tmp_path: Path
) -> None:
    stream = make_stream(shards=2)
    failed = tmp_path / "failed.jsonl"
    argv = ["produce", "--stream", stream, "--endpoint-url", moto_endpoint, "--synthetic", "2000", "--seed", "9"]
    argv += ["--invalid-share", "0.05", "--aggregate", "--legacy-limits", "--quiet", "--failed-file", str(failed)]
    assert main(argv) == 0
    expected = [(e, x) for e, x in generate(2000, seed=9, invalid_share=0.05)]
    valid = sorted(x.transaction_id for _, x in expected if x.kind is not Expect.INVALID)
    assert sorted(_tids(read(kinesis, stream))) == valid
    rejected = [json.loads(line)["error"] for line in failed.read_text().splitlines()]
    assert sorted(rejected) == sorted(x.error_code for _, x in expected if x.kind is Expect.INVALID)


def test_file_and_stdin_with_no_validate_and_rate(
    moto_endpoint: str, kinesis: Any, make_stream: Any, read: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stream = make_stream(shards=1)
    lines = [json.dumps(e).encode() if isinstance(e, dict) else e for e, _ in generate(60, seed=3, invalid_share=0.5)]
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n\n")
    base = ["produce", "--stream", stream, "--endpoint-url", moto_endpoint, "--quiet", "--no-validate"]
    assert main([*base, "--file", str(path), "--rate", "2000"]) == 0
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"\n".join(lines))))
    assert main([*base, "--file", "-"]) == 0
    assert len(read(kinesis, stream)) == 120  # invalid events too: --no-validate


def test_undeliverable_events_give_exit_code_1(moto_endpoint: str) -> None:
    argv = ["produce", "--stream", "missing", "--endpoint-url", moto_endpoint, "--synthetic", "5", "--quiet"]
    assert main(argv) == 1


def test_bad_arguments_give_exit_code_2(moto_endpoint: str, tmp_path: Path) -> None:
    base = ["produce", "--stream", "s", "--endpoint-url", moto_endpoint, "--quiet"]
    assert main([*base, "--synthetic", "5", "--invalid-share", "2"]) == 2
    assert main([*base, "--file", str(tmp_path / "nope.jsonl")]) == 2
    assert main([*base, "--synthetic", "5", "--rate", "0"]) == 2
