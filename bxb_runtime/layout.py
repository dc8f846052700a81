"""Where things live in the pipeline's S3 bucket: one definition for the CDK stacks,
the local Firehose runner and ClickHouse's S3Queue tables.

Firehose's dynamic partitioning writes every transformed event under
``events/organization_id=<org>/date=<YYYY-MM-DD>/hour=<HH>/`` (the transform's partition
keys). Lateness is not a prefix: ClickHouse decides it, for both delivery paths alike.
Top-level prefixes never nest, so a glob over one can never reach another (in
particular ClickHouse never reads Firehose's error output).
"""

from __future__ import annotations

from datetime import UTC, datetime

EVENTS_PREFIX = "events/"
ERRORS_PREFIX = "errors/"  # Firehose ErrorOutputPrefix root: errors/<error-output-type>/...
HTTP_BACKUP_PREFIX = "http-backup/"  # the HTTP delivery stream's S3 backup
HTTP_BACKUP_ERRORS_PREFIX = "http-backup-errors/"  # the HTTP delivery stream's transform failures
# S3Queue moves each Parquet object it has ingested from events/ to
# archive/<its key>: the long-term Parquet archive, outside every queue's glob, so a
# file ClickHouse has forgotten (tracked-file TTL or limit) is never read again.
ARCHIVE_PREFIX = "archive/"
# ``bxb-stream redrive`` moves each error object whose records it re-submitted to
# redriven/<its key>: kept (never deleted), and outside every error prefix and queue glob,
# so a second redrive does not send it again.
REDRIVEN_PREFIX = "redriven/"
# Every top-level prefix; none is the start of another (tests/redrive checks it).
TOP_LEVEL_PREFIXES: tuple[str, ...] = (
    EVENTS_PREFIX,
    ERRORS_PREFIX,
    HTTP_BACKUP_PREFIX,
    HTTP_BACKUP_ERRORS_PREFIX,
    ARCHIVE_PREFIX,
    REDRIVEN_PREFIX,
)

# The transform's partition keys (metadata.partitionKeys), in path order.
PARTITION_KEYS: tuple[str, ...] = ("organization_id", "date", "hour")
# Partition path below EVENTS_PREFIX, as Firehose's S3 prefix expression.
PARTITION_PATH = "".join(f"{key}=!{{partitionKeyFromLambda:{key}}}/" for key in PARTITION_KEYS)

# How long S3Queue remembers an ingested file (plus a margin). Ingested files leave the
# queue's glob (ARCHIVE_PREFIX), so this only matters for one whose move failed: it is
# ingested again when forgotten (deduplicated downstream, but paid for twice).
DATA_RETENTION_DAYS = 30


# Firehose's prefix expressions: what the CDK stacks configure and the local runner evaluates.
FIREHOSE_DATA_PREFIX = EVENTS_PREFIX + PARTITION_PATH
FIREHOSE_ERROR_PREFIX = ERRORS_PREFIX + "!{firehose:error-output-type}/!{timestamp:yyyy/MM/dd}/"
FIREHOSE_HTTP_BACKUP_PREFIX = HTTP_BACKUP_PREFIX
FIREHOSE_HTTP_BACKUP_ERROR_PREFIX = HTTP_BACKUP_ERRORS_PREFIX + "!{firehose:error-output-type}/!{timestamp:yyyy/MM/dd}/"


def partition_keys(organization_id: str, timestamp_ms: int) -> dict[str, str]:
    """The transform's partition keys for an event of this organization and time (UTC)."""
    at = datetime.fromtimestamp(timestamp_ms // 1000, tz=UTC)
    return dict(zip(PARTITION_KEYS, (organization_id, at.strftime("%Y-%m-%d"), at.strftime("%H")), strict=True))


def partition_prefix(organization_id: str, date: str, hour: str) -> str:
    """Concrete prefix of one partition, e.g. ``events/organization_id=acme/date=2024-05-01/hour=13/``."""
    values = dict(zip(PARTITION_KEYS, (organization_id, date, hour), strict=True))
    return EVENTS_PREFIX + "".join(f"{key}={values[key]}/" for key in PARTITION_KEYS)
