"""Table names and column lists, for code that reads or writes the tables ``ddl`` creates.

Event columns come from ``bxb_stream.events.schema``; the extra columns of the event
tables have defaults, so an insert may list ``EVENT_COLUMNS`` only.
"""

from __future__ import annotations

from bxb_stream.events.schema import FIELD_NAMES, clickhouse_columns

EVENTS_RAW = "events_raw"
EVENTS_LATE = "events_late"
DEAD_LETTER = "events_dead_letter"
USAGE_HOURLY = "usage_hourly"
MIGRATIONS = "schema_migrations"
# S3 ingestion plumbing.
EVENTS_QUEUE = "events_queue"
EVENTS_QUEUE_MV = "events_queue_mv"
LATE_QUEUE = "late_queue"
LATE_QUEUE_MV = "late_queue_mv"
USAGE_REFRESH_MV = "usage_hourly_refresh"

EVENT_COLUMNS: tuple[str, ...] = FIELD_NAMES
EVENT_COLUMN_TYPES: tuple[tuple[str, str], ...] = tuple(clickhouse_columns())

# Extra columns of events_raw / events_late, all with defaults.
EVENT_EXTRA_COLUMNS: tuple[tuple[str, str], ...] = (
    # ReplacingMergeTree version: of two rows with the same key, the later-ingested one survives.
    ("version", "UInt64 DEFAULT toUnixTimestamp64Milli(ingested_at)"),
    # When the row reached ClickHouse; usage_hourly's refresh finds new rows by it.
    ("inserted_at", "DateTime64(3, 'UTC') DEFAULT now64(3)"),
    # S3 object key for the S3 path, request id for the HTTP path; for tracing duplicates.
    ("source", "String DEFAULT ''"),
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

USAGE_HOURLY_COLUMN_TYPES: tuple[tuple[str, str], ...] = (
    ("organization_id", "String"),
    ("external_customer_id", "String"),
    ("code", "String"),
    ("hour", "DateTime('UTC')"),
    ("event_count", "UInt64"),
    ("value_sum", "Float64"),  # sum of non-null value
    ("decimal_value_sum", "Decimal(38, 18)"),  # sum of non-null decimal_value, exact
    ("computed_at", "DateTime64(3, 'UTC')"),  # version: the latest computation of an hour wins
)
