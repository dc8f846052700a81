"""The Firehose access key: held in Secrets Manager, cached, rotatable, compared in constant time.

The secret's JSON is ``{"api_key": "..."}`` (what Firehose reads when its
endpoint key lives in Secrets Manager). Both the ``AWSCURRENT`` and the
``AWSPREVIOUS`` versions are accepted, so a rotation never rejects a request
that Firehose signed with the key it read a moment earlier.
"""

from __future__ import annotations

import hmac
import json
import threading
import time
from collections.abc import Callable
from typing import Any

STAGES = ("AWSCURRENT", "AWSPREVIOUS")


class AccessKeys:
    """Accepted keys, refreshed every ``ttl_seconds``, and at most every
    ``min_refresh_seconds`` when a presented key matches none (a fresh rotation)."""

    def __init__(
        self,
        secrets_client: Any,
        secret_id: str,
        *,
        ttl_seconds: float = 300.0,
        min_refresh_seconds: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = secrets_client
        self._secret_id = secret_id
        self._ttl = ttl_seconds
        self._min_refresh = min_refresh_seconds
        self._clock = clock
        self._keys: tuple[bytes, ...] = ()
        self._loaded_at = float("-inf")
        self._lock = threading.Lock()

    def accepts(self, presented: str | None) -> bool:
        if not presented:
            return False
        candidate = presented.encode()
        if self._clock() - self._loaded_at > self._ttl:
            self.refresh()
        if self._matches(candidate):
            return True
        if self._clock() - self._loaded_at > self._min_refresh:
            self.refresh()
            return self._matches(candidate)
        return False

    def refresh(self) -> None:
        keys = []
        for stage in STAGES:
            try:
                secret = self._client.get_secret_value(SecretId=self._secret_id, VersionStage=stage)
            except self._client.exceptions.ResourceNotFoundException:
                continue  # no AWSPREVIOUS before the first rotation
            keys.append(_api_key(secret["SecretString"]))
        with self._lock:
            self._keys = tuple(keys)
            self._loaded_at = self._clock()

    def _matches(self, candidate: bytes) -> bool:
        # Compare against every key, always, so timing says nothing about which matched.
        matched = False
        for key in self._keys:
            matched |= hmac.compare_digest(candidate, key)
        return matched


def _api_key(secret_string: str) -> bytes:
    try:
        key = json.loads(secret_string)["api_key"]
    except (ValueError, KeyError, TypeError):
        raise ValueError('access-key secret must be JSON {"api_key": "..."}') from None
    if not isinstance(key, str) or not key:
        raise ValueError("access-key secret has an empty api_key")
    return key.encode()
