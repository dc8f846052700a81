"""The Kinesis source against moto: every shard, KPL de-aggregation, resharding."""

from typing import Any

from aws_kinesis_agg.aggregator import RecordAggregator

from bxb_stream import kpl
from bxb_stream.firehose.checkpoint import CheckpointStore
from bxb_stream.firehose.settings import SourceSettings
from bxb_stream.firehose.source import KinesisSource, readable_shards, shard_infos


def source(aws: Any, stream: str, store: CheckpointStore | None = None) -> KinesisSource:
    settings = SourceSettings(stream_name=stream, endpoint_url=aws.endpoint, poll_interval_s=0)
    return KinesisSource(settings, store or CheckpointStore(), client=aws.kinesis)


def read_all(src: KinesisSource, rounds: int = 20) -> list[Any]:
    out: list[Any] = []
    for _ in range(rounds):  # bounded
        got = src.poll(10_000)
        out.extend(got)
    return out


def test_reads_every_shard(aws: Any) -> None:
    stream = aws.new_stream(shards=3)
    aws.put(stream, [f"r{i}".encode() for i in range(300)])
    records = read_all(source(aws, stream), rounds=3)
    assert sorted(r.data for r in records) == sorted(f"r{i}".encode() for i in range(300))
    assert len({r.shard_id for r in records}) == 3
    assert all(r.subsequence_number == 0 for r in records)


def test_kpl_records_are_deaggregated_with_subsequence_numbers(aws: Any) -> None:
    stream = aws.new_stream()
    peer = RecordAggregator()  # aws-kinesis-agg, an independent implementation of the format
    for i in range(50):
        peer.add_user_record(f"user-pk-{i}", f"peer-{i}".encode())
    pk, _, blob = peer.clear_and_get().get_contents()
    ours = kpl.Aggregator()
    for i in range(5):
        assert ours.add(kpl.UserRecord(f"k{i}", None, f"ours-{i}".encode())) is None
    agg = ours.flush()
    assert agg is not None
    aws.kinesis.put_record(StreamName=stream, Data=blob, PartitionKey=pk)
    aws.kinesis.put_record(StreamName=stream, Data=b"plain", PartitionKey="p")
    aws.kinesis.put_record(StreamName=stream, Data=bytes(agg), PartitionKey="k0")
    corrupt = kpl.MAGIC + b"\x00" * 40
    aws.kinesis.put_record(StreamName=stream, Data=corrupt, PartitionKey="c")

    src = source(aws, stream)
    records = read_all(src, rounds=2)
    assert [r.data for r in records[:50]] == [f"peer-{i}".encode() for i in range(50)]
    assert [r.subsequence_number for r in records[:50]] == list(range(50))
    assert len({r.sequence_number for r in records[:50]}) == 1  # one Kinesis record
    assert [r.partition_key for r in records[:2]] == ["user-pk-0", "user-pk-1"]
    assert records[50].data == b"plain"
    assert [r.data for r in records[51:56]] == [f"ours-{i}".encode() for i in range(5)]
    assert records[56].data == corrupt  # a bad aggregate passes through as one record, as the KCL does
    assert src.stats.kinesis_records == 4 and src.stats.user_records == 57 and src.stats.corrupt_aggregates == 1


def test_shard_order_follows_parents() -> None:
    raw = [
        {"ShardId": "p0", "SequenceNumberRange": {"StartingSequenceNumber": "1", "EndingSequenceNumber": "9"}},
        {"ShardId": "p1", "SequenceNumberRange": {"StartingSequenceNumber": "1", "EndingSequenceNumber": "9"}},
        {"ShardId": "c2", "ParentShardId": "p0", "SequenceNumberRange": {"StartingSequenceNumber": "10"}},
        {"ShardId": "c3", "ParentShardId": "p0", "SequenceNumberRange": {"StartingSequenceNumber": "10"}},
        {"ShardId": "m4", "ParentShardId": "c3", "AdjacentParentShardId": "p1", "SequenceNumberRange": {}},
        {"ShardId": "orphan", "ParentShardId": "expired", "SequenceNumberRange": {}},
    ]
    shards = shard_infos(raw)
    assert shards[0].ending_sequence == 9 and shards[2].ending_sequence is None
    done: set[str] = set()
    assert readable_shards(shards, done.__contains__) == ["p0", "p1", "orphan"]
    done |= {"p0"}
    assert readable_shards(shards, done.__contains__) == ["p1", "c2", "c3", "orphan"]
    done |= {"c3"}
    assert "m4" not in readable_shards(shards, done.__contains__)  # the adjacent parent is still open
    done |= {"p1"}
    assert "m4" in readable_shards(shards, done.__contains__)


