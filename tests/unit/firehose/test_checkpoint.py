from pathlib import Path

from bxb_stream.firehose.checkpoint import CheckpointStore, ShardLedger


def test_checkpoint_advances_only_over_a_resolved_prefix() -> None:
    ledger = ShardLedger("shard-0")
    ordinals = [ledger.add((seq, 0)) for seq in range(1, 7)]
    for i in (0, 1, 3, 4):
        ledger.resolve(ordinals[i])
    ledger.advance()
    assert ledger.committed == (2, 0)
    assert ledger.resolved_runs() == [((4, 0), (5, 0))]
    assert ledger.unresolved == 2
    ledger.resolve(ordinals[2])
    ledger.advance()
    assert ledger.committed == (5, 0)
    assert ledger.resolved_runs() == []


def test_store_round_trips_through_its_file(tmp_path: Path) -> None:
    path = tmp_path / "cp.json"
    store = CheckpointStore(path)
    ledger = store.ledger("shard-0")
    ords = [ledger.add((10, sub)) for sub in range(3)] + [ledger.add((11, 0))]
    ledger.resolve(ords[0])
    ledger.resolve(ords[2])
    assert store.save()
    assert not store.save()  # nothing moved, nothing written

    again = CheckpointStore(path).ledger("shard-0")
    assert again.committed == (10, 0)
    assert again.already_done((10, 0)) and again.already_done((10, 2))
    assert not again.already_done((10, 1)) and not again.already_done((11, 0))


def test_carried_runs_survive_until_re_read(tmp_path: Path) -> None:
    path = tmp_path / "cp.json"
    store = CheckpointStore(path)
    ledger = store.ledger("s")
    ords = [ledger.add((n, 0)) for n in range(1, 5)]
    ledger.resolve(ords[2])  # only seq 3 settled
    store.save()

    restarted = CheckpointStore(path)
    ledger = restarted.ledger("s")
    assert ledger.committed is None and ledger.carried == [((3, 0), (3, 0))]
    first = ledger.add((1, 0))
    ledger.resolve(first)
    restarted.save()  # seq 3 not re-read yet: its run must still be in the file
    assert CheckpointStore(path).ledger("s").already_done((3, 0))
    ledger.add((2, 0))
    ledger.add((3, 0), resolved=True)
    restarted.save()
    final = CheckpointStore(path).ledger("s")
    assert final.committed == (1, 0) and final.already_done((3, 0)) and not final.already_done((2, 0))
