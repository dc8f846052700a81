"""What an AWS-compatible endpoint can do that the local pipeline relies on, probed once at start.

S3Queue's ``after_processing='move'`` copies an ingested object to ``archive/<key>`` and then
deletes the original with a conditional ``DeleteObject`` (``If-Match``). AWS and moto honour
it; LocalStack's community S3 answers 501 ``NotImplemented`` ("DeleteObject Preconditions is
only supported for Directory Buckets"), so every move fails and the originals stay under
``events/``, to be read again by a queue that has forgotten them. The probe asks the endpoint
once, with an object of its own outside every queue's glob.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

# A top-level prefix of its own: no queue glob (events/) and no archive lifecycle reaches it.
PROBE_PREFIX = "bxb-probe/"


class ProbeError(RuntimeError):
    """The endpoint answered the probe in a way that says neither "supported" nor "not implemented"."""


@dataclass(frozen=True)
class EndpointCapabilities:
    conditional_delete: bool  # DeleteObject with If-Match: what S3Queue's move needs


def probe(s3: Any, bucket: str) -> EndpointCapabilities:
    """Put a probe object, delete it with ``If-Match`` on its own ETag, and read the answer.

    Success means supported; 501 (or ``NotImplemented``) means not. The probe object is removed
    either way (a plain delete when the conditional one was refused)."""
    key = f"{PROBE_PREFIX}conditional-delete-{uuid.uuid4().hex}"
    etag = s3.put_object(Bucket=bucket, Key=key, Body=b"probe")["ETag"]
    try:
        s3.delete_object(Bucket=bucket, Key=key, IfMatch=etag)
    except ClientError as exc:
        if not _not_implemented(exc):
            raise ProbeError(
                f"conditional DeleteObject on s3://{bucket}/{key} answered {_describe(exc)}; "
                "expected success or 501 NotImplemented"
            ) from exc
        s3.delete_object(Bucket=bucket, Key=key)
        return EndpointCapabilities(conditional_delete=False)
    return EndpointCapabilities(conditional_delete=True)


def _not_implemented(exc: ClientError) -> bool:
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return status == 501 or exc.response.get("Error", {}).get("Code") == "NotImplemented"


def _describe(exc: ClientError) -> str:
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    error = exc.response.get("Error", {})
    return f"{status} {error.get('Code', '')}: {error.get('Message', '')}".strip()
