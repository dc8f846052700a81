"""Plain settings for the local Firehose runner, with the meaning of Firehose's own options.

Defaults are Firehose's defaults (or the values our CDK stacks use, where they pick
one). Sizes are bytes, intervals seconds. An adapter from the deployment config
builds these; tests build them directly.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from bxb_stream import layout

MIB = 1024 * 1024
# Lambda's synchronous invoke payload limit; Firehose never sends a bigger event.
LAMBDA_PAYLOAD_LIMIT = 6 * MIB

# The same prefix expressions the CDK stacks configure (one definition, in layout).
DATA_PREFIX = layout.FIREHOSE_DATA_PREFIX
ERROR_PREFIX = layout.FIREHOSE_ERROR_PREFIX
HTTP_BACKUP_PREFIX = layout.FIREHOSE_HTTP_BACKUP_PREFIX
HTTP_BACKUP_ERROR_PREFIX = layout.FIREHOSE_HTTP_BACKUP_ERROR_PREFIX


class SettingsError(ValueError):
    pass


def _check(name: str, value: float, low: float, high: float) -> None:
    if not low <= value <= high:
        raise SettingsError(f"{name} must be in [{low}, {high}], got {value!r}")


@dataclass(frozen=True)
class SourceSettings:
    """The Kinesis data stream a delivery stream reads (Firehose's KinesisStreamSourceConfiguration)."""

    stream_name: str
    region: str = "us-east-1"
    endpoint_url: str | None = None  # moto / LocalStack; None means the SDK's default resolution
    get_records_limit: int = 10_000  # GetRecords Limit (the API's maximum)
    poll_interval_s: float = 1.0  # idle wait between polls of a shard that returned nothing
    shard_refresh_s: float = 10.0  # how often ListShards is called to notice resharding
    # Fetch a shard's next GetRecords page in a background thread while this one is processed, so
    # waiting on Kinesis (or moto's CPU) overlaps our work. One page per shard ahead, at most.
    read_ahead: bool = True
    # Where a shard with no checkpoint starts: None = the runner's initial position; a time =
    # AT_TIMESTAMP, the first record that arrived at or after it (a replay within the retention).
    start_at: datetime | None = None

    def __post_init__(self) -> None:
        _check("get_records_limit", self.get_records_limit, 1, 10_000)
        _check("poll_interval_s", self.poll_interval_s, 0.0, 60.0)
        if self.start_at is not None and self.start_at.tzinfo is None:
            raise SettingsError("start_at must be timezone-aware")


@dataclass(frozen=True)
class ProcessorSettings:
    """The transform Lambda (ProcessingConfiguration with a Lambda processor)."""

    lambda_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:bxb-transform:$LATEST"
    buffer_size_bytes: int = 1 * MIB  # BufferSizeInMBs: 0.2-3 MB, default 1 MB
    buffer_interval_s: float = 60.0  # BufferIntervalInSeconds: 0-900, default 60
    retries: int = 3  # NumberOfRetries: default 3

    def __post_init__(self) -> None:
        _check("processor buffer_size_bytes", self.buffer_size_bytes, 1, 3 * MIB)
        _check("processor buffer_interval_s", self.buffer_interval_s, 0, 900)
        _check("processor retries", self.retries, 0, 300)


@dataclass(frozen=True)
class S3Settings:
    """An S3 destination (ExtendedS3DestinationConfiguration), also used for HTTP backup."""

    bucket: str
    prefix: str = DATA_PREFIX  # "" means Firehose's default YYYY/MM/dd/HH/
    error_prefix: str = ERROR_PREFIX
    buffer_size_bytes: int = 64 * MIB  # 64 MiB minimum with format conversion on
    buffer_interval_s: float = 60.0
    parquet: bool = True  # DataFormatConversionConfiguration: JSON (OpenX) -> Parquet (Snappy)
    dynamic_partitioning: bool = True

    def __post_init__(self) -> None:
        _check("s3 buffer_size_bytes", self.buffer_size_bytes, 1, 128 * MIB)
        _check("s3 buffer_interval_s", self.buffer_interval_s, 0, 900)
        if "!{" in self.error_prefix and "!{firehose:error-output-type}" not in self.error_prefix:
            raise SettingsError("error_prefix with expressions must contain !{firehose:error-output-type}")


@dataclass(frozen=True)
class HttpSettings:
    """An HTTP endpoint destination (HttpEndpointDestinationConfiguration)."""

    url: str
    access_key: str | None = None
    name: str = "bxb-ingest"
    common_attributes: dict[str, str] = field(default_factory=dict)
    gzip: bool = True  # RequestConfiguration.ContentEncoding GZIP
    buffer_size_bytes: int = 1 * MIB  # 1-64 MiB; keep below the function URL's 6 MB
    buffer_interval_s: float = 60.0
    retry_duration_s: float = 300.0  # RetryOptions.DurationInSeconds: 0-7200
    request_timeout_s: float = 180.0  # the endpoint has 3 minutes to answer
    max_backoff_s: float = 120.0
    backup_bucket: str = ""
    backup_prefix: str = HTTP_BACKUP_PREFIX
    backup_error_prefix: str = HTTP_BACKUP_ERROR_PREFIX

    def __post_init__(self) -> None:
        _check("http buffer_size_bytes", self.buffer_size_bytes, 1, 64 * MIB)
        _check("http buffer_interval_s", self.buffer_interval_s, 0, 900)
        _check("http retry_duration_s", self.retry_duration_s, 0, 7200)
        if self.access_key is not None and len(self.access_key.encode()) > 4096:
            raise SettingsError("access_key must be at most 4096 bytes")


@dataclass(frozen=True)
class DeliveryStreamSettings:
    """One delivery stream: a Kinesis source, the transform, one destination."""

    name: str
    source: SourceSettings
    processor: ProcessorSettings = field(default_factory=ProcessorSettings)
    s3: S3Settings | None = None
    http: HttpSettings | None = None
    version: int = 1  # the <version> part of object names
    region: str = "us-east-1"
    account_id: str = "123456789012"

    def __post_init__(self) -> None:
        if (self.s3 is None) == (self.http is None):
            raise SettingsError("a delivery stream has exactly one destination: s3 or http")
        if self.http is not None and not self.http.backup_bucket:
            raise SettingsError("an HTTP destination needs backup_bucket for failed data")

    @property
    def arn(self) -> str:
        return f"arn:aws:firehose:{self.region}:{self.account_id}:deliverystream/{self.name}"

    @property
    def source_arn(self) -> str:
        return f"arn:aws:kinesis:{self.region}:{self.account_id}:stream/{self.source.stream_name}"
