"""Transform throughput: our handler against three baselines, in one run, on one core.

(a) ours          bxb_runtime.transform.Transformer: full validation, enrichment, dedup, routing
(a') ours+pt      the same, answered through Powertools' response helpers (measured to choose)
(b) blueprint     AWS blueprint style: json + base64, no validation
(c) powertools    Powertools data classes + a pydantic model with the same rules
(d) floor         the codec floor: orjson loads/dumps + base64, no logic
(d') floor+pybase64 the same floor with the SIMD base64 ours uses (for reference, not a target)

Targets: (a) >= 4x (c) and >= 0.6x (d); peak memory for one 6 MB batch < 256 MB.
The last line is one JSON object with every figure.

    python bench/transform.py [--events 20000] [--repeat 5]
"""

from __future__ import annotations

import argparse
import base64
import binascii
import gc
import json
import os
import random
import resource
import sys
import time
import tracemalloc
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any

import orjson
import pybase64
import pydantic
from aws_lambda_powertools.utilities.data_classes import (
    KinesisFirehoseDataTransformationRecord,
    KinesisFirehoseDataTransformationRecordMetadata,
    KinesisFirehoseDataTransformationResponse,
    KinesisFirehoseEvent,
)

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bxb_runtime.config import EventRules
from bxb_runtime.events.validate import MIN_TIMESTAMP_MS, parse_decimal, parse_timestamp
from bxb_runtime.transform import Transformer
from bxb_stream.firehose.invocation import SourceRecord, firehose_event

RULES = EventRules(organization_id="org_bench")
PROCESSOR_BUFFER_BYTES = 1024 * 1024  # Firehose's default processor buffer hint


def make_events(n: int, now_ms: int, seed: int = 7) -> list[bytes]:
    """~215-byte billing events, like an API server emits them."""
    rnd = random.Random(seed)
    codes = ["api_calls", "storage_gb", "seats", "egress_gb"]
    out = []
    for i in range(n):
        event = {
            "transaction_id": f"tx_{i:010d}_{rnd.getrandbits(40):010x}",
            "external_customer_id": f"cust_{int(rnd.paretovariate(1.2)) % 5000:05d}",
            "code": rnd.choice(codes),
            "timestamp": round(now_ms / 1000 - rnd.uniform(0, 3600), 3),
            "properties": {
                "region": rnd.choice(["eu-west-1", "us-east-1"]),
                "plan": "pro",
                "units": rnd.randint(1, 9),
                "api": "v2",
            },
            "value": round(rnd.uniform(0, 100), 2),
        }
        out.append(orjson.dumps(event))
    return out


def batches(events: list[bytes], now_ms: int) -> list[dict[str, Any]]:
    """Split into Firehose invocations of at most the processor buffer hint."""
    result, current, size = [], [], 0
    for i, data in enumerate(events):
        if current and size + len(data) > PROCESSOR_BUFFER_BYTES:
            result.append(current)
            current, size = [], 0
        current.append(SourceRecord(data, now_ms, sequence_number=str(i)))
        size += len(data)
    result.append(current)
    return [firehose_event(b) for b in result]


# --------------------------------------------------------------------------- handlers

TRANSFORMER = Transformer(RULES)


def ours(event: dict[str, Any]) -> dict[str, Any]:
    return TRANSFORMER.process(event)[0]


def ours_powertools_response(event: dict[str, Any]) -> dict[str, Any]:
    """Ours, but answered through Powertools' response helper objects."""
    response, _ = TRANSFORMER.process(event)
    result = KinesisFirehoseDataTransformationResponse()
    for rec in response["records"]:
        result.add_record(
            KinesisFirehoseDataTransformationRecord(
                record_id=rec["recordId"], result=rec["result"], data=rec["data"], metadata=None
            )
        )
    return result.asdict()


def blueprint(event: dict[str, Any]) -> dict[str, Any]:
    """The AWS Lambda blueprint for Firehose processing, with a JSON round trip."""
    output = []
    for record in event["records"]:
        payload = json.loads(base64.b64decode(record["data"]).decode("utf-8"))
        data = base64.b64encode((json.dumps(payload) + "\n").encode("utf-8")).decode("utf-8")
        output.append({"recordId": record["recordId"], "result": "Ok", "data": data})
    return {"records": output}


Id = Annotated[str, pydantic.StringConstraints(min_length=1, max_length=256, pattern=r"\S")]


