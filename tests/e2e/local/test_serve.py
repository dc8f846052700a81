"""``bxb-stream local --serve`` under faults, driven as a user would: signals, a kill, a restart on
the same data dir, concurrent producers; and its CLI edges (no warm-up, --events 0, a missing
config). Each server is a separate process (chDB allows one engine per process)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from bxb_stream.cli import local as cli_local
from bxb_stream.cli import main
from bxb_stream.local.relay import RelayClient
from bxb_stream.producer.synthetic import Expect, generate

ROOT = Path(__file__).resolve().parents[3]


@pytest.mark.slow
def test_sigterm_mid_stream_flushes_every_runner_then_resume_shows_exact_usage(serve: Any, events_kit: Any) -> None:
    server = serve("--buffer-seconds", "10")  # runners hold what they read for 10 s: SIGTERM lands mid-stream
    banner = server.banner
    assert server.moto_child() is not None
    # The banner's commands, run as printed by a shell with no AWS settings at all.
    produced = server.run(banner["produce"])
    assert produced.returncode == 0, produced.stdout + produced.stderr
    server.wait_status(lambda h: h["in_flight"] > 0)  # read, held in the runners' 10 s buffers

    server.signal(signal.SIGTERM)
    assert server.wait_exit() == 0, server.output
    assert "every runner flushed, nothing in flight" in server.output
    checkpoints = sorted(p.name for p in server.data_dir.glob("checkpoints-*.json"))
    assert len(checkpoints) == 2

    resumed = serve("--resume", data_dir=server.data_dir)
    assert resumed.banner["endpoint"] == banner["endpoint"]  # the same port: producers need no change
    assert "replayed" in resumed.output
    truth = Counter(
        (e.external_customer_id, e.code)
        for _, e in generate(
            cli_local.EXAMPLE_EVENTS, seed=cli_local.EXAMPLE_SEED, customers=cli_local.EXAMPLE_CUSTOMERS
        )
        if e.kind is Expect.STORED
    )
    events_kit.wait_usage(resumed, truth)
    answer = json.loads(resumed.run(resumed.banner["usage"]).stdout)  # the banner's usage example, as printed
    assert answer["event_count"] == truth[(answer["external_customer_id"], answer["code"])] > 0


@pytest.mark.slow
@pytest.mark.parametrize("aws", ["own moto", "separate moto"])
def test_sigkill_mid_stream_then_resume_shows_exact_usage_without_a_resend(
    serve: Any, events_kit: Any, tmp_path: Path, moto_s3: Any, aws: str
) -> None:
    """Killed with records in Kinesis not yet read and records read but not delivered: a restart with
    --resume gets both from the stand-in's state (our moto's journal, or a moto that lived on) and
    from the checkpoints, and usage comes out exact. The producer sends each event once."""
    extra = ("--endpoint-url", moto_s3.endpoint_url) if aws == "separate moto" else ()
    server = serve("--buffer-seconds", "5", *extra)
    env = {**events_kit.clean_env(), "AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "x"}
    truth: Counter[tuple[str, str]] = Counter()
    for batch in ("a", "b"):
        events = tmp_path / f"{batch}.jsonl"
        truth += events_kit.write_events(events, batch, 2_000)
        sent = subprocess.run(
            events_kit.produce_command(server, events), cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
        )
        assert sent.returncode == 0, sent.stdout + sent.stderr
        if batch == "a":  # the first batch delivered (not necessarily in ClickHouse yet)
            server.wait_status(lambda h: h["settled"] >= 2_000)
    # The second batch read, partly or wholly, and held in the runners' 5 s buffers.
    status = server.wait_status(lambda h: h["read"] > 2_000 and h["in_flight"] > 0)
    child = server.moto_child()

    server.signal(signal.SIGKILL)
    server.wait_exit()
    assert all(h["settled"] < 4_000 for h in status.values())
    if child is not None:  # our moto follows its parent down (its stdin closes)
        gone = f"for i in $(seq 100); do kill -0 {child} 2>/dev/null || exit 0; sleep 0.1; done; exit 1"
        assert subprocess.run(["sh", "-c", gone], timeout=30).returncode == 0

    resumed = serve("--resume", *extra, data_dir=server.data_dir)
    assert resumed.banner["endpoint"] == server.banner["endpoint"]
    events_kit.wait_usage(resumed, truth)
    assert sum(truth.values()) == 4_000


@pytest.mark.slow
def test_concurrent_producers_lose_nothing(serve: Any, events_kit: Any, tmp_path: Path) -> None:
    """Three `bxb-stream produce` at once against one endpoint: moto alone loses about 1% of the
    records (equal sequence numbers overwrite each other); served, every event is stored."""
    server = serve("--path", "s3")
    env = {**events_kit.clean_env(), "AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "x"}
    truth: Counter[tuple[str, str]] = Counter()
    producers = []
    for run in ("p1", "p2", "p3"):
        events = tmp_path / f"{run}.jsonl"
        truth += events_kit.write_events(events, run, 5_000)
        command = events_kit.produce_command(server, events)
        producers.append(
            subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        )
    for producer in producers:
        out, _ = producer.communicate(timeout=300)
        assert producer.returncode == 0, out

    import boto3

    kinesis = boto3.client("kinesis", endpoint_url=server.banner["endpoint"], region_name="us-east-1",
                           aws_access_key_id="x", aws_secret_access_key="x")  # fmt: skip
    in_stream = 0
    for shard in kinesis.list_shards(StreamName=server.banner["stream"])["Shards"]:
        iterator = kinesis.get_shard_iterator(
            StreamName=server.banner["stream"], ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        for _ in range(100):  # bounded: 15,000 records in pages of up to 10,000
            page = kinesis.get_records(ShardIterator=iterator, Limit=10_000)
            in_stream += len(page["Records"])
            iterator = page.get("NextShardIterator")
            if not page["Records"] or not iterator:
                break
    assert in_stream == 15_000  # each record once: none overwritten
    events_kit.wait_usage(server, truth)


def _table(output: str) -> dict[str, list[int]]:
    """The rows of ``local wait``'s table: category -> one count per path."""
    rows = {}
    for line in output.splitlines():
        cells = [c.strip() for c in line.split("│")[1:-1]]
        if len(cells) >= 2 and all(c.replace(",", "").lstrip("-").isdigit() for c in cells[1:]):
            rows[cells[0]] = [int(c.replace(",", "")) for c in cells[1:]]
    return rows


