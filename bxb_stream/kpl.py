"""KPL aggregated-record codec: pack many user records into one Kinesis record, and back.

Format (awslabs/amazon-kinesis-producer ``aggregation-format.md``): the magic bytes
``F3 89 9A C2``, a proto2 ``AggregatedRecord`` message, then the 16-byte MD5 of the
message bytes::

    message AggregatedRecord {
      repeated string partition_key_table     = 1;
      repeated string explicit_hash_key_table = 2;
      repeated Record records                 = 3;
    }
    message Record {
      required uint64 partition_key_index     = 1;
      optional uint64 explicit_hash_key_index = 2;
      required bytes  data                    = 3;
      repeated Tag    tags                    = 4;
    }
    message Tag { required string key = 1; optional string value = 2; }

The protobuf is encoded by hand: it is a handful of varints and length-delimited
fields, and building the bytes directly lets the aggregator know its exact size
after every ``add`` without serialising. Fields are written in field-number order,
as the protobuf runtime does, so our aggregates are byte-identical to the KPL's
and ``aws-kinesis-agg``'s for the same input.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

MAGIC = b"\xf3\x89\x9a\xc2"
DIGEST_SIZE = 16
OVERHEAD = len(MAGIC) + DIGEST_SIZE
# KPL's default AggregationMaxSize (amazon-kinesis-producer default_config.properties).
DEFAULT_MAX_SIZE = 51_200
# The PutRecords per-record ceiling (bxb_stream.producer.limits.MAX_RECORD_BYTES_CEILING).
MAX_SIZE_CEILING = 10 * 1024 * 1024

# Field keys: (field_number << 3) | wire_type.
_PK_TABLE = b"\x0a"  # AggregatedRecord.partition_key_table, length-delimited
_EHK_TABLE = b"\x12"  # AggregatedRecord.explicit_hash_key_table, length-delimited
_RECORD = b"\x1a"  # AggregatedRecord.records, length-delimited
_R_PK_INDEX = b"\x08"  # Record.partition_key_index, varint
_R_EHK_INDEX = b"\x10"  # Record.explicit_hash_key_index, varint
_R_DATA = b"\x1a"  # Record.data, length-delimited


class KplError(ValueError):
    """A record carries the KPL magic but is not a valid aggregate (bad MD5, bad protobuf)."""


class RecordTooLargeError(ValueError):
    """A single user record cannot fit in an aggregate of the configured maximum size."""

    def __init__(self, size: int, max_size: int) -> None:
        super().__init__(f"user record needs {size} bytes as an aggregate, limit {max_size}")
        self.size = size
        self.max_size = max_size


@dataclass(frozen=True, slots=True)
class UserRecord:
    partition_key: str
    explicit_hash_key: str | None
    data: bytes


class Aggregate(bytes):
    """The bytes of one aggregated record, plus the keys to send it with.

    A ``bytes`` subclass so callers that only want the payload can treat it as bytes.
    The outer keys are the first user record's, as the KPL does.
    """

    partition_key: str
    explicit_hash_key: str | None
    count: int


# --------------------------------------------------------------------------- varints

_SMALL = [bytes((i,)) for i in range(128)]


def _varint(value: int) -> bytes:
    if value < 0x80:
        return _SMALL[value]
    if value < 0x4000:
        return bytes((value & 0x7F | 0x80, value >> 7))
    out = bytearray()
    while value >= 0x80:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _varint_size(value: int) -> int:
    if value < 0x80:
        return 1
    if value < 0x4000:
        return 2
    return (value.bit_length() + 6) // 7


# --------------------------------------------------------------------------- decode


def is_aggregated(data: bytes) -> bool:
    """True if ``data`` starts with the KPL magic and is long enough to hold a digest."""
    return len(data) >= OVERHEAD and data[:4] == MAGIC


def _read_varint(buf: bytes, pos: int, end: int) -> tuple[int, int]:
    result = 0
    shift = 0
    while pos < end:
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7
        if shift >= 64:
            raise KplError("varint longer than 10 bytes")
    raise KplError("truncated varint")


def _skip(buf: bytes, pos: int, end: int, wire: int) -> int:
    if wire == 0:
        return _read_varint(buf, pos, end)[1]
    if wire == 1:
        pos += 8
    elif wire == 2:
        length, pos = _read_varint(buf, pos, end)
        pos += length
    elif wire == 5:
        pos += 4
    else:
        raise KplError(f"unsupported protobuf wire type {wire}")
    if pos > end:
        raise KplError("truncated field")
    return pos


def _read_record(buf: bytes, pos: int, end: int) -> tuple[int, int | None, bytes]:
    pk_index: int | None = None
    ehk_index: int | None = None
    data: bytes | None = None
    while pos < end:
        key, pos = _read_varint(buf, pos, end)
        field, wire = key >> 3, key & 7
        if field == 1 and wire == 0:
            pk_index, pos = _read_varint(buf, pos, end)
        elif field == 2 and wire == 0:
            ehk_index, pos = _read_varint(buf, pos, end)
        elif field == 3 and wire == 2:
            length, pos = _read_varint(buf, pos, end)
            if pos + length > end:
                raise KplError("truncated record data")
            data = buf[pos : pos + length]
            pos += length
        else:  # tags (field 4) and anything unknown: skipped, as the KCL does
            pos = _skip(buf, pos, end, wire)
    if pk_index is None or data is None:
        raise KplError("record lacks a required field (partition_key_index or data)")
    return pk_index, ehk_index, data


class _Parsed:
    """An aggregate's key tables and its records as parallel lists (no object per record)."""

    __slots__ = ("datas", "ehk_indexes", "ehks", "pk_indexes", "pks")

    def __init__(self) -> None:
        self.pks: list[str] = []
        self.ehks: list[str] = []
        self.pk_indexes: list[int] = []
        self.ehk_indexes: list[int | None] = []
        self.datas: list[bytes] = []


