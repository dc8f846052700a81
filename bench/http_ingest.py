"""HTTP ingest throughput: the ingest's path, the former Arrow path and a naive handler; and the Lambda's weight.

json   bxb_runtime.ingest.IngestService as shipped: the records' base64 decoded by msgspec with the body,
       each line strictly decoded by msgspec, the transform's fields re-checked, one
       ``INSERT ... FORMAT Native`` block written column by column (bxb_runtime.ingest.native)
arrow  the former path (bench/ingest_arrow.py): pyarrow's JSON reader, column-wise checks, one Arrow insert
naive  json.loads per record -> Python row dicts -> client.insert (row-oriented)

All run against one embedded chDB engine, into identical tables, side by side in one run.
Rule: the ingest keeps pyarrow only if arrow beats json by >= 1.5x rows/s. Targets for the path kept:
>= 3x the naive handler's rows/s; the ingest bundle (built as stacks/ bundle it: pip --platform
--target, with its bytecode) <= 30 MB unzipped; the handler module's cold import, in a fresh
interpreter, best of 5, <= 300 ms: imported from that bundle built with this machine's wheels,
with ``-B`` (as on Lambda, only the bytecode shipped is used). Run it on Python 3.12, the Lambda's
(``make install`` picks it). The last line is one JSON object with every figure.

    python bench/http_ingest.py [--repeat 15] [--no-bundle]
"""

from __future__ import annotations

import argparse
import atexit
import base64
import gc
import json
import os
import platform
import random
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import ingest_arrow  # bench/, beside this script

from bxb_runtime.clickhouse.tables import EVENT_COLUMNS
from bxb_runtime.config import EventRules
from bxb_runtime.events.lines import to_line
from bxb_runtime.events.validate import normalize
from bxb_runtime.ingest import IngestService, IngestSettings
from bxb_runtime.ingest.rows import Trust
from bxb_stream.clickhouse import engine as ch_engine
from bxb_stream.clickhouse import migrations

REPO = Path(__file__).resolve().parents[1]
REQUEST_BYTES = 4 * 1024 * 1024
HANDLERS = ("json", "arrow", "naive")
DATABASES = {name: f"bench_{name}" for name in HANDLERS}
KEEP_ARROW_RATIO, TARGET_RATIO, TARGET_BUNDLE_MB, TARGET_IMPORT_MS = 1.5, 3.0, 30.0, 300.0
RULES = EventRules(organization_id="org_bench")
TRUST = Trust(organization_id=RULES.organization_id)  # the rows must be the deployment's own


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


class ArrowIngest(IngestService):
    """The same service with the former Arrow path: only building and inserting the events differ."""

    build = staticmethod(ingest_arrow.build_batch)

    def insert_events(self, client: Any, batch: Any, settings: dict[str, Any]) -> None:
        ingest_arrow.insert_events(self, client, batch, settings)


def build_bundle(out: str, platforms: tuple[str, ...] | None = None) -> None:
    """The ingest Lambda's asset, built by stacks' local bundler into ``out``: arm64 wheels as deployed, or
    with ``platforms=()`` this machine's wheels (same packages and bytecode, so it can be imported here)."""
    script = (
        "import json, sys; from pathlib import Path; from stacks.bundling import LocalPythonBundler, PLATFORMS;"
        "from stacks.functions import INGEST_DIR, INGEST_REQUIREMENTS; platforms = json.loads(sys.argv[2]);"
        "LocalPythonBundler(Path.cwd(), INGEST_DIR, INGEST_REQUIREMENTS, PLATFORMS if platforms is None else platforms)"
        ".try_bundle(sys.argv[1])"
    )
    subprocess.run([sys.executable, "-c", script, out, json.dumps(platforms)], cwd=REPO, check=True, timeout=600)


