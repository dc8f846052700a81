"""The ingest endpoint's logic: authenticate, parse, insert, answer. No Lambda types here.

Rows land in ``events_raw``; ClickHouse's resolver bills each transaction once from there,
exactly as it does for the S3 path (lateness included).

Commit rule: a 200 goes back only after every insert (events, dead letters) has returned;
any failure answers 503 and Firehose retries the same request. Each insert carries
``insert_deduplication_token`` derived from the Firehose request id, so the retry cannot
store a row twice (and a copy that got through anyway is a duplicate to the resolver).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, Self

from clickhouse_connect.driver.exceptions import Error as ClickHouseError

from bxb_runtime.clickhouse import tables
from bxb_runtime.config import EventRules
from bxb_runtime.ingest import native, protocol
from bxb_runtime.ingest.protocol import Limits, ProtocolError
from bxb_runtime.ingest.rows import DEAD_LETTER_COLUMNS, DEAD_LETTER_TYPES, EVENT_COLUMNS, Trust, build_batch
from bxb_runtime.settings import IDENTIFIER, Settings, setting

log = logging.getLogger(__name__)

# Tokens work only for synchronous inserts into tables with a deduplication window.
# optimize_on_insert=0: the table collapses duplicates at merge time and under FINAL
# anyway, and the transform already dropped them within its batch; skipping the
# on-insert collapse saves a sort-and-merge pass per insert.
# The body is a Native block (ingest.native), with the settings it needs.
INSERT_SETTINGS = {
    "insert_deduplicate": 1,
    "async_insert": 0,
    "optimize_on_insert": 0,
    **native.SETTINGS,
}


class KeyCheck(Protocol):
    def accepts(self, presented: str | None) -> bool: ...


@dataclass(frozen=True)
class IngestSettings(Settings):
    """The ingest Lambda's settings; ``from_env`` reads them (and the event rules) from its environment."""

    database: str = setting(
        tables.DEFAULT_DATABASE, pattern=IDENTIFIER, doc="an identifier", env="BXB_CLICKHOUSE_DATABASE"
    )
    # Where ClickHouse is (https://host:8443, or chdb:///path locally) and the secret with its
    # {"username", "password"} (blank: no credentials). Needed by the Lambda, not by IngestService.
    clickhouse_url: str = setting("", env="BXB_CLICKHOUSE_URL")
    clickhouse_secret_arn: str = setting("", env="BXB_CLICKHOUSE_SECRET_ARN")
    # The secret with the access key Firehose sends ({"api_key": ...}).
    access_key_secret_arn: str = setting("", env="BXB_ACCESS_KEY_SECRET_ARN")
    # The delivery stream allowed to call (X-Amz-Firehose-Source-Arn); empty accepts any.
    source_arn: str = setting("", env="BXB_FIREHOSE_SOURCE_ARN")
    events_table: str = tables.EVENTS_RAW
    dead_letter_table: str = tables.DEAD_LETTER
    trust: Trust = field(default_factory=Trust)  # what is re-checked of the transform's fields
    limits: Limits = field(default_factory=Limits)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **extra: Any) -> Self:  # type: ignore[override]
        """The Lambda's settings: where to insert, the secrets, and the event rules as the transform reads them."""
        rules = EventRules.from_env(environ)
        trust = Trust(organization_id=rules.organization_id, multi_tenant=rules.multi_tenant)
        required = ("clickhouse_url", "access_key_secret_arn")
        return super().from_env(environ, required=required, **{"trust": trust, **extra})


@dataclass
class Outcome:
    """What happened to one request; the handler turns it into logs and metrics."""

    status: int
    request_id: str
    rows_inserted: int = 0
    dead_lettered: int = 0
    dead_codes: dict[str, int] = field(default_factory=dict)
    clickhouse_seconds: float = 0.0
    error: str | None = None

    @property
    def auth_failed(self) -> bool:
        return self.status == 401


class IngestService:
    def __init__(
        self,
        keys: KeyCheck,
        client_factory: Callable[[], Any],
        settings: IngestSettings,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.keys = keys
        self.client_factory = client_factory
        self.settings = settings
        self.clock = clock
        self._client: Any = None

    def handle(self, event: dict[str, Any]) -> tuple[dict[str, Any], Outcome]:
        request_id = protocol.header_request_id(event)
        if not self.keys.accepts(protocol.access_key(event)):
            return self._answer(Outcome(401, request_id, error="missing or invalid X-Amz-Firehose-Access-Key"))
        source = protocol.source_arn(event)
        if self.settings.source_arn and source != self.settings.source_arn:
            return self._answer(Outcome(401, request_id, error=f"not from this pipeline's delivery stream: {source!r}"))
        try:
            request = protocol.parse_request(event, self.settings.limits)
        except ProtocolError as exc:
            return self._answer(Outcome(exc.status, request_id, error=exc.message))
        outcome = Outcome(200, request.request_id)
        now_ms = int(self.clock() * 1000)
        batch = self.build(request.request_id, request.texts, request.lines, self.settings.trust, now_ms=now_ms)
        started = time.perf_counter()
        try:
            client = self._connect()
            rid = request.request_id
            # One token per table: a retry of this request deduplicates in each of them.
            if batch.rows:
                self.insert_events(client, batch, {**INSERT_SETTINGS, "insert_deduplication_token": rid})
            if batch.dead_rows:
                client.insert(
                    self._table(self.settings.dead_letter_table),
                    batch.dead,
                    column_names=DEAD_LETTER_COLUMNS,
                    column_type_names=DEAD_LETTER_TYPES,
                    column_oriented=True,
                    settings={**INSERT_SETTINGS, "insert_deduplication_token": f"{rid}:dead"},
                )
        except ClickHouseError as exc:
            self._client = None  # reconnect on the next request
            outcome.status, outcome.error = 503, f"ClickHouse unavailable: {type(exc).__name__}"
            log.warning("clickhouse insert failed", exc_info=True)
        finally:
            outcome.clickhouse_seconds = time.perf_counter() - started
        if outcome.status == 200:
            outcome.rows_inserted = batch.rows
            outcome.dead_lettered, outcome.dead_codes = batch.dead_rows, batch.dead_codes
        return self._answer(outcome)

    build = staticmethod(build_batch)  # records -> Batch (rows, dead letters); the bench swaps in its baseline

    def insert_events(self, client: Any, batch: Any, settings: dict[str, Any]) -> None:
        """The batch's events into events_raw: one Native body (``ingest.native``)."""
        client.raw_insert(
            self._table(self.settings.events_table), EVENT_COLUMNS, batch.body, settings=settings, fmt=native.FORMAT
        )

    def _connect(self) -> Any:
        if self._client is None:
            self._client = self.client_factory()
        return self._client

    def _table(self, name: str) -> str:
        return f"{self.settings.database}.{name}" if self.settings.database else name

    @staticmethod
    def _answer(outcome: Outcome) -> tuple[dict[str, Any], Outcome]:
        return protocol.response(outcome.status, outcome.request_id, outcome.error), outcome
