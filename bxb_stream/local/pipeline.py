"""The whole pipeline on one machine, with the project's real handlers and DDL.

    producer --PutRecords--> moto Kinesis -> Firehose runner (s3)   -> Parquet on moto S3 -> chDB S3Queue
                                          -> Firehose runner (http) -> function-URL adapter -> ingest -> chDB

Stand-ins start themselves and listen on 127.0.0.1 only. ``LocalPipeline`` starts them,
produces a seeded synthetic workload, waits (bounded) until every event is settled and
queryable, and reports a reconciliation per path, end-to-end latency and hourly usage.
"""

from __future__ import annotations

import logging
import secrets
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bxb_stream.clickhouse import engine as ch_engine
from bxb_stream.clickhouse import ledger, migrations, status
from bxb_stream.clickhouse import tables as t
from bxb_stream.clickhouse.settings import ClickHouseSettings
from bxb_stream.deployment import PipelineConfig
from bxb_stream.firehose.runner import DeliveryStats, DeliveryStream
from bxb_stream.ingest import AccessKeys, IngestService, IngestSettings
from bxb_stream.ingest.rows import Trust
from bxb_stream.layout import ARCHIVE_PREFIX, EVENTS_PREFIX
from bxb_stream.local import capabilities
from bxb_stream.local import settings as local_settings
from bxb_stream.local.archiver import ProcessedArchiver
from bxb_stream.local.aws import AwsStandIn
from bxb_stream.local.function_url import FunctionUrlServer
from bxb_stream.local.reconcile import Expected, PathCounts
from bxb_stream.producer import LEGACY, Producer
from bxb_stream.producer.synthetic import Expect, generate
from bxb_stream.transform import Transformer, load_hooks
from bxb_stream.transform.process import is_rejection

ACCESS_KEY_SECRET = "bxb/local/firehose-access-key"

log = logging.getLogger(__name__)


@dataclass
class LocalOptions:
    events: int = 200_000
    rate: float | None = None  # events/s cap on the producer
    paths: tuple[str, ...] = ("s3", "http")
    aggregate: bool = False
    data_dir: Path = Path(".bxb/local")
    endpoint_url: str | None = None  # None: moto's server on loopback
    buffer_seconds: float | None = 2.0  # replaces every Firehose buffer interval; None keeps the config's
    seed: int = 7
    duplicate_share: float = 0.02
    invalid_share: float = 0.01
    late_share: float = 0.01
    conflict_share: float = 0.005  # sent after the rest is stored (``resends``), so they are conflicts
    backdated_share: float = 0.01  # days old, in an open period: billed into their own hours
    customers: int = 1_000
    shards: int = 4
    timeout_s: float = 900.0  # for the whole wait after producing
    fresh: bool = True  # wipe data_dir first (chDB's queue state is in memory, so a reused one re-reads)
    database: str | None = None  # ClickHouse database (prefix); default: the config's


@dataclass
class PathRuntime:
    name: str
    database: str
    runner: DeliveryStream
    thread: threading.Thread | None = None
    stop: threading.Event = field(default_factory=threading.Event)
    # Statistics of runners this one replaced: everything they settled is checkpointed,
    # so it is never read again; what they still held is read again by the new runner.
    retired: list[DeliveryStats] = field(default_factory=list)

    def stats(self) -> list[DeliveryStats]:
        return [*self.retired, self.runner.stats]


@dataclass
class Produced:
    events: int = 0
    failures: int = 0
    records: int = 0
    first_put: float = 0.0  # time.time()
    last_put: float = 0.0
    put_ms: dict[str, int] = field(default_factory=dict)  # stored events: transaction_id -> put time


