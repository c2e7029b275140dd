"""Overlap the CPU work of the next batch with the database work of the current one.

While batch N's transaction runs (a background task), the handler returns, the consumer
fetches batch N+1 and decodes it; only then does it wait for N to commit and start N+1's
transaction. One transaction is in flight at a time, so batches commit in order and each
position is committed with its own batch's rows.

Rewinds (the write path found that a batch started past the stored position) are sought as
soon as the batch in flight finishes, even if no further records arrive. Records of that
partition fetched before the seek are recognised by their offsets and dropped
(service/write_path/rewinds.py keeps the fence).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

from service.core.records import Record, TopicAndPartition
from service.write_path.admission import Ownership
from service.write_path.batch import Batch
from service.write_path.transaction import BatchReport, WritePath

Seek = Callable[[TopicAndPartition, int], None]


class OverlappedWriter:
    def __init__(self, write_path: WritePath) -> None:
        self.write_path = write_path
        self._inflight: asyncio.Task[BatchReport] | None = None

    async def submit(
        self, records: Sequence[Record], still_owned: Ownership, seek: Seek
    ) -> BatchReport | None:
        """Decode `records`, wait for the batch in flight, start writing `records`.

        Returns the report of the batch that finished before (None if there was none).
        """
        decoded = await self.write_path.decode(records)
        finished = await self.drain()
        batch = Batch.of(records, decoded)
        batch = batch.without(self.write_path.rewinds.fenced(batch.first))
        if len(batch):
            task = asyncio.create_task(self.write_path.write(batch, still_owned))
            task.add_done_callback(lambda done: _seek_rewinds(done, seek))
            self._inflight = task
        return finished

    async def drain(self) -> BatchReport | None:
        """Wait for the batch in flight (if any) and return its report."""
        task, self._inflight = self._inflight, None
        if task is None:
            return None
        return await task

    def forget(self, tp: TopicAndPartition) -> None:
        """The partition was sought to its stored position from outside the write path (a
        resume after a check): its earlier rewinds are forgotten (rewinds.py)."""
        self.write_path.rewinds.forget(tp)


def _seek_rewinds(task: asyncio.Task[BatchReport], seek: Seek) -> None:
    if task.cancelled() or task.exception() is not None:
        return
    for tp, rewind in task.result().rewinds.items():
        seek(tp, rewind.to)
