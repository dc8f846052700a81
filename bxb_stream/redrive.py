"""Re-drive what the pipeline rejected, once the rule or hook is fixed: error objects back to Kinesis.

Reads the records Firehose wrote under the error prefixes (``error_output``: the S3 path's
``errors/``, the HTTP path's ``http-backup-errors/`` and ``http-backup/``), turns each back into
the event a producer would send, and puts it to the stream with ``Producer``, which validates it
at the edge with the pipeline's rules. So each record takes the whole path again, under today's
rules and hooks, on every delivery path that reads the stream.

What is sent depends on what the record's ``rawData`` holds:

- ``processing-failed`` (the transform refused it): the record as it was put. An event without a
  ``timestamp`` gets its original arrival as one, so it is billed in the hour it arrived, not in
  the hour of the redrive.
- any later failure (``format-conversion-failed``, ``http-endpoint-failed``,
  ``metadata-extraction-failed``...): the transform's output line, turned back into an input
  event: pipeline-set fields dropped, the timestamp as UTC ISO-8601 milliseconds, ``properties``
  as an object.

An object is moved to ``redriven/<its key>`` (copied, the copy checked, then the original
deleted: never deleted without the copy) only when every record in it was in the time range and
was acknowledged by Kinesis. Otherwise it stays where it is, and the report says why: records
the producer still refuses (with the validator's code), records Kinesis did not take, lines that
are not error records, records outside the time range.

Firehose writes a buffer's failures into one object, so a record that is still invalid usually
shares its object with records that now pass, and that object would stay (and be sent again by
every redrive). ``split_refused`` (``--split-refused``) writes the still-refused lines, as they
were, to a new error object beside it (same prefix, a new name) and then moves the original, so
the next redrive reads only those. It applies only to an object some of whose records went
through: one whose records are all refused stays as it is.

Running twice is harmless: a moved object is outside every error prefix, and the records of an
object left in place are sent again, which ClickHouse's resolver records as duplicates (one
charge per organization_id + transaction_id). Within one run a record whose bytes were already
sent (the same event rejected on both paths) is sent once.

A redriven event arrives anew: ClickHouse measures its lateness from the new arrival, so an
event for a closed billing period is set aside as late (``bxb-stream late``), as any would be.
"""

from __future__ import annotations

import gzip
import hashlib
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec

from bxb_runtime import layout
from bxb_runtime.config import EventRules
from bxb_runtime.events.errors import EventError
from bxb_runtime.events.lines import read_line
from bxb_runtime.events.schema import FIELDS, Origin
from bxb_runtime.events.validate import normalize_bytes
from bxb_stream.aws_errors import fails_every_call
from bxb_stream.error_output import (
    PROJECT_PREFIXES,
    CodeSummary,
    ErrorObject,
    ErrorRecord,
    KeyPattern,
    TimeRange,
    list_objects,
    parse_object,
    summarize,
    validator_reason,
)
from bxb_stream.firehose.naming import object_name
from bxb_stream.producer import DeliveryFailure, Producer, iso_timestamp
from bxb_stream.producer import limits as L
from bxb_stream.producer.producer import _with_timestamp as with_timestamp

AS_PUT_OUTPUT_TYPE = "processing-failed"  # rawData is the record as put; in every other type, as transformed
_PIPELINE_FIELDS = frozenset(f.name for f in FIELDS if f.origin is Origin.PIPELINE)
_any = msgspec.json.Decoder()
_encoder = msgspec.json.Encoder()
SETTLE_EVERY = 2_000  # records handed to the producer between two flushes (and moves)


class RedriveError(ValueError):
    """A redrive that cannot start as asked (a prefix that would read redriven objects...)."""


class RedriveStopped(RuntimeError):
    """Every further PutRecords would fail alike (no credentials, no such stream, access denied)."""

    def __init__(self, failure: DeliveryFailure, report: RedriveReport) -> None:
        super().__init__(f"{failure.error_message or failure.error_code} [{failure.error_code}]")
        self.failure = failure
        self.report = report


def redriven_key(key: str) -> str:
    """Where a redriven object is kept: ``redriven/<its key>``."""
    return layout.REDRIVEN_PREFIX + key


# --------------------------------------------------------------------------- records -> events


def holds_transformed(record: ErrorRecord) -> bool:
    """Whether ``record.raw`` is the transform's output line rather than the record as put."""
    if record.source.output_type is not None:
        return record.source.output_type != AS_PUT_OUTPUT_TYPE
    # A plain prefix written without the type folder (the in-repo runner): the code says who failed it.
    return not record.error_code.startswith("Lambda.")


