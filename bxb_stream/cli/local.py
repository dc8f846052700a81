"""``bxb-stream local``: the whole pipeline on this machine, with the real handlers and DDL.

Starts moto (Kinesis, S3, Secrets Manager), chDB with the project's DDL, the ingest
Lambda behind a loopback function-URL adapter, and a Firehose runner per path; produces
a seeded synthetic workload (duplicates, invalid and late events included); waits until
everything is delivered; prints a reconciliation per path, end-to-end latency and hourly
usage; exits 1 on any difference. --serve keeps it running for other terminals (with no
warm-up workload unless --events is given); --resume restarts a stopped --serve on its
data dir with everything it held. SIGINT and SIGTERM both stop it cleanly.
"""

from __future__ import annotations

import argparse
import logging
import os
import shlex
import shutil
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

from bxb_runtime.config import ConfigError

SERVE_MAX_SECONDS = 7 * 86_400
DEMO_EVENTS = 200_000
DEFAULT_CONFIG = Path("cdk.json")
# The banner's example producer: its workload is known here, so the usage example can name a real customer.
EXAMPLE_EVENTS, EXAMPLE_SEED, EXAMPLE_CUSTOMERS = 1_000, 1, 1_000


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("local", help="run the whole pipeline locally and reconcile", description=__doc__)
    p.add_argument(
        "action",
        nargs="?",
        choices=("run", "wait"),
        default="run",
        help="run (default): start the pipeline; wait: against a running --serve (its --url), wait until every "
        "event in the stream now is billed or accounted for, and show where each one went",
    )
    p.add_argument("--url", help="with wait: the query relay the --serve banner prints (local+http://127.0.0.1:PORT)")
    p.add_argument(
        "--events",
        type=int,
        help=f"synthetic events to produce and reconcile (default {DEMO_EVENTS}; with --serve, 0: serve at once)",
    )
    p.add_argument("--rate", type=float, help="cap on events per second")
    p.add_argument("--path", choices=("s3", "http", "both"), default="both", help="delivery path(s) to run")
    p.add_argument(
        "--aggregate",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="KPL-aggregate events into Kinesis records (default on, as recommended for production)",
    )
    p.add_argument(
        "--data-dir",
        type=Path,
        default=Path(".bxb/local"),
        help="state of this run: ClickHouse data, Firehose checkpoints, the AWS stand-in's journal "
        "(wiped first, unless --resume)",
    )
    p.add_argument(
        "--resume",
        action="store_true",
        help="with --serve: keep --data-dir and go on where the last run stopped (stored events, checkpoints, "
        "records still in Kinesis, the same endpoint port)",
    )
    p.add_argument("--endpoint-url", help="an AWS-compatible endpoint instead of moto (default: AWS_ENDPOINT_URL)")
    p.add_argument("--config", type=Path, help="the CDK app's cdk.json to mirror (default: ./cdk.json if present)")
    p.add_argument(
        "--buffer-seconds", type=float, default=2.0, help="every Firehose buffer interval, locally (deployed: >= 60)"
    )
    p.add_argument("--seed", type=int, default=7, help="seed of the synthetic workload (same seed, same events)")
    p.add_argument("--duplicate-share", type=float, default=0.02, help="share of events re-sent as duplicates")
    p.add_argument("--invalid-share", type=float, default=0.01, help="share of events the transform must reject")
    p.add_argument("--late-share", type=float, default=0.01, help="share held as late (past grace)")
    p.add_argument("--conflict-share", type=float, default=0.005, help="share of ids re-used for a different event")
    p.add_argument("--backdated-share", type=float, default=0.01, help="share of events days old, in an open period")
    p.add_argument(
        "--timeout", type=float, default=900.0, help="seconds to wait for delivery after producing (and for wait)"
    )
    p.add_argument("--serve", action="store_true", help="keep running (after the workload, if any) until stopped")
    p.add_argument("--serve-seconds", type=float, default=SERVE_MAX_SECONDS, help=argparse.SUPPRESS)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from rich.console import Console

    from bxb_stream.deployment import PipelineConfig
    from bxb_stream.local.pipeline import LocalOptions, LocalPipeline

    console = Console() if sys.stdout.isatty() else Console(width=140)  # tables stay readable in logs
    if args.action == "wait":
        return _wait(args, console)
    _log_to(console)
    events = args.events if args.events is not None else (0 if args.serve or args.resume else DEMO_EVENTS)
    try:
        problem = _check_args(args, events)
        if problem:
            raise ValueError(problem)
        config_path = args.config or DEFAULT_CONFIG
        config = PipelineConfig.from_cdk_json(config_path) if config_path.exists() else PipelineConfig()
        options = LocalOptions(
            events=events,
            rate=args.rate,
            paths=("s3", "http") if args.path == "both" else (args.path,),
            aggregate=args.aggregate,
            data_dir=args.data_dir,
            endpoint_url=args.endpoint_url or os.environ.get("AWS_ENDPOINT_URL"),
            buffer_seconds=args.buffer_seconds,
            seed=args.seed,
            duplicate_share=args.duplicate_share,
            invalid_share=args.invalid_share,
            late_share=args.late_share,
            conflict_share=args.conflict_share,
            backdated_share=args.backdated_share,
            timeout_s=args.timeout,
            fresh=not args.resume,
        )
    except (ConfigError, ValueError, OSError) as exc:  # (a cdk.json that is not JSON is a ValueError)
        _error(console, str(exc))
        return 2

    from bxb_stream.clickhouse import engine as ch_engine

    tune_gc()
    owns_engine = ch_engine.current() is None  # this process starts the engine: it is the CLI's own
    pipeline = LocalPipeline(config, options)
    with StopSignals() as signals:
        code = _run(pipeline, console, args, signals)
        signals.stopping = True  # a signal now means: stop at once
        with console.status("stopping: Firehose runners flush what they hold"):
            shutdown = pipeline.stop()
        _report_shutdown(console, shutdown)
        code = code if shutdown.clean or code else 1
    if owns_engine:
        # Leave without closing chDB: its close at exit has deadlocked (once in six SIGTERMs mid-stream,
        # an S3Queue thread waiting on a lock), and there is nothing left to save. Inserts are synchronous,
        # checkpoints and the AWS journal are written: this is as safe as the SIGKILL --resume recovers from.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code


