"""Failures named by their cause, retried only when another attempt could succeed; event time fixed at put()."""

from __future__ import annotations

import errno
import json
import random
import socket
from pathlib import Path
from typing import Any

import pytest

from bxb_stream import aws_errors, kpl
from bxb_stream.cli import main
from bxb_stream.producer import AggregationPolicy, Producer, RetryPolicy, iso_timestamp

EVENT = {"transaction_id": "t1", "external_customer_id": "c1", "code": "api_calls"}


@pytest.fixture
def no_credentials(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """An environment where the default credential chain finds nothing, and asks no metadata service."""
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.delenv("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", raising=False)
    monkeypatch.delenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", raising=False)


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _producer(client: Any, sleeps: list[float], **kw: Any) -> Producer:
    retry = RetryPolicy(sleep=sleeps.append, rng=random.Random(0))
    return Producer("s", client=client, linger_ms=None, retry=retry, **kw)


def test_missing_credentials_are_named_and_not_retried(no_credentials: None) -> None:
    import boto3

    # The default chain, in a new session (boto3's default session caches what it found before).
    client = boto3.session.Session().client("kinesis", region_name="us-east-1")
    sleeps: list[float] = []
    producer = _producer(client, sleeps)
    producer.put_many([EVENT, EVENT | {"transaction_id": "t2"}])
    failures = producer.flush()
    assert [(f.error_code, f.attempts) for f in failures] == [("NoCredentials", 1)] * 2
    assert "NoCredentialsError" in failures[0].error_message
    assert sleeps == [] and producer.stats.retries == 0


def test_connection_refused_is_named_and_not_retried() -> None:
    import boto3

    endpoint = f"http://127.0.0.1:{closed_port()}"
    client = boto3.client(
        "kinesis", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="k", aws_secret_access_key="s"
    )
    sleeps: list[float] = []
    producer = _producer(client, sleeps)
    producer.put(EVENT)
    (failure,) = producer.flush()
    assert (failure.error_code, failure.attempts) == ("ConnectionRefused", 1)
    assert endpoint in failure.error_message
    assert sleeps == []


def _endpoint_error(cause: BaseException) -> Exception:
    """botocore's EndpointConnectionError around urllib3's error around ``cause``, as botocore raises it.
    Built by hand for causes this machine cannot produce on loopback (DNS, routing)."""
    from botocore.exceptions import EndpointConnectionError
    from urllib3.exceptions import NameResolutionError, NewConnectionError

    try:
        try:
            raise cause
        except socket.gaierror as exc:
            raise NameResolutionError("nosuch.example", None, exc) from exc  # type: ignore[arg-type]
        except OSError as exc:
            raise NewConnectionError(None, f"Failed to establish a new connection: {exc}") from exc  # type: ignore[arg-type]
    except NewConnectionError as wrapped:
        return EndpointConnectionError(endpoint_url="https://nosuch.example/", error=wrapped)
    raise AssertionError("unreachable")


@pytest.mark.parametrize(
    ("cause", "code", "retryable"),
    [
        (socket.gaierror(socket.EAI_NONAME, "Name or service not known"), "UnknownHost", False),
        (ConnectionRefusedError(errno.ECONNREFUSED, "Connection refused"), "ConnectionRefused", False),
        (OSError(errno.EHOSTUNREACH, "No route to host"), "EndpointUnreachable", False),
        (OSError(errno.ENETUNREACH, "Network is unreachable"), "EndpointUnreachable", False),
    ],
)
def test_connection_failures_are_classified_by_their_socket_error(
    stub: Any, cause: BaseException, code: str, retryable: bool
) -> None:
    error = _endpoint_error(cause)
    failure = aws_errors.classify(error)
    assert failure is not None and (failure.code, failure.retryable) == (code, retryable)
    sleeps: list[float] = []
    producer = _producer(stub([error, None]), sleeps)
    producer.put(EVENT)
    assert [(f.error_code, f.attempts) for f in producer.flush()] == [(code, 1)]
    assert sleeps == []


def test_timeouts_and_throttling_are_retried(stub: Any, err: Any) -> None:
    from botocore.exceptions import ConnectTimeoutError, ReadTimeoutError

    script = [
        ConnectTimeoutError(endpoint_url="https://kinesis"),
        ReadTimeoutError(endpoint_url="https://kinesis"),
        err("ThrottlingException"),
        None,
    ]
    assert [aws_errors.classify(e).code for e in script[:3]] == ["ConnectTimeout", "ReadTimeout", "ThrottlingException"]  # type: ignore[union-attr]
    sleeps: list[float] = []
    client = stub(script)
    producer = _producer(client, sleeps)
    producer.put(EVENT)
    assert producer.flush() == [] and len(client.calls) == 4 and len(sleeps) == 3


def test_a_refused_call_is_reported_with_its_aws_code(stub: Any, err: Any) -> None:
    producer = _producer(stub([err("ResourceNotFoundException", message="Stream s not found")]), [])
    producer.put(EVENT)
    (failure,) = producer.flush()
    assert (failure.error_code, failure.error_message, failure.attempts) == (
        "ResourceNotFoundException",
        "Stream s not found",
        1,
    )
    assert aws_errors.fails_every_call(failure.error_code)


# --------------------------------------------------------------------------- event time, stamped once


class Clock:
    """Milliseconds that move on 1 s at every reading: a stamp taken later would differ."""

    def __init__(self, start: int = 1_777_777_777_000) -> None:
        self.now = start

    def __call__(self) -> int:
        self.now += 1000
        return self.now


@pytest.mark.parametrize("aggregate", [False, True])
def test_a_retried_batch_carries_byte_identical_data(stub: Any, aggregate: bool) -> None:
    pte = "ProvisionedThroughputExceededException"
    client = stub([{0: pte}, {0: pte}, None])
    clock = Clock()
    policy = AggregationPolicy(by_shard=False) if aggregate else False
    producer = _producer(client, [], clock_ms=clock, aggregate=policy)
    original = dict(EVENT)
    producer.put(original)
    put_at = clock.now
    producer.put(b'{"transaction_id":"t2","external_customer_id":"c1","code":"api_calls"}')
    assert producer.flush() == []
    assert len(client.calls) == 3
    sent = [[r["Data"] for r in call] for call in client.calls]
    assert sent[0][0] == sent[1][0] == sent[2][0]  # the same bytes on every attempt
    events = [json.loads(u.data) for u in kpl.deaggregate(sent[0][0])] if aggregate else map(json.loads, sent[0])
    # Each stamped once, when put() took it, not when a batch was (re)sent.
    assert [e["timestamp"] for e in events] == [iso_timestamp(put_at), iso_timestamp(put_at + 1000)]
    assert original == EVENT  # the caller's dict is not changed


def test_a_lost_response_stores_two_identical_copies(stub: Any) -> None:
    """Kinesis stored the batch but the answer was lost: the retry re-sends it. Both copies
    carry the put-time stamp, so downstream they are one event (same key, same time)."""
    from botocore.exceptions import ReadTimeoutError

    class LostAnswer(stub):  # type: ignore[misc, valid-type]
        def put_records(self, **kw: Any) -> dict[str, Any]:
            out = super().put_records(**kw)
            if len(self.calls) == 1:
                raise ReadTimeoutError(endpoint_url="https://kinesis")
            return out

    client = LostAnswer()
    producer = _producer(client, [], clock_ms=Clock())
    producer.put(EVENT)
    assert producer.flush() == []
    first, second = (r["Data"] for r in client.stored)
    assert first == second and json.loads(first)["timestamp"].endswith("Z")


def test_an_event_with_a_timestamp_keeps_it(stub: Any) -> None:
    client = stub()
    producer = _producer(client, [], clock_ms=Clock())
    producer.put(EVENT | {"timestamp": 1_700_000_000})
    producer.put(b'{"transaction_id":"t2","external_customer_id":"c1","code":"x","timestamp":null,"decimal_value":0.1}')
    producer.flush()
    assert json.loads(client.stored[0]["Data"])["timestamp"] == 1_700_000_000
    stamped = json.loads(client.stored[1]["Data"])
    assert stamped["timestamp"].endswith("Z") and b'"decimal_value":0.1' in client.stored[1]["Data"]


def test_a_failure_returns_the_stamped_bytes_for_a_later_resend(stub: Any, err: Any) -> None:
    producer = _producer(stub([err("AccessDeniedException")]), [], clock_ms=Clock())
    producer.put(EVENT)
    (failure,) = producer.flush()
    assert failure.event == EVENT
    assert json.loads(failure.data) == EVENT | {"timestamp": json.loads(failure.data)["timestamp"]}
    assert json.loads(failure.data)["timestamp"] == iso_timestamp(1_777_777_778_000)


# --------------------------------------------------------------------------- the CLI


def test_cli_names_missing_credentials_in_one_line_and_the_failed_file(
    no_credentials: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    failed = tmp_path / "failed.jsonl"
    argv = ["produce", "--stream", "s", "--region", "us-east-1", "--synthetic", "19", "--quiet"]
    assert main([*argv, "--failed-file", str(failed)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "NoCredentialsError" in err and "19 not delivered" in err
    rows = [json.loads(line) for line in failed.read_text().splitlines()]
    assert len(rows) == 19 and {r["error"] for r in rows} == {"NoCredentials"}
    assert all(json.loads(r["event"])["timestamp"] for r in rows)  # as sent: stamped


def test_cli_stops_at_a_refused_connection(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    endpoint = f"http://127.0.0.1:{closed_port()}"
    argv = ["produce", "--stream", "s", "--endpoint-url", endpoint, "--synthetic", "2000", "--quiet"]
    assert main([*argv, "--linger-ms", "0"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "connection refused" in err and "[ConnectionRefused]" in err


def test_cli_uses_placeholder_credentials_for_a_loopback_endpoint(
    no_credentials: None, moto_endpoint: str, capsys: pytest.CaptureFixture[str]
) -> None:
    import boto3

    kinesis = boto3.client(
        "kinesis", endpoint_url=moto_endpoint, region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x"
    )
    kinesis.create_stream(StreamName="loopback-creds", ShardCount=1)
    argv = ["produce", "--stream", "loopback-creds", "--endpoint-url", moto_endpoint, "--synthetic", "25"]
    assert main([*argv, "--legacy-limits", "--quiet"]) == 0
    assert "delivered" in capsys.readouterr().err
