"""Producer library: validated, stamped, batched, optionally KPL-aggregated writes to Kinesis."""

from bxb_stream.producer.limits import CURRENT, LEGACY, Limits
from bxb_stream.producer.policies import AggregationPolicy, PartitioningPolicy, RetryPolicy
from bxb_stream.producer.producer import (
    RETRYABLE_CODES,
    DeliveryFailure,
    Producer,
    ProducerClosedError,
    ProducerStats,
    Rejection,
    iso_timestamp,
    kinesis_endpoint,
    make_client,
)

__all__ = [
    "CURRENT",
    "LEGACY",
    "RETRYABLE_CODES",
    "AggregationPolicy",
    "DeliveryFailure",
    "Limits",
    "PartitioningPolicy",
    "Producer",
    "ProducerClosedError",
    "ProducerStats",
    "Rejection",
    "RetryPolicy",
    "iso_timestamp",
    "kinesis_endpoint",
    "make_client",
]
