"""What the pipeline rejected: records in Firehose's error output and in the HTTP path's S3 backup.

Object keys (docs.aws.amazon.com/firehose/latest/dev/s3-prefixes.html and basic-deliver.html,
"Amazon S3 object name format") are ``<evaluated prefix><stream>-<version>-<yyyy-MM-dd-HH-mm-ss>-<uuid>``,
the time being the arrival of the oldest record in the object (UTC). For the error output:

- no error prefix: ``<error-output-type>/YYYY/MM/dd/HH/<name>``;
- a plain prefix ``P`` (no expressions): ``P<error-output-type>/YYYY/MM/dd/HH/<name>``;
- a prefix with ``!{...}`` expressions: that prefix, evaluated (it must use
  ``!{firehose:error-output-type}``), e.g. the project's
  ``errors/!{firehose:error-output-type}/!{timestamp:yyyy/MM/dd}/``.

Under a plain backup prefix, a key dated but untyped (``PYYYY/MM/dd/HH/<name>``) is the
all-data backup of delivered records, not a rejection, and is skipped. The in-repo Firehose
runner writes a plain prefix's objects as ``P<name>``; those are read too.

Each object holds one JSON document per line (``attemptsMade``, ``arrivalTimestamp``,
``errorCode``, ``errorMessage``, ``attemptEndingTimestamp``, ``rawData`` in base64, and the
function's ARN for processing failures), possibly gzipped, the last line without a newline.
Every spelling AWS documents or writes is read: ``lambdaArn`` (docs) and ``lambdaARN``
(captured objects); for format-conversion failures ``lastErrorCode``/``lastErrorMessage``
(captured) and ``ErrorCode``/``ErrorMessage`` (current docs). A line without ``rawData`` or
any error code is counted as unreadable, never skipped silently.

``bxb-stream errors`` lists them; a redrive reads them the same way (``read_records``).
"""

from __future__ import annotations

import base64
import binascii
import gzip
import re
import zlib
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import msgspec

from bxb_runtime import layout

# The project's error prefixes (bxb_runtime/layout.py), as the stacks configure them.
PROJECT_PREFIXES: tuple[str, ...] = (
    layout.FIREHOSE_ERROR_PREFIX,  # Firehose A (S3 path): transform and Parquet conversion failures
    layout.FIREHOSE_HTTP_BACKUP_ERROR_PREFIX,  # Firehose B (HTTP path): transform failures
    layout.FIREHOSE_HTTP_BACKUP_PREFIX,  # Firehose B: records the HTTP endpoint never accepted
)

_EXPRESSION = re.compile(r"!\{([A-Za-z]+):([^}]*)\}")
_JAVA_TOKEN = re.compile(r"'[^']*'|([A-Za-z])\1*|[^A-Za-z']+")
_JAVA_DIGITS = {"yyyy": r"\d{4}", "yy": r"\d{2}", "MM": r"\d{2}", "dd": r"\d{2}", "HH": r"\d{2}", "mm": r"\d{2}"}
_TYPE = r"(?P<type>[a-z][a-z-]*)"
_HOUR_PATH = r"\d{4}/\d{2}/\d{2}/\d{2}/"
_NAME = re.compile(
    r"(?P<stream>[A-Za-z0-9_.-]+?)-(?P<version>\d+)-(?P<written>\d{4}-\d{2}-\d{2}-\d{2}-\d{2}-\d{2})-"
    r"(?P<uuid>[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})(?P<ext>\.[A-Za-z0-9.]+)?"
)
_GZIP_MAGIC = b"\x1f\x8b"
MAX_OBJECT_BYTES = 512 * 1024 * 1024  # a buffer is at most 128 MiB; anything far larger is not an error object


class PrefixPatternError(ValueError):
    pass


@dataclass(frozen=True)
class ErrorObject:
    """One error object's key, and what its name says."""

    key: str
    output_type: str | None  # processing-failed, format-conversion-failed, http-endpoint-failed...
    stream: str
    version: int
    oldest_arrival: datetime  # to the second, from the object name


