"""Deployment settings: one typed, validated object for the CDK app and the local runner.

``PipelineConfig.from_context`` reads flat ``bxb:``-prefixed keys, the shape of
CDK context: ``cdk.json`` gives JSON values and ``cdk synth -c key=value`` gives
strings, so both are accepted. The local runner reads the same keys
(``PipelineConfig.from_cdk_json``), so a local run mirrors what is deployed.

Keys are ``bxb:<field>`` for top-level settings and ``bxb:<section>.<field>``
for the nested ones (``stream``, ``s3``, ``http``, ``clickhouse``, ``alarms``,
and ``rules`` for ``bxb_runtime.config.EventRules``). Every field has a default.
Any invalid value raises ``ConfigError`` naming the full context key. Unknown
``bxb:`` keys are errors too, so a typo cannot silently fall back to a default.

This module is pure Python: no CDK import, so the Lambda functions and the
local runner can use it.
"""

from __future__ import annotations

import dataclasses
import json
import re
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from bxb_runtime import layout
from bxb_runtime.clickhouse.tables import DEFAULT_DATABASE
from bxb_runtime.config import EventRules
from bxb_runtime.settings import ROLE_ARN, ConfigError, Settings, setting

PREFIX = "bxb:"

# S3 layout written by Firehose A (dynamic partitioning from the transform's partition keys).
# Every event lands under events/...; errors and HTTP backups never overlap it, so ClickHouse
# (S3Queue) and its IAM role only ever see Parquet.
PARQUET_PREFIXES: tuple[str, ...] = (layout.EVENTS_PREFIX,)
DATA_PREFIX = layout.FIREHOSE_DATA_PREFIX
ERROR_PREFIX = layout.FIREHOSE_ERROR_PREFIX
HTTP_BACKUP_PREFIX = layout.FIREHOSE_HTTP_BACKUP_PREFIX
HTTP_BACKUP_ERROR_PREFIX = layout.FIREHOSE_HTTP_BACKUP_ERROR_PREFIX

DELIVERY_PATHS = ("s3", "http", "both")
POWERTOOLS_SOURCES = ("layer", "bundle")
# CloudWatch Logs accepts only these retention periods (days).
LOG_RETENTION_DAYS = (
    1,
    3,
    5,
    7,
    14,
    30,
    60,
    90,
    120,
    150,
    180,
    365,
    400,
    545,
    731,
    1096,
    1827,
    2192,
    2557,
    2922,
    3288,
    3653,
)

_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9-]{0,39}$")
_HTTPS_URL = re.compile(r"^https://[A-Za-z0-9.-]+(:\d{1,5})?(/[^\s]*)?$")
_SECRET_NAME = re.compile(r"^[A-Za-z0-9/_+=.@-]{1,512}$")
_ACCOUNT = re.compile(r"^\d{12}$")
_EXTERNAL_ID = re.compile(r"^[A-Za-z0-9+=,.@:/-]{2,1224}$")
_SESSION_NAME = re.compile(r"^[A-Za-z0-9+=,.@_-]{2,64}$")
_TOPIC_ARN = re.compile(r"^arn:aws[a-z-]*:sns:[a-z0-9-]+:\d{12}:[A-Za-z0-9_-]{1,256}(\.fifo)?$")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_DB_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")


_setting = setting


class _Section(Settings):
    """A group of context keys, ``bxb:<SECTION>.<field>`` (top level: ``bxb:<field>``)."""

    SECTION: ClassVar[str] = ""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.KEY_PREFIX = f"{PREFIX}{cls.SECTION}." if cls.SECTION else PREFIX


@dataclass(frozen=True)
class StreamConfig(_Section):
    """The Kinesis Data Stream."""

    SECTION: ClassVar[str] = "stream"

    mode: str = _setting("on-demand", choices=("on-demand", "provisioned"))
    # Used only in provisioned mode (on-demand scales by itself).
    shard_count: int = _setting(1, low=1, high=10_000)
    retention_hours: int = _setting(24, low=24, high=8760)


