"""The producer's policies: how it retries, aggregates and partitions. Each is validated on construction.

``Producer("stream")`` uses every default; pass a policy to change one aspect:

    Producer("bxb-events", retry=RetryPolicy(max_attempts=4), aggregate=AggregationPolicy(max_bytes=25_600))
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from bxb_stream import kpl
from bxb_stream.producer import limits as L

PartitionKeyFn = Callable[[Any], str]
HashKeyFn = Callable[[Any], "int | str | None"]


@dataclass(frozen=True)
class RetryPolicy:
    """Failed entries are re-sent, in order, after a full-jitter exponential backoff
    (uniform in [0, min(max, base * 2**(attempt-1))]), until ``max_attempts`` or ``deadline_s``.

    ``sleep`` and ``rng`` are the clock and the jitter source (tests pass their own)."""

    max_attempts: int = 8
    backoff_base_ms: int = 100
    backoff_max_ms: int = 5_000
    deadline_s: float = 60.0
    sleep: Callable[[float], None] = field(default=time.sleep, compare=False)
    rng: random.Random = field(default_factory=random.Random, compare=False)

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError(f"retry: max_attempts must be >= 1, got {self.max_attempts}")
        if not 0 <= self.backoff_base_ms <= self.backoff_max_ms:
            raise ValueError("retry: need 0 <= backoff_base_ms <= backoff_max_ms")
        if self.deadline_s <= 0:
            raise ValueError(f"retry: deadline_s must be > 0, got {self.deadline_s}")

    def delay_s(self, attempt: int) -> float:
        """The pause after failed attempt number ``attempt`` (1-based)."""
        cap = min(self.backoff_max_ms, self.backoff_base_ms * 2 ** (attempt - 1)) / 1000
        return self.rng.uniform(0, cap)


@dataclass(frozen=True)
class AggregationPolicy:
    """KPL aggregation: many events in one Kinesis record, de-aggregated by Firehose.

    ``max_bytes`` is the KPL's AggregationMaxSize (51,200 by default). With ``by_shard``,
    an aggregate only bundles events bound for one shard (the stream's shard map is read
    once with ListShards), so per-key ordering and shard balance hold as without it."""

    max_bytes: int = L.KPL_DEFAULT_AGGREGATE_BYTES
    by_shard: bool = True

    def check(self, limits: L.Limits) -> None:
        if not kpl.OVERHEAD < self.max_bytes <= limits.max_record_bytes:
            raise ValueError(
                f"aggregation: max_bytes must be in ({kpl.OVERHEAD}, {limits.max_record_bytes}], got {self.max_bytes}"
            )


@dataclass(frozen=True)
class PartitioningPolicy:
    """How each event is keyed: ``partition_key`` names a field (default the customer, so one
    customer's events stay in order on one shard) or is a function of the event;
    ``explicit_hash_key`` (a fixed 128-bit value or a function) overrides the shard choice."""

    partition_key: str | PartitionKeyFn = "external_customer_id"
    explicit_hash_key: int | str | HashKeyFn | None = None

    def __post_init__(self) -> None:
        if isinstance(self.explicit_hash_key, int | str):
            check_explicit_hash_key(self.explicit_hash_key)

    @property
    def fixed_hash_key(self) -> str | None:
        ehk = self.explicit_hash_key
        return check_explicit_hash_key(ehk) if isinstance(ehk, int | str) else None


def check_explicit_hash_key(value: int | str) -> str:
    """A valid explicit hash key as Kinesis wants it (decimal text), or ValueError."""
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise ValueError(f"explicit hash key must be a decimal integer, got {value!r}") from None
    if isinstance(value, bool) or not 0 <= number <= L.MAX_EXPLICIT_HASH_KEY:
        raise ValueError(f"explicit hash key must be in [0, 2**128 - 1], got {value!r}")
    return str(number)