class KeyPattern:
    """Which keys under one configured prefix are error objects, and what they say."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.root = prefix.split("!{", 1)[0]  # what to list: the part before any expression
        if not prefix:
            middle = f"{_TYPE}/{_HOUR_PATH}"
        elif "!{" not in prefix:
            # Documented: P<type>/YYYY/MM/dd/HH/; P alone is the in-repo runner's; P + date alone is all-data backup.
            middle = re.escape(prefix) + f"(?:{_TYPE}/)?(?P<dated>{_HOUR_PATH})?"
        else:
            middle = _expression_regex(prefix)
        self._regex = re.compile(middle + _NAME.pattern)

    def parse(self, key: str) -> ErrorObject | None:
        match = self._regex.fullmatch(key)
        if match is None:
            return None
        groups = match.groupdict()
        if groups.get("dated") and not groups.get("type"):
            return None  # delivered data backed up in all-data mode
        written = datetime.strptime(groups["written"], "%Y-%m-%d-%H-%M-%S").replace(tzinfo=UTC)
        return ErrorObject(key, groups.get("type"), groups["stream"], int(groups["version"]), written)


def _expression_regex(prefix: str) -> str:
    out: list[str] = []
    last = 0
    typed = False
    for match in _EXPRESSION.finditer(prefix):
        out.append(re.escape(prefix[last : match.start()]))
        namespace, value = match.group(1), match.group(2)
        if namespace == "firehose" and value == "error-output-type":
            out.append(_TYPE if not typed else r"[a-z][a-z-]*")
            typed = True
        elif namespace == "firehose" and value == "random-string":
            out.append(r"[A-Za-z0-9]{11}")
        elif namespace == "timestamp":
            out.append(_java_regex(value))
        elif namespace in ("partitionKeyFromLambda", "partitionKeyFromQuery"):
            out.append(r"[^/]+")
        else:
            raise PrefixPatternError(f"unsupported expression !{{{namespace}:{value}}} in {prefix!r}")
        last = match.end()
    out.append(re.escape(prefix[last:]))
    if not typed:
        raise PrefixPatternError(
            f"an error prefix with expressions must use !{{firehose:error-output-type}}: {prefix!r}"
        )
    return "".join(out)


def _java_regex(pattern: str) -> str:
    """A regex for what a Java DateTimeFormatter pattern (the subset Firehose prefixes use) prints."""
    out = []
    for match in _JAVA_TOKEN.finditer(pattern):
        token = match.group(0)
        if token.startswith("'"):
            out.append(re.escape(token[1:-1] or "'"))
        elif token[0].isalpha():
            if token not in _JAVA_DIGITS and token != "ss":
                raise PrefixPatternError(f"unsupported timestamp pattern {token!r} in {pattern!r}")
            out.append(_JAVA_DIGITS.get(token, r"\d{2}"))
        else:
            out.append(re.escape(token))
    return "".join(out)


# --------------------------------------------------------------------------- records


class _Line(msgspec.Struct, rename="camel"):
    """One line of an error object, in any spelling AWS uses; other fields (sequenceNumber,
    subsequenceNumber, dataId, dataCatalogTable, requestId...) are ignored."""

    raw_data: str
    error_code: str | None = None
    last_error_code: str | None = None  # format-conversion-failed, as captured
    upper_error_code: str | None = msgspec.field(default=None, name="ErrorCode")  # format conversion, current docs
    error_message: str | None = None
    last_error_message: str | None = None
    upper_error_message: str | None = msgspec.field(default=None, name="ErrorMessage")
    attempts_made: int | None = None
    arrival_timestamp: int | None = None
    attempt_ending_timestamp: int | None = None
    lambda_arn: str | None = None  # the docs' spelling
    lambda_arn_upper: str | None = msgspec.field(default=None, name="lambdaARN")  # what AWS writes

    @property
    def code(self) -> str | None:
        return self.error_code or self.last_error_code or self.upper_error_code

    @property
    def message(self) -> str:
        return self.error_message or self.last_error_message or self.upper_error_message or ""


_line_decoder = msgspec.json.Decoder(_Line)


@dataclass(frozen=True)
class ErrorRecord:
    """One rejected record, as Firehose wrote it."""

    source: ErrorObject
    error_code: str
    error_message: str
    raw: bytes  # rawData decoded: the record as put (processing-failed) or as transformed (later failures)
    arrival_ms: int | None
    attempts: int | None
    attempt_ending_ms: int | None
    lambda_arn: str | None
    line: bytes = field(default=b"", repr=False)  # the line as written (a redrive may write it again elsewhere)

    @property
    def arrival(self) -> datetime | None:
        return None if self.arrival_ms is None else datetime.fromtimestamp(self.arrival_ms / 1000, tz=UTC)


@dataclass
class ObjectContents:
    records: list[ErrorRecord]
    unreadable_lines: int  # not an error record (or bad base64)


def parse_object(body: bytes, source: ErrorObject) -> ObjectContents:
    """The records of one error object (gzipped or not)."""
    if body[:2] == _GZIP_MAGIC:
        try:
            body = gzip.decompress(body)
        except (OSError, EOFError, zlib.error):  # a truncated or corrupt object: nothing in it can be trusted
            return ObjectContents([], 1)
    records: list[ErrorRecord] = []
    bad = 0
    for line in body.splitlines():
        if not line.strip():
            continue
        try:
            parsed = _line_decoder.decode(line)
            raw = base64.b64decode(parsed.raw_data, validate=True)
        except (msgspec.DecodeError, binascii.Error, ValueError):
            bad += 1
            continue
        code = parsed.code
        if code is None:  # not a shape we know: counted, never guessed at
            bad += 1
            continue
        records.append(
            ErrorRecord(
                source,
                code,
                parsed.message,
                raw,
                parsed.arrival_timestamp,
                parsed.attempts_made,
                parsed.attempt_ending_timestamp,
                parsed.lambda_arn or parsed.lambda_arn_upper,
                line,
            )
        )
    return ObjectContents(records, bad)


# --------------------------------------------------------------------------- reading a bucket


@dataclass(frozen=True)
class TimeRange:
    """Arrival times to keep: ``start`` inclusive, ``end`` exclusive; None is open."""

    start: datetime | None = None
    end: datetime | None = None

    def __post_init__(self) -> None:
        for name in ("start", "end"):
            value = getattr(self, name)
            if value is not None and value.tzinfo is None:
                raise ValueError(f"time range {name} must be timezone-aware")
        if self.start and self.end and self.start >= self.end:
            raise ValueError(f"time range start {self.start.isoformat()} is not before end {self.end.isoformat()}")

    def may_hold(self, obj: ErrorObject) -> bool:
        """Whether an object can hold records in range: none of its records arrived before its oldest one."""
        return self.end is None or obj.oldest_arrival < self.end

    def holds(self, record: ErrorRecord) -> bool:
        arrival = record.arrival
        if arrival is None:
            return self.start is None and self.end is None
        return (self.start is None or arrival >= self.start) and (self.end is None or arrival < self.end)


def list_objects(s3: Any, bucket: str, patterns: Sequence[KeyPattern], period: TimeRange) -> Iterator[ErrorObject]:
    """Error objects under each pattern's root, in key order, that may hold records in ``period``."""
    seen: set[str] = set()
    paginator = s3.get_paginator("list_objects_v2")
    for pattern in patterns:
        for page in paginator.paginate(Bucket=bucket, Prefix=pattern.root):
            for item in page.get("Contents", []):
                key = item["Key"]
                obj = pattern.parse(key)
                if obj is None or key in seen or not period.may_hold(obj) or item.get("Size", 0) > MAX_OBJECT_BYTES:
                    continue
                seen.add(key)
                yield obj


