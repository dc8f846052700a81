"""What the ClickHouse DDL is rendered from: database, bucket, prefixes, credentials, queue tuning.

Credentials are referenced, never held: either an IAM role ARN (ClickHouse Cloud
``extra_credentials(role_arn=...)``) or the name of a ClickHouse named collection
that holds the keys. Nothing in this module ever sees an access key.
"""

from __future__ import annotations

import enum
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, fields
from urllib.parse import urlsplit

from bxb_stream import layout
from bxb_stream.config import ConfigError

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
_PREFIX = re.compile(r"^[A-Za-z0-9._=-]+(/[A-Za-z0-9._=-]+)*/$")
_ROLE_ARN = re.compile(r"^arn:aws[a-z-]*:iam::\d{12}:role/[A-Za-z0-9+=,.@_/-]{1,512}$")
_HOST = re.compile(r"^[A-Za-z0-9.-]+(:\d{1,5})?$")
_BUCKET_PATH = re.compile(r"^(/[A-Za-z0-9._-]+)*$")


class Deployment(enum.Enum):
    """Where the schema runs (see ``clickhouse.ddl``'s module docstring and README)."""

    SINGLE = "single"  # one server: plain MergeTree, non_replicated_deduplication_window
    CLUSTER = "cluster"  # self-managed shards x replicas: Replicated database, Distributed tables
    CLOUD = "cloud"  # ClickHouse Cloud: SharedMergeTree, IAM-role credentials


class CredentialsMode(enum.Enum):
    ROLE = "role"  # ClickHouse Cloud assumes an IAM role: extra_credentials(role_arn=...)
    NAMED_COLLECTION = "named_collection"  # keys live in a named collection created from the environment


@dataclass(frozen=True)
class ClickHouseSettings:
    """Inputs of the DDL. Validated on construction; every error names its key."""

    bucket_url: str
    database: str = "bxb"
    role_arn: str = ""
    named_collection: str = ""
    events_prefix: str = layout.EVENTS_PREFIX
    # False: no S3Queue tables (a deployment with the HTTP path only has no Parquet to read).
    s3_queues: bool = True
    # True: S3Queue moves each ingested object to <archive_prefix><its key> (needs ClickHouse
    # 25.x or later, delete/put rights on the bucket, and conditional DeleteObject: LocalStack
    # answers 501, see local/capabilities.py). False keeps objects in place, and a file still
    # there when S3Queue forgets it (TTL, limit) is read again, unless something else moves it
    # (the local pipeline does, local/archiver.py).
    move_processed: bool = True
    archive_prefix: str = layout.ARCHIVE_PREFIX
    errors_prefix: str = layout.ERRORS_PREFIX
    http_backup_prefix: str = layout.HTTP_BACKUP_PREFIX
    # S3Queue. Unordered mode keeps every processed file in Keeper; an entry dropped by the
    # limit or the TTL is ingested again if the object still exists (ClickHouse issues
    # 114421, 66742, 118960). So: the TTL outlives the bucket's retention, and the limit
    # exceeds the number of files alive within it (default: ~66k files a day for 30 days).
    tracked_files_limit: int = 2_000_000
    tracked_file_ttl_sec: int = (layout.DATA_RETENTION_DAYS + 5) * 86_400
    # Firehose flushes a partition at most once per buffer interval (>= 60 s with Parquet
    # conversion), so polling faster than 1 s buys nothing; backing off to 10 s keeps idle
    # LIST traffic low while adding at most 10 s to a 60 s buffer.
    polling_min_timeout_ms: int = 1_000
    polling_max_timeout_ms: int = 10_000
    polling_backoff_ms: int = 1_000
    # A failed file is retried this many times, then left as Failed (visible in
    # system.s3queue_metadata_cache). A retry re-reads from the start; events_raw deduplicates.
    loading_retries: int = 10
    # 0 leaves ClickHouse's default; tests lower it so a stopped mock endpoint does not hang.
    s3_retry_attempts: int = 0
    # Billing: how often the resolver classifies newly landed events (billed, duplicate,
    # conflict, late) and usage_hourly adds what was billed; events are billable within
    # about two intervals of landing. Each run takes at most *_batch_rows (one atomic part).
    refresh_seconds: int = 10
    resolve_batch_rows: int = 500_000
    usage_batch_rows: int = 1_000_000
    # A transaction_id is billed at most once among copies resolved within this many days.
    dedup_window_days: int = 35
    # Until an organization closes a period (bxb-stream periods close), an event more than
    # this many days older than its arrival is late: kept aside, billed only if accepted.
    grace_days: int = 35
    # non_replicated_deduplication_window: inserts remembered per table, so a retried HTTP
    # request (same insert_deduplication_token) stores nothing twice.
    insert_dedup_window: int = 10_000
    # single | cluster | cloud. cluster needs cluster_name (the <remote_servers> entry).
    deployment: Deployment = Deployment.SINGLE
    cluster_name: str = ""
    # cluster and cloud: blocks below its watermark the resolver reads again on every run, for
    # rows that became visible out of block order on a replica (see ddl's docstring).
    replica_lookback_blocks: int = 10_000
    # cluster and cloud: S3Queue processing threads per replica, and how many replicas read the queue.
    queue_processing_threads: int = 4
    queue_replicas: int = 2

    def __post_init__(self) -> None:
        object.__setattr__(self, "bucket_url", self.bucket_url.rstrip("/"))
        if isinstance(self.deployment, str):
            try:
                object.__setattr__(self, "deployment", Deployment(self.deployment))
            except ValueError:
                choices = ", ".join(d.value for d in Deployment)
                raise ConfigError("deployment", f"must be one of {choices}, got {self.deployment!r}") from None
        if self.deployment is Deployment.CLUSTER and not _IDENTIFIER.match(self.cluster_name):
            raise ConfigError("cluster_name", "deployment cluster needs the cluster's name (an identifier)")
        if self.deployment is not Deployment.CLUSTER and self.cluster_name:
            raise ConfigError("cluster_name", f"is only for deployment cluster, not {self.deployment.value}")
        if self.deployment is Deployment.CLOUD and not self.role_arn:
            raise ConfigError("role_arn", "deployment cloud reads the bucket with an IAM role: set role_arn")
        _check_bucket_url(self.bucket_url)
        if not _IDENTIFIER.match(self.database):
            raise ConfigError("database", f"must be an identifier [A-Za-z_][A-Za-z0-9_]*, got {self.database!r}")
        if bool(self.role_arn) == bool(self.named_collection):
            raise ConfigError(
                "credentials",
                "set exactly one of role_arn (ClickHouse Cloud role-based access) or named_collection "
                "(a named collection holding the S3 keys)",
            )
        if self.role_arn and not _ROLE_ARN.match(self.role_arn):
            raise ConfigError(
                "role_arn", f"must be an IAM role ARN arn:aws:iam::<12 digits>:role/<name>, got {self.role_arn!r}"
            )
        if self.named_collection and not _IDENTIFIER.match(self.named_collection):
            raise ConfigError("named_collection", f"must be an identifier, got {self.named_collection!r}")
        prefixes = {name: getattr(self, name) for name in _PREFIX_FIELDS}
        for name, prefix in prefixes.items():
            if not _PREFIX.match(prefix):
                raise ConfigError(
                    name, f"must be a relative S3 prefix ending in '/' without glob characters, got {prefix!r}"
                )
        for a, pa in prefixes.items():
            for b, pb in prefixes.items():
                if a != b and pb.startswith(pa):
                    raise ConfigError(b, f"{pb!r} is inside {a} {pa!r}; the {a} glob would read it")
        for name, low, high in _BOUNDS:
            value = getattr(self, name)
            if type(value) is not int or not low <= value <= high:
                raise ConfigError(name, f"must be an integer in [{low}, {high}], got {value!r}")
        if self.polling_min_timeout_ms > self.polling_max_timeout_ms:
            raise ConfigError("polling_min_timeout_ms", "must not exceed polling_max_timeout_ms")

    @property
    def credentials_mode(self) -> CredentialsMode:
        return CredentialsMode.ROLE if self.role_arn else CredentialsMode.NAMED_COLLECTION

    def url_for(self, prefix: str) -> str:
        """S3 URL of every object under ``prefix`` (recursive glob)."""
        return f"{self.bucket_url}/{prefix}**"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: object) -> ClickHouseSettings:
        """Read ``BXB_CLICKHOUSE_<FIELD>`` variables; keyword overrides win over the environment."""
        environ = os.environ if environ is None else environ
        kwargs: dict[str, object] = {}
        for f in fields(cls):
            raw = environ.get(ENV_PREFIX + f.name.upper())
            if raw is not None:
                if f.type in ("int", int):
                    kwargs[f.name] = _parse_int(f.name, raw)
                elif f.type in ("bool", bool):
                    kwargs[f.name] = _parse_bool(f.name, raw)
                else:
                    kwargs[f.name] = raw
        kwargs.update({k: v for k, v in overrides.items() if v is not None})
        if "bucket_url" not in kwargs:
            raise ConfigError("bucket_url", f"is required (set {ENV_PREFIX}BUCKET_URL or pass it)")
        return cls(**kwargs)  # type: ignore[arg-type]