def _wait(args: argparse.Namespace, console: Any) -> int:
    """``local wait``: the serving process waits, then says where every event read since it began
    serving went; exit 0 only when all of it is settled and accounted for."""
    from bxb_stream.cli._failures import explain
    from bxb_stream.local.relay import RelayClient

    if not args.url:
        _error(console, "local wait needs --url: the query relay the --serve banner prints (local+http://...)")
        return 2
    try:
        relay = RelayClient(args.url)
        with console.status(f"waiting (at most {args.timeout:.0f}s) until the events in the stream are billed"):
            result = relay.settle(args.timeout)
    except ValueError as exc:
        _error(console, str(exc))
        return 2
    except Exception as exc:
        message = explain(exc, args.url)
        if message is None:
            raise
        _error(console, message)
        return 1
    by_path = _print_account(console, result["paths"])
    unaccounted = {path: lines["unaccounted for"] for path, lines in by_path.items() if lines["unaccounted for"]}
    if not result["settled"]:
        _error(console, f"not settled within {args.timeout:.0f}s: see the table, and the runners' health (/status)")
        return 1
    if unaccounted:
        _error(console, f"events unaccounted for: {unaccounted}")
        return 1
    console.print(f"settled in {result['seconds']:.1f}s: every event read is billed or accounted for")
    return 0


def _print_account(console: Any, paths: dict[str, list[tuple[str, int]]]) -> dict[str, dict[str, int]]:
    """Where the events read since serving began went, one column per path (``reconcile.account``)."""
    from rich.table import Table

    table = Table(title="since serving began", title_justify="left")
    table.add_column("where")
    for path in paths:
        table.add_column(path, justify="right")
    by_path = {path: dict(lines) for path, lines in paths.items()}
    for name in dict.fromkeys(name for lines in paths.values() for name, _ in lines):
        table.add_row(name, *(f"{by_path[path].get(name, 0):,}" for path in paths))
    console.print(table)
    return by_path


