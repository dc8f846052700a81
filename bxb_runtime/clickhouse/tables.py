"""Table names and column lists, for code that reads or writes the tables ``ddl`` creates.

Event columns come from ``bxb_runtime.events.schema``; the extra columns of the event
tables have defaults, so an insert may list ``EVENT_COLUMNS`` only.
"""

from __future__ import annotations

import enum

from bxb_runtime.events.schema import FIELD_NAMES, clickhouse_columns

DEFAULT_DATABASE = "bxb"  # the database every table lives in, unless configured otherwise

# Landing: every copy delivered by either path (S3Queue, HTTP ingest), as it arrived.
EVENTS_RAW = "events_raw"
# Every landed copy once, with the resolver's verdict; the billing truth.
LEDGER = "events_ledger"
# Views over the ledger.
EVENTS = "events"  # billed: verdict billed or accepted, one row per (organization_id, transaction_id)
EVENTS_LATE = "events_late"  # late and not yet accepted or rejected
CONFLICTS = "transaction_conflicts"  # each conflicting copy beside the kept one
DEAD_LETTER = "events_dead_letter"
USAGE_HOURLY = "usage_hourly"
PERIOD_CLOSES = "billing_period_closes"
LATE_DECISIONS = "late_decisions"
MIGRATIONS = "schema_migrations"
# Refreshable materialized views.
RESOLVER = "events_resolver"
USAGE_REFRESH_MV = "usage_hourly_refresh"
# S3 ingestion plumbing.
EVENTS_QUEUE = "events_queue"
EVENTS_QUEUE_MV = "events_queue_mv"

EVENT_COLUMNS: tuple[str, ...] = FIELD_NAMES
EVENT_COLUMN_TYPES: tuple[tuple[str, str], ...] = tuple(clickhouse_columns())

# Extra columns of events_raw, all with defaults.
LANDING_COLUMN_TYPES: tuple[tuple[str, str], ...] = (
    # When the row reached ClickHouse (information only: ordering uses block numbers, not clocks).
    ("inserted_at", "DateTime64(3, 'UTC') DEFAULT now64(3)"),
    # S3 object key for the S3 path, request id for the HTTP path; for tracing copies.
    ("source", "String DEFAULT ''"),
)


class Verdict(enum.StrEnum):
    """What the resolver decided for one landed copy (the ledger's ``verdict``)."""

    BILLED = "billed"  # the first stored copy of its transaction, in an open period
    DUPLICATE = "duplicate"  # a later copy with the kept copy's payload
    CONFLICT = "conflict"  # a later copy with another payload
    LATE = "late"  # the first copy, for a closed period (or past the grace): billed only if accepted
    ACCEPTED = "accepted"  # a late copy an operator accepted: billed into its own hour
    REJECTED = "rejected"  # a late copy an operator rejected


BILLABLE = (Verdict.BILLED, Verdict.ACCEPTED)
KEPT = (Verdict.BILLED, Verdict.LATE)  # the one copy per transaction later copies are compared with
DECIDED = (Verdict.ACCEPTED, Verdict.REJECTED)
VERDICT_TYPE = "Enum8(" + ", ".join(f"'{v}' = {i}" for i, v in enumerate(Verdict, start=1)) + ")"

# Extra columns of the ledger, after the event columns and LANDING_COLUMN_TYPES' names.
LEDGER_COLUMN_TYPES: tuple[tuple[str, str], ...] = (
    ("inserted_at", "DateTime64(3, 'UTC')"),
    ("source", "String"),
    # The landed copy's position in events_raw: block number << 64 | offset in the block.
    # Block numbers follow commit order, so "above the highest mark resolved" is exactly
    # what landed since, whatever the clocks say.
    ("landing_mark", "UInt128"),
    ("payload_hash", "UInt64"),  # what duplicate vs conflict compares
    # cityHash64(organization_id, transaction_id): the resolver finds earlier copies by it (then
    # compares the ids themselves), reading 8 bytes a row instead of two strings.
    ("key_hash", "UInt64"),
    ("verdict", VERDICT_TYPE),
    ("reason", "LowCardinality(String)"),  # late: period_closed or grace_exceeded
    ("resolved_at", "DateTime64(3, 'UTC')"),
    ("decided_by", "String"),  # accepted / rejected: who, and why
    ("note", "String"),
)

DECISION_COLUMN_TYPES: tuple[tuple[str, str], ...] = (
    ("decision", "Enum8('accept' = 1, 'reject' = 2)"),
    ("decided_at", "DateTime64(3, 'UTC') DEFAULT now64(3)"),
    ("decided_by", "String"),
    ("note", "String"),
)

PERIOD_CLOSE_COLUMN_TYPES: tuple[tuple[str, str], ...] = (
    ("organization_id", "String"),
    ("until", "DateTime64(3, 'UTC')"),  # events before this are late from now on
    ("closed_at", "DateTime64(3, 'UTC') DEFAULT now64(3)"),
    ("closed_by", "String"),
    ("note", "String"),
)

# The dead-letter table, in insert order.
DEAD_LETTER_COLUMN_TYPES: tuple[tuple[str, str], ...] = (
    ("organization_id", "String"),
    ("request_id", "String"),  # Firehose request id (X-Amz-Firehose-Request-Id)
    ("record_index", "UInt32"),  # position of the record in the request
    ("raw", "String"),  # the record text as received
    ("error_code", "LowCardinality(String)"),
    ("error_message", "String"),
    ("failed_at", "DateTime64(3, 'UTC')"),
)
DEAD_LETTER_COLUMNS: tuple[str, ...] = tuple(name for name, _ in DEAD_LETTER_COLUMN_TYPES)

# Sums of billed events per hour; rows are added, never replaced: read with sum() ... GROUP BY.
USAGE_HOURLY_COLUMN_TYPES: tuple[tuple[str, str], ...] = (
    ("organization_id", "String"),
    ("external_customer_id", "String"),
    ("code", "String"),
    ("hour", "DateTime('UTC')"),
    ("event_count", "SimpleAggregateFunction(sum, Int64)"),  # signed: a repair may subtract
    ("value_sum", "SimpleAggregateFunction(sum, Float64)"),  # sum of non-null value
    ("decimal_value_sum", "SimpleAggregateFunction(sum, Decimal(76, 18))"),  # exact; wide enough never to overflow
    # The highest ledger mark added in: the refresh continues above the table's maximum.
    ("version", "SimpleAggregateFunction(max, UInt128)"),
    ("computed_at", "SimpleAggregateFunction(max, DateTime64(3, 'UTC'))"),
)
