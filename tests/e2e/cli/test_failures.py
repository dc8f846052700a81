"""Every subcommand turns an expected failure into one line on stderr and a non-zero exit, never a traceback.

Each case runs ``bxb-stream`` in a subprocess, as a user would, in an environment with no AWS
credentials and no metadata service; every endpoint is a loopback port nobody listens on.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


DOWN = f"127.0.0.1:{_closed_port()}"  # connection refused
USAGE = [
    "--organization-id",
    "o",
    "--customer",
    "c",
    "--code",
    "x",
    "--from",
    "2026-01-01T00:00",
    "--to",
    "2026-01-01T01:00",
]
PLAN = ["plan", "--events-per-sec", "100", "--avg-bytes", "200"]
ORG = ["--organization-id", "org_1"]
PERIOD = [*ORG, "--from", "2026-01-01T00:00", "--to", "2026-01-02T00:00"]
S3_SETTINGS = ["--bucket-url", f"http://{DOWN}/bucket", "--named-collection", "nc"]

# (id, argv, words the one line must contain). CHDB is replaced by a fresh data directory.
CASES = [
    # missing file
    ("produce-missing-file", ["produce", "--stream", "s", "--file", "missing.jsonl"], "cannot open missing.jsonl"),
    ("transform-missing-file", ["transform", "--file", "missing.jsonl"], "cannot open missing.jsonl"),
    ("plan-missing-config", [*PLAN, "--config", "missing.json"], "cannot open missing.json"),
    ("errors-missing-config", ["errors", "--bucket", "b", "--config", "missing.json"], "cannot open missing.json"),
    # unreachable endpoint
    (
        "produce-endpoint-down",
        ["produce", "--stream", "s", "--synthetic", "5", "--endpoint-url", f"http://{DOWN}"],
        "connection refused",
    ),
    ("errors-endpoint-down", ["errors", "--bucket", "b", "--endpoint-url", f"http://{DOWN}"], "connection refused"),
    (
        "local-endpoint-down",
        ["local", "--events", "5", "--endpoint-url", f"http://{DOWN}", "--data-dir", "DATA"],
        "connection refused",
    ),
    # no credentials (real AWS, nothing configured)
    ("produce-no-credentials", ["produce", "--stream", "s", "--synthetic", "5"], "NoCredentialsError"),
    ("errors-no-credentials", ["errors", "--bucket", "b"], "NoCredentialsError"),
    # bad SQL settings
    (
        "ddl-bad-settings",
        ["clickhouse", "ddl", "--bucket-url", "s3://bucket", "--named-collection", "nc"],
        "config 'bucket_url'",
    ),
    ("apply-bad-url", ["clickhouse", "apply", "--url", "chdb://memory", *S3_SETTINGS], "needs a directory"),
    ("usage-unknown-database", ["usage", "--url", "CHDB", "--database", "nosuch", *USAGE], "UNKNOWN_DATABASE"),
    (
        "conflicts-unknown-database",
        ["clickhouse", "conflicts", "--url", "CHDB", "--database", "nosuch"],
        "UNKNOWN_DATABASE",
    ),
    ("usage-not-on-an-hour", ["usage", "--url", "CHDB", *USAGE[:-1], "2026-01-01T01:30"], "hour boundary"),
    # ClickHouse down
    ("usage-clickhouse-down", ["usage", "--url", f"http://{DOWN}", *USAGE], "ClickHouse at"),
    ("apply-clickhouse-down", ["clickhouse", "apply", "--url", f"http://{DOWN}", *S3_SETTINGS], "ClickHouse at"),
    ("conflicts-clickhouse-down", ["clickhouse", "conflicts", "--url", f"http://{DOWN}"], "ClickHouse at"),
    # the local query relay down
    ("usage-relay-down", ["usage", "--url", f"local+http://{DOWN}", *USAGE], "connection refused by local+http"),
    ("conflicts-relay-down", ["clickhouse", "conflicts", "--url", f"local+http://{DOWN}"], "connection refused"),
    # billing operations
    ("health-unknown-database", ["clickhouse", "health", "--url", "CHDB", "--database", "nosuch"], "UNKNOWN_DATABASE"),
    ("health-relay-down", ["clickhouse", "health", "--url", f"local+http://{DOWN}"], "connection refused"),
    (
        "periods-close-clickhouse-down",
        ["periods", "close", "--url", f"http://{DOWN}", *ORG, "--until", "2026-01-01T00:00Z", "--by", "me"],
        "ClickHouse at",
    ),
    ("late-list-unknown-database", ["late", "list", "--url", "CHDB", "--database", "nosuch", *ORG], "UNKNOWN_DATABASE"),
    ("late-accept-no-selection", ["late", "accept", "--url", "CHDB", *ORG, "--by", "me"], "select the late events"),
    ("reconcile-relay-down", ["usage", "reconcile", "--url", f"local+http://{DOWN}", *PERIOD], "connection refused"),
    ("usage-without-customer", ["usage", "--url", "CHDB", *PERIOD], "needs --customer and --code"),
    # bad input
    ("plan-bad-rate", ["plan", "--events-per-sec", "0", "--avg-bytes", "200"], "--events-per-sec must be"),
    ("produce-bad-share", ["produce", "--stream", "s", "--synthetic", "5", "--invalid-share", "2"], "shares must"),
    ("transform-bad-hooks", ["transform", "--synthetic", "5", "--hooks", "nope:hook"], "cannot import 'nope'"),
    ("errors-bad-period", ["errors", "--bucket", "b", "--since", "2026-02-01", "--until", "2026-01-01"], "not before"),
]


@pytest.fixture
def quiet_env(tmp_path: Path) -> dict[str, str]:
    """No AWS credentials anywhere, no metadata service, no ambient endpoint."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(
        {
            "AWS_EC2_METADATA_DISABLED": "true",
            "AWS_CONFIG_FILE": str(tmp_path / "no-aws-config"),
            "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "no-aws-credentials"),
            "AWS_REGION": "us-east-1",
            "COLUMNS": "200",
        }
    )
    return env


