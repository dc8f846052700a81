"""What went wrong in an AWS SDK (botocore) call, named by its real cause.

botocore reports a missing credential chain, a refused connection, a failed DNS lookup and
a slow network all as exceptions of a few broad classes; the cause is in the exception's
type and in the urllib3/socket error it wraps. ``classify`` names it with a stable code, a
message a person can act on, and whether another attempt could succeed:

| code | cause | retried |
|---|---|---|
| ``NoCredentials`` | no credentials anywhere in the chain (botocore ``NoCredentialsError``) | no |
| ``PartialCredentials`` | a key id without its secret, or the reverse | no |
| ``UnknownHost`` | the endpoint's host name does not resolve | no |
| ``ConnectionRefused`` | nothing listens at the endpoint's port | no |
| ``EndpointUnreachable`` | no route to the endpoint's host or network | no |
| ``ConnectTimeout`` | connecting took too long | yes |
| ``ReadTimeout`` / ``ConnectionClosed`` | the answer was lost | yes |
| an AWS error code | the service refused the call (``ClientError``) | for throttling and 5xx |
"""

from __future__ import annotations

import errno
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

# Service error codes worth another attempt. Anything else (ValidationException,
# ResourceNotFoundException, AccessDenied, KMS key problems) would fail the same way again.
RETRYABLE_SERVICE_CODES = frozenset(
    {
        "ProvisionedThroughputExceededException",
        "InternalFailure",
        "InternalServerError",
        "ServiceUnavailable",
        "ServiceUnavailableException",
        "ThrottlingException",
        "Throttling",
        "LimitExceededException",
        "RequestTimeout",
        "RequestTimeoutException",
        "KMSThrottlingException",
        "SlowDown",
    }
)

NO_CREDENTIALS = "NoCredentials"
PARTIAL_CREDENTIALS = "PartialCredentials"
UNKNOWN_HOST = "UnknownHost"
CONNECTION_REFUSED = "ConnectionRefused"
ENDPOINT_UNREACHABLE = "EndpointUnreachable"
CONNECT_TIMEOUT = "ConnectTimeout"
READ_TIMEOUT = "ReadTimeout"
CONNECTION_CLOSED = "ConnectionClosed"

# Causes that make every call to the endpoint fail alike, whatever it carries.
ENDPOINT_FAILURES = frozenset(
    {NO_CREDENTIALS, PARTIAL_CREDENTIALS, UNKNOWN_HOST, CONNECTION_REFUSED, ENDPOINT_UNREACHABLE}
)
# Service answers that refuse the caller or the resource, not one request: the next call fails alike.
REFUSAL_CODES = frozenset(
    {
        "ResourceNotFoundException",
        "AccessDeniedException",
        "AccessDenied",
        "UnrecognizedClientException",
        "InvalidClientTokenId",
        "InvalidAccessKeyId",
        "InvalidSignatureException",
        "SignatureDoesNotMatch",
        "IncompleteSignature",
        "ExpiredTokenException",
        "ExpiredToken",
        "KMSAccessDeniedException",
        "KMSDisabledException",
        "KMSInvalidStateException",
        "KMSNotFoundException",
        "KMSOptInRequired",
        "NoSuchBucket",
    }
)

_UNREACHABLE_ERRNOS = frozenset({errno.EHOSTUNREACH, errno.ENETUNREACH, errno.EADDRNOTAVAIL})


@dataclass(frozen=True)
class CallFailure:
    code: str
    message: str
    retryable: bool


def fails_every_call(code: str) -> bool:
    """Whether a failure with this code will recur on every call to the same endpoint and resource."""
    return code in ENDPOINT_FAILURES or code in REFUSAL_CODES


def classify(exc: BaseException) -> CallFailure | None:
    """Name the cause of a failed botocore call; None for an exception that is not one."""
    from botocore import exceptions as bx

    if isinstance(exc, bx.NoCredentialsError):
        return CallFailure(
            NO_CREDENTIALS,
            "no AWS credentials found (botocore NoCredentialsError): set AWS_PROFILE, or "
            "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY",
            False,
        )
    if isinstance(exc, bx.PartialCredentialsError):
        return CallFailure(PARTIAL_CREDENTIALS, f"incomplete AWS credentials: {exc}", False)
    if isinstance(exc, bx.ClientError):
        err = exc.response.get("Error", {})
        code = err.get("Code") or "ClientError"
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        retryable = code in RETRYABLE_SERVICE_CODES or status >= 500
        return CallFailure(code, err.get("Message") or str(exc), retryable)
    if isinstance(exc, bx.ConnectTimeoutError):
        return CallFailure(CONNECT_TIMEOUT, f"connecting to {_where(exc)} timed out", True)
    if isinstance(exc, bx.ReadTimeoutError):
        return CallFailure(READ_TIMEOUT, f"no answer from {_where(exc)} in time", True)
    if isinstance(exc, bx.EndpointConnectionError):
        return _connection_failure(exc, _where(exc))
    if isinstance(exc, bx.ConnectionClosedError):
        return CallFailure(CONNECTION_CLOSED, f"{_where(exc)} closed the connection before answering", True)
    if isinstance(exc, bx.BotoCoreError | ConnectionError | TimeoutError):
        return CallFailure(type(exc).__name__, str(exc), True)
    return None


def _connection_failure(exc: BaseException, where: str) -> CallFailure:
    """An ``EndpointConnectionError``: the socket error it wraps says which kind."""
    cause = _root_cause(exc)
    host = urlsplit(where).hostname or where
    if isinstance(cause, socket.gaierror):
        return CallFailure(UNKNOWN_HOST, f"unknown host {host!r} (DNS lookup failed) for {where}", False)
    if isinstance(cause, ConnectionRefusedError):
        return CallFailure(CONNECTION_REFUSED, f"connection refused by {where}: nothing listens there", False)
    if isinstance(cause, OSError) and cause.errno in _UNREACHABLE_ERRNOS:
        return CallFailure(ENDPOINT_UNREACHABLE, f"cannot reach {where}: {cause.strerror}", False)
    if isinstance(cause, TimeoutError):
        return CallFailure(CONNECT_TIMEOUT, f"connecting to {where} timed out", True)
    return CallFailure(ENDPOINT_UNREACHABLE, f"cannot connect to {where}: {cause}", True)


def _where(exc: BaseException) -> str:
    """The endpoint a call went to, as scheme://host[:port] (botocore gives the whole request URL)."""
    kwargs = getattr(exc, "kwargs", {}) or {}
    url = str(kwargs.get("endpoint_url") or "")
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}" if parts.scheme and parts.netloc else url or "the endpoint"


def _root_cause(exc: BaseException) -> BaseException:
    """The innermost error: botocore wraps urllib3's, which wraps the socket's."""
    current: BaseException = (getattr(exc, "kwargs", {}) or {}).get("error") or exc
    for _ in range(10):  # bounded: cause chains are short
        inner = current.__cause__ or current.__context__
        if inner is None:
            break
        current = inner
    return current