@pytest.mark.slow
def test_wait_accounts_for_every_event_produced_against_serve(serve: Any) -> None:
    """Events produced while serving (no warm-up): ``local wait`` returns once each is billed or
    stopped short of billing in a counted place, per path, and usage_hourly already has the billed."""
    server = serve()
    shares = ["--duplicate-share", "0.05", "--invalid-share", "0.03", "--late-share", "0.02", "--no-validate"]
    produced = server.run(f"{server.banner['produce']} {' '.join(shares)} --quiet")
    assert produced.returncode == 0, produced.stdout + produced.stderr
    waited = server.run(server.banner["wait"], timeout=300)
    assert waited.returncode == 0, waited.stdout + waited.stderr
    assert "settled in" in waited.stdout
    kinds = Counter(
        e.kind
        for _, e in generate(
            cli_local.EXAMPLE_EVENTS,
            seed=cli_local.EXAMPLE_SEED,
            customers=cli_local.EXAMPLE_CUSTOMERS,
            duplicate_share=0.05,
            invalid_share=0.03,
            late_share=0.02,
        )
    )
    assert kinds[Expect.DUPLICATE] and kinds[Expect.INVALID] and kinds[Expect.LATE]  # each place is exercised
    table = _table(waited.stdout)
    paths = len(server.databases)
    assert table["read from Kinesis"] == [cli_local.EXAMPLE_EVENTS] * paths
    assert table["billed"] == [kinds[Expect.STORED]] * paths
    assert table["duplicates (counted, not billed)"] == [kinds[Expect.DUPLICATE]] * paths
    assert table["late (set aside, not billed)"] == [kinds[Expect.LATE]] * paths
    rejected = [sum(n[i] for name, n in table.items() if name.startswith("rejected: ")) for i in range(paths)]
    assert rejected == [kinds[Expect.INVALID]] * paths
    assert table["unaccounted for"] == [0] * paths and table["landed, not yet resolved"] == [0] * paths
    relay = RelayClient(server.banner["relay"])
    for database in server.databases:  # wait returned once usage_hourly has every billed event
        total = relay.query(f"SELECT sum(event_count) FROM {database}.usage_hourly").result_rows[0][0]
        assert total == kinds[Expect.STORED]