def run_cli(argv: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """``bxb-stream ARGV`` in ``cwd``; CHDB stands for an embedded engine there, DATA for a data directory."""
    stand_ins = {"CHDB": f"chdb://{cwd / 'chdb'}", "DATA": str(cwd / "data")}
    argv = [stand_ins.get(a, a) for a in argv]
    return subprocess.run(
        [sys.executable, "-m", "bxb_stream", *argv],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.parametrize(("argv", "words"), [(argv, words) for _, argv, words in CASES], ids=[c[0] for c in CASES])
def test_expected_failure_is_one_line(argv: list[str], words: str, tmp_path: Path, quiet_env: dict[str, str]) -> None:
    done = run_cli(argv, tmp_path, quiet_env)
    assert done.returncode != 0
    assert "Traceback" not in done.stderr + done.stdout
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith(f"bxb-stream {argv[0]}") and words in lines[0], lines[0]


SUBCOMMANDS = [
    ["produce", "--stream", "s"],
    ["transform"],
    ["plan"],
    ["local"],
    ["usage"],
    ["usage", "reconcile"],
    ["clickhouse", "ddl"],
    ["clickhouse", "apply"],
    ["clickhouse", "conflicts"],
    ["clickhouse", "health"],
    ["periods", "close"],
    ["periods", "list"],
    ["late", "list"],
    ["late", "accept"],
    ["errors"],
]


@pytest.mark.parametrize("command", SUBCOMMANDS, ids=lambda c: " ".join(a for a in c if not a.startswith("-")))
def test_a_mistyped_flag_is_named(command: list[str], tmp_path: Path, quiet_env: dict[str, str]) -> None:
    done = run_cli([*command, "--streem", "x"], tmp_path, quiet_env)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    (line,) = done.stderr.strip().splitlines()
    assert "unrecognized argument --streem" in line
