"""Replay a Kinesis stream from a timestamp, through the in-repo Firehose runner, to S3 as Firehose writes it.

Every shard is read from the first record that arrived at or after ``at`` (``AT_TIMESTAMP``,
within the stream's retention) to the tip of the stream, through the transform (the
deployment's rules and hooks), into Parquet objects under the same partitions as the S3
delivery stream (``events/organization_id=/date=/hour=/``; settings from ``PipelineConfig``,
as ``bxb_stream.local.settings`` builds them), named ``<name>-replay-...``. Records the
transform refuses go to the error output (``errors/``), as deployed. ClickHouse's S3Queue
then ingests the objects: what was stored already comes back as duplicates, never billed
twice, and what was lost (or refused by a rule since fixed) is billed.

Each record keeps its Kinesis arrival time, so lateness is decided as it was the first time.
Checkpoints are kept in memory: a replay that stops part-way is simply run again.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from bxb_runtime import layout
from bxb_runtime.transform import Transformer, load_hooks
from bxb_runtime.transform.process import is_rejection
from bxb_stream.deployment import PipelineConfig
from bxb_stream.firehose.runner import DeliveryStats, DeliveryStream
from bxb_stream.local import settings as local_settings

QUIET_ROUNDS = 2  # polls in a row that read nothing at the tip of every shard: the replay is done
IDLE_SLEEP_S = 0.2


class KinesisReplayError(ValueError):
    """A replay that cannot run as asked (a time outside the retention...)."""


@dataclass
class KinesisReplayReport:
    stream: str
    bucket: str
    at: datetime
    records_read: int = 0  # user records, after KPL de-aggregation
    kinesis_records: int = 0
    delivered: int = 0  # rows written to Parquet under events/
    dropped: int = 0  # copies the transform dropped within a batch (or a hook dropped)
    rejected: Counter[str] = field(default_factory=Counter)  # by the transform's code; in errors/ again
    data_objects: list[str] = field(default_factory=list)
    error_objects: list[str] = field(default_factory=list)
    seconds: float = 0.0


Progress = Callable[[DeliveryStats], None]


def check_retention(kinesis: Any, stream: str, at: datetime, now: datetime | None = None) -> int:
    """The stream's retention in hours; KinesisReplayError if ``at`` is outside it."""
    if at.tzinfo is None:
        raise KinesisReplayError("--at-timestamp must carry a time zone (or be given in UTC)")
    now = now or datetime.now(UTC)
    hours = int(kinesis.describe_stream_summary(StreamName=stream)["StreamDescriptionSummary"]["RetentionPeriodHours"])
    oldest = now - timedelta(hours=hours)
    if at < oldest:
        raise KinesisReplayError(
            f"--at-timestamp {at.isoformat()} is before {stream}'s retention ({hours} h: records since "
            f"{oldest.isoformat(timespec='seconds')} are kept); replay the Parquet archive for older events"
        )
    if at > now:
        raise KinesisReplayError(f"--at-timestamp {at.isoformat()} is in the future")
    return hours


def delivery_stream_settings(config: PipelineConfig, stream: str, bucket: str, at: datetime, region: str) -> Any:
    """The S3 delivery stream's settings as deployed (local.settings), reading from ``at``."""
    targets = local_settings.LocalTargets(endpoint_url="", region=region, stream=stream, bucket=bucket)
    settings = local_settings.delivery_stream(config, "s3", targets, buffer_seconds=None)
    source = replace(settings.source, endpoint_url=None, start_at=at)
    return replace(settings, name=f"{config.name}-replay", source=source)


def replay(
    config: PipelineConfig,
    *,
    stream: str,
    bucket: str,
    at: datetime,
    kinesis: Any,
    s3: Any,
    region: str = "us-east-1",
    timeout_s: float = 3600.0,
    on_progress: Progress | None = None,
) -> KinesisReplayReport:
    """Read ``stream`` from ``at`` to its tip and write what the transform passes to ``bucket``."""
    check_retention(kinesis, stream, at)
    settings = delivery_stream_settings(config, stream, bucket, at, region)
    transformer = Transformer(config.rules, load_hooks(config.rules.hooks))
    runner = DeliveryStream(settings, handler=transformer.process, kinesis_client=kinesis, s3_client=s3)
    started = time.monotonic()
    deadline = started + timeout_s
    quiet = 0
    try:
        for _ in range(int(timeout_s / IDLE_SLEEP_S) * 1000 + 1):  # bounded; a round with records does not sleep
            read = runner.poll_once()
            if read == 0 and runner.source.behind_ms == 0:
                runner.flush()  # at the tip: deliver what is held, so nothing read stays in flight
                quiet = quiet + 1 if runner.stats.in_flight == 0 else 0
            else:
                quiet = 0
            if on_progress is not None:
                on_progress(runner.stats)
            if quiet >= QUIET_ROUNDS:
                break
            if time.monotonic() > deadline:
                raise KinesisReplayError(
                    f"not at the tip of {stream} after {timeout_s:.0f}s ({runner.stats.records_read:,} records "
                    "read); objects written so far are kept: run again with a longer --timeout"
                )
            if read == 0:
                time.sleep(min(runner.next_wakeup_in(), IDLE_SLEEP_S))
    finally:
        runner.close()
    return _report(runner, stream, bucket, at, time.monotonic() - started)


def _report(runner: DeliveryStream, stream: str, bucket: str, at: datetime, seconds: float) -> KinesisReplayReport:
    stats = runner.stats
    keys = runner.writer.keys
    return KinesisReplayReport(
        stream=stream,
        bucket=bucket,
        at=at,
        records_read=stats.records_read,
        kinesis_records=stats.kinesis_records_read,
        delivered=stats.delivered,
        dropped=stats.dropped,
        rejected=Counter({code: n for code, n in stats.transform_reasons.items() if is_rejection(code)}),
        data_objects=[k for k in keys if k.startswith(layout.EVENTS_PREFIX)],
        error_objects=[k for k in keys if not k.startswith(layout.EVENTS_PREFIX)],
        seconds=seconds,
    )
