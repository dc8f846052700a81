"""Did every event end up where it should? Expected (from the generator) against measured.

For each path: produced = billed + duplicates + conflicts + late + rejected (by code)
(+ backed up), and nothing unaccounted for. Measured counts come from ClickHouse's ledger
(the resolver's verdicts) and the Firehose runner; expected counts and the usage ground
truth come from the synthetic generator's tag on every event. Any difference is a
finding, and the command exits non-zero.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from bxb_stream.producer.synthetic import Expect

HOUR_MS = 3_600_000
UsageKey = tuple[str, str, str, int]  # organization, customer, code, hour (UTC ms)


@dataclass
class Expected:
    default_organization: str = "default"
    produced: int = 0
    kinds: Counter[str] = field(default_factory=Counter)
    rejected: Counter[str] = field(default_factory=Counter)
    usage: dict[UsageKey, list[Any]] = field(default_factory=dict)  # [count, value_sum, decimal_sum]

    def add(self, event: Any, expect: Any) -> None:
        self.produced += 1
        self.kinds[expect.kind.value] += 1
        if expect.kind is Expect.INVALID:
            self.rejected[expect.error_code] += 1
        elif expect.kind is Expect.STORED:
            org = event.get("organization_id") or self.default_organization
            key = (org, expect.external_customer_id, expect.code, expect.timestamp_ms // HOUR_MS * HOUR_MS)
            row = self.usage.setdefault(key, [0, 0.0, Decimal(0)])
            row[0] += 1
            if event.get("value") is not None:
                row[1] += float(event["value"])
            if event.get("decimal_value") is not None:
                row[2] += Decimal(str(event["decimal_value"]))


@dataclass
class PathCounts:
    """What one path measured: the Firehose runner's statistics and ClickHouse's ledger."""

    path: str
    read: int  # user records the Firehose runner read (after KPL de-aggregation)
    in_flight: int
    delivered: int  # records the runner delivered (S3 objects, HTTP requests answered 200)
    landed: int  # rows in events_raw (a copy delivered twice lands twice)
    unresolved: int  # landed, not yet given a verdict by the resolver
    billed: int  # ledger: billed (and accepted)
    duplicates: int  # ledger duplicates + copies the transform dropped within a batch
    conflicts: int  # ledger: copies with another payload
    late: int  # ledger: late, not yet accepted or rejected
    dropped_in_batch: int
    rejected: dict[str, int]  # by error code (transform), and dead_letter:<code> (ingest)
    backed_up: int  # HTTP records Firehose gave up on (in S3 backup)
    queue_failed_files: int = 0  # S3 path: objects S3Queue gave up on
    late_rejected: int = 0  # ledger: late copies an operator rejected (never billed)

    @property
    def redelivered(self) -> int:
        """Copies delivered more than once (an S3Queue re-read, an HTTP retry that got through):
        recorded as duplicates by the resolver, but not sent twice by the producer."""
        return max(self.landed - self.delivered, 0)


@dataclass
class Line:
    category: str
    expected: int
    measured: int

    @property
    def ok(self) -> bool:
        return self.expected == self.measured


@dataclass
class Reconciliation:
    path: str
    produced: int
    lines: list[Line]
    usage_rows: int
    usage_mismatches: list[str]

    @property
    def ok(self) -> bool:
        return all(line.ok for line in self.lines) and not self.usage_mismatches


def reconcile(
    expected: Expected, produced: int, counts: PathCounts, usage_rows: list[tuple[Any, ...]]
) -> Reconciliation:
    """Every produced event in exactly one place, each place against the generator's count."""
    rejected_total = sum(counts.rejected.values())
    duplicates = counts.duplicates - counts.redelivered
    accounted = counts.billed + duplicates + counts.conflicts + counts.late + counts.late_rejected
    accounted += rejected_total + counts.backed_up
    lines = [
        Line("billed", expected.kinds[Expect.STORED.value], counts.billed),
        Line("duplicates (counted, not billed)", expected.kinds[Expect.DUPLICATE.value], duplicates),
        Line("conflicts (stored apart, not billed)", expected.kinds[Expect.CONFLICT.value], counts.conflicts),
        Line("late (set aside, not billed)", expected.kinds[Expect.LATE.value], counts.late),
        Line("late, rejected by an operator", 0, counts.late_rejected),
    ]
    codes = sorted(set(expected.rejected) | {_code(c) for c in counts.rejected})
    measured_by_code = Counter({_code(c): n for c, n in counts.rejected.items()})
    for code in codes:
        lines.append(Line(f"rejected: {code}", expected.rejected[code], measured_by_code[code]))
    lines += [
        Line("backed up (HTTP failures)", 0, counts.backed_up),
        Line("S3Queue files failed", 0, counts.queue_failed_files),
        Line("landed, not yet resolved", 0, counts.unresolved),
        Line("unaccounted for", 0, produced - accounted),
    ]
    return Reconciliation(counts.path, produced, lines, len(usage_rows), compare_usage(expected.usage, usage_rows))


def account(now: PathCounts, before: PathCounts | None = None) -> list[tuple[str, int]]:
    """Where every record read since ``before`` went, with no generator to compare with (events
    a user produced against ``--serve``): each place where an event can stop short of billing,
    and what no place accounts for (0 once everything read is resolved)."""
    zero = PathCounts(now.path, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, {}, 0)
    b = before or zero
    redelivered = max(now.landed - b.landed - (now.delivered - b.delivered), 0)
    rejected = Counter({_code(c): n for c, n in now.rejected.items()})
    rejected.subtract({_code(c): n for c, n in b.rejected.items()})
    places = [
        ("billed", now.billed - b.billed),
        ("duplicates (counted, not billed)", now.duplicates - b.duplicates - redelivered),
        ("conflicts (stored apart, not billed)", now.conflicts - b.conflicts),
        ("late (set aside, not billed)", now.late - b.late),
        ("late, rejected by an operator", now.late_rejected - b.late_rejected),
        *((f"rejected: {code}", n) for code, n in sorted(rejected.items()) if n),
        ("backed up (HTTP failures)", now.backed_up - b.backed_up),
    ]
    read = now.read - b.read
    return [
        ("read from Kinesis", read),
        *places,
        ("S3Queue files failed", now.queue_failed_files - b.queue_failed_files),
        ("landed, not yet resolved", now.unresolved),
        ("unaccounted for", read - sum(n for _, n in places)),
    ]


def compare_usage(truth: dict[UsageKey, list[Any]], rows: list[tuple[Any, ...]]) -> list[str]:
    """Every (org, customer, code, hour) of usage_hourly against the ground truth."""
    seen: dict[UsageKey, tuple[int, float, Decimal]] = {}
    for org, customer, code, hour_ms, count, value_sum, decimal_sum in rows:
        seen[(org, customer, code, int(hour_ms))] = (int(count), float(value_sum), Decimal(decimal_sum))
    problems = []
    for key in sorted(set(truth) | set(seen)):
        want = truth.get(key)
        got = seen.get(key)
        if want is None or got is None:
            problems.append(f"{key}: expected {want}, usage_hourly has {got}")
        elif got[0] != want[0] or got[2] != want[2] or not math.isclose(got[1], want[1], rel_tol=1e-9, abs_tol=1e-6):
            problems.append(f"{key}: expected {tuple(want)}, usage_hourly has {got}")
    return problems


def _code(code: str) -> str:
    return code.removeprefix("dead_letter:")
