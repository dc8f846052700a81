"""What the ClickHouse DDL is rendered from: database, bucket, prefixes, credentials, queue tuning.

Credentials are referenced, never held: either an IAM role ARN (ClickHouse Cloud
``extra_credentials(role_arn=...)``) or the name of a ClickHouse named collection
that holds the keys. Nothing in this module ever sees an access key.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Self
from urllib.parse import urlsplit

from bxb_runtime import layout
from bxb_runtime.clickhouse.tables import DEFAULT_DATABASE
from bxb_runtime.settings import IDENTIFIER, ROLE_ARN, ConfigError, Settings, setting

_ROLE_DOC = "an IAM role ARN arn:aws:iam::<12 digits>:role/<name>"
_PREFIX = re.compile(r"^[A-Za-z0-9._=-]+(/[A-Za-z0-9._=-]+)*/$")
_HOST = re.compile(r"^[A-Za-z0-9.-]+(:\d{1,5})?$")
_BUCKET_PATH = re.compile(r"^(/[A-Za-z0-9._-]+)*$")


class Deployment(enum.StrEnum):
    """Where the schema runs (see ``clickhouse.ddl``'s module docstring and README)."""

    SINGLE = "single"  # one server: plain MergeTree, non_replicated_deduplication_window
    CLUSTER = "cluster"  # self-managed shards x replicas: Replicated database, Distributed tables
    CLOUD = "cloud"  # ClickHouse Cloud: SharedMergeTree, IAM-role credentials


class CredentialsMode(enum.Enum):
    ROLE = "role"  # ClickHouse Cloud assumes an IAM role: extra_credentials(role_arn=...)
    NAMED_COLLECTION = "named_collection"  # keys live in a named collection created from the environment


@dataclass(frozen=True)
class ClickHouseSettings(Settings):
    """Inputs of the DDL. Validated on construction; every error names its key (``BXB_CLICKHOUSE_<FIELD>``)."""

    ENV_PREFIX: ClassVar[str] = "BXB_CLICKHOUSE_"

    bucket_url: str = setting()
    database: str = setting(DEFAULT_DATABASE, pattern=IDENTIFIER, doc="an identifier [A-Za-z_][A-Za-z0-9_]*")
    role_arn: str = setting(
        "", pattern=ROLE_ARN, blank=True, doc="an IAM role ARN arn:aws:iam::<12 digits>:role/<name>"
    )
    named_collection: str = setting("", pattern=IDENTIFIER, blank=True, doc="an identifier")
    events_prefix: str = setting(layout.EVENTS_PREFIX)
    # False: no S3Queue tables (a deployment with the HTTP path only has no Parquet to read).
    s3_queues: bool = setting(True)
    # True: S3Queue moves each ingested object to <archive_prefix><its key> (needs ClickHouse
    # 25.x or later, delete/put rights on the bucket, and conditional DeleteObject: LocalStack
    # answers 501, see local/capabilities.py). False keeps objects in place, and a file still
    # there when S3Queue forgets it (TTL, limit) is read again, unless something else moves it
    # (the local pipeline does, local/archiver.py).
    move_processed: bool = setting(True)
    archive_prefix: str = setting(layout.ARCHIVE_PREFIX)
    errors_prefix: str = setting(layout.ERRORS_PREFIX)
    http_backup_prefix: str = setting(layout.HTTP_BACKUP_PREFIX)
    # S3Queue. Unordered mode keeps every processed file in Keeper; an entry dropped by the
    # limit or the TTL is ingested again if the object still exists (ClickHouse issues
    # 114421, 66742, 118960). So: the TTL outlives the bucket's retention, and the limit
    # exceeds the number of files alive within it (default: ~66k files a day for 30 days).
    tracked_files_limit: int = setting(2_000_000, low=1_000, high=100_000_000)
    tracked_file_ttl_sec: int = setting((layout.DATA_RETENTION_DAYS + 5) * 86_400, low=0, high=10 * 366 * 86_400)
    # Firehose flushes a partition at most once per buffer interval (>= 60 s with Parquet
    # conversion), so polling faster than 1 s buys nothing; backing off to 10 s keeps idle
    # LIST traffic low while adding at most 10 s to a 60 s buffer.
    polling_min_timeout_ms: int = setting(1_000, low=10, high=600_000)
    polling_max_timeout_ms: int = setting(10_000, low=10, high=600_000)
    polling_backoff_ms: int = setting(1_000, low=0, high=600_000)
    # A failed file is retried this many times, then left as Failed (visible in
    # system.s3queue_metadata_cache). A retry re-reads from the start; events_raw deduplicates.
    loading_retries: int = setting(10, low=0, high=1_000)
    # 0 leaves ClickHouse's default; tests lower it so a stopped mock endpoint does not hang.
    s3_retry_attempts: int = setting(0, low=0, high=1_000)
    # Billing: how often the resolver classifies newly landed events (billed, duplicate,
    # conflict, late) and usage_hourly adds what was billed; events are billable within
    # about two intervals of landing. Each run takes at most *_batch_rows (one atomic part).
    refresh_seconds: int = setting(10, low=1, high=3_600)
    resolve_batch_rows: int = setting(500_000, low=1_000, high=10_000_000)
    usage_batch_rows: int = setting(1_000_000, low=1_000, high=10_000_000)
    # A transaction_id is billed at most once among copies resolved within this many days.
    dedup_window_days: int = setting(35, low=1, high=3_660)
    # Until an organization closes a period (bxb-stream periods close), an event more than
    # this many days older than its arrival is late: kept aside, billed only if accepted.
    grace_days: int = setting(35, low=1, high=3_660)
    # non_replicated_deduplication_window: inserts remembered per table, so a retried HTTP
    # request (same insert_deduplication_token) stores nothing twice.
    insert_dedup_window: int = setting(10_000, low=1, high=10_000_000)
    # single | cluster | cloud. cluster needs cluster_name (the <remote_servers> entry).
    deployment: Deployment = setting(Deployment.SINGLE, choices=tuple(Deployment), doc="single, cluster or cloud")  # noqa: RUF009 (a field spec)
    cluster_name: str = setting("", pattern=IDENTIFIER, blank=True, doc="an identifier")
    # cluster and cloud: blocks below its watermark the resolver reads again on every run, for
    # rows that became visible out of block order on a replica (see ddl's docstring).
    replica_lookback_blocks: int = setting(10_000, low=1, high=10_000_000)
    # cluster and cloud: S3Queue processing threads per replica, and how many replicas read the queue.
    queue_processing_threads: int = setting(4, low=1, high=256)
    queue_replicas: int = setting(2, low=1, high=1_000)

    def __post_init__(self) -> None:
        if isinstance(self.bucket_url, str):
            object.__setattr__(self, "bucket_url", self.bucket_url.rstrip("/"))
        if not isinstance(self.deployment, Deployment) and self.deployment in {d.value for d in Deployment}:
            object.__setattr__(self, "deployment", Deployment(self.deployment))
        super().__post_init__()
        if self.deployment is Deployment.CLUSTER and not self.cluster_name:
            raise ConfigError("cluster_name", "deployment cluster needs the cluster's name (an identifier)")
        if self.deployment is not Deployment.CLUSTER and self.cluster_name:
            raise ConfigError("cluster_name", f"is only for deployment cluster, not {self.deployment.value}")
        if self.deployment is Deployment.CLOUD and not self.role_arn:
            raise ConfigError("role_arn", "deployment cloud reads the bucket with an IAM role: set role_arn")
        _check_bucket_url(self.bucket_url)
        if bool(self.role_arn) == bool(self.named_collection):
            raise ConfigError(
                "credentials",
                "set exactly one of role_arn (ClickHouse Cloud role-based access) or named_collection "
                "(a named collection holding the S3 keys)",
            )
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
        if self.polling_min_timeout_ms > self.polling_max_timeout_ms:
            raise ConfigError("polling_min_timeout_ms", "must not exceed polling_max_timeout_ms")

    @property
    def credentials_mode(self) -> CredentialsMode:
        return CredentialsMode.ROLE if self.role_arn else CredentialsMode.NAMED_COLLECTION

    def url_for(self, prefix: str) -> str:
        """S3 URL of every object under ``prefix`` (recursive glob)."""
        return f"{self.bucket_url}/{prefix}**"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Self:  # type: ignore[override]
        """Read ``BXB_CLICKHOUSE_<FIELD>`` variables; keyword overrides (not None) win over the environment."""
        return super().from_env(environ, required=("bucket_url",), **overrides)


ENV_PREFIX = ClickHouseSettings.ENV_PREFIX
_PREFIX_FIELDS = ("events_prefix", "errors_prefix", "http_backup_prefix", "archive_prefix")


def _check_bucket_url(url: str) -> None:
    example = "e.g. https://my-bucket.s3.eu-west-1.amazonaws.com or http://127.0.0.1:9000/my-bucket"
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError("bucket_url", f"must be an http(s) URL of the S3 bucket ({example}), got {url!r}")
    if parts.query or parts.fragment or "@" in parts.netloc:
        raise ConfigError("bucket_url", f"must not carry a query, fragment or credentials ({example}), got {url!r}")
    if not _HOST.match(parts.netloc) or not _BUCKET_PATH.match(parts.path):
        raise ConfigError("bucket_url", f"has characters that are not allowed in a bucket URL: {url!r}")