class LocalPipeline:
    def __init__(self, config: PipelineConfig, options: LocalOptions) -> None:
        self.config = config
        self.options = options
        self.aws = AwsStandIn(options.endpoint_url)
        self.expected = Expected(default_organization=config.rules.organization_id)
        self.produced = Produced()
        self.paths: dict[str, PathRuntime] = {}
        self.engine: ch_engine.Engine | None = None
        self.client: Any = None
        self.ingest_server: FunctionUrlServer | None = None
        self.targets: local_settings.LocalTargets | None = None
        # Where the endpoint cannot do S3Queue's move (capabilities), the pipeline moves instead.
        self.capabilities = capabilities.EndpointCapabilities(conditional_delete=True)
        self.archiver: ProcessedArchiver | None = None

    # ------------------------------------------------------------------ stand-ins
    def start(self) -> None:
        opts = self.options
        if opts.fresh and opts.data_dir.exists():
            shutil.rmtree(opts.data_dir)
        opts.data_dir.mkdir(parents=True, exist_ok=True)
        # One engine per process: reuse a running one (tests), else start ours before anything imports chdb.
        self.engine = ch_engine.current() or ch_engine.start(opts.data_dir / "clickhouse")
        self.client = self.engine.client()
        self.aws.start()
        name = self.config.name
        targets = local_settings.LocalTargets(
            endpoint_url=str(self.aws.endpoint_url), region=self.aws.region, stream=name, bucket=f"{name}-archive"
        )
        self.aws.ensure_stream(targets.stream, opts.shards)
        self.aws.ensure_bucket(targets.bucket)
        if "s3" in opts.paths:
            self._probe_endpoint(targets.bucket)
        for path in opts.paths:
            settings = local_settings.clickhouse_settings(
                self._database(path),
                targets,
                s3_queues=path == "s3",
                move_processed=self.capabilities.conditional_delete,
            )
            migrations.ensure_named_collection_from_env(self.client, settings)
            migrations.apply(self.client, settings)
        if not self.capabilities.conditional_delete:
            self.archiver = ProcessedArchiver(
                self.aws.client("s3"), targets.bucket, self.engine.client(), self._database("s3")
            ).start()
        if "http" in opts.paths:
            access_key = secrets.token_urlsafe(32)
            arn = self.aws.ensure_secret(ACCESS_KEY_SECRET, {"api_key": access_key})
            service = IngestService(
                AccessKeys(self.aws.client("secretsmanager"), arn),
                self.engine.client,
                IngestSettings(
                    database=self._database("http"),
                    trust=Trust(self.config.rules.organization_id, self.config.rules.multi_tenant),
                    # Only the local HTTP delivery stream may post, as deployed.
                    source_arn=local_settings.delivery_stream(self.config, "http", targets, None).arn,
                ),
            )
            self.ingest_server = FunctionUrlServer(lambda event: service.handle(event)[0]).start()
            targets = local_settings.LocalTargets(
                **{**targets.__dict__, "ingest_url": self.ingest_server.url, "access_key": access_key}
            )
        self.targets = targets
        for path in opts.paths:
            self.paths[path] = PathRuntime(path, self._database(path), self._runner(path))
            self._start_runner(self.paths[path])

    def _probe_endpoint(self, bucket: str) -> None:
        self.capabilities = capabilities.probe(self.aws.client("s3"), bucket)
        if not self.capabilities.conditional_delete:
            log.warning(
                "warning: %s answers a conditional DeleteObject with 501, so S3Queue cannot move what it "
                "ingested (after_processing='move'); using after_processing='keep', and this pipeline moves "
                "each processed object to %s<its key> itself",
                self.aws.endpoint_url,
                ARCHIVE_PREFIX,
            )

    def _database(self, path: str) -> str:
        return local_settings.database_for(
            self.options.database or self.config.clickhouse.database, path, self.options.paths
        )

    def _runner(self, path: str) -> DeliveryStream:
        assert self.targets is not None
        rules = self.config.rules
        transformer = Transformer(rules, load_hooks(rules.hooks))
        settings = local_settings.delivery_stream(self.config, path, self.targets, self.options.buffer_seconds)
        return DeliveryStream(
            settings, handler=transformer.process, s3_client=self.aws.client("s3"),
            kinesis_client=self.aws.client("kinesis"), data_dir=self.options.data_dir,
        )  # fmt: skip

    def _start_runner(self, runtime: PathRuntime) -> None:
        runtime.stop.clear()
        runtime.thread = threading.Thread(
            target=runtime.runner.run_until,
            kwargs={"predicate": lambda _: runtime.stop.is_set(), "timeout_s": 7 * 86_400},
            name=f"firehose-{runtime.name}",
            daemon=True,
        )
        runtime.thread.start()

    def restart_runner(self, path: str, *, graceful: bool) -> None:
        """Stop a path's Firehose runner and start a new one from its checkpoints.

        ``graceful=False`` abandons what the old runner buffered, as a killed process would."""
        runtime = self.paths[path]
        runtime.stop.set()
        runtime.runner.stop()
        if runtime.thread is not None:
            runtime.thread.join(timeout=30)
        if graceful:
            runtime.runner.close()
        else:
            runtime.runner.source.close()
        runtime.retired.append(runtime.runner.stats)
        runtime.runner = self._runner(path)
        self._start_runner(runtime)

    # ------------------------------------------------------------------ workload
    def prepare(self, now_ms: int | None = None) -> list[tuple[Any, Any]]:
        """The seeded workload, generated before the clock starts, and what each event should become."""
        opts = self.options
        workload = list(
            generate(
                opts.events,
                seed=opts.seed,
                customers=opts.customers,
                duplicate_share=opts.duplicate_share,
                invalid_share=opts.invalid_share,
                late_share=opts.late_share,
                conflict_share=opts.conflict_share,
                backdated_share=opts.backdated_share,
                now_ms=now_ms,
                grace_days=ClickHouseSettings.grace_days,  # what the local schema uses
            )
        )
        for event, expect in workload:
            self.expected.add(event, expect)
        return workload

    @staticmethod
    def resends(workload: list[tuple[Any, Any]]) -> tuple[list[tuple[Any, Any]], list[tuple[Any, Any]]]:
        """(first wave, resends): conflicting copies go out once the first wave is stored, as a
        client's later resend would; sent together, either copy could be stored first."""
        first = [pair for pair in workload if pair[1].kind is not Expect.CONFLICT]
        return first, [pair for pair in workload if pair[1].kind is Expect.CONFLICT]

    def produce(
        self, workload: list[tuple[Any, Any]] | None = None, on_progress: Callable[[int], None] | None = None
    ) -> Produced:
        """Put a prepared workload (default: all of ``prepare()``) into Kinesis, noting put times."""
        assert self.targets is not None
        opts = self.options
        produced = self.produced
        producer = Producer(
            self.targets.stream,
            endpoint_url=self.targets.endpoint_url,
            region=self.targets.region,
            validate=False,  # invalid events must reach the transform: that is part of the test
            aggregate=opts.aggregate,
            limits=LEGACY,  # moto still enforces the 1 MiB record / 5 MiB request limits
            linger_ms=100,
        )
        started = time.monotonic()
        produced.first_put = time.time()
        put_ms = produced.put_ms
        for i, (event, expect) in enumerate(workload if workload is not None else self.prepare()):
            if opts.rate:
                ahead = i / opts.rate - (time.monotonic() - started)
                if ahead > 0:
                    time.sleep(min(ahead, 1.0))
            producer.put(event)
            if expect.kind is Expect.STORED:
                put_ms[expect.transaction_id] = int(time.time() * 1000)
            if on_progress is not None and i % 1000 == 999:
                on_progress(i + 1)
        failures = producer.close()
        produced.last_put = time.time()
        stats = producer.stats
        produced.events += stats.delivered
        produced.failures += len(failures)
        produced.records += stats.records
        if on_progress is not None:
            on_progress(produced.events)
        return produced

    # ------------------------------------------------------------------ waiting
    def counts(self, path: str) -> PathCounts:
        """What the path measured: the runners' statistics and the ledger's verdicts."""
        runtime = self.paths[path]
        *retired, current = runtime.stats()
        db = runtime.database
        verdicts = ledger.verdict_counts(self.client, db)
        dropped = sum(s.dropped for s in retired) + current.dropped
        in_batch_duplicates = sum(s.transform_reasons["duplicate_in_batch"] for s in (*retired, current))
        return PathCounts(
            path=path,
            read=sum(old.settled for old in retired) + current.records_read,
            in_flight=current.in_flight,
            delivered=sum(s.delivered for s in retired) + current.delivered,
            landed=self._count(f"{db}.{t.EVENTS_RAW}"),
            unresolved=status.backlog(self.client, db).unresolved,
            billed=verdicts[t.Verdict.BILLED] + verdicts[t.Verdict.ACCEPTED],
            duplicates=verdicts[t.Verdict.DUPLICATE] + in_batch_duplicates,
            conflicts=verdicts[t.Verdict.CONFLICT],
            late=ledger.pending_late(self.client, db),
            dropped_in_batch=dropped,
            rejected=self._rejected(runtime),
            backed_up=sum(sum(s.backed_up.values()) for s in (*retired, current)),
            queue_failed_files=len(status.queue_files(self.client, db, "Failed")) if path == "s3" else 0,
        )

    def wait_settled(self, on_progress: Callable[[dict[str, PathCounts]], None] | None = None) -> bool:
        """Until each path has read and settled every produced event and ClickHouse has every
        delivered row (S3 path: S3Queue has processed every data object). Bounded by timeout_s.

        The S3 listing runs once the runners say they are done (it is not free at a million rows);
        then the resolver and the usage refresh are run at once rather than on their schedule."""
        deadline = time.monotonic() + self.options.timeout_s
        for _ in range(int(self.options.timeout_s / 0.25) + 1):
            progress = {path: self.counts(path) for path in self.paths}
            if on_progress is not None:
                on_progress(progress)
            runners_done = all(c.read >= self.produced.events and not c.in_flight for c in progress.values())
            if runners_done and all(self._settled(path) for path in self.paths):
                return self._wait_usage(deadline)
            if time.monotonic() > deadline:
                return False
            time.sleep(0.25)
        return False

    def _settled(self, path: str) -> bool:
        if path == "s3":
            caught_up = self._queue_caught_up(self.paths[path].database)
            # Settled includes moved out of events/, where the pipeline does S3Queue's move.
            return caught_up and (self.archiver is None or self.archiver.move_processed().failed == 0)
        return True  # the HTTP path inserts synchronously: settled means stored

    def _queue_caught_up(self, database: str) -> bool:
        assert self.targets is not None
        s3 = self.aws.client("s3")
        keys: set[str] = set()
        # Each data object is still under events/, or already moved below archive/.
        for prefix in (EVENTS_PREFIX, ARCHIVE_PREFIX + EVENTS_PREFIX):
            for page in s3.get_paginator("list_objects_v2").paginate(Bucket=self.targets.bucket, Prefix=prefix):
                keys.update(obj["Key"].removeprefix(ARCHIVE_PREFIX) for obj in page.get("Contents", []))
        return len(status.queue_files(self.client, database, "Processed")) >= len(keys)

    def _wait_usage(self, deadline: float) -> bool:
        """Until every landed row is resolved and every billed one is in usage_hourly."""
        for runtime in self.paths.values():
            for _ in range(int(max(deadline - time.monotonic(), 0) / 0.25) + 1):
                status.refresh_now(self.client, runtime.database)
                if status.usage_caught_up(self.client, runtime.database):
                    break
                time.sleep(0.25)
            else:
                return False
        return True

    def _count(self, table: str) -> int:
        return int(self.client.command(f"SELECT count() FROM {table}"))

    def _rejected(self, runtime: PathRuntime) -> dict[str, int]:
        """Rejections by the transform's error code, plus the ingest's dead letters (HTTP)."""
        rejected: dict[str, int] = {}
        for stats in runtime.stats():
            for code, n in stats.transform_reasons.items():
                if is_rejection(code):
                    rejected[code] = rejected.get(code, 0) + n
        if runtime.name == "http":
            rows = self.client.query(
                f"SELECT error_code, count() FROM {runtime.database}.{t.DEAD_LETTER} GROUP BY error_code"
            ).result_rows
            for code, n in rows:
                rejected[f"dead_letter:{code}"] = int(n)
        return rejected

    # ------------------------------------------------------------------ results
    def latencies_ms(self, path: str) -> list[int]:
        """Per billed event: when the resolver billed it minus its put time."""
        db = self.paths[path].database
        rows = self.client.query(
            f"SELECT transaction_id, toUnixTimestamp64Milli(resolved_at) FROM {db}.{t.EVENTS}"
        ).result_rows
        put_ms = self.produced.put_ms
        return sorted(int(at) - put_ms[tid] for tid, at in rows if tid in put_ms)

    def usage_rows(self, path: str) -> list[tuple[Any, ...]]:
        db = self.paths[path].database
        return self.client.query(
            "SELECT organization_id, external_customer_id, code, toUnixTimestamp(hour) * 1000, sum(event_count), "
            f"sum(value_sum), toString(sum(decimal_value_sum)) FROM {db}.{t.USAGE_HOURLY} GROUP BY ALL"
        ).result_rows

    def stop(self) -> None:
        for runtime in self.paths.values():
            runtime.stop.set()
            runtime.runner.stop()
        for runtime in self.paths.values():
            if runtime.thread is not None:
                runtime.thread.join(timeout=30)
            runtime.runner.close()
        if self.ingest_server is not None:
            self.ingest_server.stop()
        if self.client is not None:
            for runtime in self.paths.values():  # stop the queues while the S3 stand-in still answers
                self.client.command(f"DETACH TABLE IF EXISTS {runtime.database}.{t.EVENTS_QUEUE_MV}")
        if self.archiver is not None:  # the queues are stopped: move the last processed objects
            self.archiver.stop()
        self.aws.stop()