def _parse(data: bytes) -> _Parsed:
    """Check the digest, read the protobuf, check every key index; ``KplError`` if anything is wrong."""
    body = data[4:-DIGEST_SIZE]
    if hashlib.md5(body, usedforsecurity=False).digest() != data[-DIGEST_SIZE:]:
        raise KplError("MD5 digest does not match the aggregated record")
    out = _Parsed()
    pk_indexes, ehk_indexes, datas = out.pk_indexes, out.ehk_indexes, out.datas
    pos, end = 0, len(body)
    try:
        while pos < end:
            key = body[pos]
            if key < 0x80:  # every key of this format is one byte; the general reader takes the rest
                pos += 1
            else:
                key, pos = _read_varint(body, pos, end)
            field, wire = key >> 3, key & 7
            if wire != 2 or field not in (1, 2, 3):
                pos = _skip(body, pos, end, wire)
                continue
            length = body[pos] if pos < end else 0x80
            if length < 0x80:
                pos += 1
            elif pos + 1 < end and body[pos + 1] < 0x80:  # two-byte varint: a user record of 128 B-16 KiB
                length = (length & 0x7F) | body[pos + 1] << 7
                pos += 2
            else:
                length, pos = _read_varint(body, pos, end)
            stop = pos + length
            if stop > end:
                raise KplError("truncated field")
            if field != 3:
                (out.pks if field == 1 else out.ehks).append(body[pos:stop].decode("utf-8"))
            # The layout the KPL writes: 08 <pk index> 1A <length> <data>, no ehk, no tags.
            elif stop - pos > 3 and body[pos] == 0x08 and body[pos + 1] < 0x80 and body[pos + 2] == 0x1A:
                size = body[pos + 3]
                start = pos + 4
                if size >= 0x80:
                    if start < stop and body[start] < 0x80:
                        size = (size & 0x7F) | body[start] << 7
                        start += 1
                    else:
                        size, start = _read_varint(body, pos + 3, stop)
                if start + size != stop:  # tags or trailing fields: the general reader
                    _general_record(out, body, pos, stop)
                else:
                    pk_indexes.append(body[pos + 1])
                    ehk_indexes.append(None)
                    datas.append(body[start:stop])
            else:
                _general_record(out, body, pos, stop)
            pos = stop
    except UnicodeDecodeError as exc:
        raise KplError(f"key table entry is not UTF-8 ({exc})") from None
    n_pk, n_ehk = len(out.pks), len(out.ehks)
    if (pk_indexes and max(pk_indexes) >= n_pk) or any(e is not None and e >= n_ehk for e in ehk_indexes):
        for p, e in zip(pk_indexes, ehk_indexes, strict=True):
            if p >= n_pk or (e is not None and e >= n_ehk):
                raise KplError(f"key index out of range (pk {p}/{n_pk}, ehk {e}/{n_ehk})")
    return out


