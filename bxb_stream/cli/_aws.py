"""AWS credentials for commands that talk to an AWS-compatible endpoint.

moto and LocalStack accept any keys, so for an endpoint on loopback (127.0.0.0/8,
localhost, ::1) a command uses placeholder keys when none are configured: the command
printed by ``bxb-stream local --serve`` then works in a fresh shell. Anywhere else the
default credential chain applies, and its absence is reported by name.
"""

from __future__ import annotations

import ipaddress
import os
from typing import Any
from urllib.parse import urlsplit

LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain"})


def is_loopback(url: str | None) -> bool:
    if not url:
        return False
    host = urlsplit(url).hostname or ""
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def endpoint_for(service: str, endpoint_url: str | None) -> str | None:
    """The endpoint boto3 will use for ``service``: the argument, else AWS_ENDPOINT_URL_<SERVICE>,
    else AWS_ENDPOINT_URL (boto3 reads those itself; this says which, to decide about credentials)."""
    specific = os.environ.get(f"AWS_ENDPOINT_URL_{service.upper()}")
    return endpoint_url or specific or os.environ.get("AWS_ENDPOINT_URL")


def client(service: str, endpoint_url: str | None = None, region: str | None = None) -> Any:
    """A boto3 client for a command: two attempts, short connect timeout, loopback-aware credentials."""
    import boto3
    from botocore.config import Config

    endpoint = endpoint_for(service, endpoint_url)
    region = region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
    config = Config(retries={"mode": "standard", "total_max_attempts": 2}, connect_timeout=5, read_timeout=60)
    session = boto3.session.Session()  # not boto3's default one, which caches the credentials it found first
    return session.client(
        service, endpoint_url=endpoint, region_name=region, config=config, **credentials_for(endpoint)
    )


def credentials_for(endpoint_url: str | None) -> dict[str, str]:
    """Client keyword arguments: placeholder keys for a loopback endpoint without configured
    credentials, else nothing (the default chain)."""
    if not is_loopback(endpoint_url) or _configured():
        return {}
    from bxb_stream.local.aws import LOCAL_CREDENTIALS

    return dict(LOCAL_CREDENTIALS)


def _configured() -> bool:
    """Whether the default chain finds credentials, without asking an instance-metadata
    service (a loopback stand-in never needs those, and the probe takes seconds off EC2)."""
    import botocore.session

    session = botocore.session.get_session()
    resolver = session.get_component("credential_provider")
    for name in ("iam-role", "container-role"):
        resolver.remove(name)
    return session.get_credentials() is not None
