"""Per-shard checkpoints that advance only over records whose fate is durable.

Each shard has a ledger of the user records read from it, in read order. A record
is *resolved* once it is delivered, dropped, or written to an error output. The
checkpoint is the last position up to which every record is resolved, plus the
runs of resolved records beyond it (different partitions flush at different
times), so a restarted runner re-reads from the checkpoint and skips what was
already delivered: nothing lost, nothing delivered twice. The one gap left is a
crash between an S3 PUT and the checkpoint write after it, which re-delivers
that object (Firehose itself is at-least-once).

A position is ``(sequence_number, subsequence_number)``; sequence numbers are
compared as integers.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

Position = tuple[int, int]
_COMPACT_AT = 65_536


class ShardLedger:
    """The read-but-not-yet-checkpointed records of one shard."""

    def __init__(
        self,
        shard_id: str,
        committed: Position | None = None,
        skips: list[tuple[Position, Position]] | None = None,
        finished: bool = False,
    ) -> None:
        self.shard_id = shard_id
        self.committed = committed  # everything at or before this is resolved
        self.carried: list[tuple[Position, Position]] = sorted(skips or [])  # resolved runs from a previous run
        self.finished = finished  # closed, read to the end and all resolved
        self.read_to_end = finished
        self.last_read: Position | None = None
        self._base = 0  # ordinal of _seqs[0]
        self._head = 0  # index of the first unresolved entry
        self._seqs: list[int] = []
        self._subs: list[int] = []
        self._done = bytearray()
        self.dirty = False

    # ------------------------------------------------------------------ reading side
    def already_done(self, position: Position) -> bool:
        """True if a previous run settled this position (at or before the checkpoint, or in a carried run)."""
        if self.committed is not None and position <= self.committed:
            return True
        return any(start <= position <= end for start, end in self.carried)

    def add(self, position: Position, resolved: bool = False) -> int:
        """Append a record in read order and return its ordinal."""
        ordinal = self._base + len(self._seqs)
        self._seqs.append(position[0])
        self._subs.append(position[1])
        self._done.append(1 if resolved else 0)
        self.last_read = position
        if resolved:
            self.dirty = True
        return ordinal

    def add_run(self, sequence_number: int, count: int) -> int:
        """Append subsequence numbers 0..count-1 of one Kinesis record, unresolved; returns the first ordinal."""
        ordinal = self._base + len(self._seqs)
        self._seqs.extend([sequence_number] * count)
        self._subs.extend(range(count))
        self._done.extend(bytes(count))
        self.last_read = (sequence_number, count - 1)
        return ordinal

    def resolve(self, ordinal: int) -> None:
        self._done[ordinal - self._base] = 1
        self.dirty = True

    @property
    def unresolved(self) -> int:
        return len(self._done) - self._head - self._done.count(1, self._head)

    # ------------------------------------------------------------------ checkpoint side
    def advance(self) -> None:
        """Move the checkpoint over the resolved prefix; compact the ledger now and then."""
        first_open = self._done.find(0, self._head)
        new_head = len(self._done) if first_open < 0 else first_open
        if new_head > self._head:
            self._head = new_head
            self.committed = (self._seqs[new_head - 1], self._subs[new_head - 1])
        if self.read_to_end and self._head == len(self._done) and not self.finished:
            self.finished = True
            self.dirty = True
        if self.last_read is not None:
            # Runs a previous run delivered are now represented in the ledger itself.
            self.carried = [(s, e) for s, e in self.carried if e > self.last_read]
        if self._head >= _COMPACT_AT:
            del self._seqs[: self._head], self._subs[: self._head], self._done[: self._head]
            self._base += self._head
            self._head = 0

    def resolved_runs(self) -> list[tuple[Position, Position]]:
        """Runs of resolved records after the checkpoint (read order = position order)."""
        runs = list(self.carried)
        done, pos = self._done, self._head
        while True:
            start = done.find(1, pos)
            if start < 0:
                break
            end = done.find(0, start)
            end = len(done) if end < 0 else end
            runs.append(((self._seqs[start], self._subs[start]), (self._seqs[end - 1], self._subs[end - 1])))
            pos = end
        return runs

    def to_json(self) -> dict[str, Any]:
        return {
            "committed": None if self.committed is None else [str(self.committed[0]), self.committed[1]],
            "finished": self.finished,
            "resolved_runs": [[str(s[0]), s[1], str(e[0]), e[1]] for s, e in self.resolved_runs()],
        }

    @classmethod
    def from_json(cls, shard_id: str, raw: dict[str, Any]) -> ShardLedger:
        committed = raw.get("committed")
        return cls(
            shard_id,
            committed=None if committed is None else (int(committed[0]), int(committed[1])),
            skips=[((int(a), int(b)), (int(c), int(d))) for a, b, c, d in raw.get("resolved_runs", [])],
            finished=bool(raw.get("finished")),
        )


class CheckpointStore:
    """All shard ledgers of one delivery stream; in memory, and in a JSON file when given a path."""

    def __init__(self, path: str | os.PathLike[str] | None = None) -> None:
        self.path = Path(path) if path is not None else None
        self.ledgers: dict[str, ShardLedger] = {}
        self.saves = 0
        if self.path is not None and self.path.exists():
            raw = json.loads(self.path.read_text())
            for shard_id, entry in raw.get("shards", {}).items():
                self.ledgers[shard_id] = ShardLedger.from_json(shard_id, entry)

    def ledger(self, shard_id: str) -> ShardLedger:
        ledger = self.ledgers.get(shard_id)
        if ledger is None:
            ledger = self.ledgers[shard_id] = ShardLedger(shard_id)
        return ledger

    def save(self) -> bool:
        """Advance every ledger and persist if anything moved; returns whether it wrote."""
        changed = False
        for ledger in self.ledgers.values():
            if ledger.dirty:
                ledger.advance()
                ledger.dirty = False
                changed = True
        if changed and self.path is not None:
            self._write({"shards": {sid: ledger.to_json() for sid, ledger in self.ledgers.items()}})
        if changed:
            self.saves += 1
        return changed

    def _write(self, payload: dict[str, Any]) -> None:
        assert self.path is not None
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # Write-then-rename so a kill mid-write leaves the previous checkpoint intact.
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=self.path.name, suffix=".tmp")
        with os.fdopen(fd, "w") as handle:
            json.dump(payload, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, self.path)