ENV_PREFIX = "BXB_CLICKHOUSE_"
_PREFIX_FIELDS = ("events_prefix", "errors_prefix", "http_backup_prefix", "archive_prefix")
_BOUNDS = (
    ("tracked_files_limit", 1_000, 100_000_000),
    ("tracked_file_ttl_sec", 0, 10 * 366 * 86_400),
    ("polling_min_timeout_ms", 10, 600_000),
    ("polling_max_timeout_ms", 10, 600_000),
    ("polling_backoff_ms", 0, 600_000),
    ("loading_retries", 0, 1_000),
    ("s3_retry_attempts", 0, 1_000),
    ("refresh_seconds", 1, 3_600),
    ("resolve_batch_rows", 1_000, 10_000_000),
    ("usage_batch_rows", 1_000, 10_000_000),
    ("dedup_window_days", 1, 3_660),
    ("grace_days", 1, 3_660),
    ("insert_dedup_window", 1, 10_000_000),
    ("replica_lookback_blocks", 1, 10_000_000),
    ("queue_processing_threads", 1, 256),
    ("queue_replicas", 1, 1_000),
)


def _check_bucket_url(url: str) -> None:
    example = "e.g. https://my-bucket.s3.eu-west-1.amazonaws.com or http://127.0.0.1:9000/my-bucket"
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError("bucket_url", f"must be an http(s) URL of the S3 bucket ({example}), got {url!r}")
    if parts.query or parts.fragment or "@" in parts.netloc:
        raise ConfigError("bucket_url", f"must not carry a query, fragment or credentials ({example}), got {url!r}")
    if not _HOST.match(parts.netloc) or not _BUCKET_PATH.match(parts.path):
        raise ConfigError("bucket_url", f"has characters that are not allowed in a bucket URL: {url!r}")


def _parse_bool(key: str, raw: str) -> bool:
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ConfigError(key, f"must be true or false, got {raw!r}")


def _parse_int(key: str, raw: str) -> int:
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(key, f"must be an integer, got {raw!r}") from None
