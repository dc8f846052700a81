"""The embedded engine entry point."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import clickhouse_connect
import pytest

from bxb_stream.clickhouse import engine


def test_start_is_idempotent_and_serves_clients(clickhouse_engine, tmp_path):
    again = engine.start(clickhouse_engine.data_dir)
    assert again is clickhouse_engine is engine.current()
    assert clickhouse_engine.url == f"chdb://{clickhouse_engine.data_dir}"
    assert clickhouse_engine.client().command("SELECT 40 + 2") == 42
    # Any clickhouse-connect client on the URL reaches the same engine.
    other = clickhouse_connect.get_client(dsn=clickhouse_engine.url)
    assert other.command("SELECT version()").startswith("26.")
    with pytest.raises(engine.EngineError, match="one engine per process"):
        engine.start(tmp_path / "elsewhere")


def _run(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=60, check=False
    )


def test_importing_chdb_first_is_refused_with_a_clear_error(tmp_path):
    proc = _run(f"""
        import chdb
        from bxb_stream.clickhouse import engine
        try:
            engine.start({str(tmp_path)!r})
        except engine.EngineError as e:
            print("REFUSED", e)
    """)
    assert "REFUSED chdb was imported before" in proc.stdout, proc.stderr


def test_a_fresh_process_gets_s3queue_and_exits_promptly(tmp_path):
    # S3Queue needs the Keeper config and the probe redirection; exit must not hang on open queues.
    proc = _run(f"""
        from bxb_stream.clickhouse import engine
        c = engine.start({str(tmp_path)!r}).client()
        c.command("CREATE TABLE q (x Int64) ENGINE = S3Queue('http://127.0.0.1:9/bkt/events/**', 'Parquet') "
                  "SETTINGS mode = 'unordered', keeper_path = '/t/q', s3_retry_attempts = 1")
        print("ENGINE", c.command("SELECT engine FROM system.tables WHERE name = 'q'"))
    """)
    assert "ENGINE S3Queue" in proc.stdout, proc.stderr
    assert (tmp_path / "config.xml").read_text().count("<implementation>testkeeper</implementation>") == 1
