"""Firehose data transformation: validate, normalise, enrich, deduplicate, route."""

from bxb_runtime.transform.hooks import DROP, Hook, HookConfigError, load_hooks
from bxb_runtime.transform.process import BatchStats, Rejection, Transformer

__all__ = ["DROP", "BatchStats", "Hook", "HookConfigError", "Rejection", "Transformer", "load_hooks"]
