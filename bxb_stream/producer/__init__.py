"""Producer library: validated, batched, optionally KPL-aggregated writes to Kinesis."""

from bxb_stream.producer.limits import CURRENT, LEGACY, Limits
from bxb_stream.producer.producer import (
    RETRYABLE_CODES,
    DeliveryFailure,
    Producer,
    ProducerClosedError,
    ProducerStats,
    Rejection,
    make_client,
)

__all__ = [
    "CURRENT",
    "LEGACY",
    "RETRYABLE_CODES",
    "DeliveryFailure",
    "Limits",
    "Producer",
    "ProducerClosedError",
    "ProducerStats",
    "Rejection",
    "make_client",
]
