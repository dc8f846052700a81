"""cdk-nag (AwsSolutions) and cfn-lint over every synthesized variant."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import Synth

VARIANTS = ["full", "shipped", "http_only", "plain"]

# Every acknowledged finding, across all variants. A new one must be added here on purpose.
EXPECTED_ACKNOWLEDGED = {
    "AwsSolutions-KDS3",  # customer-managed stream key on purpose
    "AwsSolutions-KDF1",  # Firehose SSE is for Direct PUT only
    "AwsSolutions-L1",  # Python 3.12 matches the Powertools layer and the bundled wheels
    "AwsSolutions-SMG4",  # Firehose access key: rotated by updating the secret
    # Object keys under a prefix: Firehose writes (its own prefixes), ClickHouse reads and moves (Parquet).
    "AwsSolutions-IAM5[Resource::<ArchiveBucket49F1AC64.Arn>/events/*]",
    "AwsSolutions-IAM5[Resource::<ArchiveBucket49F1AC64.Arn>/errors/*]",
    "AwsSolutions-IAM5[Resource::<ArchiveBucket49F1AC64.Arn>/http-backup/*]",
    "AwsSolutions-IAM5[Resource::<ArchiveBucket49F1AC64.Arn>/http-backup-errors/*]",
    "AwsSolutions-IAM5[Resource::<ArchiveBucket49F1AC64.Arn>/archive/events/*]",
}


@pytest.mark.parametrize("variant", VARIANTS)
def test_cdk_nag_has_no_unacknowledged_findings(variants: dict[str, Synth], variant: str) -> None:
    synth = variants[variant]
    assert synth.error is None, synth.error
    reports = {r["pluginName"]: r for r in synth.report["pluginReports"]}
    nag = reports["AwsSolutions"]
    assert nag["conclusion"] == "success"
    assert nag["violations"] == []
    for report in reports.values():  # CDK's own template validation too
        assert report["violations"] == [], report["pluginName"]


def test_acknowledged_findings_are_the_expected_ones(variants: dict[str, Synth]) -> None:
    acknowledged = {
        v["ruleName"]
        for synth in variants.values()
        for r in synth.report["pluginReports"]
        for v in r.get("suppressedViolations", [])
    }
    assert acknowledged == EXPECTED_ACKNOWLEDGED


def test_every_acknowledgement_has_a_specific_reason(variants: dict[str, Synth]) -> None:
    from aws_cdk import Validations

    for synth in variants.values():
        ours = {
            rule: reason
            for node in synth.stack.node.find_all()
            for entry in node.node.metadata
            if entry.type == Validations.ACKNOWLEDGED_RULES_METADATA_KEY
            for rule, reason in entry.data.items()
            if rule.startswith("AwsSolutions::")
        }
        assert ours, "no acknowledgements found"
        assert all(len(reason) >= 60 for reason in ours.values()), ours


@pytest.mark.parametrize("variant", VARIANTS)
def test_cfn_lint_passes(variants: dict[str, Synth], variant: str) -> None:
    synth = variants[variant]
    template = synth.outdir / f"{synth.stack.stack_name}.template.json"
    cfn_lint = Path(sys.executable).with_name("cfn-lint")
    done = subprocess.run([str(cfn_lint), str(template)], capture_output=True, text=True, timeout=120, check=False)
    assert (done.returncode, done.stdout + done.stderr) == (0, "")
