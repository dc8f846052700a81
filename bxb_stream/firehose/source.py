"""Kinesis source: read every shard with GetRecords, de-aggregate KPL records, follow resharding.

Shard order: a shard is read only once its parents (``ParentShardId`` and
``AdjacentParentShardId``) are finished, so a key's records keep their order
across a split or merge, as the KCL and Firehose do. A closed shard is finished
when GetRecords returns no ``NextShardIterator`` (AWS), or when it returns no
records and nothing is behind (moto keeps handing out iterators for closed shards).

Read-ahead (``SourceSettings.read_ahead``): after a page with records, the shard's
next GetRecords is issued on a background thread and taken by the next poll of that
shard. Only a page with records is used that way; an empty one is asked for again
in the foreground, so "caught up on a closed shard" is always decided on a fresh
answer. Records enter the ledger only when taken, so checkpoints are unaffected.

Page size: Kinesis returns at most 10 MiB per GetRecords; emulators (moto) do not
cap it, and a shard's whole backlog in one page would leave nothing to read ahead.
So the ``Limit`` asked for is lowered, from the average record size seen, to what
fits in 10 MiB (never above ``get_records_limit``).

Every call is retried through ``retry.Retrier`` while it fails transiently (a 500 from
GetRecords, throttling, a reset connection), for as long as it takes; the read-ahead call
is not (its failure is asked again in the foreground, where it is retried).

Where to start: after the shard's checkpoint (see ``checkpoint``); a shard with no
checkpoint starts at ``initial_position`` (TRIM_HORIZON by default so a local run
sees what was produced before it started; a new Firehose starts at LATEST), or at
``SourceSettings.start_at`` when set (AT_TIMESTAMP: a replay within the retention).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from itertools import repeat
from time import perf_counter
from typing import Any

from bxb_stream import kpl
from bxb_stream.firehose.checkpoint import CheckpointStore, ShardLedger
from bxb_stream.firehose.records import Record
from bxb_stream.firehose.retry import Retrier
from bxb_stream.firehose.settings import SourceSettings
from bxb_stream.firehose.timing import DEAGGREGATE, GET_RECORDS, Stages

PAGE_BYTES = 10 * 1024 * 1024  # GetRecords' response limit


@dataclass
class ShardInfo:
    shard_id: str
    parents: tuple[str, ...]
    ending_sequence: int | None  # set once the shard is closed


@dataclass
class SourceStats:
    kinesis_records: int = 0
    user_records: int = 0
    bytes: int = 0
    get_records_calls: int = 0
    skipped_already_settled: int = 0  # records a previous run had delivered, seen again after a restart
    corrupt_aggregates: int = 0  # KPL magic but bad digest/protobuf: passed on as one record, as the KCL does
    shards_finished: int = 0


def shard_infos(raw_shards: list[dict[str, Any]]) -> list[ShardInfo]:
    out = []
    for s in raw_shards:
        parents = tuple(p for p in (s.get("ParentShardId"), s.get("AdjacentParentShardId")) if p)
        ending = s.get("SequenceNumberRange", {}).get("EndingSequenceNumber")
        out.append(ShardInfo(s["ShardId"], parents, None if ending is None else int(ending)))
    return out


def readable_shards(shards: list[ShardInfo], finished: Callable[[str], bool]) -> list[str]:
    """Shards that may be read now: not finished, and every parent that still exists is finished.

    A parent absent from the listing has aged out of retention, so there is nothing left to wait for.
    """
    known = {s.shard_id for s in shards}
    return [
        s.shard_id for s in shards if not finished(s.shard_id) and all(p not in known or finished(p) for p in s.parents)
    ]


class _ShardReader:
    __slots__ = ("ahead", "behind_ms", "caught_up_at", "info", "iterator", "ledger", "next_poll")

    def __init__(self, info: ShardInfo, ledger: ShardLedger) -> None:
        self.info = info
        self.ledger = ledger
        self.iterator: str | None = None
        self.next_poll = 0.0
        self.behind_ms = 0  # MillisBehindLatest of its last GetRecords
        # Wall-clock time a GetRecords was issued that then found nothing more to read: every record
        # put before it has been read.
        self.caught_up_at = 0.0
        self.ahead: Future[dict[str, Any]] | None = None  # the next page, being fetched for ``iterator``


class KinesisSource:
    """Reads a Kinesis data stream for one delivery stream; checkpoints live in ``checkpoints``."""

    def __init__(
        self,
        settings: SourceSettings,
        checkpoints: CheckpointStore,
        *,
        client: Any = None,
        monotonic: Callable[[], float] = time.monotonic,
        initial_position: str = "TRIM_HORIZON",
        stages: Stages | None = None,
        retrier: Retrier | None = None,
    ) -> None:
        if client is None:
            import boto3

            client = boto3.client("kinesis", region_name=settings.region, endpoint_url=settings.endpoint_url)
        self.settings = settings
        self.client = client
        self.checkpoints = checkpoints
        self.monotonic = monotonic
        self.initial_position = initial_position
        self.stats = SourceStats()
        self.stages = stages or Stages()
        self.retrier = retrier or Retrier(f"kinesis {settings.stream_name}", monotonic=monotonic)
        self._shards: list[ShardInfo] = []
        self._readers: dict[str, _ShardReader] = {}
        self._next_refresh = 0.0
        self._pool: ThreadPoolExecutor | None = None
        self._limit = settings.get_records_limit  # GetRecords Limit: lowered so a page stays near PAGE_BYTES

    # ------------------------------------------------------------------ shards
    def refresh_shards(self) -> None:
        raw: list[dict[str, Any]] = []
        kwargs: dict[str, Any] = {"StreamName": self.settings.stream_name}
        for _ in range(1000):  # ListShards pages; bounded
            page = self.retrier.call("ListShards", self.client.list_shards, **kwargs)
            raw.extend(page.get("Shards", []))
            token = page.get("NextToken")
            if not token:
                break
            kwargs = {"NextToken": token}
        self._shards = shard_infos(raw)
        self._next_refresh = self.monotonic() + self.settings.shard_refresh_s
        by_id = {s.shard_id: s for s in self._shards}
        for shard_id, reader in self._readers.items():
            reader.info = by_id.get(shard_id, reader.info)  # notices a shard that has since closed
        for shard_id in readable_shards(self._shards, self._finished):
            if shard_id not in self._readers:
                self._readers[shard_id] = _ShardReader(by_id[shard_id], self.checkpoints.ledger(shard_id))

    def _finished(self, shard_id: str) -> bool:
        ledger = self.checkpoints.ledgers.get(shard_id)
        return ledger is not None and ledger.read_to_end

    @property
    def active_shards(self) -> list[str]:
        return list(self._readers)

    @property
    def all_read(self) -> bool:
        """True when no open shard exists and every shard has been read to its end (only after resharding to 0)."""
        return bool(self._shards) and all(self._finished(s.shard_id) for s in self._shards)

    @property
    def behind_ms(self) -> int:
        """How far the furthest-behind shard is from the tip of the stream (MillisBehindLatest)."""
        return max((r.behind_ms for r in self._readers.values()), default=0)

    @property
    def caught_up_since(self) -> float:
        """Every record put into the stream before this wall-clock time has been read (shards that
        ended count as caught up for ever; 0.0 until each open shard has found its tip once)."""
        return min((r.caught_up_at for r in self._readers.values()), default=0.0 if not self._shards else math.inf)

    def next_poll_in(self) -> float:
        now = self.monotonic()
        times = [r.next_poll for r in self._readers.values()] + [self._next_refresh]
        return max(0.0, min(times) - now)

    # ------------------------------------------------------------------ reading
    def poll(self, max_records: int) -> list[Record]:
        """One GetRecords per shard that is due, returning up to about ``max_records`` new user records."""
        now = self.monotonic()
        if now >= self._next_refresh or not self._shards:
            self.refresh_shards()
        out: list[Record] = []
        ended = False
        for reader in list(self._readers.values()):
            if len(out) >= max_records:
                break
            if reader.next_poll > now:
                continue
            got = self._read_shard(reader, out)
            if got == 0:
                reader.next_poll = now + self.settings.poll_interval_s
            if reader.ledger.read_to_end:
                del self._readers[reader.info.shard_id]
                self.stats.shards_finished += 1
                ended = True
        if ended:  # children of a shard that just ended become readable
            self.refresh_shards()
        return out

    def _start_iterator(self, reader: _ShardReader) -> str:
        ledger = reader.ledger
        resume = ledger.last_read or ledger.committed
        kwargs: dict[str, Any] = {"StreamName": self.settings.stream_name, "ShardId": reader.info.shard_id}
        if resume is not None:
            # AT, not AFTER: an aggregated record may be only partly settled; its settled parts are skipped.
            kwargs.update(ShardIteratorType="AT_SEQUENCE_NUMBER", StartingSequenceNumber=str(resume[0]))
        elif ledger.carried:
            kwargs["ShardIteratorType"] = "TRIM_HORIZON"  # a previous run settled records further on
        elif self.settings.start_at is not None:  # a replay: from the first record that arrived at or after it
            kwargs.update(ShardIteratorType="AT_TIMESTAMP", Timestamp=self.settings.start_at)
        else:
            kwargs["ShardIteratorType"] = self.initial_position
        return self.retrier.call("GetShardIterator", self.client.get_shard_iterator, **kwargs)["ShardIterator"]

    def close(self) -> None:
        """Stop the read-ahead thread; a page still being fetched is dropped (its records were never taken)."""
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None
        for reader in self._readers.values():
            reader.ahead = None

    def _get_records(self, iterator: str) -> dict[str, Any]:
        return self.client.get_records(ShardIterator=iterator, Limit=self._limit)

    def _fit_limit(self, records: list[dict[str, Any]]) -> None:
        if records:
            average = max(1, sum(len(r["Data"]) for r in records) // len(records))
            self._limit = max(1, min(self.settings.get_records_limit, PAGE_BYTES // average))

    def _next_page(self, reader: _ShardReader) -> dict[str, Any]:
        """The page at ``reader.iterator``: the one read ahead if it has records, else a fresh GetRecords."""
        ahead, reader.ahead = reader.ahead, None
        if ahead is not None:
            try:
                response = ahead.result()
            except Exception:  # (an expired iterator, say) asked again below, where errors are handled
                response = None
            if response and response.get("Records"):
                return response
        assert reader.iterator is not None
        try:
            return self.retrier.call("GetRecords", self._get_records, reader.iterator)
        except self.client.exceptions.ExpiredIteratorException:  # (after a long outage, say)
            reader.iterator = self._start_iterator(reader)
            return self.retrier.call("GetRecords", self._get_records, reader.iterator)

    def _read_ahead(self, reader: _ShardReader) -> None:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="bxb-firehose-read-ahead")
        assert reader.iterator is not None
        reader.ahead = self._pool.submit(self._get_records, reader.iterator)

    def _read_shard(self, reader: _ShardReader, out: list[Record]) -> int:
        if reader.iterator is None:
            reader.iterator = self._start_iterator(reader)
        started, issued = perf_counter(), time.time()
        response = self._next_page(reader)
        self.stats.get_records_calls += 1
        started = self.stages.lap(GET_RECORDS, started)
        records = response.get("Records", [])
        reader.behind_ms = int(response.get("MillisBehindLatest", 0))
        if not records and not reader.behind_ms:  # (a page read ahead always has records: this one was asked now)
            reader.caught_up_at = issued
        self._fit_limit(records)
        before = len(out)
        for raw in records:
            self._add(reader.ledger, raw, out)
        self.stages.lap(DEAGGREGATE, started)
        reader.iterator = response.get("NextShardIterator")
        ledger, info = reader.ledger, reader.info
        if info.ending_sequence is not None and reader.iterator is not None:
            caught_up = not records and response.get("MillisBehindLatest", 0) == 0
            past_end = ledger.last_read is not None and ledger.last_read[0] >= info.ending_sequence
            if caught_up or past_end:
                reader.iterator = None  # a closed shard has nothing more to give
        if reader.iterator is None:
            ledger.read_to_end = True
        if ledger.read_to_end:
            ledger.dirty = True  # lets the checkpoint record "finished" once everything is resolved
        elif records and self.settings.read_ahead and reader.iterator is not None:
            self._read_ahead(reader)
        return len(out) - before

    def _add(self, ledger: ShardLedger, raw: dict[str, Any], out: list[Record]) -> None:
        data: bytes = raw["Data"]
        seq_str: str = raw["SequenceNumber"]
        seq = int(seq_str)
        arrival_ms = int(raw["ApproximateArrivalTimestamp"].timestamp() * 1000)
        pk: str = raw.get("PartitionKey", "")
        stats = self.stats
        stats.kinesis_records += 1
        try:
            pks, payloads = kpl.deaggregate_keys_and_data(data, pk)
        except kpl.KplError:
            stats.corrupt_aggregates += 1
            pks, payloads = [pk], [data]
        count = len(payloads)
        if not count:
            return
        check = ledger.committed is not None or bool(ledger.carried)
        if not check and (ledger.last_read is None or ledger.last_read < (seq, 0)):
            # The common case, nothing of this record seen before: one ledger run, no per-record checks.
            first = ledger.add_run(seq, count)
            stats.user_records += count
            stats.bytes += sum(map(len, payloads))
            out.extend(map(Record, payloads, repeat(arrival_ms), pks, repeat(seq_str), range(count), repeat(ledger),
                           range(first, first + count)))  # fmt: skip
            return
        for sub, (user_pk, payload) in enumerate(zip(pks, payloads, strict=True)):
            position = (seq, sub)
            if ledger.last_read is not None and position <= ledger.last_read:
                continue  # re-read after an iterator restarted AT the last sequence number
            if check and ledger.already_done(position):
                ledger.add(position, resolved=True)
                stats.skipped_already_settled += 1
                continue
            ordinal = ledger.add(position)
            stats.user_records += 1
            stats.bytes += len(payload)
            out.append(Record(payload, arrival_ms, user_pk, seq_str, sub, ledger, ordinal))
