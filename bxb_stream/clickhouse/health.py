"""Everything that stopped short of billing, in one report (``bxb-stream clickhouse health``).

From ClickHouse: the resolver's and usage refresh's backlog and last errors, the ledger's
verdicts (duplicates, conflicts, late events by reason, accepted and rejected), the HTTP
path's dead letters by code, S3Queue files that used up their retries, and the periods in
force. From the bucket, when given: Firehose's error output (ProcessingFailed, format
conversion) and the HTTP path's backup, by error code (``bxb_stream.error_output``).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from bxb_runtime.clickhouse import tables as t
from bxb_stream.clickhouse import ledger, periods, status


@dataclass
class Health:
    database: str
    backlog: status.Backlog
    verdicts: Counter[str]
    pending_late: int
    dead_letters: Counter[str]
    failed_files: list[tuple[str, str]]
    refresh_errors: dict[str, str]
    closes: dict[str, str]  # organization -> until, of the close in force
    error_output: Counter[str] = field(default_factory=Counter)  # from the bucket, when read

    @property
    def attention(self) -> list[str]:
        """What someone should look at: each is an event (or a file of them) not billed, or stuck."""
        items = [f"{view} failed: {error}" for view, error in self.refresh_errors.items()]
        items += [f"S3Queue gave up on {path}: {error}" for path, error in self.failed_files]
        if self.verdicts[t.Verdict.CONFLICT]:
            items.append(f"{self.verdicts[t.Verdict.CONFLICT]} conflicting copies (bxb-stream clickhouse conflicts)")
        if self.pending_late:
            items.append(f"{self.pending_late} late events to accept or reject (bxb-stream late list)")
        if self.dead_letters:
            items.append(f"{sum(self.dead_letters.values())} dead letters on the HTTP path")
        if self.error_output:
            items.append(f"{sum(self.error_output.values())} records in Firehose's error output (bxb-stream errors)")
        return items

    def as_dict(self) -> dict[str, Any]:
        return {
            "database": self.database,
            "unresolved": self.backlog.unresolved,
            "unbilled_in_usage": self.backlog.unbilled,
            "verdicts": dict(self.verdicts),
            "pending_late": self.pending_late,
            "dead_letters": dict(self.dead_letters),
            "s3queue_failed_files": [{"path": p, "exception": e} for p, e in self.failed_files],
            "refresh_errors": self.refresh_errors,
            "periods_closed_until": self.closes,
            "error_output": dict(self.error_output),
            "attention": self.attention,
        }


def check(client: Any, database: str) -> Health:
    dead = Counter(
        {
            str(code): int(n)
            for code, n in client.query(
                f"SELECT error_code, count() FROM {database}.{t.DEAD_LETTER} GROUP BY error_code"
            ).result_rows
        }
    )
    in_force: dict[str, periods.Close] = {}
    for close in periods.history(client, database):
        current = in_force.get(close.organization_id)
        if current is None or close.until > current.until:
            in_force[close.organization_id] = close
    return Health(
        database=database,
        backlog=status.backlog(client, database),
        verdicts=ledger.verdict_counts(client, database),
        pending_late=ledger.pending_late(client, database),
        dead_letters=dead,
        failed_files=status.queue_files(client, database, "Failed"),
        refresh_errors=status.refresh_errors(client, database),
        closes={org: close.until.isoformat() for org, close in sorted(in_force.items())},
    )
