"""The HTTP-endpoint path: Firehose HTTP delivery -> this service -> ClickHouse events_raw."""

from bxb_runtime.ingest.access import AccessKeys
from bxb_runtime.ingest.protocol import Limits, ProtocolError
from bxb_runtime.ingest.service import IngestService, IngestSettings, Outcome

__all__ = ["AccessKeys", "IngestService", "IngestSettings", "Limits", "Outcome", "ProtocolError"]
