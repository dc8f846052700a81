"""Synthesize each stack variant once per test session (jsii synth is slow)."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")

REPO = Path(__file__).resolve().parents[3]
# The CDK code (stacks/, app.py) lives at the repo root and is not an installed package.
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
CH_URL = "https://abc123.eu-west-1.aws.clickhouse.cloud:8443"
CH_ROLE = "arn:aws:iam::111122223333:role/CH-S3-bxb-test"
TOPIC_ARN = "arn:aws:sns:eu-west-1:111122223333:ops-alarms"
CH_SESSION = "bxb-shared-session-secret"


@dataclass
class Synth:
    config: Any  # bxb_stream.deployment.PipelineConfig
    stack: Any  # stacks.pipeline.BxbStreamStack
    outdir: Path
    template: dict[str, Any]
    report: dict[str, Any]
    error: str | None  # synth failure (cdk-nag findings fail synth)

    def resources(self, kind: str) -> dict[str, dict[str, Any]]:
        return {k: v for k, v in self.template["Resources"].items() if v["Type"] == kind}

    def one(self, kind: str) -> dict[str, Any]:
        found = self.resources(kind)
        assert len(found) == 1, f"expected one {kind}, found {list(found)}"
        return next(iter(found.values()))["Properties"]

    def logical_id(self, construct: Any) -> str:
        """Logical id of an L2's resource, or of an L1 given directly."""
        return self.stack.get_logical_id(construct.node.default_child or construct)


def synth(outdir: Path, overrides: Mapping[str, Any]) -> Synth:
    from aws_cdk import App, Validations
    from cdk_nag import AwsSolutionsChecks

    from bxb_stream.deployment import PipelineConfig
    from stacks.pipeline import build

    context = dict(json.loads((REPO / "cdk.json").read_text())["context"])
    # No bundling in tests (no pip download); asset hashes are still computed from the sources.
    context.update({"aws:cdk:bundling-stacks": [], **overrides})
    app = App(context=context, outdir=str(outdir))
    config = PipelineConfig.from_context(app.node.get_all_context())
    stack = build(app, config)
    Validations.of(app).add_plugins(AwsSolutionsChecks(app))
    error = None
    try:
        app.synth()
    except Exception as exc:  # the validation report below says why
        error = str(exc)
    template = json.loads((outdir / f"{stack.stack_name}.template.json").read_text())
    report = json.loads((outdir / "validation-report.json").read_text())
    return Synth(config, stack, outdir, template, report, error)


@pytest.fixture(scope="session")
def full(tmp_path_factory: pytest.TempPathFactory) -> Synth:
    """Every feature on: both paths, provisioned stream, ClickHouse Cloud principal, e-mail alarms."""
    return synth(
        tmp_path_factory.mktemp("full"),
        {
            "bxb:delivery": "both",
            "bxb:clickhouse.url": CH_URL,
            "bxb:clickhouse.s3_principal": CH_ROLE,
            "bxb:clickhouse.s3_external_id": "bxb-external-id-1",
            "bxb:stream.mode": "provisioned",
            "bxb:stream.shard_count": "4",  # -c style string
            "bxb:stream.retention_hours": 48,
            "bxb:transform_reserved_concurrency": 50,
            "bxb:http.ingest_max_concurrency": "5",
            "bxb:alarms.email": "oncall@example.com",
            "bxb:http.backup_mode": "all",
            "bxb:rules.hooks": "bxb_runtime.transform.example_hooks:customer_tier",
            "bxb:rules.multi_tenant": "true",
        },
    )


@pytest.fixture(scope="session")
def shipped(tmp_path_factory: pytest.TempPathFactory) -> Synth:
    """Exactly the shipped cdk.json."""
    return synth(tmp_path_factory.mktemp("shipped"), {})


@pytest.fixture(scope="session")
def http_only(tmp_path_factory: pytest.TempPathFactory) -> Synth:
    """HTTP path only, alarms to an existing topic."""
    return synth(
        tmp_path_factory.mktemp("http"),
        {"bxb:delivery": "http", "bxb:clickhouse.url": CH_URL, "bxb:alarms.topic_arn": TOPIC_ARN},
    )


@pytest.fixture(scope="session")
def plain(tmp_path_factory: pytest.TempPathFactory) -> Synth:
    """Both paths with the optional hardening off and Powertools bundled (the LocalStack shape)."""
    return synth(
        tmp_path_factory.mktemp("plain"),
        {
            "bxb:delivery": "both",
            "bxb:clickhouse.url": CH_URL,
            "bxb:clickhouse.s3_principal": CH_ROLE,
            "bxb:clickhouse.s3_role_session_name": CH_SESSION,
            "bxb:powertools": "bundle",
            "bxb:encrypt_with_stack_key": "false",
            "bxb:transform_reserved_concurrency": "0",
            "bxb:http.ingest_max_concurrency": 0,
        },
    )


@pytest.fixture(scope="session")
def variants(full: Synth, shipped: Synth, http_only: Synth, plain: Synth) -> dict[str, Synth]:
    return {"full": full, "shipped": shipped, "http_only": http_only, "plain": plain}
