"""S3 prefixes and object names, evaluated as Firehose does.

Prefix expressions (docs: firehose/latest/dev/s3-prefixes.html):
``!{timestamp:<Java DateTimeFormatter>}`` (UTC, the arrival of the oldest record in the
object), ``!{partitionKeyFromLambda:key}``, ``!{firehose:error-output-type}`` and
``!{firehose:random-string}`` (11 random characters). With no prefix, Firehose uses
``YYYY/MM/dd/HH/``; with no error prefix, ``<error-output-type>/YYYY/MM/dd/HH/``.

Object names: ``<prefix><stream>-<version>-<yyyy-MM-dd-HH-mm-ss>-<uuid><extension>``,
the time being the arrival of the oldest record in the object.
"""

from __future__ import annotations

import random
import re
import string
import uuid
from datetime import UTC, datetime

DEFAULT_PREFIX = "!{timestamp:yyyy/MM/dd/HH}/"
_EXPRESSION = re.compile(r"!\{([A-Za-z]+):([^}]*)\}")
_JAVA_FIELDS = {"yyyy": "%Y", "yy": "%y", "MM": "%m", "dd": "%d", "HH": "%H", "mm": "%M", "ss": "%S"}
_JAVA_TOKEN = re.compile(r"'[^']*'|([A-Za-z])\1*|[^A-Za-z']+")
_RANDOM_ALPHABET = string.ascii_letters + string.digits


class PrefixError(ValueError):
    pass


def java_datetime(pattern: str, when: datetime) -> str:
    """The subset of Java's DateTimeFormatter that Firehose prefixes use, with quoted literals."""
    out = []
    for match in _JAVA_TOKEN.finditer(pattern):
        token = match.group(0)
        if token.startswith("'"):
            out.append(token[1:-1] or "'")
        elif token[0].isalpha():
            fmt = _JAVA_FIELDS.get(token)
            if fmt is None:
                raise PrefixError(f"unsupported timestamp pattern {token!r} in {pattern!r}")
            out.append(when.strftime(fmt))
        else:
            out.append(token)
    return "".join(out)


def evaluate_prefix(
    prefix: str,
    *,
    when_ms: int,
    partition_keys: dict[str, str] | None = None,
    error_output_type: str | None = None,
    rng: random.Random | None = None,
) -> str:
    """Evaluate every expression in ``prefix``; a missing partition key raises ``PrefixError``."""
    if not prefix:
        prefix = f"{error_output_type}/{DEFAULT_PREFIX}" if error_output_type else DEFAULT_PREFIX
    when = datetime.fromtimestamp(when_ms / 1000, tz=UTC)

    def replace(match: re.Match[str]) -> str:
        namespace, value = match.group(1), match.group(2)
        if namespace == "timestamp":
            return java_datetime(value, when)
        if namespace == "partitionKeyFromLambda":
            found = (partition_keys or {}).get(value)
            if found is None or found == "":
                raise PrefixError(f"partition key {value!r} missing from the Lambda's metadata")
            return str(found)
        if namespace == "firehose" and value == "error-output-type":
            if error_output_type is None:
                raise PrefixError("!{firehose:error-output-type} is only valid in the error output prefix")
            return error_output_type
        if namespace == "firehose" and value == "random-string":
            return "".join((rng or random).choices(_RANDOM_ALPHABET, k=11))
        raise PrefixError(f"unsupported expression !{{{namespace}:{value}}}")

    return _EXPRESSION.sub(replace, prefix)


def partition_fields(prefix: str) -> tuple[str, ...]:
    """The ``partitionKeyFromLambda`` keys a prefix uses, in order."""
    return tuple(v for ns, v in _EXPRESSION.findall(prefix) if ns == "partitionKeyFromLambda")


def object_name(
    stream: str, version: int, oldest_arrival_ms: int, extension: str = "", unique: uuid.UUID | None = None
) -> str:
    """``unique`` replaces the random uuid (a name that must come out the same when written again)."""
    when = datetime.fromtimestamp(oldest_arrival_ms / 1000, tz=UTC)
    return f"{stream}-{version}-{when.strftime('%Y-%m-%d-%H-%M-%S')}-{unique or uuid.uuid4()}{extension}"


_OBJECT_TIME = re.compile(
    r"-(\d{4}-\d{2}-\d{2}-\d{2}-\d{2}-\d{2})-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
    r"(?:\.[A-Za-z0-9.]+)?$"
)


def object_time(key: str) -> datetime | None:
    """The oldest arrival an object's name records (what ``object_name`` wrote), or None for
    a key that is not named so."""
    match = _OBJECT_TIME.search(key)
    return None if match is None else datetime.strptime(match.group(1), "%Y-%m-%d-%H-%M-%S").replace(tzinfo=UTC)
