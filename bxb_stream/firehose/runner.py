"""A delivery stream: Kinesis source -> transform processor -> one destination (S3 or HTTP).

``poll_once`` does one bounded round: read what is due, invoke the processor on full
(or timed-out) buffers, route each record to the destination, the error output or
nowhere (Dropped), flush destination buffers that are due, then save checkpoints.
Every record read ends in exactly one of: delivered, dropped, an error output
(by code), backed up (HTTP), or still in flight - ``DeliveryStats.balanced``.

Every AWS call of the runner goes through one ``retry.Retrier``: transient errors are
retried for as long as they last, anything else is raised out of ``run_until`` (the
runner cannot go on). ``abandon()`` ends those retries at shutdown; what was being
delivered then stays in flight, before the checkpoint, and is read again on restart.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from time import perf_counter
from typing import Any

from bxb_runtime.config import EventRules
from bxb_stream.firehose.checkpoint import CheckpointStore
from bxb_stream.firehose.clock import Clock, SystemClock
from bxb_stream.firehose.http import HttpDestination
from bxb_stream.firehose.processor import Handler, Processor, record_cost
from bxb_stream.firehose.records import Failure, Record
from bxb_stream.firehose.retry import Retrier
from bxb_stream.firehose.s3 import ErrorOutput, S3Destination, S3Writer
from bxb_stream.firehose.settings import DeliveryStreamSettings
from bxb_stream.firehose.source import KinesisSource
from bxb_stream.firehose.timing import CHECKPOINT, Stages

IDLE_SLEEP_MAX_S = 0.2


@dataclass
class DeliveryStats:
    records_read: int = 0  # user records, after KPL de-aggregation
    kinesis_records_read: int = 0
    skipped_already_settled: int = 0  # re-read after a restart, settled by the previous run
    transformed_ok: int = 0
    dropped: int = 0
    processing_failed: int = 0
    delivered: int = 0
    error_records: Counter[str] = field(default_factory=Counter)  # error output, by error code
    error_outputs: Counter[str] = field(default_factory=Counter)  # error output, by error-output type
    backed_up: Counter[str] = field(default_factory=Counter)  # HTTP backup, by error code
    transform_reasons: Counter[str] = field(default_factory=Counter)  # the transform's drop/reject codes
    conflicts: int = 0  # Ok, and stored by ClickHouse as conflicts
    invocations: int = 0
    failed_invocations: int = 0
    objects_written: int = 0
    http_requests: int = 0
    in_flight: int = 0  # read, not yet settled

    @property
    def settled(self) -> int:
        return self.delivered + self.dropped + sum(self.error_records.values()) + sum(self.backed_up.values())

    @property
    def balanced(self) -> bool:
        return self.records_read == self.settled + self.in_flight


class DeliveryStream:
    def __init__(
        self,
        settings: DeliveryStreamSettings,
        *,
        handler: Handler | None = None,
        rules: EventRules | None = None,
        kinesis_client: Any = None,
        s3_client: Any = None,
        data_dir: str | Path | None = None,
        clock: Clock | None = None,
        rng: random.Random | None = None,
        initial_position: str = "TRIM_HORIZON",
    ) -> None:
        self.settings = settings
        self.clock = clock = clock or SystemClock()
        rng = rng or random.Random()
        self.stages = stages = Stages()
        # A real clock's retry waits end at once on abandon(); a test clock's sleep just moves time.
        self.retrier = retrier = Retrier(
            settings.name,
            monotonic=clock.monotonic,
            sleep=None if isinstance(clock, SystemClock) else clock.sleep,
            rng=rng,
        )
        if handler is None:
            from bxb_runtime.transform import Transformer

            handler = Transformer(rules or EventRules(), clock=clock.time).process
        if s3_client is None:
            import boto3

            s3_client = boto3.client(
                "s3", region_name=settings.source.region, endpoint_url=settings.source.endpoint_url
            )
        path = Path(data_dir) / f"checkpoints-{settings.name}.json" if data_dir is not None else None
        self.checkpoints = CheckpointStore(path)
        self.source = KinesisSource(
            settings.source,
            self.checkpoints,
            client=kinesis_client,
            monotonic=clock.monotonic,
            initial_position=initial_position,
            stages=stages,
            retrier=retrier,
        )
        self.processor = Processor(
            settings.processor,
            handler,
            delivery_stream_arn=settings.arn,
            source_stream_arn=settings.source_arn,
            region=settings.region,
            wall=clock.time,
            sleep=clock.sleep,
            stages=stages,
        )
        lambda_arn = settings.processor.lambda_arn
        self.destination: S3Destination | HttpDestination
        if settings.s3 is not None:
            self.writer = S3Writer(s3_client, settings.s3.bucket, stages=stages, retrier=retrier)
            self.errors = ErrorOutput(
                self.writer, settings.s3.error_prefix, stream_name=settings.name, version=settings.version,
                lambda_arn=lambda_arn, rng=rng,
            )  # fmt: skip
            self.destination = S3Destination(
                settings.s3, self.writer, self.errors, stream_name=settings.name, version=settings.version,
                monotonic=clock.monotonic, rng=rng,
            )  # fmt: skip
            self.backup: ErrorOutput | None = None
        else:
            assert settings.http is not None
            self.writer = S3Writer(s3_client, settings.http.backup_bucket, stages=stages, retrier=retrier)
            self.errors = ErrorOutput(
                self.writer, settings.http.backup_error_prefix, stream_name=settings.name,
                version=settings.version, lambda_arn=lambda_arn, rng=rng,
            )  # fmt: skip
            self.backup = ErrorOutput(
                self.writer, settings.http.backup_prefix, stream_name=settings.name, version=settings.version, rng=rng
            )
            self.destination = HttpDestination(
                settings.http, self.backup, source_arn=settings.arn, monotonic=clock.monotonic, wall=clock.time,
                sleep=clock.sleep, rng=rng, retrier=retrier,
            )  # fmt: skip
        # Save checkpoints right after each durable write, so a kill between two PUTs of one round
        # re-delivers nothing; the save is cheap when nothing moved.
        for output in (self.errors, self.backup, self.destination):
            if output is not None:
                output.on_settled = self._save_checkpoints
        self._pending: list[Record] = []
        self._pending_cost = 0
        self._pending_since: float | None = None
        self._stopped = False

    # ------------------------------------------------------------------ one round
    def poll_once(self) -> int:
        """Read, process and deliver what is due; returns how many user records were read."""
        read: list[Record] = []
        limit = self.processor.limit
        if not self._stopped and self._pending_cost < 2 * limit:  # bounded read-ahead
            read = self.source.poll(self.settings.source.get_records_limit)
            if read:
                if self._pending_since is None:
                    self._pending_since = self.clock.monotonic()
                self._pending.extend(read)
                self._pending_cost += sum(map(record_cost, read))
        self._process(force=False)
        self.destination.flush_due()
        self._save_checkpoints()
        return len(read)

    def _process(self, *, force: bool) -> None:
        if not self._pending:
            return
        batches, costs = self.processor.batches_and_costs(self._pending)
        due = force or (
            self._pending_since is not None
            and self.clock.monotonic() - self._pending_since >= self.settings.processor.buffer_interval_s
        )
        run = len(batches) if due or costs[-1] >= self.processor.limit else len(batches) - 1
        done = 0
        for batch in batches[:run]:
            self._route(batch)
            done += len(batch)
        if done:
            del self._pending[:done]
            self._pending_cost = sum(costs[run:])
            self._pending_since = None if not self._pending else self._pending_since

    def _route(self, batch: list[Record]) -> None:
        outcome = self.processor.process(batch)
        for record in outcome.dropped:
            record.resolve()
        failures: list[Failure] = outcome.failed + self.destination.add_many(outcome.ok)
        if failures:
            self.errors.write(failures)

    def _save_checkpoints(self) -> None:
        started = perf_counter()
        self.checkpoints.save()
        self.stages.lap(CHECKPOINT, started)

    # ------------------------------------------------------------------ control
    def flush(self) -> None:
        """Process everything read and write every buffer now (as at the end of a buffer interval)."""
        self._process(force=True)
        self.destination.flush_all()
        self._save_checkpoints()

    def next_wakeup_in(self) -> float:
        waits = [self.source.next_poll_in()]
        if self._pending_since is not None:
            waits.append(self._pending_since + self.settings.processor.buffer_interval_s - self.clock.monotonic())
        dest = self.destination.next_due_in()
        if dest is not None:
            waits.append(dest)
        return max(0.0, min(waits))

    def run_until(self, predicate: Callable[[DeliveryStream], bool] | None = None, timeout_s: float = 60.0) -> bool:
        """Poll until ``predicate(self)`` holds (True), or timeout/stop (False)."""
        deadline = self.clock.monotonic() + timeout_s
        while not self._stopped:
            read = self.poll_once()
            if predicate is not None and predicate(self):
                return True
            remaining = deadline - self.clock.monotonic()
            if remaining <= 0:
                return False
            if read == 0:
                self.clock.sleep(min(self.next_wakeup_in(), IDLE_SLEEP_MAX_S, remaining))
        return False

    def stop(self) -> None:
        """Stop reading; a ``run_until`` in another thread returns after its current round."""
        self._stopped = True

    def abandon(self) -> None:
        """Give up retrying (shutdown): a call that keeps failing raises ``Abandoned`` instead."""
        self.retrier.abandon()

    def close(self) -> None:
        """Graceful shutdown: deliver what is buffered, then release the HTTP connection.

        Raises ``Abandoned`` if ``abandon()`` cut the delivery short; what was not delivered
        is then still in flight, before the checkpoint."""
        self.stop()
        self.source.close()
        try:
            self.flush()
        finally:
            self.destination.close()

    # ------------------------------------------------------------------ statistics
    @property
    def stats(self) -> DeliveryStats:
        source, proc = self.source.stats, self.processor.stats
        errors = self.errors.stats
        stats = DeliveryStats(
            records_read=source.user_records,
            kinesis_records_read=source.kinesis_records,
            skipped_already_settled=source.skipped_already_settled,
            transformed_ok=proc.ok,
            dropped=proc.dropped,
            processing_failed=proc.failed,
            error_records=Counter(errors.records),
            error_outputs=Counter(errors.by_output_type),
            transform_reasons=Counter(proc.reasons),
            conflicts=proc.conflicts,
            invocations=proc.invocations,
            failed_invocations=proc.failed_invocations,
        )
        dest = self.destination
        if isinstance(dest, S3Destination):
            stats.delivered = dest.stats.delivered
        else:
            stats.delivered = dest.stats.delivered
            stats.backed_up = Counter(dest.stats.backed_up)
            stats.http_requests = dest.stats.requests
        stats.objects_written = self.writer.objects
        stats.in_flight = sum(ledger.unresolved for ledger in self.checkpoints.ledgers.values())
        return stats
