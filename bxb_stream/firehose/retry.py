"""Transient AWS errors: which they are, and retrying them with no limit in time.

Firehose does not stop delivering because Kinesis or S3 failed for a while: it retries. The
runner does the same for every AWS call it makes (ListShards, GetShardIterator, GetRecords,
PutObject): a transient error (5xx, throttling, a timeout, a reset or refused connection) is
retried with jittered exponential backoff, capped, for as long as it takes, and each one is
logged (the first of a run of failures, then at most every ``LOG_EVERY_S``) and counted. Any
other error (access denied, a stream or bucket that does not exist) is raised: the runner
cannot go on, and says why.

The one way out of a retry loop is ``abandon()`` (shutdown): the call raises ``Abandoned``, and
whatever it was delivering stays unsettled, so its checkpoint does not move past it and it is
read again after a restart.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from botocore.exceptions import ClientError, ConnectionError, HTTPClientError, SSLError

T = TypeVar("T")
log = logging.getLogger("bxb_stream.firehose")

# botocore's standard retry mode calls these transient or throttling; KMS throttles GetRecords on encrypted streams.
TRANSIENT_CODES = frozenset(
    {
        "RequestTimeout", "RequestTimeoutException", "PriorRequestNotComplete", "InternalError", "InternalFailure",
        "ServiceUnavailable", "Throttling", "ThrottlingException", "ThrottledException", "RequestThrottledException",
        "TooManyRequestsException", "ProvisionedThroughputExceededException", "TransactionInProgressException",
        "RequestLimitExceeded", "BandwidthLimitExceeded", "LimitExceededException", "RequestThrottled", "SlowDown",
        "EC2ThrottledException", "KMSThrottlingException",
    }
)  # fmt: skip
LOG_EVERY_S = 30.0


class Abandoned(Exception):
    """A retried call was given up because the runner is shutting down."""


def error_code(exc: BaseException) -> str:
    """A short name for an error: the AWS error code, else the HTTP status, else the exception type."""
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        return str(error.get("Code") or status or "ClientError")
    return type(exc).__name__


def is_transient(exc: BaseException) -> bool:
    if isinstance(exc, ClientError):
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0
        return status >= 500 or status == 429 or error_code(exc) in TRANSIENT_CODES
    if isinstance(exc, SSLError):
        return False  # a certificate problem does not pass
    return isinstance(exc, ConnectionError | HTTPClientError | TimeoutError | ConnectionResetError)


@dataclass
class RetryStats:
    retries: Counter[str] = field(default_factory=Counter)  # by "Operation: code"
    failing: dict[str, float] = field(default_factory=dict)  # operation -> when (monotonic) it started failing
    last_error: str = ""

    @property
    def total(self) -> int:
        return sum(self.retries.values())


class Retrier:
    """Calls an AWS operation until it succeeds, retrying transient errors; thread-safe."""

    def __init__(
        self,
        name: str,
        *,
        base_s: float = 0.1,
        cap_s: float = 20.0,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.name = name
        self.base_s = base_s
        self.cap_s = cap_s
        self.monotonic = monotonic
        self._sleep = sleep
        self.rng = rng or random.Random()
        self.stats = RetryStats()
        self._abandoned = threading.Event()
        self._lock = threading.Lock()
        self._logged: dict[str, float] = {}

    @property
    def abandoned(self) -> bool:
        return self._abandoned.is_set()

    def abandon(self) -> None:
        """Make every retry loop, now and later, give up with ``Abandoned``."""
        self._abandoned.set()

    def check(self, operation: str) -> None:
        if self._abandoned.is_set():
            raise Abandoned(f"{self.name}: {operation} given up at shutdown")

    def call(self, operation: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        attempt = 0
        while True:
            try:
                result = fn(*args, **kwargs)
            except Exception as exc:
                if not is_transient(exc):
                    raise
                self.check(operation)
                attempt += 1
                self._note(operation, exc, attempt)
                # Exponential backoff with "equal jitter": never a burst of instant retries, never in lockstep.
                ceiling = min(self.cap_s, self.base_s * 2 ** min(attempt, 30))
                self.sleep(ceiling * self.rng.uniform(0.5, 1.0), operation)
                continue
            if attempt:
                self._recovered(operation, attempt)
            return result

    def sleep(self, seconds: float, operation: str = "retry") -> None:
        """Sleep, raising ``Abandoned`` as soon as the retrier is abandoned (at once with the
        default real-time sleep; after the injected one returns otherwise, as a test clock does)."""
        self.check(operation)
        if self._sleep is None:
            self._abandoned.wait(seconds)
        else:
            self._sleep(seconds)
        self.check(operation)

    def _note(self, operation: str, exc: BaseException, attempt: int) -> None:
        code = error_code(exc)
        now = self.monotonic()
        with self._lock:
            self.stats.retries[f"{operation}: {code}"] += 1
            self.stats.failing.setdefault(operation, now)
            self.stats.last_error = f"{operation}: {code}: {exc}"
            due = now - self._logged.get(operation, -LOG_EVERY_S) >= LOG_EVERY_S
            if due:
                self._logged[operation] = now
        if attempt == 1 or due:
            log.warning("%s: %s failed (%s), retrying (attempt %d): %s", self.name, operation, code, attempt, exc)

    def _recovered(self, operation: str, attempts: int) -> None:
        now = self.monotonic()
        with self._lock:
            since = self.stats.failing.pop(operation, now)
            self._logged.pop(operation, None)
        log.warning("%s: %s succeeded again after %d retries (%.1f s)", self.name, operation, attempts, now - since)