def bundle_mb() -> tuple[float, dict[str, float]]:
    """The deployed asset (arm64): total MB unzipped and the largest parts."""
    out = tempfile.mkdtemp(prefix="bxb-bench-bundle-")
    try:
        build_bundle(out)
        sizes: dict[str, float] = {}
        for path in Path(out).rglob("*"):
            if path.is_file():
                top = path.relative_to(out).parts[0]
                sizes[top] = sizes.get(top, 0) + path.stat().st_size / 1e6
        largest = dict(sorted(((k, round(v, 2)) for k, v in sizes.items()), key=lambda kv: -kv[1])[:6])
        return round(sum(sizes.values()), 2), largest
    finally:
        shutil.rmtree(out, ignore_errors=True)


def cold_import_ms(from_bundle: bool, rounds: int = 5) -> tuple[float, bool]:
    """Best of ``rounds`` fresh interpreters: milliseconds to import the handler module; and whether that
    imported pyarrow. ``from_bundle``: from the asset built for this machine, with ``-B`` as on Lambda
    (a read-only task directory: only the bytecode the bundle ships is used); otherwise from this
    checkout, with its ``__pycache__``. botocore and Powertools come from this environment either way
    (on Lambda: the runtime and the layer)."""
    root = tempfile.mkdtemp(prefix="bxb-bench-host-bundle-") if from_bundle else str(REPO)
    script = (
        "import sys, time; sys.path[:0] = [sys.argv[1], sys.argv[1] + '/lambdas/ingest'];"
        "t = time.perf_counter(); import handler; ms = (time.perf_counter() - t) * 1000;"
        "print(ms, 'pyarrow' in sys.modules)"
    )
    env = {
        **os.environ,
        "AWS_DEFAULT_REGION": "us-east-1",
        "BXB_CLICKHOUSE_URL": "https://clickhouse.invalid:8443",
        "BXB_ACCESS_KEY_SECRET_ARN": "arn:aws:secretsmanager:us-east-1:123456789012:secret:bench",
    }
    env.pop("PYTHONPYCACHEPREFIX", None)
    flags = ["-B"] if from_bundle else []
    best, pyarrow = float("inf"), False
    try:
        if from_bundle:
            build_bundle(root, platforms=())
        for _ in range(rounds):
            done = subprocess.run(
                [sys.executable, *flags, "-c", script, root],
                env=env,
                capture_output=True,
                text=True,
                check=True,
                timeout=60,
            )
            ms, loaded = done.stdout.split()
            best, pyarrow = min(best, float(ms)), pyarrow or loaded == "True"
    finally:
        if from_bundle:
            shutil.rmtree(root, ignore_errors=True)
    return round(best, 1), pyarrow


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument(
        "--no-bundle",
        action="store_true",
        help="build no bundle (they need PyPI): no size, and the cold import from this checkout instead",
    )
    parser.add_argument("--data-parent", default=None, help="where the engine's data goes (default /dev/shm)")
    args = parser.parse_args()

    # The engine's parts go to memory when it can: its disk writes are shared by both handlers,
    # and on this VM they are the noisiest part of an insert (in production the server pays them).
    parent = args.data_parent or ("/dev/shm" if os.path.isdir("/dev/shm") else None)
    data_dir = tempfile.mkdtemp(prefix="bxb-bench-ingest-", dir=parent)
    atexit.register(shutil.rmtree, data_dir, True)  # registered first, so it runs after the engine closes
    engine = ch_engine.start(data_dir)
    client = engine.client()
    for db in DATABASES.values():
        migrations.apply(client, project_schema(db))
    services = {
        "json": IngestService(AnyKey(), lambda: client, IngestSettings(database=DATABASES["json"], trust=TRUST)).handle,
        "arrow": ArrowIngest(AnyKey(), lambda: client, IngestSettings(database=DATABASES["arrow"], trust=TRUST)).handle,
    }
    naive = naive_handler(client, DATABASES["naive"])

    now_ms = int(time.time() * 1000)
    lines = transformed_lines(now_ms)
    rows = len(lines)
    body_mib = len(request(lines, "x")["body"]) / 2**20
    best = dict.fromkeys(HANDLERS, float("inf"))
    for round_ in range(args.repeat):
        for name in HANDLERS:  # interleaved, so a noisy moment on the machine hits every handler alike
            event = request(lines, f"{name}-{round_}")  # a fresh request id: dedup must not skip the insert
            gc.collect()
            start = time.perf_counter()
            response = services[name](event)[0] if name in services else naive(event)
            best[name] = min(best[name], time.perf_counter() - start)
            assert response["statusCode"] == 200, response
    # events_raw keeps every copy (the resolver bills one): each round stored the request once more.
    for db in DATABASES.values():
        count = client.query(f"SELECT count() FROM {db}.events_raw").result_rows[0][0]
        assert count == rows * args.repeat, (db, count, rows)
    columns = ", ".join(EVENT_COLUMNS)
    stored = {
        name: client.query(f"SELECT DISTINCT {columns} FROM {db}.events_raw ORDER BY transaction_id").result_rows
        for name, db in DATABASES.items()
    }
    assert all(len(copies) == rows for copies in stored.values()), {k: len(v) for k, v in stored.items()}
    identical = stored["json"] == stored["arrow"] == stored["naive"]
    for db in DATABASES.values():
        client.command(f"DROP DATABASE {db} SYNC")

    rate = {name: rows / best[name] for name in HANDLERS}
    arrow_vs_json = round(rate["arrow"] / rate["json"], 2)
    kept = "arrow" if arrow_vs_json >= KEEP_ARROW_RATIO else "json"
    total_mb, largest = bundle_mb() if not args.no_bundle else (None, {})
    import_ms, imports_pyarrow = cold_import_ms(from_bundle=not args.no_bundle)
    figures = {
        "request_mib": round(body_mib, 2),
        "rows_per_request": rows,
        **{f"{name}_rows_per_s": round(rate[name]) for name in HANDLERS},
        **{f"{name}_seconds": round(best[name], 4) for name in HANDLERS},
        "ratio_arrow_vs_json": arrow_vs_json,
        "keep_arrow_if_ratio_at_least": KEEP_ARROW_RATIO,
        "path_kept": kept,
        "rows_per_s": round(rate[kept]),
        "ratio_kept_vs_naive": round(rate[kept] / rate["naive"], 2),
        "identical_rows": identical,
        "bundle_mb_unzipped": total_mb,
        "bundle_largest_mb": largest,
        "cold_import_ms_best_of_5": import_ms,
        "cold_import_from": "checkout" if args.no_bundle else "bundle built for this machine, -B",
        "python": platform.python_version(),
        "handler_imports_pyarrow": imports_pyarrow,
        "engine_data_parent": parent or tempfile.gettempdir(),
        "targets": {"ratio_vs_naive": TARGET_RATIO, "bundle_mb": TARGET_BUNDLE_MB, "cold_import_ms": TARGET_IMPORT_MS},
    }
    figures["targets_met"] = (
        figures["ratio_kept_vs_naive"] >= TARGET_RATIO
        and identical
        and kept == "json"  # the shipped path is the one the rule keeps
        and (total_mb is None or total_mb <= TARGET_BUNDLE_MB)
        and import_ms <= TARGET_IMPORT_MS
    )
    where = parent or tempfile.gettempdir()
    print(f"{body_mib:.1f} MiB request, {rows} rows, best of {args.repeat}, one embedded chDB engine in {where}")
    print(f"{'handler':8s} {'seconds':>9s} {'rows/s':>12s}")
    for name in HANDLERS:
        print(f"{name:8s} {best[name]:9.3f} {rate[name]:12,.0f}")
    print(f"arrow / json = {arrow_vs_json} (pyarrow kept only at >= {KEEP_ARROW_RATIO}): {kept} kept")
    print(
        f"{kept} / naive = {figures['ratio_kept_vs_naive']} (target >= {TARGET_RATIO}); same rows stored: {identical}"
    )
    print(f"bundle {total_mb} MB unzipped (target <= {TARGET_BUNDLE_MB}); largest: {largest}")
    print(
        f"cold import {import_ms} ms from the {figures['cold_import_from']}, best of 5 (target <= {TARGET_IMPORT_MS});"
        f" imports pyarrow: {imports_pyarrow}; Python {figures['python']}"
    )
    print(json.dumps(figures))
    return 0 if figures["targets_met"] else 1


if __name__ == "__main__":
    sys.exit(main())