@dataclass(frozen=True)
class S3PathConfig(_Section):
    """Firehose A: transform -> Parquet -> S3, and the archive bucket's lifecycle."""

    SECTION: ClassVar[str] = "s3"

    # Dynamic partitioning needs >= 60 s; Parquet conversion needs >= 64 MiB.
    buffer_interval_seconds: int = _setting(300, low=60, high=900)
    buffer_size_mib: int = _setting(128, low=64, high=128)
    processor_buffer_interval_seconds: int = _setting(60, low=0, high=900)
    # Whole MiB; Firehose accepts 0.2-3 MB for a Lambda processor.
    processor_buffer_size_mib: int = _setting(1, low=1, high=3)
    retry_seconds: int = _setting(300, low=0, high=7200)
    infrequent_access_days: int = _setting(30, low=30, high=3650)
    glacier_days: int = _setting(90, low=31, high=3650)
    # GLACIER_IR keeps old Parquet readable in milliseconds (ClickHouse backfills); GLACIER is cheaper.
    glacier_storage_class: str = _setting("GLACIER_IR", choices=("GLACIER_IR", "GLACIER", "DEEP_ARCHIVE"))
    noncurrent_expiration_days: int = _setting(30, low=1, high=3650)
    # 0 keeps current objects forever (the archive is the long-term copy).
    expiration_days: int = _setting(0, low=0, high=36500)
    access_log_expiration_days: int = _setting(90, low=1, high=3650)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.glacier_days < self.infrequent_access_days + 30:
            raise ConfigError(self.key("glacier_days"), "must be at least 30 days after infrequent_access_days")
        if self.expiration_days and self.expiration_days <= self.glacier_days:
            raise ConfigError(self.key("expiration_days"), "must be 0 (never) or later than glacier_days")


@dataclass(frozen=True)
class HttpPathConfig(_Section):
    """Firehose B: transform -> HTTP endpoint (the ingest Lambda) -> ClickHouse."""

    SECTION: ClassVar[str] = "http"

    buffer_interval_seconds: int = _setting(60, low=0, high=900)
    # A buffered Lambda function URL takes at most 6 MB per request; base64 in the body adds a third,
    # so 3 MiB of records is the most that always fits (GZIP only helps).
    buffer_size_mib: int = _setting(1, low=1, high=3)
    processor_buffer_interval_seconds: int = _setting(60, low=0, high=900)
    processor_buffer_size_mib: int = _setting(1, low=1, high=3)
    retry_seconds: int = _setting(3600, low=0, high=7200)
    backup_mode: str = _setting("failed", choices=("failed", "all"))
    # The ingest Lambda talks to ClickHouse within this budget (Firehose waits up to 3 minutes).
    ingest_timeout_seconds: int = _setting(60, low=5, high=180)
    ingest_memory_mib: int = _setting(512, low=128, high=10_240)
    # Reserved concurrency of the ingest function: a cap, so a flood of requests (even 401s) against the
    # public function URL cannot use up the account's concurrency. 0 = no cap (the account's pool).
    ingest_max_concurrency: int = _setting(10, low=0, high=10_000)


@dataclass(frozen=True)
class ClickHouseConfig(_Section):
    """Where ClickHouse is, and who in ClickHouse may read the archive."""

    SECTION: ClassVar[str] = "clickhouse"

    # HTTPS interface of ClickHouse, used by the ingest Lambda (HTTP path). Required with http.
    url: str = _setting("", pattern=_HTTPS_URL, blank=True, doc="an https:// URL")
    database: str = _setting(DEFAULT_DATABASE, pattern=_DB_NAME, doc="a ClickHouse database name")
    # Name of an existing Secrets Manager secret holding {"username": ..., "password": ...}.
    secret_name: str = _setting("bxb/clickhouse", pattern=_SECRET_NAME, doc="a Secrets Manager secret name")
    # Who assumes the S3 read role: ClickHouse Cloud's IAM role ARN, or an account id. Blank = this account.
    s3_principal: str = _setting("", blank=True)
    # A principal in another account must prove it is acting for us (confused deputy): sts:ExternalId,
    # or sts:RoleSessionName, the shared secret ClickHouse Cloud sends (extra_credentials(role_session_name)).
    s3_external_id: str = _setting("", pattern=_EXTERNAL_ID, blank=True, doc="2-1224 of [A-Za-z0-9+=,.@:/-]")
    s3_role_session_name: str = _setting("", pattern=_SESSION_NAME, blank=True, doc="2-64 of [A-Za-z0-9+=,.@_-]")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.s3_principal and not (ROLE_ARN.match(self.s3_principal) or _ACCOUNT.match(self.s3_principal)):
            raise ConfigError(self.key("s3_principal"), "must be an IAM role ARN or a 12-digit account id")
        if self.s3_principal and not (self.s3_external_id or self.s3_role_session_name):
            raise ConfigError(
                self.key("s3_external_id"),
                f"is required when {self.key('s3_principal')} is set, so another account cannot use the role "
                f"on someone else's behalf (or set {self.key('s3_role_session_name')}: ClickHouse Cloud sends "
                "a session name, not an external id)",
            )