@dataclass
class Scan:
    """What a read found, beyond the records: how much was read and what could not be."""

    objects: int = 0
    unreadable_lines: int = 0


def read_records(
    s3: Any,
    bucket: str,
    prefixes: Sequence[str] = PROJECT_PREFIXES,
    period: TimeRange | None = None,
    scan: Scan | None = None,
) -> Iterator[ErrorRecord]:
    """Every rejected record under ``prefixes`` whose arrival is in ``period``, object by object."""
    period = period or TimeRange()
    scan = scan if scan is not None else Scan()
    patterns = [KeyPattern(p) for p in prefixes]
    for obj in list_objects(s3, bucket, patterns, period):
        body = s3.get_object(Bucket=bucket, Key=obj.key)["Body"].read()
        contents = parse_object(body, obj)
        scan.objects += 1
        scan.unreadable_lines += contents.unreadable_lines
        yield from (r for r in contents.records if period.holds(r))


# --------------------------------------------------------------------------- summary


@dataclass
class CodeSummary:
    error_code: str
    count: int = 0
    output_types: Counter[str] = field(default_factory=Counter)
    reasons: Counter[str] = field(default_factory=Counter)  # the validator's code for each raw record, if any
    first_arrival_ms: int | None = None
    last_arrival_ms: int | None = None
    samples: list[ErrorRecord] = field(default_factory=list)


def summarize(
    records: Iterable[ErrorRecord], samples: int = 3, reason: Callable[[ErrorRecord], str | None] | None = None
) -> list[CodeSummary]:
    """Records grouped by error code, most frequent first, with the first ``samples`` of each.

    ``reason`` names why a record was refused when Firehose's code does not (a transform's
    ``ProcessingFailed`` carries no reason to Firehose); see ``validator_reason``."""
    groups: dict[str, CodeSummary] = {}
    for record in records:
        group = groups.get(record.error_code) or groups.setdefault(record.error_code, CodeSummary(record.error_code))
        group.count += 1
        group.output_types[record.source.output_type or "unknown"] += 1
        if reason is not None:
            why = reason(record)
            if why:
                group.reasons[why] += 1
        if record.arrival_ms is not None:
            first, last = group.first_arrival_ms, group.last_arrival_ms
            group.first_arrival_ms = record.arrival_ms if first is None else min(first, record.arrival_ms)
            group.last_arrival_ms = record.arrival_ms if last is None else max(last, record.arrival_ms)
        if len(group.samples) < samples:
            group.samples.append(record)
    return sorted(groups.values(), key=lambda g: (-g.count, g.error_code))


PROCESSING_FAILED_CODE = "Lambda.ProcessingFailed"  # the transform answered ProcessingFailed


def validator_reason(rules: Any) -> Callable[[ErrorRecord], str | None]:
    """For a record the transform refused, the event validator's verdict on its raw data at its
    original arrival time: the transform's ``error_code`` (``unknown_field:timestmap``...), or
    None if it passes now (a hook refused it, or the rules differ)."""
    from bxb_runtime.events.validate import EventError, normalize_bytes

    def reason(record: ErrorRecord) -> str | None:
        if record.error_code != PROCESSING_FAILED_CODE or record.arrival_ms is None:
            return None
        try:
            normalize_bytes(record.raw, rules, arrival_ms=record.arrival_ms, ingested_ms=record.arrival_ms)
        except EventError as err:
            return err.code
        return None

    return reason
