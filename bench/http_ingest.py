"""HTTP ingest throughput: our handler against a naive one, same engine, same 4 MiB request.

ours   bxb_stream.ingest.IngestService: the request's lines parsed at once by pyarrow's
       JSON reader and checked column-wise (events.table), one Arrow insert with a dedup token
naive  json.loads per record -> Python row dicts -> client.insert (row-oriented)

Both run against one embedded chDB engine, into identical tables. Target: ours >= 3x naive.
The last line is one JSON object with every figure.

    python bench/http_ingest.py [--repeat 15]
"""

from __future__ import annotations

import argparse
import atexit
import base64
import gc
import json
import os
import random
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bxb_stream.clickhouse import engine as ch_engine
from bxb_stream.clickhouse import migrations
from bxb_stream.clickhouse.tables import EVENT_COLUMNS
from bxb_stream.config import EventRules
from bxb_stream.events.lines import to_line
from bxb_stream.events.validate import normalize
from bxb_stream.ingest import IngestService, IngestSettings

REQUEST_BYTES = 4 * 1024 * 1024
RULES = EventRules(organization_id="org_bench")


class AnyKey:
    def accepts(self, presented: str | None) -> bool:
        return True


def transformed_lines(now_ms: int) -> list[bytes]:
    """Transform output lines until their base64 fills a 4 MiB request body."""
    rnd = random.Random(3)
    lines, size, i = [], 0, 0
    while size < REQUEST_BYTES:
        raw = {
            "transaction_id": f"tx_{i:010d}",
            "external_customer_id": f"cust_{rnd.randrange(5000):05d}",
            "code": rnd.choice(["api_calls", "storage_gb", "seats"]),
            "timestamp": now_ms / 1000 - rnd.uniform(0, 3600),
            "properties": {
                "region": "eu-west-1",
                "plan": "pro",
                "units": rnd.randint(1, 9),
                "endpoint": f"/v1/invoices/{rnd.getrandbits(48):012x}",
                "request_id": f"{rnd.getrandbits(128):032x}",
            },
            "value": round(rnd.uniform(0, 100), 2),
        }
        if i % 4 == 0:
            raw["decimal_value"] = f"{rnd.randrange(10**6)}.{rnd.randrange(10**6):06d}"
        line = to_line(normalize(raw, RULES, arrival_ms=now_ms, ingested_ms=now_ms))
        lines.append(line)
        size += len(line) * 4 // 3 + 14
        i += 1
    return lines


def request(lines: list[bytes], request_id: str) -> dict[str, Any]:
    body = {"requestId": request_id, "timestamp": 0, "records": [{"data": base64.b64encode(x).decode()} for x in lines]}
    return {
        "headers": {"x-amz-firehose-request-id": request_id, "x-amz-firehose-access-key": "k"},
        "body": json.dumps(body),
        "isBase64Encoded": False,
    }


def naive_handler(client: Any, database: str) -> Any:
    """What a first version looks like: row dicts, datetime objects, row-oriented insert."""

    def handle(event: dict[str, Any]) -> dict[str, Any]:
        body = json.loads(event["body"])
        rows = []
        for record in body["records"]:
            row = json.loads(base64.b64decode(record["data"]))
            row["timestamp"] = datetime.fromtimestamp(row["timestamp"] / 1000, tz=UTC)
            row["ingested_at"] = datetime.fromtimestamp(row["ingested_at"] / 1000, tz=UTC)
            row["decimal_value"] = Decimal(row["decimal_value"]) if row.get("decimal_value") else None
            row.setdefault("value", None)
            rows.append(row)
        names = list(rows[0])
        client.insert(
            f"{database}.events_raw",
            [[row[name] for name in names] for row in rows],
            column_names=names,
            settings={"insert_deduplication_token": body["requestId"]},
        )
        return {"statusCode": 200}

    return handle


def project_schema(database: str) -> Any:
    """The project's real HTTP-path tables (events_raw, events_late, dead letters) in ``database``:
    no S3 queues, so nothing polls a bucket while the handlers are timed."""
    from bxb_stream.clickhouse.settings import ClickHouseSettings

    # The bucket is never contacted without queues; the URL only has to be well formed.
    return ClickHouseSettings(
        bucket_url="http://127.0.0.1:9/unused", database=database, named_collection="bench_s3", s3_queues=False
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--data-parent", default=None, help="where the engine's data goes (default /dev/shm)")
    args = parser.parse_args()

    # The engine's parts go to memory when it can: its disk writes are shared by both handlers,
    # and on this VM they are the noisiest part of an insert (in production the server pays them).
    parent = args.data_parent or ("/dev/shm" if os.path.isdir("/dev/shm") else None)
    data_dir = tempfile.mkdtemp(prefix="bxb-bench-ingest-", dir=parent)
    atexit.register(shutil.rmtree, data_dir, True)  # registered first, so it runs after the engine closes
    engine = ch_engine.start(data_dir)
    client = engine.client()
    for db in ("ours", "naive"):
        migrations.apply(client, project_schema(db))
    ours = IngestService(AnyKey(), lambda: client, IngestSettings(database="ours"))
    naive = naive_handler(client, "naive")

    now_ms = int(time.time() * 1000)
    lines = transformed_lines(now_ms)
    rows = len(lines)
    body_mib = len(request(lines, "x")["body"]) / 2**20
    best = {"ours": float("inf"), "naive": float("inf")}
    for round_ in range(args.repeat):
        for name in best:
            event = request(lines, f"{name}-{round_}")  # a fresh request id: dedup must not skip the insert
            gc.collect()
            start = time.perf_counter()
            response = ours.handle(event)[0] if name == "ours" else naive(event)
            best[name] = min(best[name], time.perf_counter() - start)
            assert response["statusCode"] == 200, response
    for db in ("ours", "naive"):
        count = client.query(f"SELECT count() FROM {db}.events_raw FINAL").result_rows[0][0]
        assert count == rows, (db, count, rows)
    columns = ", ".join(EVENT_COLUMNS)
    identical = (
        client.query(f"SELECT {columns} FROM ours.events_raw FINAL ORDER BY transaction_id").result_rows
        == client.query(f"SELECT {columns} FROM naive.events_raw FINAL ORDER BY transaction_id").result_rows
    )
    for db in ("ours", "naive"):
        client.command(f"DROP DATABASE {db} SYNC")

    figures = {
        "request_mib": round(body_mib, 2),
        "rows_per_request": rows,
        "ours_rows_per_s": round(rows / best["ours"]),
        "naive_rows_per_s": round(rows / best["naive"]),
        "ours_seconds": round(best["ours"], 3),
        "naive_seconds": round(best["naive"], 3),
        "ratio_ours_vs_naive": round(best["naive"] / best["ours"], 2),
        "identical_rows": identical,
        "engine_data_parent": parent or tempfile.gettempdir(),
        "target_ratio": 3.0,
    }
    figures["targets_met"] = figures["ratio_ours_vs_naive"] >= 3.0 and identical
    where = parent or tempfile.gettempdir()
    print(f"{body_mib:.1f} MiB request, {rows} rows, best of {args.repeat}, one embedded chDB engine in {where}")
    print(f"{'handler':8s} {'seconds':>9s} {'rows/s':>12s}")
    for name in best:
        print(f"{name:8s} {best[name]:9.3f} {rows / best[name]:12,.0f}")
    print(f"ours / naive = {figures['ratio_ours_vs_naive']} (target >= 3); same rows stored: {identical}")
    print(json.dumps(figures))
    return 0 if figures["targets_met"] else 1


if __name__ == "__main__":
    sys.exit(main())
