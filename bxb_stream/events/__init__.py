"""The billing-event contract: one schema, and everything derived from it."""

from bxb_stream.events.schema import FIELDS, Field, Kind, arrow_schema, clickhouse_columns, glue_columns
from bxb_stream.events.validate import (
    EventError,
    OutputEvent,
    decode,
    decode_base64,
    normalize,
    normalize_bytes,
    to_line,
)

__all__ = [
    "FIELDS",
    "EventError",
    "Field",
    "Kind",
    "OutputEvent",
    "arrow_schema",
    "clickhouse_columns",
    "decode",
    "decode_base64",
    "glue_columns",
    "normalize",
    "normalize_bytes",
    "to_line",
]
