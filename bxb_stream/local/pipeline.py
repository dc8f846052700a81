"""The whole pipeline on one machine, with the project's real handlers and DDL.

    producer --PutRecords--> moto Kinesis -> Firehose runner (s3)   -> Parquet on moto S3 -> chDB S3Queue
                                          -> Firehose runner (http) -> function-URL adapter -> ingest -> chDB

Stand-ins start themselves and listen on 127.0.0.1 only. ``LocalPipeline`` starts them,
produces a seeded synthetic workload, waits (bounded) until every event is settled and
queryable, and reports a reconciliation per path, end-to-end latency and hourly usage.

Lifecycle: each Firehose runner runs in its own thread and retries transient AWS errors
for as long as they last; a runner that stops on any other error is reported by
``health()`` and raised as ``RunnerFailed`` by ``check()`` (and by the waits), so the
process stops rather than serving with a dead path. ``stop()`` is bounded in time: runners
stop reading, flush what they hold and close; whatever cannot be delivered before the
deadline stays before its checkpoint. With ``fresh=False`` everything in ``data_dir`` is
kept: ClickHouse's tables, the runners' checkpoints, and our moto's journal (its state).
"""

from __future__ import annotations

import fcntl
import logging
import secrets
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any

from bxb_runtime.clickhouse import tables as t
from bxb_runtime.ingest import AccessKeys, IngestService, IngestSettings
from bxb_runtime.ingest.rows import Trust
from bxb_runtime.layout import ARCHIVE_PREFIX, EVENTS_PREFIX
from bxb_runtime.transform import Transformer, load_hooks
from bxb_runtime.transform.process import is_rejection
from bxb_stream.clickhouse import engine as ch_engine
from bxb_stream.clickhouse import ledger, migrations, status
from bxb_stream.clickhouse.settings import ClickHouseSettings
from bxb_stream.deployment import PipelineConfig
from bxb_stream.firehose.retry import Abandoned
from bxb_stream.firehose.runner import DeliveryStats, DeliveryStream
from bxb_stream.local import capabilities
from bxb_stream.local import settings as local_settings
from bxb_stream.local.archiver import ProcessedArchiver
from bxb_stream.local.aws import AwsStandIn, AwsStandInError
from bxb_stream.local.function_url import FunctionUrlServer
from bxb_stream.local.reconcile import Expected, PathCounts, account
from bxb_stream.producer import LEGACY, Producer
from bxb_stream.producer.synthetic import Expect, generate

ACCESS_KEY_SECRET = "bxb/local/firehose-access-key"
STOP_TIMEOUT_S = 20.0  # stop(): runners flush within this, or leave the rest before their checkpoints
log = logging.getLogger("bxb_stream.local")


class RunnerFailed(RuntimeError):
    """A Firehose runner stopped on an error it cannot retry; its path delivers nothing more."""


class DataDirInUse(RuntimeError):
    """Another local pipeline runs on this data dir: it is neither wiped nor shared."""


def lock_data_dir(data_dir: Path) -> IO[str]:
    """Hold ``data_dir/.lock`` (flock, released when the process ends), before the dir may be wiped."""
    data_dir.mkdir(parents=True, exist_ok=True)
    handle = (data_dir / ".lock").open("a")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise DataDirInUse(f"another bxb-stream local is running on {data_dir}") from None
    return handle


@dataclass
class RunnerHealth:
    """One runner, as the serve banner and ``GET /status`` show it."""

    path: str
    state: str  # running | retrying | failed | stopped
    error: str  # why it failed, or the last transient error while retrying
    retries: dict[str, int]  # transient errors retried so far, by "Operation: code"
    read: int  # user records read since this process started
    settled: int
    in_flight: int
    behind_ms: int  # the furthest-behind shard's MillisBehindLatest

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def line(self) -> str:
        retried = sum(self.retries.values())
        text = f"{self.path}: {self.state}, read {self.read:,}, in flight {self.in_flight:,}"
        text += f", {retried:,} transient errors retried" if retried else ""
        return text + (f" ({self.error})" if self.error and self.state in ("failed", "retrying") else "")