def test_split_shard_list_from_moto(aws: Any) -> None:
    """moto keeps writing to a split parent (its hash lookup ignores closed shards) and moves the parent's
    records on split, so only its shard listing is faithful: check the order we derive from it."""
    stream = aws.new_stream(shards=1)
    aws.put(stream, [f"before-{i}".encode() for i in range(20)])
    parent = aws.kinesis.list_shards(StreamName=stream)["Shards"][0]["ShardId"]
    aws.kinesis.split_shard(StreamName=stream, ShardToSplit=parent, NewStartingHashKey=str(2**127))
    shards = shard_infos(aws.kinesis.list_shards(StreamName=stream)["Shards"])
    assert shards[0].shard_id == parent and shards[0].ending_sequence is not None
    children = [s.shard_id for s in shards if s.parents == (parent,)]
    assert len(children) == 2
    assert readable_shards(shards, lambda sid: False) == [parent]
    assert readable_shards(shards, lambda sid: sid == parent) == children

    src = source(aws, stream)
    records = read_all(src, rounds=4)
    assert sorted(r.data for r in records) == sorted(f"before-{i}".encode() for i in range(20))
    assert src.checkpoints.ledger(parent).read_to_end  # closed and caught up: finished
    assert sorted(src.active_shards) == sorted(children)  # the children are being read now


class AwsLikeKinesis:
    """Kinesis as AWS documents resharding: the parent keeps its records and closes, new writes go to
    the children, and GetRecords on a closed shard returns no NextShardIterator once it is read to the end."""

    class exceptions:
        class ExpiredIteratorException(Exception):
            pass

    def __init__(self) -> None:
        self.shards: dict[str, dict[str, Any]] = {"p": {"parents": (), "records": [], "closed": False}}
        self.seq = 0
        self.reads: list[str] = []

    def put(self, shard: str, data: bytes) -> None:
        import datetime

        self.seq += 1
        now = datetime.datetime.now(datetime.UTC)
        self.shards[shard]["records"].append(
            {"Data": data, "SequenceNumber": str(self.seq), "PartitionKey": "k", "ApproximateArrivalTimestamp": now}
        )

    def split(self) -> None:
        self.shards["p"]["closed"] = True
        for child in ("c1", "c2"):
            self.shards[child] = {"parents": ("p",), "records": [], "closed": False}

    def list_shards(self, **kwargs: Any) -> dict[str, Any]:
        out = []
        for sid, s in self.shards.items():
            rng: dict[str, str] = {"StartingSequenceNumber": "0"}
            if s["closed"]:
                rng["EndingSequenceNumber"] = s["records"][-1]["SequenceNumber"] if s["records"] else "0"
            entry: dict[str, Any] = {"ShardId": sid, "SequenceNumberRange": rng}
            if s["parents"]:
                entry["ParentShardId"] = s["parents"][0]
            out.append(entry)
        return {"Shards": out}

    def get_shard_iterator(self, **kwargs: Any) -> dict[str, Any]:
        after = 0
        if kwargs["ShardIteratorType"] == "AT_SEQUENCE_NUMBER":
            after = int(kwargs["StartingSequenceNumber"]) - 1
        return {"ShardIterator": f"{kwargs['ShardId']}:{after}"}

    def get_records(self, ShardIterator: str, Limit: int) -> dict[str, Any]:
        sid, after = ShardIterator.split(":")
        self.reads.append(sid)
        shard = self.shards[sid]
        records = [r for r in shard["records"] if int(r["SequenceNumber"]) > int(after)][:Limit]
        last = int(records[-1]["SequenceNumber"]) if records else int(after)
        ended = shard["closed"] and (not shard["records"] or last >= int(shard["records"][-1]["SequenceNumber"]))
        return {"Records": records, "NextShardIterator": None if ended else f"{sid}:{last}", "MillisBehindLatest": 0}


def test_parent_is_read_to_the_end_before_children() -> None:
    kinesis = AwsLikeKinesis()
    for i in range(3):
        kinesis.put("p", f"p-{i}".encode())
    src = KinesisSource(SourceSettings(stream_name="s", poll_interval_s=0), CheckpointStore(), client=kinesis)
    assert [r.data for r in src.poll(2)] == [b"p-0", b"p-1", b"p-2"]
    kinesis.put("p", b"p-3")
    kinesis.split()
    kinesis.put("c1", b"c1-0")
    kinesis.put("c2", b"c2-0")
    src.refresh_shards()
    assert src.active_shards == ["p"]  # children wait for the parent
    order = [r.data for _ in range(4) for r in src.poll(10_000)]
    assert order[0] == b"p-3" and sorted(order[1:]) == [b"c1-0", b"c2-0"]
    assert kinesis.reads.index("c1") > max(i for i, s in enumerate(kinesis.reads) if s == "p")
    assert src.checkpoints.ledger("p").read_to_end and src.stats.shards_finished == 1