def _general_record(out: _Parsed, body: bytes, pos: int, stop: int) -> None:
    pk_index, ehk_index, data = _read_record(body, pos, stop)
    out.pk_indexes.append(pk_index)
    out.ehk_indexes.append(ehk_index)
    out.datas.append(data)


def deaggregate(data: bytes, partition_key: str = "") -> list[UserRecord]:
    """One Kinesis record -> its user records; a non-aggregated record comes back as itself.

    Raises ``KplError`` when the magic is present but the MD5 or protobuf is bad: a
    corrupt aggregate is reported, not passed on as if it were one event.
    """
    if not is_aggregated(data):
        return [UserRecord(partition_key, None, bytes(data))]
    parsed = _parse(bytes(data))
    pks, ehks = parsed.pks, parsed.ehks
    return [
        UserRecord(pks[p], None if e is None else ehks[e], d)
        for p, e, d in zip(parsed.pk_indexes, parsed.ehk_indexes, parsed.datas, strict=True)
    ]


def deaggregate_keys_and_data(data: bytes, partition_key: str = "") -> tuple[list[str], list[bytes]]:
    """``deaggregate`` as two parallel lists (partition keys, payloads): no object per user record.

    The runner's hot path; the same records, order and ``KplError`` cases as ``deaggregate``.
    """
    if not is_aggregated(data):
        return [partition_key], [bytes(data)]
    parsed = _parse(bytes(data))
    return list(map(parsed.pks.__getitem__, parsed.pk_indexes)), parsed.datas


# --------------------------------------------------------------------------- encode