def event_bytes(record: ErrorRecord) -> bytes:
    """The event to put again for one rejected record (see the module docstring)."""
    if holds_transformed(record):
        return input_event(record.raw)
    return with_arrival_time(record.raw, record.arrival_ms)


def input_event(line: bytes) -> bytes:
    """A transformed line -> the input event it stands for; anything else unchanged (the producer
    then names what is wrong with it)."""
    try:
        stored = read_line(line)
    except EventError:
        return line
    event: dict[str, Any] = {}
    for f in FIELDS:
        value = getattr(stored, f.name)
        if f.name in _PIPELINE_FIELDS or value is None:
            continue
        event[f.name] = value
    event["timestamp"] = iso_timestamp(stored.timestamp)
    event["properties"] = _any.decode(stored.properties)
    return _encoder.encode(event)


def with_arrival_time(raw: bytes, arrival_ms: int | None) -> bytes:
    """A raw event without a timestamp gets its original arrival as one; anything else unchanged."""
    if arrival_ms is None:
        return raw
    try:
        obj = _any.decode(raw)
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):
        return raw
    if type(obj) is not dict or obj.get("timestamp") is not None:
        return raw
    return with_timestamp(raw, "timestamp" in obj, iso_timestamp(arrival_ms))


# --------------------------------------------------------------------------- outcome


@dataclass
class ObjectOutcome:
    """What became of one error object."""

    key: str
    records: int = 0  # error records in it
    in_range: int = 0  # of those, arrived within the time range
    sent: int = 0  # acknowledged by Kinesis (or the same bytes as one that was, this run)
    identical: int = 0  # of ``sent``: bytes already sent this run
    refused: Counter[str] = field(default_factory=Counter)  # by the producer's edge validation, by code
    undelivered: Counter[str] = field(default_factory=Counter)  # Kinesis did not take them, by code
    unreadable_lines: int = 0  # not error records
    moved_to: str | None = None
    split_to: str | None = None  # the new object holding its still-refused lines (split_refused)
    refused_records: list[ErrorRecord] = field(default_factory=list, repr=False)  # kept for split_refused
    problem: str = ""  # why it stays (set once records are settled)

    def why_kept(self, dry_run: bool, split_refused: bool = False) -> str:
        """Empty when the object can move (with its refused lines split off, if asked); else why it stays."""
        if self.unreadable_lines:
            return f"{self.unreadable_lines} lines are not error records"
        if self.in_range < self.records:
            return f"{self.records - self.in_range} of {self.records} records are outside the time range"
        if self.refused and not (split_refused and self.sent and not self.undelivered):
            return "records still refused: " + ", ".join(f"{c} {n}" for c, n in self.refused.most_common())
        if self.undelivered:
            return "records not delivered: " + ", ".join(f"{c} {n}" for c, n in self.undelivered.most_common())
        if not dry_run and self.sent + self.refused.total() < self.in_range:
            return "not every record was acknowledged"
        return ""


@dataclass(frozen=True)
class Refusal:
    key: str
    code: str
    message: str
    data: bytes


@dataclass
class RedriveReport:
    dry_run: bool
    objects: list[ObjectOutcome] = field(default_factory=list)
    codes: list[CodeSummary] = field(default_factory=list)  # what was read, by Firehose's error code
    refusals: list[Refusal] = field(default_factory=list)  # samples: the first few per new code
    listed: int = 0

    @property
    def records(self) -> int:
        return sum(o.in_range for o in self.objects)

    @property
    def sent(self) -> int:
        return sum(o.sent for o in self.objects)

    @property
    def identical(self) -> int:
        return sum(o.identical for o in self.objects)

    @property
    def refused(self) -> Counter[str]:
        return sum((o.refused for o in self.objects), Counter())

    @property
    def undelivered(self) -> Counter[str]:
        return sum((o.undelivered for o in self.objects), Counter())

    @property
    def moved(self) -> list[ObjectOutcome]:
        return [o for o in self.objects if o.moved_to]

    @property
    def kept(self) -> list[ObjectOutcome]:
        return [o for o in self.objects if not o.moved_to]

    @property
    def complete(self) -> bool:
        """Everything read was re-submitted and its object moved (a dry run: would be), nothing refused."""
        return all(not o.problem and not o.refused for o in self.objects)


# --------------------------------------------------------------------------- the run


@dataclass(frozen=True)
class StreamTarget:
    """Where a real run puts records: a Kinesis stream and a client for it."""

    stream: str
    client: Any
    limits: L.Limits = L.CURRENT
    aggregate: bool = False


class _Sent(bytes):
    """Event bytes handed to the producer, with every (object) record they stand for."""

    outcomes: list[ObjectOutcome]


