"""Redrive end to end on the local pipeline (moto Kinesis and S3, chDB, both delivery paths):
a wrong rule sends records to the error output, the runners restart with the rule fixed, the
redrive sends them through again, and every produced event is then billed exactly once; a second
redrive (and a forced re-send of a redriven object) bills nothing more."""

from __future__ import annotations

import itertools
from collections import Counter
from dataclasses import replace
from typing import Any

import pytest

from bxb_runtime import layout
from bxb_runtime.clickhouse import tables as t
from bxb_runtime.config import EventRules
from bxb_runtime.events.validate import canonical_properties
from bxb_stream.clickhouse import ledger
from bxb_stream.deployment import PipelineConfig
from bxb_stream.local.pipeline import LocalOptions, LocalPipeline
from bxb_stream.local.reconcile import compare_usage
from bxb_stream.producer import LEGACY
from bxb_stream.producer.synthetic import Expect
from bxb_stream.redrive import StreamTarget, redrive, redriven_key

_names = itertools.count()
# A wrong rule: 50 bytes of properties refuses about half the synthetic events (properties_too_large);
# the default (16 KiB) is the fix.
WRONG = EventRules(max_properties_bytes=50)


def too_large(event: Any) -> bool:
    """Whether the wrong rule refuses this (valid) event."""
    return len(canonical_properties(event.get("properties"), EventRules())) > WRONG.max_properties_bytes


@pytest.fixture
def pipeline(moto_s3: Any, tmp_path: Any) -> Any:
    n = next(_names)
    config = PipelineConfig(name=f"redrive-t{n}", rules=WRONG)
    options = LocalOptions(
        data_dir=tmp_path / "run", endpoint_url=moto_s3.endpoint_url, database=f"redrive_t{n}", buffer_seconds=0.5,
        timeout_s=120, shards=2, events=1_500, aggregate=True, duplicate_share=0.03, invalid_share=0.02,
        late_share=0.02, backdated_share=0.03, conflict_share=0.0,
    )  # fmt: skip
    made = LocalPipeline(config, options)
    made.start()
    yield made
    made.stop()
    for runtime in made.paths.values():
        made.client.command(f"DROP DATABASE IF EXISTS {runtime.database} SYNC")


def billed_per_transaction(pipeline: LocalPipeline, path: str) -> Counter[str]:
    db = pipeline.paths[path].database
    rows = pipeline.client.query(f"SELECT transaction_id, count() FROM {db}.{t.EVENTS} GROUP BY 1").result_rows
    return Counter({tid: int(n) for tid, n in rows})


def error_keys(pipeline: LocalPipeline) -> set[str]:
    assert pipeline.targets is not None
    s3 = pipeline.aws.client("s3")
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=pipeline.targets.bucket)
    keys = {o["Key"] for page in pages for o in page.get("Contents", [])}
    roots = (layout.ERRORS_PREFIX, layout.HTTP_BACKUP_ERRORS_PREFIX, layout.HTTP_BACKUP_PREFIX, layout.REDRIVEN_PREFIX)
    return {k for k in keys if k.startswith(roots)}


def send_again(pipeline: LocalPipeline, **kwargs: Any) -> Any:
    """Redrive the pipeline's bucket to its stream; the runners then read what was sent."""
    assert pipeline.targets is not None
    target = StreamTarget(pipeline.targets.stream, pipeline.aws.client("kinesis"), LEGACY)
    report = redrive(pipeline.aws.client("s3"), pipeline.targets.bucket, target, rules=pipeline.config.rules, **kwargs)
    pipeline.produced.events += report.sent - report.identical  # what the runners will read on top
    assert pipeline.wait_settled()
    return report


def test_wrong_rule_fixed_then_redriven_bills_every_event_exactly_once(pipeline: LocalPipeline) -> None:
    workload = pipeline.prepare()
    pipeline.produce(workload)
    assert pipeline.wait_settled()
    stored = {e.transaction_id for _, e in workload if e.kind is Expect.STORED}
    late = {e.transaction_id for _, e in workload if e.kind is Expect.LATE}
    refused = {e.transaction_id for event, e in workload if e.kind in (Expect.STORED, Expect.LATE) and too_large(event)}
    assert len(refused & stored) > 200
    for path in pipeline.paths:  # the wrong rule: those events are in the error output, not billed
        assert set(billed_per_transaction(pipeline, path)) == stored - refused
        assert pipeline.paths[path].runner.stats.transform_reasons["properties_too_large"] > 0

    # The fix: the default rules, and the runners restarted with them.
    pipeline.config = replace(pipeline.config, rules=EventRules())
    for path in pipeline.paths:
        pipeline.restart_runner(path, graceful=True)
    # Invalid events share error objects with the wrongly refused ones: their lines are split off.
    first = send_again(pipeline, split_refused=True)

    # Each refused event (and its byte-identical resends) was in both paths' error output; it went once.
    resends = sum(1 for _, e in workload if e.kind is Expect.DUPLICATE and e.transaction_id in refused)
    assert (first.sent, first.sent - first.identical) == (2 * (len(refused) + resends), len(refused))
    invalid = Counter(e.error_code for _, e in workload if e.kind is Expect.INVALID)
    assert first.refused == Counter({code: 2 * n for code, n in invalid.items()})  # still invalid, on both paths
    assert not first.kept and all(o.moved_to == redriven_key(o.key) for o in first.objects)
    split = [o.split_to for o in first.objects if o.split_to]
    assert split and len(split) == sum(1 for o in first.objects if o.refused)

    for path in pipeline.paths:  # every produced event billed once, into its own hour
        billed = billed_per_transaction(pipeline, path)
        assert set(billed) == stored and set(billed.values()) == {1}, path
        assert not compare_usage(pipeline.expected.usage, pipeline.usage_rows(path)), path
        assert ledger.pending_late(pipeline.client, pipeline.paths[path].database) == len(late)

    # Again: only the split-off objects of still-invalid records are read, and nothing is sent or moved.
    before = {path: pipeline.counts(path) for path in pipeline.paths}
    keys_before = error_keys(pipeline)
    second = send_again(pipeline, split_refused=True)
    assert sorted(o.key for o in second.objects) == sorted(split)
    assert second.refused == first.refused and (second.sent, len(second.moved)) == (0, 0)
    assert error_keys(pipeline) == keys_before
    # A move that failed after its records were sent: the object is back under its original key.
    s3 = pipeline.aws.client("s3")
    assert pipeline.targets is not None
    bucket = pipeline.targets.bucket
    moved = next(o for o in first.moved if o.split_to is None) if len(split) < len(first.moved) else first.moved[0]
    s3.copy_object(Bucket=bucket, Key=moved.key, CopySource={"Bucket": bucket, "Key": redriven_key(moved.key)})
    third = send_again(pipeline, split_refused=True)
    assert third.sent == moved.sent > 0 and [o.key for o in third.moved] == [moved.key]
    assert [o.split_to for o in third.moved] == [moved.split_to]  # split again: the same object, written again
    assert error_keys(pipeline) == keys_before  # nothing new in the bucket
    resent = third.sent - third.identical  # each lands on each path once more, as a duplicate
    assert second.sent == 0
    for path in pipeline.paths:
        was, now = before[path], pipeline.counts(path)
        assert (now.billed, now.conflicts, now.late) == (was.billed, 0, was.late) == (len(stored), 0, len(late))
        assert (now.duplicates - now.redelivered) - (was.duplicates - was.redelivered) == resent, path
        assert set(billed_per_transaction(pipeline, path).values()) == {1}
        assert not compare_usage(pipeline.expected.usage, pipeline.usage_rows(path)), path
