"""The Lambda handler: Powertools structured logs and EMF metrics around the transform.

The handler runs in a child process, as in Lambda, so what it writes to stdout
(JSON logs, EMF blobs) is read exactly as CloudWatch would read it.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
INVOKE = """
import importlib.util, json, sys
spec = importlib.util.spec_from_file_location("handler", "lambdas/transform/handler.py")
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)

class Context:
    function_name = "bxb-transform"
    memory_limit_in_mb = 512
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:bxb-transform"
    aws_request_id = "req-1"

print("RULES " + json.dumps([module.RULES.organization_id, module.RULES.future_skew_seconds]))
response = module.handler(json.load(sys.stdin), Context())
print("RESPONSE " + json.dumps(response))
"""


def invoke(event: dict, **env: str) -> tuple[dict, list[dict], list]:
    result = subprocess.run(
        [sys.executable, "-c", INVOKE],
        input=json.dumps(event),
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, **env},
        timeout=60,
        check=True,
    )
    lines = result.stdout.splitlines()
    response = json.loads(next(line for line in lines if line.startswith("RESPONSE "))[9:])
    rules = json.loads(next(line for line in lines if line.startswith("RULES "))[6:])
    records = [json.loads(line) for line in lines if line.startswith("{")]
    return response, records, rules


def test_handler_logs_each_rejection_and_emits_counts():
    good = {"transaction_id": "a", "external_customer_id": "c", "code": "api_calls"}
    bad = {"transaction_id": "b", "external_customer_id": "c", "code": "api_calls", "timestmap": 1}
    event = {
        "invocationId": "inv-1",
        "records": [
            {
                "recordId": rid,
                "approximateArrivalTimestamp": 1_790_000_000_000,
                "data": base64.b64encode(json.dumps(e).encode()).decode(),
            }
            for rid, e in (("r1", good), ("r2", bad), ("r3", good))
        ],
    }
    response, lines, rules = invoke(event, BXB_ORGANIZATION_ID="org_env", BXB_FUTURE_SKEW_SECONDS="600")
    assert rules == ["org_env", 600]  # the rules come from the environment
    assert [r["result"] for r in response["records"]] == ["Ok", "ProcessingFailed", "Dropped"]

    rejection = next(line for line in lines if line.get("message") == "record rejected")
    assert rejection["level"] == "WARNING"
    assert rejection["recordId"] == "r2" and rejection["error_code"] == "unknown_field:timestmap"

    metrics = [line for line in lines if "_aws" in line]
    names = {m["Name"] for blob in metrics for d in blob["_aws"]["CloudWatchMetrics"] for m in d["Metrics"]}
    assert {"RecordsIn", "RecordsOk", "RecordsDropped", "RecordsProcessingFailed", "RecordsByReason"} <= names
    assert "ResponseBytes" in names  # measured as the runtime encodes it: the 6 MB limit can be alarmed on
    counts = next(blob for blob in metrics if "RecordsIn" in blob)
    assert counts["RecordsIn"] == [3.0] and counts["RecordsOk"] == [1.0] and counts["RecordsProcessingFailed"] == [1.0]
    by_reason = {blob["Reason"]: blob["RecordsByReason"] for blob in metrics if "Reason" in blob}
    assert by_reason == {"unknown_field:timestmap": [1.0], "duplicate_in_batch": [1.0]}