Progress = Callable[[int, int], None]  # (objects read, records handed over)


def redrive(
    s3: Any,
    bucket: str,
    target: StreamTarget | None,
    *,
    prefixes: Sequence[str] = PROJECT_PREFIXES,
    period: TimeRange | None = None,
    rules: EventRules | None = None,
    samples: int = 3,
    split_refused: bool = False,
    on_listed: Callable[[int], None] | None = None,
    on_progress: Progress | None = None,
) -> RedriveReport:
    """Re-submit every rejected record under ``prefixes`` that arrived in ``period`` to ``target``
    (None: a dry run, which reads, groups and checks but sends and moves nothing)."""
    period = period or TimeRange()
    rules = rules or EventRules()
    patterns = patterns_for(prefixes)
    # A listing from the bucket's root (an empty prefix) never yields redriven/ keys either.
    objects = [o for o in list_objects(s3, bucket, patterns, period) if not o.key.startswith(layout.REDRIVEN_PREFIX)]
    if on_listed is not None:
        on_listed(len(objects))
    run = _Run(s3, bucket, target, period, rules, samples, on_progress, RedriveReport(dry_run=target is None))
    run.split_refused = split_refused
    run.report.listed = len(objects)
    try:
        run.report.codes = summarize(run.records(objects), samples=samples, reason=validator_reason(rules))
    finally:
        run.close()
    return run.report


def patterns_for(prefixes: Sequence[str]) -> list[KeyPattern]:
    """Key patterns for ``prefixes`` (PrefixPatternError for a bad one); none may reach redriven/."""
    patterns = [KeyPattern(p) for p in prefixes]
    for pattern in patterns:
        if pattern.root.startswith(layout.REDRIVEN_PREFIX):
            raise RedriveError(
                f"prefix {pattern.prefix!r} would read {layout.REDRIVEN_PREFIX}, where redriven objects are kept; "
                "to send one again, copy it back to its original key"
            )
    return patterns


class _Run:
    def __init__(
        self,
        s3: Any,
        bucket: str,
        target: StreamTarget | None,
        period: TimeRange,
        rules: EventRules,
        samples: int,
        on_progress: Progress | None,
        report: RedriveReport,
    ) -> None:
        self.s3, self.bucket, self.period, self.rules = s3, bucket, period, rules
        self.samples, self.on_progress, self.report = samples, on_progress, report
        self.producer = None
        if target is not None:
            self.producer = Producer(
                target.stream,
                client=target.client,
                rules=rules,
                limits=target.limits,
                aggregate=target.aggregate,
                linger_ms=None,  # sent when a batch fills or at a flush: failures come back from flush()
            )
        self.inflight: dict[bytes, _Sent] = {}  # digest -> bytes handed over since the last settle
        self.accepted: set[bytes] = set()  # digests Kinesis acknowledged this run
        self.unsettled: list[tuple[ErrorObject, str, int, ObjectOutcome]] = []  # (object, etag, size, outcome)
        self.read = 0
        self.handed = 0
        self.split_refused = False

    def records(self, objects: list[ErrorObject]) -> Iterator[ErrorRecord]:
        """Handle every object; yields each in-range record once it has been handed over (for the summary)."""
        for obj in objects:
            response = self.s3.get_object(Bucket=self.bucket, Key=obj.key)
            body = response["Body"].read()
            contents = parse_object(body, obj)
            outcome = ObjectOutcome(obj.key, len(contents.records), unreadable_lines=contents.unreadable_lines)
            self.report.objects.append(outcome)
            for record in contents.records:
                if not self.period.holds(record):
                    continue
                outcome.in_range += 1
                self._hand_over(record, outcome)
                yield record
            self.unsettled.append((obj, response["ETag"], len(body), outcome))
            self.read += 1
            if self.on_progress is not None:
                self.on_progress(self.read, self.handed)
            if len(self.inflight) >= SETTLE_EVERY or self.producer is None:
                self._settle()
        self._settle()

    def _hand_over(self, record: ErrorRecord, outcome: ObjectOutcome) -> None:
        self.handed += 1
        data = event_bytes(record)
        if self.producer is None:
            try:
                normalize_bytes(data, self.rules, arrival_ms=_now_ms(), ingested_ms=_now_ms())
            except EventError as err:
                self._refused(outcome, err, data, record)
            return
        digest = hashlib.blake2b(data, digest_size=16).digest()
        if digest in self.accepted:
            outcome.sent += 1
            outcome.identical += 1
            return
        sent = self.inflight.get(digest)
        if sent is not None:
            outcome.identical += 1
            sent.outcomes.append(outcome)
            return
        sent = _Sent(data)
        sent.outcomes = [outcome]
        try:
            self.producer.put(sent)
        except EventError as err:
            self._refused(outcome, err, data, record)
            return
        self.inflight[digest] = sent

    def _refused(self, outcome: ObjectOutcome, err: EventError, data: bytes, record: ErrorRecord) -> None:
        outcome.refused[err.code] += 1
        if self.split_refused:
            outcome.refused_records.append(record)
        if sum(r.code == err.code for r in self.report.refusals) < self.samples:
            self.report.refusals.append(Refusal(outcome.key, err.code, str(err), data))

    def _settle(self) -> None:
        """Flush the producer, account for every record handed over, and move what is complete."""
        stop: DeliveryFailure | None = None
        if self.producer is not None:
            failed: set[int] = set()
            for failure in self.producer.flush():
                sent = failure.event
                failed.add(id(sent))
                for outcome in sent.outcomes:
                    outcome.undelivered[failure.error_code] += 1
                if stop is None and fails_every_call(failure.error_code):
                    stop = failure
            for digest, sent in self.inflight.items():
                if id(sent) not in failed:
                    self.accepted.add(digest)
                    for outcome in sent.outcomes:
                        outcome.sent += 1
            self.inflight.clear()
        for obj, etag, size, outcome in self.unsettled:
            outcome.problem = outcome.why_kept(self.producer is None, self.split_refused)
            if self.producer is not None and not outcome.problem:
                try:
                    if outcome.refused_records:
                        outcome.split_to = write_split(self.s3, self.bucket, obj, outcome.refused_records)
                    outcome.moved_to = move_to_redriven(self.s3, self.bucket, obj.key, etag, size)
                except MoveError as err:
                    outcome.problem = str(err)
            outcome.refused_records = []
        self.unsettled.clear()
        if stop is not None:
            raise RedriveStopped(stop, self.report)

    def close(self) -> None:
        if self.producer is not None:
            self.producer.close()  # nothing is buffered by now; stops nothing else


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