class Aggregator:
    """Packs user records into aggregates of at most ``max_size`` bytes. Not thread-safe.

    ``size`` is always the exact length the current aggregate would have if emitted.
    With ``count_partition_key`` the outer partition key's UTF-8 bytes count too, since
    Kinesis charges them to the record's size limit.
    """

    def __init__(self, max_size: int = DEFAULT_MAX_SIZE, *, count_partition_key: bool = False) -> None:
        if not OVERHEAD < max_size <= MAX_SIZE_CEILING:
            raise ValueError(f"max_size must be in ({OVERHEAD}, {MAX_SIZE_CEILING}], got {max_size}")
        self.max_size = max_size
        self._count_pk = count_partition_key
        self._reset()

    def _reset(self) -> None:
        self._pk_index: dict[str, int] = {}
        self._ehk_index: dict[str, int] = {}
        self._parts_pk: list[bytes] = []
        self._parts_ehk: list[bytes] = []
        self._parts_rec: list[bytes] = []
        self._body = 0
        self._outer_pk = ""
        self._outer_ehk: str | None = None
        self._outer_pk_bytes = 0
        self._count = 0

    def __len__(self) -> int:
        return self._count

    @property
    def size(self) -> int:
        """Bytes the current aggregate would take (plus its outer key if counted); 0 when empty."""
        return OVERHEAD + self._body + self._outer_pk_bytes if self._count else 0

    def add(self, record: UserRecord) -> Aggregate | None:
        """Add a record; if it does not fit, return the full aggregate and start a new one with it.

        Raises ``RecordTooLargeError`` (and keeps the current aggregate) when the record
        could not fit even in an empty aggregate.
        """
        pk = record.partition_key
        ehk = record.explicit_hash_key
        data = record.data
        pk_index = self._pk_index.get(pk)
        ehk_index = None if ehk is None else self._ehk_index.get(ehk)
        grow = 0
        new_pk = new_ehk = b""
        if pk_index is None:
            pk_bytes = pk.encode()
            new_pk = _PK_TABLE + _varint(len(pk_bytes)) + pk_bytes
            grow += len(new_pk)
            pk_index = len(self._pk_index)
        if ehk is None:
            inner = _R_PK_INDEX + _varint(pk_index) + _R_DATA + _varint(len(data))
        else:
            if ehk_index is None:
                ehk_bytes = ehk.encode()
                new_ehk = _EHK_TABLE + _varint(len(ehk_bytes)) + ehk_bytes
                grow += len(new_ehk)
                ehk_index = len(self._ehk_index)
            inner = _R_PK_INDEX + _varint(pk_index) + _R_EHK_INDEX + _varint(ehk_index) + _R_DATA + _varint(len(data))
        inner_len = len(inner) + len(data)
        grow += 1 + _varint_size(inner_len) + inner_len
        if self._count:
            if OVERHEAD + self._body + self._outer_pk_bytes + grow <= self.max_size:
                self._append(pk, ehk, pk_index, ehk_index, new_pk, new_ehk, inner, inner_len, data, grow)
                return None
            # Full: check the record fits an empty aggregate (else raise, keeping ours), emit, start afresh.
            first = self._encode_first(record)
            out = self.flush()
            self._append(pk, ehk, 0, None if ehk is None else 0, *first)
            self._set_outer(record)
            return out
        first = self._encode_first(record)
        self._append(pk, ehk, 0, None if ehk is None else 0, *first)
        self._set_outer(record)
        return None

    def _encode_first(self, record: UserRecord) -> tuple[bytes, bytes, bytes, int, bytes, int]:
        """Encode a record as the first of a fresh aggregate; raise if it cannot fit. No side effects."""
        pk, ehk, data = record.partition_key, record.explicit_hash_key, record.data
        pk_bytes = pk.encode()
        new_pk = _PK_TABLE + _varint(len(pk_bytes)) + pk_bytes
        grow = len(new_pk)
        if ehk is None:
            inner = _R_PK_INDEX + b"\x00" + _R_DATA + _varint(len(data))
            new_ehk = b""
        else:
            ehk_bytes = ehk.encode()
            new_ehk = _EHK_TABLE + _varint(len(ehk_bytes)) + ehk_bytes
            grow += len(new_ehk)
            inner = _R_PK_INDEX + b"\x00" + _R_EHK_INDEX + b"\x00" + _R_DATA + _varint(len(data))
        inner_len = len(inner) + len(data)
        grow += 1 + _varint_size(inner_len) + inner_len
        total = OVERHEAD + grow + (len(pk_bytes) if self._count_pk else 0)
        if total > self.max_size:
            raise RecordTooLargeError(total, self.max_size)
        return new_pk, new_ehk, inner, inner_len, data, grow

    def _set_outer(self, record: UserRecord) -> None:
        self._outer_pk = record.partition_key
        self._outer_ehk = record.explicit_hash_key
        self._outer_pk_bytes = len(record.partition_key.encode()) if self._count_pk else 0

    def _append(
        self,
        pk: str,
        ehk: str | None,
        pk_index: int,
        ehk_index: int | None,
        new_pk: bytes,
        new_ehk: bytes,
        inner: bytes,
        inner_len: int,
        data: bytes,
        grow: int,
    ) -> None:
        if new_pk:
            self._pk_index[pk] = pk_index
            self._parts_pk.append(new_pk)
        if new_ehk:
            self._ehk_index[ehk] = ehk_index  # type: ignore[index]
            self._parts_ehk.append(new_ehk)
        rec = self._parts_rec
        rec.append(_RECORD)
        rec.append(_varint(inner_len))
        rec.append(inner)
        rec.append(data)
        self._body += grow
        self._count += 1

    def flush(self) -> Aggregate | None:
        """Emit the current aggregate (None if empty) and start afresh."""
        if not self._count:
            return None
        body = b"".join(self._parts_pk + self._parts_ehk + self._parts_rec)
        out = Aggregate(MAGIC + body + hashlib.md5(body, usedforsecurity=False).digest())
        out.partition_key = self._outer_pk
        out.explicit_hash_key = self._outer_ehk
        out.count = self._count
        self._reset()
        return out
