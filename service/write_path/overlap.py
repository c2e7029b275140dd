"""Overlap the CPU work of the next batch with the database work of the current one.

While batch N's transaction runs (a background task), the handler returns, the consumer
fetches batch N+1 and decodes it; only then does it wait for N to commit and start N+1's
transaction. One transaction is in flight at a time, so batches commit in order and each
position is committed with its own batch's rows.

Rewinds (the write path found that a batch started past the stored position) are applied
as soon as the batch in flight finishes, even if no further records arrive. Records of that
partition fetched before the seek are recognised by their offsets (they continue past the
abandoned records, while a refetch starts at or before them) and dropped.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

from service.core.decoding import Unusable
from service.core.domain import Event
from service.core.records import Record, TopicAndPartition, first_offsets
from service.write_path.transaction import BatchReport, Ownership, WritePath

Seek = Callable[[TopicAndPartition, int], None]


class OverlappedWriter:
    def __init__(self, write_path: WritePath) -> None:
        self.write_path = write_path
        self._inflight: asyncio.Task[BatchReport] | None = None
        self._fence: dict[TopicAndPartition, int] = {}
        self._seek: Seek | None = None

    async def submit(
        self,
        records: Sequence[Record],
        still_owned: Ownership | None = None,
        seek: Seek | None = None,
    ) -> BatchReport | None:
        """Decode `records`, wait for the batch in flight, start writing `records`.

        Returns the report of the batch that finished before (None if there was none).
        """
        self._seek = seek
        decoded = await self.write_path.decode(records)
        finished = await self.drain()
        kept, kept_decoded = self._drop_fenced(records, decoded)
        if kept:
            task = asyncio.create_task(self.write_path.write(kept, kept_decoded, still_owned))
            task.add_done_callback(self._apply_rewinds)
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
        resume after a check): what this writer and the write path remember of its earlier
        rewinds no longer describes what the consumer fetches. Forgetting is always safe: a
        batch past the stored position is then rewound again, never taken for a gap."""
        self._fence.pop(tp, None)
        self.write_path.forget_rewind(tp)

    def _apply_rewinds(self, task: asyncio.Task[BatchReport]) -> None:
        if task.cancelled() or task.exception() is not None:
            return
        report = task.result()
        for tp, offset in report.rewind.items():
            self._fence[tp] = report.fence[tp]
            if self._seek is not None:
                self._seek(tp, offset)

    def _drop_fenced(
        self, records: Sequence[Record], decoded: Sequence[Event | Unusable]
    ) -> tuple[list[Record], list[Event | Unusable]]:
        if not self._fence:
            return list(records), list(decoded)
        stale = set()
        for tp, offset in first_offsets(records).items():
            fence = self._fence.get(tp)
            if fence is None:
                continue
            if offset <= fence:
                del self._fence[tp]  # fetched again after the seek
            else:
                stale.add(tp)  # fetched before the seek: it comes again
        keep = [i for i, r in enumerate(records) if (r.topic, r.partition) not in stale]
        return [records[i] for i in keep], [decoded[i] for i in keep]
