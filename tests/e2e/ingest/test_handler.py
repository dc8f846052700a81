"""The ingest Lambda as deployed: env, Secrets Manager, Powertools logs and EMF, in a child process.

The child starts its own embedded engine (one per process), applies the real schema, and
invokes ``lambdas/ingest/handler.py``; Secrets Manager is the session's moto server.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import boto3

from bxb_runtime.config import EventRules
from bxb_runtime.events.lines import to_line
from bxb_runtime.events.validate import normalize

ROOT = Path(__file__).resolve().parents[3]
NOW_MS = int(time.time() * 1000)  # the child checks ingested_at against its own clock
CHILD = """
import json, os, sys
from bxb_stream.clickhouse import engine, migrations
from bxb_stream.clickhouse.settings import ClickHouseSettings

eng = engine.start(os.environ["CHILD_DATA_DIR"])
settings = ClickHouseSettings(bucket_url=os.environ["CHILD_BUCKET_URL"], database="bxb", named_collection="bxb_s3")
migrations.ensure_named_collection_from_env(eng.client(), settings)
migrations.apply(eng.client(), settings)
os.environ["BXB_CLICKHOUSE_URL"] = eng.url

import importlib.util
spec = importlib.util.spec_from_file_location("handler", "lambdas/ingest/handler.py")
handler = importlib.util.module_from_spec(spec)
spec.loader.exec_module(handler)

class Context:
    function_name = "bxb-ingest"
    memory_limit_in_mb = 512
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:bxb-ingest"
    aws_request_id = "req"

for event in json.load(sys.stdin):
    print("RESPONSE " + json.dumps(handler.handler(event, Context())), flush=True)
client = eng.client()
print("ROWS " + json.dumps(client.query("SELECT transaction_id FROM bxb.events_raw ORDER BY 1").result_rows))
"""


def fn_url_event(lines: list[bytes], request_id: str, key: str) -> dict:
    body = {
        "requestId": request_id,
        "timestamp": NOW_MS,
        "records": [{"data": base64.b64encode(x).decode()} for x in lines],
    }
    return {
        "headers": {"x-amz-firehose-request-id": request_id, "x-amz-firehose-access-key": key},
        "body": base64.b64encode(json.dumps(body).encode()).decode(),
        "isBase64Encoded": True,
    }


def test_lambda_handler_end_to_end(moto_s3, tmp_path):
    secrets = boto3.client(
        "secretsmanager",
        endpoint_url=moto_s3.endpoint_url,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    name = f"bxb/access-key-{os.getpid()}"
    arn = secrets.create_secret(Name=name, SecretString=json.dumps({"api_key": "s3cr3t-key"}))["ARN"]
    moto_s3.client().create_bucket(Bucket="bxb-handler-test")
    rules = EventRules(organization_id="org_1")
    line = to_line(
        normalize(
            {"transaction_id": "t1", "external_customer_id": "c", "code": "x"},
            rules,
            arrival_ms=NOW_MS,
            ingested_ms=NOW_MS,
        )
    )
    events = [
        fn_url_event([line, b"garbage\n"], "req-a", "s3cr3t-key"),
        fn_url_event([line], "req-a", "s3cr3t-key"),  # Firehose's retry: same request id
        fn_url_event([line], "req-b", "wrong"),
    ]
    env = {
        **os.environ,
        "CHILD_DATA_DIR": str(tmp_path / "ch"),
        "CHILD_BUCKET_URL": f"{moto_s3.endpoint_url}/bxb-handler-test",
        "AWS_ENDPOINT_URL": moto_s3.endpoint_url,
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "BXB_ACCESS_KEY_SECRET_ARN": arn,
        "BXB_CLICKHOUSE_DATABASE": "bxb",
        "BXB_ORGANIZATION_ID": "org_1",
    }
    env.pop("BXB_CLICKHOUSE_SECRET_ARN", None)
    result = subprocess.run(
        [sys.executable, "-c", CHILD],
        input=json.dumps(events),
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout.splitlines()
    responses = [json.loads(x[9:]) for x in out if x.startswith("RESPONSE ")]
    assert [r["statusCode"] for r in responses] == [200, 200, 401]
    assert all(json.loads(r["body"])["requestId"] for r in responses[:2])
    assert json.loads(next(x for x in out if x.startswith("ROWS "))[5:]) == [["t1"]]  # once, despite the retry

    logs = [json.loads(x) for x in out if x.startswith("{")]
    stored = [x for x in logs if x.get("message") == "batch stored"]
    assert stored[0]["rows"] == 1 and stored[0]["dead_lettered"] == 1 and stored[0]["dead_codes"] == {"not_json": 1}
    refused = next(x for x in logs if x.get("message") == "batch refused")
    assert refused["status"] == 401 and "s3cr3t" not in json.dumps(logs)  # the key is never logged
    metrics = [x for x in logs if "_aws" in x]
    assert [m["AuthFailures"] for m in metrics] == [[0.0], [0.0], [1.0]]
    assert metrics[0]["RowsInserted"] == [1.0] and metrics[0]["RowsDeadLettered"] == [1.0]
    assert all("ClickHouseLatency" in m for m in metrics[:2])
