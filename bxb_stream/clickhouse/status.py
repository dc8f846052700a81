"""Is ClickHouse caught up? Read-only checks the local pipeline, tests and benchmarks wait on."""

from __future__ import annotations

from typing import Any

from bxb_stream.clickhouse import tables as t


def queue_keeper_path(database: str, queue: str = "") -> str:
    """Where an S3Queue table of ``database`` keeps its processed-file state (``ddl`` uses it)."""
    return f"/clickhouse/bxb/s3queue/{database}/{queue}"


def queue_files(client: Any, database: str, status: str) -> list[tuple[str, str]]:
    """(file path, exception) of the database's S3Queue files in ``status`` (Processed, Failed, ...)."""
    return [
        (str(path), str(exception))
        for path, exception in client.query(
            "SELECT file_path, exception FROM system.s3queue_metadata_cache "
            "WHERE status = %(status)s AND startsWith(zookeeper_path, %(path)s)",
            parameters={"status": status, "path": queue_keeper_path(database)},
        ).result_rows
    ]


def usage_caught_up(client: Any, database: str) -> bool:
    """usage_hourly was computed after the newest events_raw row was inserted.

    A refresh that started 0.5 s after the newest insert began sees that insert committed."""
    return bool(
        int(
            client.command(
                f"SELECT (SELECT max(computed_at) FROM {database}.{t.USAGE_HOURLY}) "
                f"> (SELECT max(inserted_at) FROM {database}.{t.EVENTS_RAW}) + INTERVAL 500 MILLISECOND"
            )
        )
    )
