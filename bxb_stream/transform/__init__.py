"""Firehose data transformation: validate, normalise, enrich, deduplicate, route."""

from bxb_stream.transform.hooks import Hook, HookConfigError, load_hooks
from bxb_stream.transform.process import DROPPED, FAILED, OK, BatchStats, Rejection, Transformer

__all__ = ["DROPPED", "FAILED", "OK", "BatchStats", "Hook", "HookConfigError", "Rejection", "Transformer", "load_hooks"]