# --------------------------------------------------------------------------- the move


class MoveError(RuntimeError):
    pass


def write_split(s3: Any, bucket: str, obj: ErrorObject, records: Sequence[ErrorRecord]) -> str:
    """A new error object beside ``obj`` (same prefix, a Firehose-style name) holding ``records``'
    lines as they were written; returns its key. MoveError (nothing written) if the PUT fails."""
    from botocore.exceptions import ClientError

    directory = obj.key.rsplit("/", 1)[0] + "/" if "/" in obj.key else ""
    oldest = min((r.arrival_ms for r in records if r.arrival_ms is not None), default=_now_ms())
    compressed = obj.key.endswith(".gz")
    # The name's uuid comes from the original key: splitting the same object again (its move failed
    # after the split was written) writes the same object, not a second copy of its lines.
    unique = uuid.uuid5(uuid.NAMESPACE_URL, f"s3://{bucket}/{obj.key}")
    key = directory + object_name(obj.stream, obj.version, oldest, ".gz" if compressed else "", unique)
    body = b"\n".join(r.line.rstrip(b"\r\n") for r in records)
    try:
        s3.put_object(Bucket=bucket, Key=key, Body=gzip.compress(body) if compressed else body)
    except ClientError as exc:
        error = exc.response.get("Error", {})
        raise MoveError(f"not moved (writing its refused records apart failed: {error.get('Code')})") from None
    return key


def move_to_redriven(s3: Any, bucket: str, key: str, etag: str, size: int) -> str:
    """Copy ``key`` to ``redriven/<key>`` (only the version that was read: its ETag), check the
    copy's size, then delete the original. Returns the new key; raises MoveError, having deleted
    nothing, if the copy is not there whole."""
    from botocore.exceptions import ClientError

    target = redriven_key(key)
    try:
        s3.copy_object(Bucket=bucket, Key=target, CopySource={"Bucket": bucket, "Key": key}, CopySourceIfMatch=etag)
        copied = s3.head_object(Bucket=bucket, Key=target)
    except ClientError as exc:
        error = exc.response.get("Error", {})
        raise MoveError(f"not moved (copy failed: {error.get('Code')}: {error.get('Message')})") from None
    if copied.get("ContentLength") != size:
        raise MoveError(f"not moved (the copy at {target} has {copied.get('ContentLength')} bytes, not {size})")
    try:
        s3.delete_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        error = exc.response.get("Error", {})
        raise MoveError(
            f"copied to {target} but not deleted ({error.get('Code')}): a next redrive sends it again (duplicates)"
        ) from None
    return target