def test_wait_mistakes_are_one_clear_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["local", "wait"]) == 2
    assert "local wait needs --url" in capsys.readouterr().out
    assert main(["local", "wait", "--url", "local+http://127.0.0.1:9"]) == 1  # nothing listens on port 9
    out = capsys.readouterr().out
    assert "connection refused" in out and "Traceback" not in out and len(out.strip().splitlines()) == 1
    assert main(["local", "--url", "local+http://127.0.0.1:9"]) == 2
    assert "--url goes with" in capsys.readouterr().out


@pytest.mark.slow
def test_events_0_without_serve_starts_everything_and_exits_0(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "bxb_stream", "local", "--events", "0", "--path", "s3"]
    done = subprocess.run(
        [*command, "--data-dir", str(tmp_path / "d")], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "nothing to produce" in done.stdout and "every runner flushed, nothing in flight" in done.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--config", "nope.json"], "--config nope.json: no such file"),
        (["--events", "-1"], "--events must be 0 or more"),
        (["--resume"], "--resume continues a stopped --serve"),
        (["--serve", "--resume", "--events", "10"], "produces nothing new"),
    ],
)
def test_mistakes_are_one_clear_line_and_exit_2(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    assert main(["local", "--data-dir", str(tmp_path / "d"), *args]) == 2
    out = capsys.readouterr().out
    assert message in out and "Traceback" not in out and len(out.strip().splitlines()) == 1
    assert not (tmp_path / "d").exists()  # nothing started


def test_commands_are_printed_as_they_run(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    venv_bin = tmp_path / ".venv" / "bin"
    venv_bin.mkdir(parents=True)
    exe = venv_bin / "bxb-stream"
    exe.write_text("#!/bin/sh\n")
    exe.chmod(0o755)
    (venv_bin / "activate").write_text("")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", [str(exe), "local"])
    monkeypatch.delenv("MAKELEVEL", raising=False)

    monkeypatch.setenv("PATH", "/usr/bin:/bin")  # not on PATH (after `make demo`): the path that works
    assert cli_local.command_prefix() == ".venv/bin/bxb-stream"
    assert "source .venv/bin/activate" in cli_local._activate_hint(".venv/bin/bxb-stream")
    monkeypatch.setenv("PATH", f"{venv_bin}:/usr/bin:/bin")  # an activated venv: the plain name
    assert cli_local.command_prefix() == "bxb-stream"
    monkeypatch.setenv("MAKELEVEL", "1")  # on PATH only because make put it there
    assert cli_local.command_prefix() == ".venv/bin/bxb-stream"
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    assert cli_local.command_prefix() == str(exe)  # outside the checkout: absolute
    monkeypatch.setattr(sys, "argv", [str(ROOT / "bxb_stream" / "__main__.py")])
    assert cli_local.command_prefix().endswith(" -m bxb_stream")


def test_each_path_shows_its_own_rate(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [100.0]
    monkeypatch.setattr(cli_local.time, "monotonic", lambda: now[0])
    fast, slow = cli_local._Rate(started=100.0), cli_local._Rate(started=100.0)
    now[0] = 110.0
    fast.update(1_000)  # done after 10 s
    now[0] = 120.0
    slow.update(1_000)  # done after 20 s
    now[0] = 200.0  # both finished long ago: each keeps the rate it had when it got there
    assert (fast.update(1_000), slow.update(1_000)) == ("100/s", "50/s")


def test_the_top_customers_table_shows_five_customers() -> None:
    from rich.console import Console

    rows = [
        ("default", f"cus_{c}", code, hour * 3_600_000, 10 + c, 1.5, "0.25")
        for c in range(8)
        for code in ("api_calls", "seats")
        for hour in range(24)  # 24 hourly rows each: a row cap would show fewer customers
    ]
    console = Console(width=200, record=True)
    cli_local._usage_table(console, "s3", rows)
    text = console.export_text()
    assert {f"cus_{c}" for c in range(3, 8)} == {c for c in (f"cus_{i}" for i in range(8)) if c in text}
    assert f"{24 * 17:,}" in text and "6.00" in text  # summed over 24 hours: cus_7's events, sum(decimal_value)
