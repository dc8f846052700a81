"""local.aws: the moto child process and what it reports about itself."""

from __future__ import annotations

from bxb_stream.local.aws import MotoServer


def test_a_moto_child_reports_its_cpu_and_memory():
    server = MotoServer("process")
    try:
        assert server.endpoint.startswith("http://127.0.0.1:")
        started = server.cpu_seconds()
        assert started > 0  # importing moto alone costs CPU
        assert server.peak_rss_mb() > 10
    finally:
        server.stop()


def test_in_thread_mode_there_is_no_child_to_measure():
    server = MotoServer("thread")
    try:
        assert server.cpu_seconds() == 0.0 and server.peak_rss_mb() == 0.0
    finally:
        server.stop()
