"""S3Queue's move to the archive, done by the local pipeline where the endpoint cannot do it.

On an endpoint without conditional ``DeleteObject`` (LocalStack, see ``capabilities``) the queues
are rendered with ``after_processing='keep'``. An object left under ``events/`` would be read
again by any queue that does not remember it (a restarted engine: chDB's Keeper state is in
memory; a tracked-file TTL or limit). So this moves each object S3Queue reports Processed to
``archive/<its key>`` — the place ``after_processing_move_preserve_path`` would have put it —
with a plain copy and delete. Processed means its rows are committed, so the move never hides
an object that still has to be read.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from bxb_runtime.layout import ARCHIVE_PREFIX
from bxb_stream.clickhouse import status

log = logging.getLogger(__name__)

MAX_LIFETIME_S = 7 * 86_400  # as long as the longest local run (--serve)


@dataclass(frozen=True)
class MoveResult:
    moved: int
    failed: int  # left in place this round (the endpoint refused or was away); retried next round


class ProcessedArchiver:
    """Moves what one database's S3Queue tables have processed out of their glob, into the archive."""

    def __init__(
        self,
        s3: Any,
        bucket: str,
        client: Any,
        database: str,
        archive_prefix: str = ARCHIVE_PREFIX,
        interval_s: float = 0.5,
    ) -> None:
        self.s3 = s3
        self.bucket = bucket
        self.client = client  # its own chDB session: the archiver runs on its own thread
        self.database = database
        self.archive_prefix = archive_prefix
        self.interval_s = interval_s
        self.moved: set[str] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def move_processed(self) -> MoveResult:
        """Move every processed object not moved yet. Safe to repeat: a copy is overwritten with the
        same bytes and deleting a missing key succeeds, so a move cut short is finished next round."""
        with self._lock:
            keys = {path for path, _ in status.queue_files(self.client, self.database, "Processed")} - self.moved
            moved = failed = 0
            for key in sorted(keys):
                try:
                    self._move(key)
                except (ClientError, BotoCoreError) as exc:
                    failed += 1
                    log.debug("moving s3://%s/%s to the archive failed; retried next round: %s", self.bucket, key, exc)
                    continue
                self.moved.add(key)
                moved += 1
            return MoveResult(moved, failed)

    def _move(self, key: str) -> None:
        try:
            # One CopyObject: Firehose's objects are far below its 5 GB limit (buffers <= 128 MiB).
            self.s3.copy_object(
                Bucket=self.bucket, Key=self.archive_prefix + key, CopySource={"Bucket": self.bucket, "Key": key}
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") not in ("NoSuchKey", "404"):
                raise
            return  # already gone from the glob (moved by an earlier round cut short after its delete)
        self.s3.delete_object(Bucket=self.bucket, Key=key)

    def start(self) -> ProcessedArchiver:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name=f"archiver-{self.database}", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        for _ in range(int(MAX_LIFETIME_S / self.interval_s) + 1):
            if self._stop.wait(self.interval_s):
                return
            try:
                self.move_processed()
            except Exception as exc:  # the engine is closing or busy: try again next round
                log.debug("archiver round failed: %s", exc)

    def stop(self) -> MoveResult:
        """Stop the thread, then move what is processed by now (call it once the queues are stopped)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None
        return self.move_processed()