def _check_args(args: argparse.Namespace, events: int) -> str:
    if args.url is not None:
        return "--url goes with 'bxb-stream local wait'"
    if args.config is not None and not args.config.is_file():
        return f"--config {args.config}: no such file"
    if events < 0:
        return f"--events must be 0 or more, got {events}"
    if args.resume and not args.serve:
        return "--resume continues a stopped --serve: add --serve"
    if args.resume and events:
        return "--resume goes on with what the last run held and produces nothing new: drop --events"
    return ""


def _error(console: Any, message: str) -> None:
    """One line, never wrapped, in red: the cause of a non-zero exit."""
    from rich.markup import escape

    console.print(f"[red]bxb-stream local: {escape(message)}[/red]", soft_wrap=True)


def _run(pipeline: Any, console: Any, args: argparse.Namespace, signals: StopSignals) -> int:
    from bxb_stream.clickhouse.engine import EngineError
    from bxb_stream.clickhouse.migrations import MigrationError
    from bxb_stream.local.aws import AwsStandInError
    from bxb_stream.local.pipeline import DataDirInUse, RunnerFailed

    try:
        with console.status("starting stand-ins (moto, chDB, ingest adapter, Firehose runners)"):
            pipeline.start()
        if pipeline.resumed:
            replayed = pipeline.aws.replayed
            journal = f"; the AWS stand-in replayed {replayed:,} requests from its journal" if replayed else ""
            console.print(f"resumed from {pipeline.options.data_dir}{journal}")
        elif args.resume:
            console.print(f"nothing to resume in {pipeline.options.data_dir}: starting fresh")
        ok = True
        if pipeline.options.events:
            settled = _produce_and_wait(pipeline, console)
            ok = _report(pipeline, console, settled)
        elif not args.serve:
            console.print("--events 0: nothing to produce; every stand-in started")
        if args.serve:
            _serve(pipeline, console, args.serve_seconds)
        return 0 if ok else 1
    except RunnerFailed as exc:
        _error(console, f"{exc}; stopping")
        return 1
    except (AwsStandInError, EngineError, DataDirInUse) as exc:  # a port, or a data dir, in use by another run
        _error(console, str(exc))
        return 1
    except MigrationError as exc:  # a --resume with another endpoint or config than the run it continues
        resume = " (--resume needs the --endpoint-url and --config of the run it continues)" if args.resume else ""
        _error(console, f"{exc}{resume}")
        return 1
    except KeyboardInterrupt:
        console.print(f"interrupted ({signal.Signals(signals.received or signal.SIGINT).name}); stopping")
        return 128 + (signals.received or signal.SIGINT)


class StopSignals:
    """SIGTERM takes the same path as SIGINT (Ctrl-C): ``KeyboardInterrupt`` in the main thread,
    then the bounded ``pipeline.stop()``. A signal while stopping, or a second one, exits at once
    (checkpoints only ever cover durable deliveries, so nothing is lost, only re-read)."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.received: int | None = None
        self.stopping = False
        self._saved: dict[int, Any] = {}

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():  # Python delivers signals there only
            for sig in self.SIGNALS:
                self._saved[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._saved.items():
            signal.signal(sig, handler)

    def _handle(self, signum: int, frame: Any) -> None:
        if self.stopping or self.received is not None:
            os._exit(128 + signum)
        self.received = signum
        raise KeyboardInterrupt


def tune_gc() -> None:
    """A batch process that allocates millions of short-lived objects and builds few cycles:
    collect the young generation less often (measured: +37% Firehose runner throughput)."""
    import gc

    gc.set_threshold(100_000, 50, 100)


def _log_to(console: Any) -> None:
    """Runner warnings (transient AWS errors, recoveries, failures) on the console, above the progress bars."""
    from rich.logging import RichHandler

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's request log
    for name in ("bxb_stream.firehose", "bxb_stream.local"):
        logger = logging.getLogger(name)
        logger.setLevel(logging.INFO)
        if not logger.handlers:
            logger.addHandler(RichHandler(console=console, show_path=False, show_time=False))
        logger.propagate = False


class _Rate:
    """A path's own rate: its count over the time until that count was last reached."""

    def __init__(self, started: float) -> None:
        self.started = started
        self.count = 0
        self.at = started

    def update(self, count: int) -> str:
        if count != self.count:
            self.count, self.at = count, time.monotonic()
        return f"{self.count / max(self.at - self.started, 1e-9):,.0f}/s" if self.count else ""