@dataclass(frozen=True)
class AlarmConfig(_Section):
    """Alarm thresholds and where alarms go."""

    SECTION: ClassVar[str] = "alarms"

    email: str = _setting("", pattern=_EMAIL, blank=True, doc="an e-mail address")
    # An existing SNS topic for alarm actions; blank = create a KMS-encrypted topic.
    topic_arn: str = _setting("", pattern=_TOPIC_ARN, blank=True, doc="an SNS topic ARN")
    period_minutes: int = _setting(5, choices=(1, 5, 10, 15, 30, 60))
    evaluation_periods: int = _setting(1, low=1, high=24)
    iterator_age_ms: int = _setting(600_000, low=1_000, high=604_800_000)
    write_throttles: int = _setting(1, low=1, high=1_000_000)
    s3_freshness_seconds: int = _setting(1200, low=60, high=86_400)
    http_freshness_seconds: int = _setting(900, low=60, high=86_400)
    # Delivery success is the ratio of successful puts; alarm below this.
    min_success_ratio: float = _setting(1.0, low=0.0, high=1.0)
    lambda_errors: int = _setting(1, low=1, high=1_000_000)
    lambda_throttles: int = _setting(1, low=1, high=1_000_000)
    processing_failed_records: int = _setting(1, low=1, high=1_000_000_000)
    # Places an event stops short of billing, each counted by a CloudWatch metric: rows the ingest function
    # dead-lettered, records Firehose B backed up to S3 after its retries (backup_mode failed), records
    # Firehose A could not convert to Parquet.
    dead_letter_rows: int = _setting(1, low=1, high=1_000_000_000)
    http_backup_records: int = _setting(1, low=1, high=1_000_000_000)
    failed_conversion_records: int = _setting(1, low=1, high=1_000_000_000)


@dataclass(frozen=True)
class PipelineConfig(_Section):
    """Everything the CDK app (and the local runner) needs, validated as a whole."""

    SECTION: ClassVar[str] = ""

    name: str = _setting("bxb-stream", pattern=_NAME, doc="a letter, then letters, digits, '-'; at most 40")
    delivery: str = _setting("s3", choices=DELIVERY_PATHS)
    log_retention_days: int = _setting(30, choices=LOG_RETENTION_DAYS)
    # Powertools from the public layer, or bundled into each function (LocalStack's community edition
    # cannot use public layers); bundle pins aws-lambda-powertools from requirements.txt.
    powertools: str = _setting("layer", choices=POWERTOOLS_SOURCES)
    # Version of the public Powertools layer AWSLambdaPowertoolsPythonV3-python312-arm64.
    powertools_layer_version: int = _setting(27, low=1, high=10_000)
    transform_memory_mib: int = _setting(512, low=128, high=10_240)
    transform_timeout_seconds: int = _setting(120, low=10, high=300)
    # Reserved concurrency of the transform: capacity no other function can take, so Firehose's calls are
    # not throttled (a throttled batch ends in the error output). 0 = none (the account's shared pool).
    transform_reserved_concurrency: int = _setting(20, low=0, high=10_000)
    # The Lambda log groups, the Firehose log groups and the ingest access-key secret are encrypted with
    # the archive's KMS key; false = AWS-managed keys.
    encrypt_with_stack_key: bool = _setting(True)
    rules: EventRules = field(default_factory=EventRules)
    stream: StreamConfig = field(default_factory=StreamConfig)
    s3: S3PathConfig = field(default_factory=S3PathConfig)
    http: HttpPathConfig = field(default_factory=HttpPathConfig)
    clickhouse: ClickHouseConfig = field(default_factory=ClickHouseConfig)
    alarms: AlarmConfig = field(default_factory=AlarmConfig)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.http_enabled and not self.clickhouse.url:
            raise ConfigError(ClickHouseConfig.key("url"), f"is required when {self.key('delivery')} includes http")
        if self.s3_enabled and self.alarms.s3_freshness_seconds <= self.s3.buffer_interval_seconds:
            raise ConfigError(AlarmConfig.key("s3_freshness_seconds"), "must exceed bxb:s3.buffer_interval_seconds")
        if self.http_enabled and self.alarms.http_freshness_seconds <= self.http.buffer_interval_seconds:
            raise ConfigError(AlarmConfig.key("http_freshness_seconds"), "must exceed bxb:http.buffer_interval_seconds")
        _check_hooks(self.rules.hooks)

    @property
    def s3_enabled(self) -> bool:
        return self.delivery in ("s3", "both")

    @property
    def http_enabled(self) -> bool:
        return self.delivery in ("http", "both")

    @property
    def http_delivery_stream_name(self) -> str:
        """Firehose B's name, fixed so the ingest function can be told its ARN (no circular reference)."""
        return f"{self.name}-http"

    @property
    def resource_prefix(self) -> str:
        """Lower-case, underscore form of ``name`` for Glue and ClickHouse identifiers."""
        return self.name.lower().replace("-", "_")

    def transform_env(self) -> dict[str, str]:
        """Environment of the transform Lambda (and of a local transform)."""
        return self.rules.to_env()

    def ingest_env(self) -> dict[str, str]:
        """The part of the ingest Lambda's environment that comes from config (secrets are added by CDK)."""
        # The ingest function stamps the organization on dead letters, so it gets the event rules too.
        from bxb_runtime.ingest.service import IngestSettings

        return {
            **self.rules.to_env(),
            IngestSettings.env_name("clickhouse_url"): self.clickhouse.url,
            IngestSettings.env_name("database"): self.clickhouse.database,
        }

    # --- context mapping ---------------------------------------------------------------------

    @classmethod
    def from_context(cls, context: Mapping[str, Any]) -> PipelineConfig:
        """Build from CDK-context-shaped keys; non-``bxb:`` keys (feature flags...) are ignored."""
        values = {k[len(PREFIX) :]: v for k, v in context.items() if isinstance(k, str) and k.startswith(PREFIX)}
        known = set(context_keys())
        for name in values:
            if PREFIX + name not in known:
                raise ConfigError(PREFIX + name, "unknown setting (see bxb_stream.deployment.context_keys())")
        sections: dict[str, Any] = {}
        for name, section in _SECTIONS.items():
            sections[name] = _build(
                section, {k.split(".", 1)[1]: v for k, v in values.items() if k.startswith(name + ".")}
            )
        top = {k: v for k, v in values.items() if "." not in k}
        return _build(cls, top, **sections)

    @classmethod
    def from_cdk_json(cls, path: str | Path, overrides: Mapping[str, Any] | None = None) -> PipelineConfig:
        """What ``cdk synth`` would build from this ``cdk.json`` (plus ``-c`` style overrides)."""
        context = dict(json.loads(Path(path).read_text()).get("context", {}))
        context.update(overrides or {})
        return cls.from_context(context)

    def to_context(self) -> dict[str, Any]:
        """The inverse of ``from_context``: every key with its value (JSON types)."""
        out: dict[str, Any] = {}
        for f in _scalar_fields(type(self)):
            out[self.key(f.name)] = getattr(self, f.name)
        for name, section in _SECTIONS.items():
            obj = getattr(self, name)
            for f in _scalar_fields(section):
                out[_key(name, f.name)] = getattr(obj, f.name)
        return out


