"""Is ClickHouse caught up? Read-only checks (and a nudge) the CLI, local pipeline, tests and benchmarks use.

Progress is measured in marks (``ddl.MARK``: block number << 64 | offset), never in clocks:
"resolved" means every landed row is at or below the ledger's highest landing mark, and
"usage current" means every billable ledger row is at or below usage_hourly's highest version.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bxb_runtime.clickhouse import tables as t


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


@dataclass(frozen=True)
class Backlog:
    """Rows waiting for the next refreshes."""

    unresolved: int  # landed in events_raw, not yet in the ledger
    unbilled: int  # billable ledger rows not yet added to usage_hourly

    @property
    def caught_up(self) -> bool:
        return not self.unresolved and not self.unbilled


def backlog(client: Any, database: str) -> Backlog:
    """Both counts in one read; only parts above each watermark are opened."""
    from bxb_stream.clickhouse.ddl import MARK, PART_MAX_BLOCK  # ddl imports this module

    billable = ", ".join(f"'{v}'" for v in t.BILLABLE)
    above = f"{PART_MAX_BLOCK} >= toUInt64(bitShiftRight(wm, 64)) AND {MARK} > wm"
    unresolved, unbilled = client.query(
        f"SELECT (WITH (SELECT max(landing_mark) FROM {database}.{t.LEDGER}) AS wm "
        f"SELECT count() FROM {database}.{t.EVENTS_RAW} WHERE {above}), "
        f"(WITH (SELECT max(version) FROM {database}.{t.USAGE_HOURLY}) AS wm "
        f"SELECT count() FROM {database}.{t.LEDGER} WHERE {above} AND verdict IN ({billable}))"
    ).result_rows[0]
    return Backlog(int(unresolved), int(unbilled))


def usage_caught_up(client: Any, database: str) -> bool:
    """Every landed row is resolved and every billed one is in usage_hourly."""
    return backlog(client, database).caught_up


def refresh_now(client: Any, database: str) -> None:
    """Run the resolver, then the usage refresh, now, and wait for both (instead of their schedule).

    Safe at any time: a run only takes what the previous ones left, and one of them running
    already is waited for."""
    for view in (t.RESOLVER, t.USAGE_REFRESH_MV):
        client.command(f"SYSTEM REFRESH VIEW {database}.{view}")
        client.command(f"SYSTEM WAIT VIEW {database}.{view}")


def refresh_errors(client: Any, database: str) -> dict[str, str]:
    """The last exception of each billing view that failed its latest refresh (empty when healthy)."""
    rows = client.query(
        "SELECT view, exception FROM system.view_refreshes WHERE database = %(db)s AND exception != ''",
        parameters={"db": database},
    ).result_rows
    return {str(view): str(exception) for view, exception in rows}