@dataclass
class Shutdown:
    """What ``stop()`` managed: per path, records still in flight (re-read on restart) and problems."""

    in_flight: dict[str, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def clean(self) -> bool:
        return not self.problems and not any(self.in_flight.values())


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
    # Both paths into one database, as deployed (each event then lands twice, and is billed once);
    # per-path reconciliation needs separate databases, so the CLI keeps them apart.
    shared_database: bool = False


@dataclass
class PathRuntime:
    name: str
    database: str
    runner: DeliveryStream
    thread: threading.Thread | None = None
    stop: threading.Event = field(default_factory=threading.Event)
    error: str = ""  # set when the runner stopped on an error it cannot retry
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
        self.failed = threading.Event()  # a runner stopped on an error it cannot retry
        self.resumed = False  # started on a kept data dir that held a previous run
        self._lock: IO[str] | None = None
        # Where the endpoint cannot do S3Queue's move (capabilities), the pipeline moves instead.
        self.capabilities = capabilities.EndpointCapabilities(conditional_delete=True)
        self.archiver: ProcessedArchiver | None = None

    # ------------------------------------------------------------------ stand-ins
    def start(self) -> None:
        opts = self.options
        self._lock = lock_data_dir(opts.data_dir)
        if opts.fresh:
            for entry in opts.data_dir.iterdir():  # all but the lock we hold
                if entry.is_dir():
                    shutil.rmtree(entry)
                elif entry.name != ".lock":
                    entry.unlink()
        self.resumed = any(entry.name != ".lock" for entry in opts.data_dir.iterdir())
        if self.aws.endpoint_url is None:
            self.aws.state_dir = opts.data_dir / "aws"  # our moto journals its state there
        # moto first: on a resume, the S3Queue tables start polling its (same) port as the engine opens.
        self.aws.start()
        # One engine per process: reuse a running one (tests), else start ours before anything imports chdb.
        self.engine = ch_engine.current() or ch_engine.start(opts.data_dir / "clickhouse")
        self.client = self.engine.client()
        name = self.config.name
        targets = local_settings.LocalTargets(
            endpoint_url=str(self.aws.endpoint_url), region=self.aws.region, stream=name, bucket=f"{name}-archive"
        )
        self.aws.ensure_stream(targets.stream, opts.shards)
        self.aws.ensure_bucket(targets.bucket)
        if "s3" in opts.paths:
            self._probe_endpoint(targets.bucket)
        for database in dict.fromkeys(self._database(path) for path in opts.paths):
            queues = any(path == "s3" and self._database(path) == database for path in opts.paths)
            settings = local_settings.clickhouse_settings(
                database, targets, s3_queues=queues, move_processed=self.capabilities.conditional_delete
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
            self.options.database or self.config.clickhouse.database,
            path,
            self.options.paths,
            shared=self.options.shared_database,
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
            target=self._run_runner, args=(runtime, runtime.runner), name=f"firehose-{runtime.name}", daemon=True
        )
        runtime.thread.start()

    def _run_runner(self, runtime: PathRuntime, runner: DeliveryStream) -> None:
        """The runner's thread: runs until stopped; an error it cannot retry fails the path, loudly."""
        try:
            runner.run_until(predicate=lambda _: runtime.stop.is_set(), timeout_s=7 * 86_400)
        except Abandoned:
            pass  # shutdown cut a retry short: stop() reports what is still in flight
        except Exception as exc:
            runtime.error = f"{type(exc).__name__}: {exc}"
            log.error("Firehose runner %s stopped: %s", runtime.name, runtime.error)
            self.failed.set()

    def health(self) -> dict[str, RunnerHealth]:
        out = {}
        for path, runtime in self.paths.items():
            runner = runtime.runner
            retry = runner.retrier.stats
            stats = runner.stats
            alive = runtime.thread is not None and runtime.thread.is_alive()
            if runtime.error:
                state, error = "failed", runtime.error
            elif not alive:
                state, error = "stopped", ""
            elif retry.failing:
                state, error = "retrying", retry.last_error
            else:
                state, error = "running", ""
            out[path] = RunnerHealth(
                path, state, error, dict(retry.retries), stats.records_read, stats.settled, stats.in_flight,
                runner.source.behind_ms,
            )  # fmt: skip
        return out

    def check(self) -> None:
        """Raise ``RunnerFailed`` if a runner stopped on an error it cannot retry, or our moto died
        (runners would retry against it for ever)."""
        try:
            self.aws.check()
        except AwsStandInError as exc:
            raise RunnerFailed(str(exc)) from None
        if self.failed.is_set():
            failed = [f"{r.name}: {r.error}" for r in self.paths.values() if r.error]
            raise RunnerFailed("Firehose runner stopped, " + "; ".join(failed))

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
        produced.first_put = produced.first_put or time.time()  # a second wave goes on from the first
        put_ms = produced.put_ms
        put = 0
        for i, (event, expect) in enumerate(workload if workload is not None else self.prepare()):
            if opts.rate:
                ahead = i / opts.rate - (time.monotonic() - started)
                if ahead > 0:
                    time.sleep(min(ahead, 1.0))
            producer.put(event)
            if expect.kind is Expect.STORED:
                put_ms[expect.transaction_id] = int(time.time() * 1000)
            put = i + 1
            if on_progress is not None and put % 1000 == 0:
                on_progress(put)
        failures = producer.close()
        produced.last_put = time.time()
        stats = producer.stats
        produced.events += stats.delivered
        produced.failures += len(failures)
        produced.records += stats.records
        if on_progress is not None:
            on_progress(put)  # this wave's events, as during the loop
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
            late_rejected=verdicts[t.Verdict.REJECTED],
            dropped_in_batch=dropped,
            rejected=self._rejected(runtime),
            backed_up=sum(sum(s.backed_up.values()) for s in (*retired, current)),
            queue_failed_files=len(status.queue_files(self.client, db, "Failed")) if path == "s3" else 0,
        )

    def settle_served(
        self, timeout_s: float, lock: threading.Lock, since: dict[str, PathCounts] | None = None
    ) -> dict[str, Any]:
        """For ``bxb-stream local wait`` while serving: wait until every record in the stream when
        this was called is read, delivered, landed, resolved and in usage_hourly, then account for
        everything read since ``since`` (the counts when serving began). ``lock`` guards the
        ClickHouse session, which the query relay shares. Bounded by ``timeout_s``."""
        asked = time.time()
        deadline = time.monotonic() + timeout_s
        settled = False
        for _ in range(int(timeout_s / 0.25) + 1):
            self.check()
            runners = all(
                r.runner.source.caught_up_since >= asked and not r.runner.stats.in_flight for r in self.paths.values()
            )
            if runners:
                with lock:
                    if all(self._settled(path) for path in self.paths):
                        settled = self._wait_usage(deadline)
                        break
            if time.monotonic() > deadline:
                break
            time.sleep(0.25)
        with lock:
            counts = {path: self.counts(path) for path in self.paths}
        before = since or {}
        return {
            "settled": settled,
            "seconds": round(time.time() - asked, 2),
            "paths": {path: account(c, before.get(path)) for path, c in counts.items()},
        }

    def wait_settled(self, on_progress: Callable[[dict[str, PathCounts]], None] | None = None) -> bool:
        """Until each path has read and settled every produced event and ClickHouse has every
        delivered row (S3 path: S3Queue has processed every data object). Bounded by timeout_s.

        The S3 listing runs once the runners say they are done (it is not free at a million rows);
        then the resolver and the usage refresh are run at once rather than on their schedule."""
        if self.produced.events == 0:
            return True  # nothing was produced: nothing to wait for
        deadline = time.monotonic() + self.options.timeout_s
        for _ in range(int(self.options.timeout_s / 0.25) + 1):
            self.check()
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
            if self.archiver is not None:  # the pipeline does S3Queue's move itself
                self.archiver.move_processed()
            return self._events_prefix_empty()
        return True  # the HTTP path inserts synchronously: settled means stored

    def _events_prefix_empty(self) -> bool:
        """Every data object is moved to archive/ once its rows are committed (by S3Queue, or by
        the archiver), so nothing left under events/ means everything landed. Unlike counting
        the queue's Processed files, this holds across a restart on a kept data dir."""
        assert self.targets is not None
        listed = self.aws.client("s3").list_objects_v2(Bucket=self.targets.bucket, Prefix=EVENTS_PREFIX, MaxKeys=1)
        return not listed.get("KeyCount", 0)

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

    def stop(self, timeout_s: float = STOP_TIMEOUT_S) -> Shutdown:
        """Stop everything within about ``timeout_s``: runners stop reading, flush what they
        hold and close; retries still failing at the deadline are abandoned (what they held
        stays in flight, before its checkpoint, and is read again on restart)."""
        started = time.monotonic()
        deadline = started + timeout_s
        result = Shutdown()
        for runtime in self.paths.values():
            runtime.stop.set()
            runtime.runner.stop()
        abandon = threading.Timer(max(deadline - time.monotonic(), 0), self._abandon_runners)
        abandon.daemon = True
        abandon.start()
        try:
            for runtime in self.paths.values():
                self._close_runner(runtime, deadline, result)
        finally:
            abandon.cancel()
        if self.ingest_server is not None:
            self.ingest_server.stop()
        if self.client is not None:
            for runtime in self.paths.values():  # stop the queues while the S3 stand-in still answers
                self.client.command(f"DETACH TABLE IF EXISTS {runtime.database}.{t.EVENTS_QUEUE_MV}")
        if self.archiver is not None:  # the queues are stopped: move the last processed objects
            self.archiver.stop()
        self.aws.stop()
        if self._lock is not None:
            self._lock.close()
            self._lock = None
        result.seconds = time.monotonic() - started
        return result

    def _abandon_runners(self) -> None:
        for runtime in self.paths.values():
            runtime.runner.abandon()

    def _close_runner(self, runtime: PathRuntime, deadline: float, result: Shutdown) -> None:
        name, runner = runtime.name, runtime.runner
        if runtime.thread is not None:
            runtime.thread.join(timeout=max(deadline - time.monotonic(), 0) + 2)  # +2: time to see abandon()
            if runtime.thread.is_alive():
                result.problems.append(f"{name}: the runner did not stop in time")
                return
        if runtime.error:
            result.problems.append(f"{name}: {runtime.error}")
        try:
            runner.close()
        except Abandoned:
            result.problems.append(f"{name}: flushing was cut short at the shutdown deadline")
        except Exception as exc:  # the process is stopping anyway: say why this path could not flush
            result.problems.append(f"{name}: flushing failed: {type(exc).__name__}: {exc}")
        result.in_flight[name] = runner.stats.in_flight