_SECTIONS: dict[str, type] = {
    "rules": EventRules,
    "stream": StreamConfig,
    "s3": S3PathConfig,
    "http": HttpPathConfig,
    "clickhouse": ClickHouseConfig,
    "alarms": AlarmConfig,
}


def context_keys() -> tuple[str, ...]:
    """Every context key ``from_context`` understands."""
    return tuple(PipelineConfig().to_context())


def _key(section_name: str, field_name: str) -> str:
    return f"{PREFIX}{section_name}.{field_name}"


def _scalar_fields(cls: type) -> list[dataclasses.Field[Any]]:
    hints = typing.get_type_hints(cls)
    return [f for f in dataclasses.fields(cls) if hints[f.name] in (bool, int, float, str)]


def _build(cls: type, raw: Mapping[str, Any], **extra: Any) -> Any:
    """Coerce context values (JSON or ``-c`` strings) to the field types, then construct ``cls``."""
    section = next((n for n, c in _SECTIONS.items() if c is cls), "")
    if cls is EventRules:  # EventRules keys its errors by field name; name the context key instead
        return EventRules.from_values(raw, key=lambda name: _key(section, name), **extra)
    return cls.from_values(raw, **extra)


def _check_hooks(spec: str) -> None:
    """Hooks run inside the transform Lambda, whose asset ships only the bxb_runtime package."""
    from bxb_runtime.transform.hooks import HookConfigError, load_hooks

    key = f"{PREFIX}rules.hooks"
    for entry in (part.strip() for part in spec.split(",")):
        if entry and entry.partition(":")[0].split(".")[0] != "bxb_runtime":
            raise ConfigError(key, f"hook {entry!r} must live in the bxb_runtime package (the only one deployed)")
    try:
        load_hooks(spec)
    except HookConfigError as exc:
        raise ConfigError(key, str(exc)) from None
