"""Plain settings for the local Firehose runner, with the meaning of Firehose's own options.

Defaults are Firehose's defaults (or the values our CDK stacks use, where they pick
one). Sizes are bytes, intervals seconds. An adapter from the deployment config
builds these; tests build them directly.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import ClassVar

from bxb_runtime import layout
from bxb_runtime.settings import ConfigError, Settings, setting
from bxb_runtime.wire.firehose_http import MAX_ACCESS_KEY_BYTES

MIB = 1024 * 1024
# Lambda's synchronous invoke payload limit; Firehose never sends a bigger event.
LAMBDA_PAYLOAD_LIMIT = 6 * MIB

# The same prefix expressions the CDK stacks configure (one definition, in layout).
DATA_PREFIX = layout.FIREHOSE_DATA_PREFIX
ERROR_PREFIX = layout.FIREHOSE_ERROR_PREFIX
HTTP_BACKUP_PREFIX = layout.FIREHOSE_HTTP_BACKUP_PREFIX
HTTP_BACKUP_ERROR_PREFIX = layout.FIREHOSE_HTTP_BACKUP_ERROR_PREFIX


SettingsError = ConfigError  # the name this module used before bxb_runtime.settings


@dataclass(frozen=True)
class SourceSettings(Settings):
    """The Kinesis data stream a delivery stream reads (Firehose's KinesisStreamSourceConfiguration)."""

    KEY_PREFIX: ClassVar[str] = "source."

    stream_name: str
    region: str = "us-east-1"
    endpoint_url: str | None = None  # moto / LocalStack; None means the SDK's default resolution
    get_records_limit: int = setting(10_000, low=1, high=10_000)  # GetRecords Limit (the API's maximum)
    poll_interval_s: float = setting(
        1.0, low=0.0, high=60.0
    )  # idle wait between polls of a shard that returned nothing
    shard_refresh_s: float = 10.0  # how often ListShards is called to notice resharding
    # Fetch a shard's next GetRecords page in a background thread while this one is processed, so
    # waiting on Kinesis (or moto's CPU) overlaps our work. One page per shard ahead, at most.
    read_ahead: bool = True
    # Where a shard with no checkpoint starts: None = the runner's initial position; a time =
    # AT_TIMESTAMP, the first record that arrived at or after it (a replay within the retention).
    start_at: datetime | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.start_at is not None and self.start_at.tzinfo is None:
            raise ConfigError(self.key("start_at"), "must be timezone-aware")


@dataclass(frozen=True)
class ProcessorSettings(Settings):
    """The transform Lambda (ProcessingConfiguration with a Lambda processor)."""

    KEY_PREFIX: ClassVar[str] = "processor."

    lambda_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:bxb-transform:$LATEST"
    buffer_size_bytes: int = setting(1 * MIB, low=1, high=3 * MIB)  # BufferSizeInMBs: 0.2-3 MB, default 1 MB
    buffer_interval_s: float = setting(60.0, low=0, high=900)  # BufferIntervalInSeconds: 0-900, default 60
    retries: int = setting(3, low=0, high=300)  # NumberOfRetries: default 3


@dataclass(frozen=True)
class S3Settings(Settings):
    """An S3 destination (ExtendedS3DestinationConfiguration), also used for HTTP backup."""

    KEY_PREFIX: ClassVar[str] = "s3."

    bucket: str
    prefix: str = DATA_PREFIX  # "" means Firehose's default YYYY/MM/dd/HH/
    error_prefix: str = ERROR_PREFIX
    buffer_size_bytes: int = setting(64 * MIB, low=1, high=128 * MIB)  # 64 MiB minimum with format conversion on
    buffer_interval_s: float = setting(60.0, low=0, high=900)
    parquet: bool = True  # DataFormatConversionConfiguration: JSON (OpenX) -> Parquet (Snappy)
    dynamic_partitioning: bool = True

    def __post_init__(self) -> None:
        super().__post_init__()
        if "!{" in self.error_prefix and "!{firehose:error-output-type}" not in self.error_prefix:
            raise ConfigError(self.key("error_prefix"), "with expressions must contain !{firehose:error-output-type}")


@dataclass(frozen=True)
class HttpSettings(Settings):
    """An HTTP endpoint destination (HttpEndpointDestinationConfiguration)."""

    KEY_PREFIX: ClassVar[str] = "http."

    url: str
    access_key: str | None = None
    name: str = "bxb-ingest"
    common_attributes: dict[str, str] = field(default_factory=dict)
    gzip: bool = True  # RequestConfiguration.ContentEncoding GZIP
    buffer_size_bytes: int = setting(1 * MIB, low=1, high=64 * MIB)  # 1-64 MiB; keep below the function URL's 6 MB
    buffer_interval_s: float = setting(60.0, low=0, high=900)
    retry_duration_s: float = setting(300.0, low=0, high=7200)  # RetryOptions.DurationInSeconds: 0-7200
    request_timeout_s: float = 180.0  # the endpoint has 3 minutes to answer
    max_backoff_s: float = 120.0
    backup_bucket: str = ""
    backup_prefix: str = HTTP_BACKUP_PREFIX
    backup_error_prefix: str = HTTP_BACKUP_ERROR_PREFIX

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.access_key is not None and len(self.access_key.encode()) > MAX_ACCESS_KEY_BYTES:
            raise ConfigError(self.key("access_key"), f"must be at most {MAX_ACCESS_KEY_BYTES} bytes")


@dataclass(frozen=True)
class DeliveryStreamSettings(Settings):
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
        super().__post_init__()
        if (self.s3 is None) == (self.http is None):
            raise ConfigError("destination", "a delivery stream has exactly one destination: s3 or http")
        if self.http is not None and not self.http.backup_bucket:
            raise ConfigError(HttpSettings.key("backup_bucket"), "an HTTP destination needs it for failed data")

    @property
    def arn(self) -> str:
        return f"arn:aws:firehose:{self.region}:{self.account_id}:deliverystream/{self.name}"

    @property
    def source_arn(self) -> str:
        return f"arn:aws:kinesis:{self.region}:{self.account_id}:stream/{self.source.stream_name}"
