"""OverlappedWriter: order, reports, and rewinds while a batch is in flight."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from service.core.decoding import Unusable
from service.core.domain import Event, Reason
from service.core.records import Record
from service.write_path.overlap import OverlappedWriter
from service.write_path.transaction import BatchReport
from tests.support.write_path import SimpleRecord


class FakeProcessor:
    """Records what is written; a batch whose first record is in `rewind_at` asks for a
    rewind of its partition to offset 0."""

    def __init__(self, rewind_at: set[int] | None = None) -> None:
        self.written: list[list[int]] = []
        self.rewind_at = rewind_at or set()

    async def decode(self, records: Sequence[Record]) -> list[Event | Unusable]:
        return [Unusable(Reason.INVALID_JSON, "x") for _ in records]

    async def write(
        self, records: Sequence[Record], decoded: Any, still_owned: Any = None
    ) -> BatchReport:
        await asyncio.sleep(0.01)
        self.written.append([r.offset for r in records])
        report = BatchReport(records=len(records))
        if records[0].offset in self.rewind_at:
            report.rewind[("t", 0)] = 0
            report.fence[("t", 0)] = records[0].offset
        return report


def batch(*offsets: int) -> list[SimpleRecord]:
    return [SimpleRecord("t", 0, o, None, b"") for o in offsets]


async def test_batches_are_written_in_order_and_reported_one_call_later() -> None:
    write_path = FakeProcessor()
    writer = OverlappedWriter(write_path)  # type: ignore[arg-type]
    assert await writer.submit(batch(0, 1)) is None
    first = await writer.submit(batch(2, 3))
    assert first is not None and first.records == 2
    last = await writer.drain()
    assert last is not None and last.records == 2
    assert write_path.written == [[0, 1], [2, 3]]
    assert await writer.drain() is None


async def test_a_rewind_seeks_at_once_and_drops_what_was_fetched_before_the_seek() -> None:
    write_path = FakeProcessor(rewind_at={5})
    writer = OverlappedWriter(write_path)  # type: ignore[arg-type]
    seeks: list[tuple[tuple[str, int], int]] = []

    await writer.submit(batch(5, 6), seek=lambda tp, offset: seeks.append((tp, offset)))
    await asyncio.sleep(0.05)  # the batch finishes while no new records arrive
    assert seeks == [(("t", 0), 0)]

    await writer.submit(batch(7, 8))  # fetched before the seek: dropped
    await writer.submit(batch(0, 1, 2))  # the refetch: written, fence lifted
    await writer.submit(batch(3, 4))
    await writer.drain()
    assert write_path.written == [[5, 6], [0, 1, 2], [3, 4]]


async def test_a_partition_resumed_from_outside_forgets_its_fence_and_rewind() -> None:
    """Revoked before its refetch came, the partition is resumed later at a stored position
    past the fence (another owner moved it on): with the fence kept, every batch of it would
    be dropped as fetched before the seek, for ever."""
    write_path = FakeProcessor(rewind_at={5})
    forgotten: list[tuple[str, int]] = []
    write_path.forget_rewind = forgotten.append  # type: ignore[attr-defined]
    writer = OverlappedWriter(write_path)  # type: ignore[arg-type]
    await writer.submit(batch(5, 6), seek=lambda tp, offset: None)
    await writer.drain()
    writer.forget(("t", 0))
    assert forgotten == [("t", 0)]
    await writer.submit(batch(40, 41))  # resumed at 40 by the partition guard
    await writer.drain()
    assert write_path.written == [[5, 6], [40, 41]]
