"""The billing-event contract: one schema, and everything derived from it."""

from bxb_runtime.events.errors import EventError
from bxb_runtime.events.lines import OutputEvent, StoredEvent, read_line, to_line
from bxb_runtime.events.schema import FIELDS, Field, Kind, arrow_schema, clickhouse_columns, glue_columns
from bxb_runtime.events.validate import decode, normalize, normalize_bytes

__all__ = [
    "FIELDS",
    "EventError",
    "Field",
    "Kind",
    "OutputEvent",
    "StoredEvent",
    "arrow_schema",
    "clickhouse_columns",
    "decode",
    "glue_columns",
    "normalize",
    "normalize_bytes",
    "read_line",
    "to_line",
]
