"""Capacity, monthly cost and latency of the pipeline for one workload: pure functions, no I/O.

Costs use the average rate; capacity (shards) uses the peak rate plus headroom.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from fractions import Fraction

from bxb_stream.clickhouse.settings import ClickHouseSettings
from bxb_stream.plan.model import GIB, HOURS_PER_MONTH, KIB, MIB, SECONDS_PER_MONTH, Pipeline, Workload, rps_at
from bxb_stream.plan.prices import PriceSheet

SHARD_WRITE_BYTES = MIB
SHARD_WRITE_RECORDS = 1000
SHARD_READ_BYTES = 2 * MIB
PUT_PAYLOAD_UNIT = 25 * KIB
ONDEMAND_BILLING_UNIT = KIB
FIREHOSE_BILLING_UNIT = 5 * KIB
KPL_RECORD_OVERHEAD = 4 + 16  # magic number + MD5 trailer of an aggregated record
EXTENDED_RETENTION_LIMIT_HOURS = 168
# An idempotency item: organization_id + transaction_id (~60 B), a TTL attribute and the attribute
# names (~40 B), plus the 100 B DynamoDB adds to every item for storage billing.
IDEMPOTENCY_ITEM_BYTES = 200


@dataclass(frozen=True)
class Line:
    """One billed item."""

    item: str
    quantity: float
    unit: str
    unit_price: float
    usd: float
    price_key: str
    per: float = 1.0  # the unit price is per this many units (1e6 for "per million")


@dataclass(frozen=True)
class Section:
    name: str
    lines: tuple[Line, ...]

    @property
    def total(self) -> float:
        return sum(line.usd for line in self.lines)


@dataclass(frozen=True)
class KinesisPlan:
    events_per_record: int
    record_bytes: float
    records_per_sec: float
    peak_bytes_per_sec: float
    peak_records_per_sec: float
    shards_by_bytes: int
    shards_by_records: int
    shards_by_egress: int
    shards: int
    write_utilisation: float  # peak load over provisioned capacity, the tighter of bytes and records
    provisioned: Section
    on_demand: Section

    @property
    def cheaper_mode(self) -> str:
        return "provisioned" if self.provisioned.total <= self.on_demand.total else "on-demand"

    @property
    def saving(self) -> float:
        return abs(self.provisioned.total - self.on_demand.total)


@dataclass(frozen=True)
class Stage:
    name: str
    p50_s: float
    worst_s: float
    note: str


@dataclass(frozen=True)
class PathLatency:
    path: str
    stages: tuple[Stage, ...]

    @property
    def p50_s(self) -> float:
        return sum(s.p50_s for s in self.stages)

    @property
    def worst_s(self) -> float:
        return sum(s.worst_s for s in self.stages)


@dataclass(frozen=True)
class LambdaUse:
    function: str
    invocations_per_month: float
    gb_seconds_per_month: float
    events_per_invocation: float


@dataclass(frozen=True)
class Plan:
    workload: Workload
    pipeline: Pipeline
    prices: PriceSheet
    kinesis: KinesisPlan
    firehose: Section
    lambdas: Section
    lambda_use: tuple[LambdaUse, ...]
    s3: Section
    latency: tuple[PathLatency, ...]
    idempotency_table: Section
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def rest_total(self) -> float:
        return self.firehose.total + self.lambdas.total + self.s3.total

    def total(self, mode: str | None = None) -> float:
        mode = mode or self.kinesis.cheaper_mode
        stream = self.kinesis.provisioned if mode == "provisioned" else self.kinesis.on_demand
        return stream.total + self.rest_total


# --- Kinesis ---------------------------------------------------------------------------------------------


def varint_len(n: int) -> int:
    """Bytes a protobuf varint takes for ``n``."""
    return max(1, (int(n).bit_length() + 6) // 7)


def kpl_event_overhead(event_bytes: int) -> int:
    """Protobuf bytes the KPL adds around one event inside an aggregated record.

    Record{partition_key_index=0 (2 B), data (1 B tag + varint len + data)} wrapped as a repeated field
    (1 B tag + varint len).
    """
    inner = 2 + 1 + varint_len(event_bytes) + event_bytes
    return 1 + varint_len(inner) + (inner - event_bytes)


def events_per_record(workload: Workload) -> int:
    """How many events one Kinesis record carries: 1 without aggregation, else as many as fit and arrive in time."""
    if not workload.aggregate:
        return 1
    size = math.ceil(workload.avg_bytes)
    fixed = KPL_RECORD_OVERHEAD + 1 + varint_len(workload.partition_key_bytes) + workload.partition_key_bytes
    by_size = (workload.aggregate_bytes - fixed) // (size + kpl_event_overhead(size))
    # A producer flushes after RecordMaxBufferedTime, so slow producers cannot fill a record.
    by_time = math.floor(workload.events_per_sec / workload.producers * workload.kpl_max_buffered_ms / 1000)
    return max(1, min(by_size, by_time))


def record_bytes(workload: Workload, per_record: int) -> float:
    if per_record == 1:
        return workload.avg_bytes
    size = math.ceil(workload.avg_bytes)
    fixed = KPL_RECORD_OVERHEAD + 1 + varint_len(workload.partition_key_bytes) + workload.partition_key_bytes
    return fixed + per_record * (size + kpl_event_overhead(size))


def _exact(x: float) -> Fraction:
    # Through the shortest decimal repr, so 1.1 means 11/10 and a load exactly at a limit is not rounded up.
    return Fraction(repr(float(x)))


def shards_for(load: Fraction, per_shard: int) -> int:
    return max(1, math.ceil(load / per_shard))


def plan_kinesis(workload: Workload, prices: PriceSheet) -> KinesisPlan:
    per_record = events_per_record(workload)
    rec_bytes = record_bytes(workload, per_record)
    records_per_sec = workload.events_per_sec / per_record
    consumers = len(workload.paths)  # each Firehose is a shared-throughput consumer

    peak_records = _exact(workload.events_per_sec) / per_record * _exact(workload.peak_factor)
    peak_bytes = peak_records * _exact(rec_bytes)
    by_bytes = shards_for(peak_bytes * (1 + _exact(workload.headroom)), SHARD_WRITE_BYTES)
    by_records = shards_for(peak_records * (1 + _exact(workload.headroom)), SHARD_WRITE_RECORDS)
    by_egress = shards_for(peak_bytes * consumers * (1 + _exact(workload.headroom)), SHARD_READ_BYTES)
    shards = max(by_bytes, by_records, by_egress)
    utilisation = float(max(peak_bytes / (shards * SHARD_WRITE_BYTES), peak_records / (shards * SHARD_WRITE_RECORDS)))

    return KinesisPlan(
        events_per_record=per_record,
        record_bytes=rec_bytes,
        records_per_sec=records_per_sec,
        peak_bytes_per_sec=float(peak_bytes),
        peak_records_per_sec=float(peak_records),
        shards_by_bytes=by_bytes,
        shards_by_records=by_records,
        shards_by_egress=by_egress,
        shards=shards,
        write_utilisation=utilisation,
        provisioned=_provisioned_cost(workload, prices, shards, records_per_sec, rec_bytes),
        on_demand=_on_demand_cost(workload, prices, records_per_sec, rec_bytes, consumers),
    )


def _line(prices: PriceSheet, item: str, quantity: float, unit: str, key: str, per: float = 1.0) -> Line:
    rate = prices.rate(key)
    return Line(item, quantity, unit, rate, quantity / per * rate, key, per)


def _retention_lines(workload: Workload, prices: PriceSheet, bytes_per_sec: float) -> list[Line]:
    hours = workload.retention_hours
    if hours <= EXTENDED_RETENTION_LIMIT_HOURS:
        return []
    stored_gb = bytes_per_sec * (hours - EXTENDED_RETENTION_LIMIT_HOURS) * 3600 / GIB
    return [_line(prices, "long-term retention", stored_gb, "GB-month", "kinesis.long_term_retention_gb_month")]


def _provisioned_cost(
    workload: Workload, prices: PriceSheet, shards: int, records_per_sec: float, rec_bytes: float
) -> Section:
    units_per_record = math.ceil(rec_bytes / PUT_PAYLOAD_UNIT)
    payload_units = records_per_sec * units_per_record * SECONDS_PER_MONTH
    lines = [
        _line(prices, "shard-hours", shards * HOURS_PER_MONTH, "shard-hour", "kinesis.provisioned.shard_hour"),
        _line(
            prices,
            f"PUT payload units ({units_per_record}/record)",
            payload_units,
            "unit",
            "kinesis.provisioned.put_payload_units_per_million",
            per=1e6,
        ),
    ]
    if workload.retention_hours > 24:
        lines.append(
            _line(
                prices,
                "extended retention (24 h-7 d)",
                shards * HOURS_PER_MONTH,
                "shard-hour",
                "kinesis.provisioned.extended_retention_shard_hour",
            )
        )
    lines += _retention_lines(workload, prices, records_per_sec * rec_bytes)
    return Section("kinesis provisioned", tuple(lines))


def _on_demand_cost(
    workload: Workload, prices: PriceSheet, records_per_sec: float, rec_bytes: float, consumers: int
) -> Section:
    billed_record = math.ceil(rec_bytes / ONDEMAND_BILLING_UNIT) * ONDEMAND_BILLING_UNIT
    data_in_gb = records_per_sec * billed_record * SECONDS_PER_MONTH / GIB
    data_out_gb = records_per_sec * rec_bytes * SECONDS_PER_MONTH / GIB * consumers
    lines = []
    if prices.rate("kinesis.ondemand.stream_hour") > 0:
        lines.append(_line(prices, "stream-hours", HOURS_PER_MONTH, "stream-hour", "kinesis.ondemand.stream_hour"))
    lines += [
        _line(prices, "data in (1 KB rounding)", data_in_gb, "GB", "kinesis.ondemand.data_in_gb"),
        _line(
            prices,
            f"data out ({consumers} consumer{'s' * (consumers > 1)})",
            data_out_gb,
            "GB",
            "kinesis.ondemand.data_out_gb",
        ),
    ]
    if workload.retention_hours > 24:
        window = min(workload.retention_hours, EXTENDED_RETENTION_LIMIT_HOURS) - 24
        stored_gb = records_per_sec * rec_bytes * window * 3600 / GIB
        lines.append(
            _line(
                prices,
                "extended retention (24 h-7 d)",
                stored_gb,
                "GB-month",
                "kinesis.ondemand.extended_retention_gb_month",
            )
        )
    lines += _retention_lines(workload, prices, records_per_sec * rec_bytes)
    return Section("kinesis on-demand", tuple(lines))


# --- Firehose --------------------------------------------------------------------------------------------


def s3_objects_per_sec(workload: Workload, pipeline: Pipeline) -> float:
    """Objects Firehose A writes: each active partition flushes when its buffer fills or its interval ends."""
    return pipeline.active_partitions / _flush_seconds(
        workload.bytes_per_sec / pipeline.active_partitions, pipeline.s3_buffer_mib, pipeline.s3_buffer_seconds
    )


def _flush_seconds(bytes_per_sec: float, buffer_mib: float, interval_s: float) -> float:
    """Time until a buffer flushes: when it fills or its interval ends, whichever is first (never below 1 ms)."""
    fill = buffer_mib * MIB / bytes_per_sec
    return max(min(fill, interval_s), 0.001)


def plan_firehose(workload: Workload, pipeline: Pipeline, prices: PriceSheet, kinesis: KinesisPlan) -> Section:
    # Firehose bills each record it reads from the stream, rounded up to 5 KB; aggregation makes few, big records.
    billed_record = math.ceil(kinesis.record_bytes / FIREHOSE_BILLING_UNIT) * FIREHOSE_BILLING_UNIT
    per_stream_gb = kinesis.records_per_sec * billed_record * SECONDS_PER_MONTH / GIB
    streams = len(workload.paths)
    # Tiers apply to the account's monthly total, so price both delivery streams together.
    ingest_usd = prices.tiered_cost("firehose.ingest_gb", per_stream_gb * streams)
    lines = [
        Line(
            f"ingestion, {streams} stream{'s' * (streams > 1)} (5 KB rounding)",
            per_stream_gb * streams,
            "GB",
            ingest_usd / (per_stream_gb * streams),
            ingest_usd,
            "firehose.ingest_gb",
        )
    ]
    if "s3" in workload.paths:
        delivered_gb = workload.bytes_per_sec * SECONDS_PER_MONTH / GIB
        objects = s3_objects_per_sec(workload, pipeline) * SECONDS_PER_MONTH
        lines += [
            _line(prices, "format conversion to Parquet", per_stream_gb, "GB", "firehose.format_conversion_gb"),
            _line(prices, "dynamic partitioning, data", delivered_gb, "GB", "firehose.dynamic_partitioning_gb"),
            _line(
                prices,
                "dynamic partitioning, objects",
                objects,
                "object",
                "firehose.dynamic_partitioning_per_1000_objects",
                per=1000,
            ),
        ]
    return Section("firehose", tuple(lines))


# --- Lambda ----------------------------------------------------------------------------------------------


def _invocation(events_per_sec: float, bytes_per_sec: float, buffer_mib: float, interval_s: float) -> float:
    """Events per invocation for a buffer that flushes when full or when its interval ends."""
    return events_per_sec * _flush_seconds(bytes_per_sec, buffer_mib, interval_s)


def lambda_usage(workload: Workload, pipeline: Pipeline) -> tuple[LambdaUse, ...]:
    uses = []
    per_invoke = _invocation(
        workload.events_per_sec,
        workload.bytes_per_sec,
        pipeline.processor_buffer_mib,
        pipeline.processor_buffer_seconds,
    )
    # Both delivery streams run the transform on every event.
    for path in workload.paths:
        uses.append(
            _use(
                f"transform ({path})",
                workload.events_per_sec,
                per_invoke,
                rps_at(pipeline.transform_rps, pipeline.transform_memory_mb),
                pipeline.transform_memory_mb,
                pipeline.lambda_overhead_ms,
            )
        )
    if "http" in workload.paths:
        per_post = _invocation(
            workload.events_per_sec, workload.bytes_per_sec, pipeline.http_buffer_mib, pipeline.http_buffer_seconds
        )
        uses.append(
            _use(
                "ingest (http)",
                workload.events_per_sec,
                per_post,
                rps_at(pipeline.ingest_rps, pipeline.ingest_memory_mb),
                pipeline.ingest_memory_mb,
                pipeline.lambda_overhead_ms,
            )
        )
    return tuple(uses)


def _use(
    name: str, events_per_sec: float, per_invoke: float, rps: float, memory_mb: int, overhead_ms: float
) -> LambdaUse:
    invocations = events_per_sec / per_invoke * SECONDS_PER_MONTH
    seconds_each = per_invoke / rps + overhead_ms / 1000
    return LambdaUse(name, invocations, invocations * seconds_each * memory_mb / 1024, per_invoke)


def plan_lambda(uses: tuple[LambdaUse, ...], prices: PriceSheet) -> Section:
    lines = []
    for use in uses:
        lines.append(
            _line(
                prices,
                f"{use.function} requests",
                use.invocations_per_month,
                "request",
                "lambda.requests_per_million",
                per=1e6,
            )
        )
        lines.append(
            _line(
                prices, f"{use.function} duration (arm64)", use.gb_seconds_per_month, "GB-s", "lambda.arm64_gb_second"
            )
        )
    return Section("lambda", tuple(lines))


# --- S3 --------------------------------------------------------------------------------------------------


def archive_daily_gb(workload: Workload, pipeline: Pipeline) -> float:
    """Parquet GB the archive gains each day."""
    return workload.bytes_per_sec * pipeline.parquet_ratio * 86_400 / GIB


def archive_held_days(pipeline: Pipeline) -> int:
    """Days of data the costed archive holds: the horizon, or less if objects expire sooner."""
    if pipeline.expiration_days:
        return min(pipeline.archive_days, pipeline.expiration_days)
    return pipeline.archive_days


def plan_s3(workload: Workload, pipeline: Pipeline, prices: PriceSheet) -> Section:
    if "s3" not in workload.paths:
        return Section("s3", ())
    daily_gb = archive_daily_gb(workload, pipeline)
    days = archive_held_days(pipeline)
    # The archive holding ``days`` days of data under the lifecycle: Standard until
    # infrequent_access_days, Standard-IA until glacier_days, then Glacier.
    standard_days = min(days, pipeline.infrequent_access_days)
    ia_days = max(0, min(days, pipeline.glacier_days) - pipeline.infrequent_access_days)
    glacier_days = max(0, days - pipeline.glacier_days)
    glacier_key = f"s3.glacier_{pipeline.glacier_class}_gb_month"
    objects = s3_objects_per_sec(workload, pipeline) * SECONDS_PER_MONTH
    lines = [
        _line(
            prices,
            f"Standard storage ({standard_days} d)",
            daily_gb * standard_days,
            "GB-month",
            "s3.standard_gb_month",
        )
    ]
    if ia_days:
        lines.append(
            _line(
                prices, f"Standard-IA storage ({ia_days} d)", daily_gb * ia_days, "GB-month", "s3.standard_ia_gb_month"
            )
        )
        lines.append(
            _line(prices, "transitions to Standard-IA", objects, "request", "s3.transition_ia_per_1000", per=1000)
        )
    if glacier_days:
        lines.append(
            _line(
                prices,
                f"Glacier {pipeline.glacier_class} storage ({glacier_days} d)",
                daily_gb * glacier_days,
                "GB-month",
                glacier_key,
            )
        )
        lines.append(
            _line(
                prices,
                f"transitions to Glacier {pipeline.glacier_class}",
                objects,
                "request",
                f"s3.transition_glacier_{pipeline.glacier_class}_per_1000",
                per=1000,
            )
        )
    object_gap = SECONDS_PER_MONTH / objects
    polls_per_gap, _ = _poll_schedule(object_gap, pipeline)
    polls = polls_per_gap * objects
    lines += [
        _line(prices, "PUT requests (Parquet objects)", objects, "request", "s3.put_per_1000", per=1000),
        _line(prices, "S3Queue LIST requests", polls, "request", "s3.list_per_1000", per=1000),
        _line(prices, "S3Queue GET requests", objects, "request", "s3.get_per_1000", per=1000),
    ]
    return Section("s3", tuple(lines))


# --- Latency ---------------------------------------------------------------------------------------------


def _poll_schedule(gap_s: float, pipeline: Pipeline) -> tuple[int, float]:
    """S3Queue polls per new object, and the polling interval in effect when it lands, for objects ``gap_s`` apart.

    After a poll that finds nothing, ClickHouse waits ``backoff`` longer than last time, up to the maximum;
    a poll that finds files resets the wait to the minimum.
    """
    low, high, step = (
        pipeline.s3queue_poll_min_ms / 1000,
        pipeline.s3queue_poll_max_ms / 1000,
        pipeline.s3queue_poll_backoff_ms / 1000,
    )
    waited, interval, polls = 0.0, low, 1
    while waited + interval < gap_s and (interval < high and step > 0):
        waited += interval
        interval = min(high, interval + step)
        polls += 1
    if waited + interval < gap_s:  # backoff has reached its ceiling: the rest is evenly spaced
        extra = math.ceil((gap_s - waited - interval) / interval)
        polls += extra
    return polls, interval


def _buffer_stage(name: str, bytes_per_sec: float, buffer_mib: float, interval_s: float) -> Stage:
    flush = _flush_seconds(bytes_per_sec, buffer_mib, interval_s)
    by = "size" if flush < interval_s else "interval"
    return Stage(name, flush / 2, flush, f"flushes every {flush:.3g} s (by {by}: {buffer_mib:g} MiB / {interval_s} s)")


def plan_latency(workload: Workload, pipeline: Pipeline, kinesis: KinesisPlan) -> tuple[PathLatency, ...]:
    linger = pipeline.lambda_overhead_ms
    common = []
    if workload.aggregate:
        linger_s = min(
            workload.kpl_max_buffered_ms / 1000,
            kinesis.events_per_record / (workload.events_per_sec / workload.producers),
        )
        common.append(Stage("producer aggregation", linger_s / 2, linger_s, "KPL fills a record or times out"))
    common.append(
        Stage(
            "Kinesis to Firehose",
            pipeline.kinesis_poll_seconds / 2,
            pipeline.kinesis_poll_seconds,
            "Firehose polls each shard about once a second",
        )
    )
    processor = _buffer_stage(
        "processor buffer", workload.bytes_per_sec, pipeline.processor_buffer_mib, pipeline.processor_buffer_seconds
    )
    per_invoke = _invocation(
        workload.events_per_sec,
        workload.bytes_per_sec,
        pipeline.processor_buffer_mib,
        pipeline.processor_buffer_seconds,
    )
    transform_s = per_invoke / rps_at(pipeline.transform_rps, pipeline.transform_memory_mb) + linger / 1000
    transform = Stage("transform Lambda", transform_s, transform_s, f"{per_invoke:,.0f} events per invocation")
    billing = _billing_stage(pipeline)
    result = []
    if "s3" in workload.paths:
        partition_rate = workload.bytes_per_sec / pipeline.active_partitions
        buffer = _buffer_stage(
            "Firehose S3 buffer (per partition)", partition_rate, pipeline.s3_buffer_mib, pipeline.s3_buffer_seconds
        )
        object_gap = buffer.worst_s / pipeline.active_partitions
        _, poll = _poll_schedule(object_gap, pipeline)
        stages = (
            *common,
            processor,
            transform,
            buffer,
            Stage("Parquet write to S3", pipeline.delivery_seconds / 2, pipeline.delivery_seconds, "assumed"),
            Stage(
                "S3Queue polling",
                poll / 2,
                pipeline.s3queue_poll_max_ms / 1000,
                f"polls every {poll:g} s at one object per {object_gap:.3g} s; worst = max timeout",
            ),
            billing,
        )
        result.append(PathLatency("s3", stages))
    if "http" in workload.paths:
        buffer = _buffer_stage(
            "Firehose HTTP buffer", workload.bytes_per_sec, pipeline.http_buffer_mib, pipeline.http_buffer_seconds
        )
        per_post = _invocation(
            workload.events_per_sec, workload.bytes_per_sec, pipeline.http_buffer_mib, pipeline.http_buffer_seconds
        )
        ingest_s = per_post / rps_at(pipeline.ingest_rps, pipeline.ingest_memory_mb) + linger / 1000
        stages = (
            *common,
            processor,
            transform,
            buffer,
            Stage("HTTP delivery", pipeline.delivery_seconds / 2, pipeline.delivery_seconds, "assumed"),
            Stage("ingest Lambda insert", ingest_s, ingest_s, f"{per_post:,.0f} rows per insert"),
            billing,
        )
        result.append(PathLatency("http", stages))
    return tuple(result)


def _billing_stage(pipeline: Pipeline) -> Stage:
    """Landed -> in usage_hourly: the resolver's next run, then the usage refresh's (unsynchronised)."""
    every = pipeline.refresh_seconds
    return Stage(
        "resolver, then usage refresh",
        every,
        2 * every,
        f"each runs every {every} s: billable at the resolver's next run, in usage_hourly at the refresh after it",
    )


def billing_capacity_notes(workload: Workload, pipeline: Pipeline) -> list[str]:
    """Where the resolver or the usage refresh cannot keep up with the peak: each run takes at most its batch."""
    peak = workload.events_per_sec * workload.peak_factor
    every = pipeline.refresh_seconds
    notes = []
    # Every path lands its own copy in events_raw; the resolver reads each, usage only the billed one.
    for what, name, rate in (
        ("resolver", "resolve_batch_rows", peak * len(workload.paths)),
        ("usage refresh", "usage_batch_rows", peak),
    ):
        rows = getattr(pipeline, name)
        capacity = rows / every
        if rate > capacity:
            env = ClickHouseSettings.env_name
            notes.append(
                f"The {what} takes at most {rows:,} rows per {every} s run ({capacity:,.0f}/s), below the "
                f"{rate:,.0f} rows/s it must read at peak: billing falls further behind every run. Raise "
                f"{env(name)} or lower {env('refresh_seconds')} for `bxb-stream clickhouse apply`."
            )
    return notes


# --- Whole plan ------------------------------------------------------------------------------------------


def plan_idempotency_table(workload: Workload, prices: PriceSheet, window_days: int) -> Section:
    """The design not built: one conditional PutItem per event into a DynamoDB table that keeps each
    (organization_id, transaction_id) for the dedup window (TTL deletes are free). Priced to show why
    the dedup lives in ClickHouse, which already holds every event."""
    writes = workload.events_per_sec * SECONDS_PER_MONTH
    stored_gb = workload.events_per_sec * window_days * 86_400 * IDEMPOTENCY_ITEM_BYTES / GIB
    return Section(
        "dynamodb idempotency table (not built)",
        (
            _line(
                prices,
                "conditional writes, on-demand",
                writes,
                "write request unit",
                "dynamodb.ondemand.write_request_units_per_million",
                per=1e6,
            ),
            _line(prices, f"keys kept {window_days} days", stored_gb, "GB-month", "dynamodb.storage_gb_month"),
        ),
    )


def plan(workload: Workload, pipeline: Pipeline, prices: PriceSheet) -> Plan:
    kinesis = plan_kinesis(workload, prices)
    uses = lambda_usage(workload, pipeline)
    notes = []
    if kinesis.write_utilisation > 0.8:
        notes.append(
            f"Provisioned shards run at {kinesis.write_utilisation:.0%} of their write limit at peak; "
            "consider --headroom 0.2 or a --peak-factor for bursts."
        )
    if "http" in workload.paths and pipeline.http_buffer_mib > 6:
        notes.append("HTTP buffer above 6 MiB may exceed the ingest Lambda's request payload limit unless gzipped.")
    if "s3" in workload.paths and not pipeline.expiration_days:
        notes.append(
            f"The billing archive is never expired (bxb:s3.expiration_days 0): S3 is costed as it stands after "
            f"{pipeline.archive_days} days of data (--archive-days), and grows by "
            f"{archive_daily_gb(workload, pipeline):,.1f} GB of Parquet a day after that."
        )
    notes.extend(billing_capacity_notes(workload, pipeline))
    return Plan(
        workload=workload,
        pipeline=pipeline,
        prices=prices,
        kinesis=kinesis,
        firehose=plan_firehose(workload, pipeline, prices, kinesis),
        lambdas=plan_lambda(uses, prices),
        lambda_use=uses,
        s3=plan_s3(workload, pipeline, prices),
        latency=plan_latency(workload, pipeline, kinesis),
        idempotency_table=plan_idempotency_table(workload, prices, pipeline.dedup_window_days),
        notes=tuple(notes),
    )
