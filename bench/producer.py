"""Producer benchmark: our KPL aggregator vs aws-kinesis-agg, and modelled shard throughput.

One run, ~160-byte events. Prints each figure, then one JSON line with every figure,
the targets and ``targets_met``:

- aggregation throughput (events/s) of ``bxb_stream.kpl.Aggregator`` vs
  ``aws_kinesis_agg.aggregator.RecordAggregator`` at the KPL default 51,200 bytes (best of 3);
- events per shard-second with aggregation vs one event per record, modelled on the
  per-shard write limits (1 MiB/s and 1,000 records/s) with whole records per second.

Targets: aggregated records fill >= 90% of the shard byte limit per shard-second, and
our aggregator is no slower than aws-kinesis-agg.

Run: /work/venv/bin/python bench/producer.py [--events N]
"""

from __future__ import annotations

import argparse
import json
import random
import time
import uuid

import msgspec

from bxb_stream import kpl
from bxb_stream.producer import limits as L

TARGET_SHARD_BYTE_FILL = 0.90
TARGET_RATIO_VS_AWS_KINESIS_AGG = 1.0


def make_events(n: int, seed: int = 1) -> list[kpl.UserRecord]:
    """~160-byte billing events keyed by customer, as the producer would send them."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        customer = f"cus_{rng.randrange(5000):06d}"
        event = {
            "transaction_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            "external_customer_id": customer,
            "code": rng.choice(("api_calls", "seats", "storage_gb")),
            "timestamp": 1_750_000_000 + rng.randrange(86_400),
            "properties": {"region": rng.choice(("us-east-1", "eu-west-1"))},
        }
        out.append(kpl.UserRecord(customer, None, msgspec.json.encode(event)))
    return out


def run_ours(records: list[kpl.UserRecord]) -> list[kpl.Aggregate]:
    agg = kpl.Aggregator(L.KPL_DEFAULT_AGGREGATE_BYTES, count_partition_key=True)
    out = [a for r in records if (a := agg.add(r)) is not None]
    last = agg.flush()
    return [*out, last] if last is not None else out


def run_theirs(records: list[kpl.UserRecord]) -> list[bytes]:
    import aws_kinesis_agg.aggregator as theirs

    agg = theirs.RecordAggregator(max_size=L.KPL_DEFAULT_AGGREGATE_BYTES)
    out = []
    for r in records:
        full = agg.add_user_record(r.partition_key, r.data, r.explicit_hash_key)
        if full is not None:
            out.append(full.get_contents()[2])
    last = agg.clear_and_get()
    if last is not None:
        out.append(last.get_contents()[2])
    return out


def best_rate(fn: object, records: list[kpl.UserRecord], repeats: int = 3) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn(records)  # type: ignore[operator]
        best = min(best, time.perf_counter() - start)
    return len(records) / best


def shard_model(record_bytes: float, events_per_record: float) -> tuple[float, float]:
    """(events per shard-second, share of the 1 MiB/s byte limit used) with whole records per second."""
    records_per_s = min(L.SHARD_WRITE_RECORDS_PER_SECOND, int(L.SHARD_WRITE_BYTES_PER_SECOND // record_bytes))
    return records_per_s * events_per_record, records_per_s * record_bytes / L.SHARD_WRITE_BYTES_PER_SECOND


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000)
    args = parser.parse_args()

    records = make_events(args.events)
    event_bytes = sum(len(r.data) for r in records) / len(records)
    pk_bytes = sum(len(r.partition_key.encode()) for r in records) / len(records)

    ours = run_ours(records)
    theirs = run_theirs(records)
    assert [u for a in ours for u in kpl.deaggregate(a)] == records  # the benchmark checks its own output
    ours_eps = best_rate(run_ours, records)
    theirs_eps = best_rate(run_theirs, records)
    ratio = ours_eps / theirs_eps

    # Full aggregates only (the last one is partial); size as Kinesis counts it: data + outer key.
    full = ours[:-1] or ours
    agg_bytes = sum(len(a) + len(a.partition_key.encode()) for a in full) / len(full)
    events_per_agg = sum(a.count for a in full) / len(full)
    theirs_full = theirs[:-1] or theirs
    theirs_agg_bytes = sum(len(a) for a in theirs_full) / len(theirs_full)
    agg_eps, agg_fill = shard_model(agg_bytes, events_per_agg)
    plain_eps, plain_fill = shard_model(event_bytes + pk_bytes, 1)

    figures = {
        "events": len(records),
        "event_bytes_avg": round(event_bytes, 1),
        "ours_events_per_s": round(ours_eps),
        "aws_kinesis_agg_events_per_s": round(theirs_eps),
        "ratio_ours_vs_aws_kinesis_agg": round(ratio, 3),
        "aggregate_max_bytes": L.KPL_DEFAULT_AGGREGATE_BYTES,
        "ours_aggregate_bytes_avg": round(agg_bytes, 1),
        "aws_kinesis_agg_aggregate_bytes_avg": round(theirs_agg_bytes, 1),
        "events_per_aggregate": round(events_per_agg, 1),
        "shard_events_per_s_aggregated": round(agg_eps),
        "shard_events_per_s_one_per_record": round(plain_eps),
        "aggregation_gain": round(agg_eps / plain_eps, 1),
        "shard_byte_fill_aggregated": round(agg_fill, 4),
        "shard_byte_fill_one_per_record": round(plain_fill, 4),
    }
    targets = {
        "shard_byte_fill_aggregated_min": TARGET_SHARD_BYTE_FILL,
        "ratio_ours_vs_aws_kinesis_agg_min": TARGET_RATIO_VS_AWS_KINESIS_AGG,
    }
    met = agg_fill >= TARGET_SHARD_BYTE_FILL and ratio >= TARGET_RATIO_VS_AWS_KINESIS_AGG
    for key, value in figures.items():
        print(f"{key:40} {value:>14,}" if isinstance(value, int) else f"{key:40} {value:>14}")
    print(f"{'targets':40} fill >= {TARGET_SHARD_BYTE_FILL:.0%}, ours/theirs >= {TARGET_RATIO_VS_AWS_KINESIS_AGG}")
    print(f"{'targets_met':40} {met}")
    print(json.dumps({**figures, "targets": targets, "targets_met": met}))


if __name__ == "__main__":
    main()
