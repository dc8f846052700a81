"""Did every event end up where it should? Expected (from the generator) against measured.

For each path: produced = stored + duplicates + rejected (by code) + late (+ backed up).
Measured counts come from ClickHouse (``FINAL``: duplicates collapsed) and the Firehose
runner; expected counts and the usage ground truth come from the synthetic generator's
tag on every event. Any difference is a finding, and the command exits non-zero.
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
    """What one path measured."""

    path: str
    read: int  # user records the Firehose runner read (after KPL de-aggregation)
    in_flight: int
    stored: int  # events_raw FINAL
    late: int  # events_late FINAL
    dropped_in_batch: int
    rejected: dict[str, int]  # by error code (transform), and dead_letter:<code> (ingest)
    backed_up: int  # HTTP records Firehose gave up on (in S3 backup)
    delivered: int


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
    rejected_total = sum(counts.rejected.values())
    duplicates = produced - counts.stored - counts.late - rejected_total - counts.backed_up
    lines = [
        Line("stored", expected.kinds[Expect.STORED.value], counts.stored),
        Line("duplicates dropped", expected.kinds[Expect.DUPLICATE.value], duplicates),
        Line("late (side output)", expected.kinds[Expect.LATE.value], counts.late),
    ]
    codes = sorted(set(expected.rejected) | {_code(c) for c in counts.rejected})
    measured_by_code = Counter({_code(c): n for c, n in counts.rejected.items()})
    for code in codes:
        lines.append(Line(f"rejected: {code}", expected.rejected[code], measured_by_code[code]))
    lines.append(Line("backed up (HTTP failures)", 0, counts.backed_up))
    return Reconciliation(counts.path, produced, lines, len(usage_rows), compare_usage(expected.usage, usage_rows))


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