class PydanticEvent(pydantic.BaseModel):
    """The same rules as ours, written the pydantic way."""

    model_config = pydantic.ConfigDict(extra="forbid")
    transaction_id: Id
    external_customer_id: Id
    code: Id
    timestamp: int | float | str | None = None
    properties: dict[str, Any] | None = None
    value: pydantic.FiniteFloat | None = None
    decimal_value: Decimal | None = None
    organization_id: str | None = pydantic.Field(default=None, validate_default=True)

    @pydantic.field_validator("decimal_value")
    @classmethod
    def fits_decimal128(cls, v: Decimal | None) -> str | None:
        return None if v is None else parse_decimal(v)

    @pydantic.field_validator("organization_id")
    @classmethod
    def same_tenant(cls, v: str | None) -> str:
        if v is not None and v != RULES.organization_id:
            raise ValueError("organization_mismatch")
        return RULES.organization_id


def powertools_pydantic(event: dict[str, Any]) -> dict[str, Any]:
    """Powertools data classes in and out, pydantic validation, the same enrichment and routing."""
    firehose = KinesisFirehoseEvent(event)
    result = KinesisFirehoseDataTransformationResponse()
    now_ms = int(time.time() * 1000)
    seen: dict[str, bytes] = {}
    for record in firehose.records:
        arrival_ms = record.approximate_arrival_timestamp
        try:
            ev = PydanticEvent.model_validate_json(record.data_as_bytes)
            ts_ms = arrival_ms if ev.timestamp is None else parse_timestamp(ev.timestamp)
            if not MIN_TIMESTAMP_MS <= ts_ms <= arrival_ms + RULES.future_skew_ms:
                raise ValueError("bad_timestamp")
            properties = json.dumps(ev.properties or {}, sort_keys=True, separators=(",", ":"))
            if len(properties) > RULES.max_properties_bytes:
                raise ValueError("properties_too_large")
        except (pydantic.ValidationError, ValueError):
            result.add_record(record.build_data_transformation_response(result="ProcessingFailed", data=record.data))
            continue
        out = ev.model_dump(exclude_none=True)
        out.update(timestamp=ts_ms, properties=properties)
        payload = json.dumps(out, sort_keys=True)
        # An identical copy within the batch is dropped; a copy that differs goes on (a conflict).
        if seen.get(ev.transaction_id) == payload:
            result.add_record(record.build_data_transformation_response(result="Dropped", data=record.data))
            continue
        seen.setdefault(ev.transaction_id, payload)
        out.update(ingested_at=now_ms, arrived_at=arrival_ms)
        line = json.dumps(out).encode() + b"\n"
        at = datetime.fromtimestamp(ts_ms / 1000, tz=UTC)
        keys = {"organization_id": out["organization_id"], "date": at.strftime("%Y-%m-%d"), "hour": at.strftime("%H")}
        metadata = KinesisFirehoseDataTransformationRecordMetadata(partition_keys=keys)
        data = base64.b64encode(line).decode()
        result.add_record(record.build_data_transformation_response(result="Ok", data=data, metadata=metadata))
    return result.asdict()


def floor(event: dict[str, Any]) -> dict[str, Any]:
    """The codec floor: orjson loads/dumps + base64, no logic."""
    output = []
    for record in event["records"]:
        data = orjson.dumps(orjson.loads(binascii.a2b_base64(record["data"])), option=orjson.OPT_APPEND_NEWLINE)
        output.append(
            {"recordId": record["recordId"], "result": "Ok", "data": binascii.b2a_base64(data, newline=False).decode()}
        )
    return {"records": output}


def floor_pybase64(event: dict[str, Any]) -> dict[str, Any]:
    """The codec floor with pybase64, the base64 library ours uses: how much is our logic alone."""
    output = []
    for record in event["records"]:
        data = orjson.dumps(orjson.loads(pybase64.b64decode(record["data"])), option=orjson.OPT_APPEND_NEWLINE)
        output.append({"recordId": record["recordId"], "result": "Ok", "data": pybase64.b64encode_as_string(data)})
    return {"records": output}


HANDLERS = {
    "ours": ours,
    "ours_powertools_response": ours_powertools_response,
    "blueprint": blueprint,
    "powertools_pydantic": powertools_pydantic,
    "floor": floor,
    "floor_pybase64": floor_pybase64,
}


# --------------------------------------------------------------------------- measurement


