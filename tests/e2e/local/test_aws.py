"""local.aws: the moto child process and what it reports about itself."""

from __future__ import annotations

from bxb_stream.local.aws import MotoServer


def test_a_moto_child_reports_its_cpu_and_memory():
    server = MotoServer("process")
    try:
        assert server.endpoint.startswith("http://127.0.0.1:")
        started = server.cpu_seconds()
        assert started > 0  # importing moto alone costs CPU
        assert server.peak_rss_mb() > 10
    finally:
        server.stop()


def test_in_thread_mode_there_is_no_child_to_measure():
    server = MotoServer("thread")
    try:
        assert server.cpu_seconds() == 0.0 and server.peak_rss_mb() == 0.0
    finally:
        server.stop()


def test_a_moto_child_that_died_is_noticed_and_its_state_survives(tmp_path):
    import os
    import signal
    import time

    import boto3
    import pytest

    from bxb_stream.local.aws import AwsStandIn, AwsStandInError

    aws = AwsStandIn(state_dir=tmp_path).start()
    try:
        aws.check()
        aws.ensure_stream("s", 1)
        kinesis = aws.client("kinesis")
        sequence = kinesis.put_record(StreamName="s", Data=b"kept", PartitionKey="k")["SequenceNumber"]
        shard = kinesis.list_shards(StreamName="s")["Shards"][0]["ShardId"]
        iterator = kinesis.get_shard_iterator(StreamName="s", ShardId=shard, ShardIteratorType="TRIM_HORIZON")
        (record,) = kinesis.get_records(ShardIterator=iterator["ShardIterator"])["Records"]
        arrived = record["ApproximateArrivalTimestamp"]
        time.sleep(1.1)  # a replay at the time of the replay would show a later arrival
        port = aws.endpoint_url
        os.kill(aws._server.child.pid, signal.SIGKILL)
        aws._server.child.wait(timeout=10)
        with pytest.raises(AwsStandInError, match="exited unexpectedly"):
            aws.check()
    finally:
        aws.stop()
    again = AwsStandIn(state_dir=tmp_path).start()  # from its journal, on the same port
    try:
        assert again.endpoint_url == port and again.replayed >= 2
        client = boto3.client("kinesis", endpoint_url=again.endpoint_url, region_name="us-east-1")
        shard = client.list_shards(StreamName="s")["Shards"][0]["ShardId"]
        iterator = client.get_shard_iterator(StreamName="s", ShardId=shard, ShardIteratorType="TRIM_HORIZON")
        records = client.get_records(ShardIterator=iterator["ShardIterator"])["Records"]
        assert [(r["Data"], r["SequenceNumber"]) for r in records] == [(b"kept", sequence)]
        assert records[0]["ApproximateArrivalTimestamp"] == arrived  # the transform judges lateness as before
    finally:
        again.stop()
