"""The context ``bxb-stream plan`` suggests, pasted over the shipped cdk.json, synthesizes with the real CDK app."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[3]
CH_URL = "https://abc123.eu-west-1.aws.clickhouse.cloud:8443"
Run = Callable[..., tuple[int, str, str]]


def synth_app(context: dict[str, Any], outdir: Path) -> subprocess.CompletedProcess[str]:
    """``python app.py`` as ``cdk synth`` runs it: cdk.json's context with ``context`` laid over it
    (CDK_CONTEXT_JSON), cdk-nag included. Lambda bundling is skipped (it would fetch wheels)."""
    shipped = json.loads((REPO / "cdk.json").read_text())["context"]
    env = {
        **os.environ,
        "CDK_CONTEXT_JSON": json.dumps({**shipped, **context, "aws:cdk:bundling-stacks": []}),
        "CDK_OUTDIR": str(outdir),
        "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": "20",
    }
    return subprocess.run(
        [sys.executable, "app.py"], cwd=REPO, env=env, capture_output=True, text=True, timeout=300, check=False
    )


def _resources(outdir: Path, kind: str) -> list[dict[str, Any]]:
    (template,) = outdir.glob("*.template.json")
    found = json.loads(template.read_text())["Resources"].values()
    return [r["Properties"] for r in found if r["Type"] == kind]


@pytest.mark.slow
@pytest.mark.parametrize(
    "argv",
    [
        ("--events-per-sec", "10000", "--avg-bytes", "1024"),  # the seed: provisioned, S3 path (the default)
        (
            *("--events-per-sec", "50", "--avg-bytes", "300", "--paths", "s3,http", "--clickhouse-url", CH_URL),
            *("--aggregate", "--retention-hours", "48", "--transform-memory-mb", "1024", "--expiration-days", "400"),
        ),
    ],
    ids=["seed-s3", "both-paths-expiring"],
)
def test_suggested_context_synthesizes(run_plan: Run, tmp_path: Path, argv: tuple[str, ...]) -> None:
    code, out, err = run_plan(*argv, "--format", "json")
    assert code == 0, err
    report = json.loads(out)
    context = report["cdk_context"]
    assert context is not None, report["notes"]
    done = synth_app(context, tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    (stream,) = _resources(tmp_path, "AWS::Kinesis::Stream")
    assert stream["StreamModeDetails"]["StreamMode"] == context["bxb:stream.mode"].upper().replace("-", "_")
    if context["bxb:stream.mode"] == "provisioned":
        assert stream["ShardCount"] == report["kinesis"]["shards"]["required"]
    assert stream["RetentionPeriodHours"] == context["bxb:stream.retention_hours"]
    firehoses = _resources(tmp_path, "AWS::KinesisFirehose::DeliveryStream")
    assert len(firehoses) == len(report["inputs"]["workload"]["paths"])
    # The billing archive expires only when the plan was asked to (--expiration-days).
    (archive_rule,) = [
        rule
        for bucket in _resources(tmp_path, "AWS::S3::Bucket")
        for rule in bucket.get("LifecycleConfiguration", {}).get("Rules", [])
        if rule["Id"] == "archive"
    ]
    assert archive_rule.get("ExpirationInDays") == context.get("bxb:s3.expiration_days")