def throughput(invocations: list[dict[str, Any]], n: int, repeat: int) -> dict[str, float]:
    """Best records/s of each handler over ``repeat`` rounds. Rounds interleave the
    handlers, so a noisy moment on the machine hits all of them alike."""
    best = dict.fromkeys(HANDLERS, float("inf"))
    for _ in range(repeat):
        for name, handler in HANDLERS.items():
            gc.collect()
            start = time.perf_counter()
            for invocation in invocations:
                handler(invocation)
            best[name] = min(best[name], time.perf_counter() - start)
    return {name: n / seconds for name, seconds in best.items()}


def peak_memory_mb(now_ms: int) -> tuple[float, float]:
    """Python heap peak while transforming one ~6 MB request, and its size in MB."""
    events = make_events(12_000, now_ms, seed=11)
    request = firehose_event([SourceRecord(d, now_ms) for d in events])
    while len(orjson.dumps(request)) > 6 * 1024 * 1024:  # Lambda's request limit
        request["records"].pop()
    request_mb = len(orjson.dumps(request)) / 1e6
    transformer = Transformer(RULES)
    gc.collect()
    tracemalloc.start()
    _, stats = transformer.process(request)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert stats.balanced
    return peak / 1e6, request_mb


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})  # one core, as in Lambda at 1769 MB

    now_ms = int(time.time() * 1000)
    events = make_events(args.events, now_ms)
    invocations = batches(events, now_ms)
    avg_bytes = sum(map(len, events)) / len(events)

    # Sanity: ours accepts every event, and every baseline answers every record.
    for name, handler in HANDLERS.items():
        answered = sum(len(handler(inv)["records"]) for inv in invocations)
        assert answered == args.events, name
    ok = sum(TRANSFORMER.process(inv)[1].results["Ok"] for inv in invocations)
    assert ok == args.events, f"ours accepted {ok} of {args.events}"

    rps = throughput(invocations, args.events, args.repeat)
    peak_mb, request_mb = peak_memory_mb(now_ms)
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    figures = {
        "events": args.events,
        "avg_event_bytes": round(avg_bytes, 1),
        "invocations": len(invocations),
        **{f"{name}_rps": round(value) for name, value in rps.items()},
        "ratio_ours_vs_powertools_pydantic": round(rps["ours"] / rps["powertools_pydantic"], 2),
        "ratio_ours_vs_floor": round(rps["ours"] / rps["floor"], 2),
        "ratio_ours_vs_floor_pybase64": round(rps["ours"] / rps["floor_pybase64"], 2),
        "ratio_ours_vs_blueprint": round(rps["ours"] / rps["blueprint"], 2),
        "powertools_response_cost": round(1 - rps["ours_powertools_response"] / rps["ours"], 3),
        "batch_6mb_request_mb": round(request_mb, 2),
        "batch_6mb_peak_heap_mb": round(peak_mb, 1),
        "process_max_rss_mb": round(rss_mb, 1),
        "target_ratio_vs_powertools_pydantic": 4.0,
        "target_ratio_vs_floor": 0.6,
        "target_peak_mb": 256,
    }
    figures["targets_met"] = (
        figures["ratio_ours_vs_powertools_pydantic"] >= 4.0
        and figures["ratio_ours_vs_floor"] >= 0.6
        and figures["batch_6mb_peak_heap_mb"] < 256
        and figures["process_max_rss_mb"] < 256
    )

    print(f"{args.events} events of {avg_bytes:.0f} bytes in {len(invocations)} invocations, one core")
    print(f"{'handler':28s} {'records/s':>12s} {'vs ours':>8s}")
    for name, value in rps.items():
        print(f"{name:28s} {value:12,.0f} {value / rps['ours']:8.2f}")
    print(f"ours / powertools+pydantic = {figures['ratio_ours_vs_powertools_pydantic']} (target >= 4)")
    print(f"ours / codec floor         = {figures['ratio_ours_vs_floor']} (target >= 0.6)")
    print(f"ours / floor with pybase64 = {figures['ratio_ours_vs_floor_pybase64']} (reference: our logic alone)")
    print(
        f"6 MB batch ({request_mb:.1f} MB): peak heap {peak_mb:.0f} MB, process max RSS {rss_mb:.0f} MB (target < 256)"
    )
    print(json.dumps(figures))
    return 0 if figures["targets_met"] else 1


if __name__ == "__main__":
    sys.exit(main())