def _produce_and_wait(pipeline: Any, console: Any) -> bool:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    n = pipeline.options.events
    with console.status(f"generating {n:,} synthetic events"):
        workload = pipeline.prepare()
    columns = (
        TextColumn("{task.description:<22}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console) as progress:
        # Every bar starts with the first put, so its elapsed time and its rate say the same thing.
        produce = progress.add_task("produce", total=n, rate="")
        read = {path: progress.add_task(f"{path}: read by Firehose", total=n, rate="") for path in pipeline.paths}
        billed = {
            path: progress.add_task(f"{path}: billed", total=pipeline.expected.kinds["stored"], rate="")
            for path in pipeline.paths
        }
        started = time.monotonic()
        rates = {task: _Rate(started) for task in (produce, *read.values(), *billed.values())}
        shown = [started]

        def delivered(counts: dict[str, Any]) -> None:
            for path, c in counts.items():
                progress.update(read[path], completed=c.read, rate=rates[read[path]].update(c.read))
                progress.update(billed[path], completed=c.billed, rate=rates[billed[path]].update(c.billed))

        def produced(done: int) -> None:
            progress.update(produce, completed=done, rate=rates[produce].update(done))
            if time.monotonic() - shown[0] >= 0.5:  # the runners read while we produce
                shown[0] = time.monotonic()
                delivered({path: pipeline.counts(path) for path in pipeline.paths})

        first_wave, resends = pipeline.resends(workload)
        pipeline.produce(first_wave, on_progress=produced)
        if resends:  # a client's later resends: sent once the first wave is billed
            if not pipeline.wait_settled(delivered):
                return False
            pipeline.produce(resends, on_progress=lambda done: produced(len(first_wave) + done))
        return pipeline.wait_settled(delivered)


def _report(pipeline: Any, console: Any, settled: bool) -> bool:
    from rich.table import Table

    from bxb_stream.local.reconcile import reconcile

    ok = settled
    if not settled:
        console.print(f"[red]not everything was delivered within {pipeline.options.timeout_s:.0f}s[/red]")
    produced = pipeline.produced
    elapsed = time.time() - produced.first_put
    console.print(
        f"produced {produced.events:,} events in {produced.records:,} Kinesis records "
        f"({produced.failures} undeliverable); all queryable after {elapsed:.1f}s "
        f"({produced.events / max(elapsed, 1e-9):,.0f} events/s end to end)"
    )
    for path in pipeline.paths:
        counts = pipeline.counts(path)
        usage_rows = pipeline.usage_rows(path)
        result = reconcile(pipeline.expected, produced.events, counts, usage_rows)
        ok &= result.ok
        table = Table(title=f"{path} path: reconciliation (database {pipeline.paths[path].database})")
        for column in ("", "expected", "measured", ""):
            table.add_column(column, justify="right" if column in ("expected", "measured") else "left")
        table.add_row("produced", f"{result.produced:,}", f"{result.produced:,}", "")
        for line in result.lines:
            table.add_row(
                line.category, f"{line.expected:,}", f"{line.measured:,}", "ok" if line.ok else "[red]DIFF[/red]"
            )
        verdict = "ok" if not result.usage_mismatches else f"[red]{len(result.usage_mismatches)} differ[/red]"
        table.add_row("usage_hourly rows vs truth", "", f"{result.usage_rows:,}", verdict)
        console.print(table)
        for problem in result.usage_mismatches[:5]:
            console.print(f"  [red]{problem}[/red]")
        latencies = pipeline.latencies_ms(path)
        if latencies:
            p50, p99 = latencies[len(latencies) // 2], latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
            console.print(f"{path} end-to-end latency (put -> queryable): p50 {p50 / 1000:.2f}s, p99 {p99 / 1000:.2f}s")
        _usage_table(console, path, usage_rows)
    console.print(
        "[green]reconciled: nothing lost, nothing counted twice[/green]" if ok else "[red]differences found[/red]"
    )
    return ok


def _usage_table(console: Any, path: str, rows: list[tuple[Any, ...]], top: int = 5) -> None:
    """The top customers' usage per metric, summed over their hours in usage_hourly."""
    from collections import Counter
    from decimal import Decimal

    from rich.table import Table

    totals: Counter[str] = Counter()
    per_code: dict[tuple[str, str], list[Any]] = {}  # (customer, code) -> [hours, events, value, decimal]
    for _, customer, code, _, count, value_sum, decimal_sum in rows:
        totals[customer] += count
        entry = per_code.setdefault((customer, code), [0, 0, 0.0, Decimal(0)])
        entry[0] += 1
        entry[1] += count
        entry[2] += value_sum or 0.0
        entry[3] += Decimal(decimal_sum or 0)
    leaders = [customer for customer, _ in totals.most_common(top)]
    rank = {customer: i for i, customer in enumerate(leaders)}
    table = Table(title=f"{path} path: usage of the top {len(leaders)} customers (usage_hourly, all hours)")
    for column in ("customer", "code", "hours", "events", "sum(value)", "sum(decimal_value)"):
        table.add_column(column, justify="left" if column in ("customer", "code") else "right")
    for (customer, code), (hours, events, value_sum, decimal_sum) in sorted(
        ((key, v) for key, v in per_code.items() if key[0] in rank), key=lambda kv: (rank[kv[0][0]], kv[0][1])
    ):
        table.add_row(customer, code, f"{hours:,}", f"{events:,}", f"{value_sum:,.2f}", str(decimal_sum))
    console.print(table)


def command_prefix() -> str:
    """How to run this bxb-stream from the user's shell: the plain name when it is on PATH (and
    not only because make put it there), else the path of the running executable."""
    argv0 = sys.argv[0]
    if Path(argv0).name == "__main__.py":  # python -m bxb_stream
        return f"{shlex.quote(_short(sys.executable))} -m bxb_stream"
    on_path = shutil.which("bxb-stream")
    if on_path and os.path.samefile(on_path, argv0) and "MAKELEVEL" not in os.environ:
        return "bxb-stream"
    return shlex.quote(_short(argv0))


def _short(path: str) -> str:
    """A path relative to the working directory when it lies below it, else absolute."""
    absolute = os.path.abspath(path)
    relative = os.path.relpath(absolute)
    return relative if not relative.startswith("..") else absolute


def _activate_hint(prefix: str) -> str:
    bin_dir = Path(os.path.abspath(sys.argv[0])).parent
    if prefix != "bxb-stream" and (bin_dir / "activate").exists():
        return f"        (or `source {shlex.quote(_short(str(bin_dir / 'activate')))}` once, then plain `bxb-stream`)"
    return ""


def serve_commands(pipeline: Any, relay_url: str) -> list[str]:
    """Commands for another terminal, that work as printed: no AWS credentials are needed in the
    environment (moto takes any, so they are given inline), and the usage example names a customer
    and metric that the produce example sends."""
    from collections import Counter
    from datetime import UTC, datetime, timedelta

    from bxb_stream.producer.synthetic import Expect, generate

    exe = command_prefix()
    targets = pipeline.targets
    db = next(iter(pipeline.paths.values())).database
    pairs = Counter(
        (e.external_customer_id, e.code)
        for _, e in generate(EXAMPLE_EVENTS, seed=EXAMPLE_SEED, customers=EXAMPLE_CUSTOMERS)
        if e.kind is Expect.STORED
    )
    (customer, code), _ = pairs.most_common(1)[0]
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    start, end = (f"{day:%Y-%m-%dT%H:%M}" for day in (today - timedelta(days=1), today + timedelta(days=1)))
    produce = (
        f"AWS_ACCESS_KEY_ID=local AWS_SECRET_ACCESS_KEY=local {exe} produce --endpoint-url {targets.endpoint_url} "
        f"--region {targets.region} --stream {targets.stream} --synthetic {EXAMPLE_EVENTS} --seed {EXAMPLE_SEED} "
        f"--customers {EXAMPLE_CUSTOMERS} --legacy-limits"
    )
    usage = (
        f"{exe} usage --url {relay_url} --database {db} --organization-id {pipeline.config.rules.organization_id} "
        f"--customer {customer} --code {code} --from {start} --to {end}"
    )
    wait = f"{exe} local wait --url {relay_url}"
    return [produce, wait, usage]


def _serve(pipeline: Any, console: Any, max_seconds: float) -> None:
    """Serve until stopped (KeyboardInterrupt, which SIGTERM raises too); a failed runner raises RunnerFailed."""
    from rich.markup import escape

    from bxb_stream.local.relay import RelayServer

    lock = threading.Lock()  # the relay and local wait share the pipeline's ClickHouse session
    began = {path: pipeline.counts(path) for path in pipeline.paths}
    relay = RelayServer(
        pipeline.client,
        status=lambda: {p: h.to_json() for p, h in pipeline.health().items()},
        settle=lambda timeout_s: pipeline.settle_served(timeout_s, lock, since=began),
        lock=lock,
    )
    relay.start()
    targets = pipeline.targets
    produce, wait, usage = serve_commands(pipeline, relay.url)
    health = pipeline.health()
    console.print(
        "\n[bold]serving[/bold] (Ctrl-C or SIGTERM to stop; --resume on the same --data-dir goes on from there)\n"
        f"  Kinesis/S3 endpoint : {targets.endpoint_url}   stream {targets.stream}, bucket {targets.bucket}\n"
        f"  ClickHouse (read)   : {relay.url}   databases {', '.join(r.database for r in pipeline.paths.values())}\n"
        f"  runner health       : {relay.status_url}   " + escape("; ".join(h.line() for h in health.values()))
    )
    # Never wrapped, so that a copied line runs as printed.
    console.print(f"  try : {produce}\n        {wait}\n        {usage}", soft_wrap=True, markup=False, highlight=False)
    hint = _activate_hint(command_prefix())
    if hint:
        console.print(hint, soft_wrap=True, markup=False, highlight=False)
    states = {path: h.state for path, h in health.items()}
    deadline = time.monotonic() + max_seconds
    try:
        while time.monotonic() < deadline:
            time.sleep(min(1.0, max(deadline - time.monotonic(), 0)))
            pipeline.check()
            for path, h in pipeline.health().items():
                if h.state != states[path]:
                    states[path] = h.state
                    console.print(f"runner {escape(h.line())}")
    except KeyboardInterrupt:
        console.print("stopping")
    finally:
        relay.stop()


def _report_shutdown(console: Any, shutdown: Any) -> None:
    from rich.markup import escape

    left = ", ".join(f"{path} {n:,}" for path, n in shutdown.in_flight.items() if n)
    if shutdown.clean:
        console.print(
            f"stopped in {shutdown.seconds:.1f}s: every runner flushed, nothing in flight "
            "(records not yet read stay in the stream)"
        )
        return
    for problem in shutdown.problems:
        console.print(f"[red]{escape(problem)}[/red]")
    if left:
        console.print(
            f"[yellow]stopped in {shutdown.seconds:.1f}s with records in flight ({left}): they are before their "
            "checkpoints and are read again by --serve --resume[/yellow]"
        )
