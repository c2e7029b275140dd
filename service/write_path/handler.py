"""The subscriber's handler: one batch of raw records in, handed to the write path.

Per batch it hands the records to the writer with the consumer's ownership check and seek,
rewinds the batch's partitions if the writer fails, and lets the offset mirror commit the
positions the database has committed to Kafka.

At shutdown `close()` runs while the consumer still owns its partitions (FastStream's
`on_shutdown`, before `broker.stop()` stops the consumer and leaves the group): it stops
fetching, finishes the batch being handed over and the batch in flight, and commits their
positions to Kafka. The README's promise: "SIGTERM stops fetching, finishes the batch in
flight, commits, leaves the group and exits 0".
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any, Protocol

from service.core.records import Record, TopicAndPartition, partition_name, partition_names
from service.kafka.consumer import ConsumerAdapter, KafkaConsumer
from service.kafka.offset_mirror import OffsetMirror
from service.write_path.admission import Ownership
from service.write_path.overlap import Seek
from service.write_path.transaction import BatchReport

log = logging.getLogger("service.batch_handler")
# How long close() waits for the batch in flight (a database outage retries it forever).
# Within the orchestrators' grace period (45 s in compose and Kubernetes), with room left for
# stopping the consumer, the dead-letter producer and the connection pool.
CLOSE_TIMEOUT_S = 20.0


class BatchWriter(Protocol):
    """The write path as the handler uses it (service/write_path/overlap.py's OverlappedWriter)."""

    async def submit(
        self, records: Sequence[Record], still_owned: Ownership, seek: Seek
    ) -> BatchReport | None:
        """Start writing `records`; the report of the batch that finished before, if any."""

    async def drain(self) -> BatchReport | None:
        """Wait for the batch in flight; its report, if there was one."""


class BatchMessage(Protocol):
    """FastStream's Kafka batch message, as far as the handler needs it."""

    @property
    def raw_message(self) -> Any: ...

    async def nack(self) -> None: ...


class BatchHandler:
    def __init__(
        self,
        writer: BatchWriter,
        mirror: OffsetMirror | None = None,
        close_timeout_s: float = CLOSE_TIMEOUT_S,
    ) -> None:
        self.writer = writer
        self.mirror = mirror or OffsetMirror()
        self.close_timeout_s = close_timeout_s
        self.closed = False
        self._busy = asyncio.Lock()  # held while a batch is handed over to the writer
        self._call: asyncio.Task[Any] | None = None

    async def __call__(self, message: BatchMessage, consumer: KafkaConsumer | None) -> None:
        """Handle one batch. `consumer` is the subscriber's aiokafka consumer (None under
        FastStream's TestKafkaBroker). The batch is a flat sequence of records: a tuple from
        aiokafka, a list from TestKafkaBroker (tests/unit/write_path/test_handler.py pins both)."""
        async with self._busy:
            if self.closed:
                # Fetched while shutting down: not written, not committed; the partition's
                # next owner (or this service after its restart) reads it again.
                return
            self._call = asyncio.current_task()
            try:
                await self._hand_over(message, ConsumerAdapter(consumer))
            finally:
                self._call = None

    async def _hand_over(self, message: BatchMessage, consumer: ConsumerAdapter) -> None:
        try:
            finished = await self.writer.submit(
                list(message.raw_message), consumer.still_owned, consumer.seek
            )
        except BaseException:
            # Never move on past an unwritten batch: rewind each partition to its first
            # record of this batch (the write path rewinds further if it must).
            await message.nack()
            raise
        if finished is not None:
            self.mirror.committed(finished.next_offsets)
        await self.mirror.commit_due(consumer)

    async def close(self, consumer: KafkaConsumer | None) -> None:
        """Stop fetching, finish the batch being handed over and the batch in flight, and
        commit their positions to Kafka. Call it before the consumer stops: it must still
        own its partitions, both for the write path's ownership check and for the commit."""
        self.closed = True
        adapter = ConsumerAdapter(consumer)
        paused = adapter.pause_all()
        log.info(
            "shutting down: stopped fetching %s; finishing the batch in flight",
            partition_names(paused) or "(no partitions assigned)",
        )
        try:
            async with asyncio.timeout(self.close_timeout_s):
                async with self._busy:  # the batch being handed over reaches the writer
                    finished = await self.writer.drain()
        except TimeoutError:
            self._cancel_call()
            log.error(
                "shutting down: the batch in flight did not commit within %gs (is PostgreSQL "
                "reachable?); it is rolled back and read again after the restart, nothing "
                "is lost",
                self.close_timeout_s,
            )
            finished = None
        if finished is not None:
            self.mirror.committed(finished.next_offsets)
        committed = await self.mirror.flush(adapter)
        log.info(
            "shutting down: batch in flight finished (%d records); Kafka offsets committed: "
            "%s; leaving the group",
            finished.records if finished is not None else 0,
            _positions(committed) or "none",
            extra={"positions": {partition_name(tp): o for tp, o in sorted(committed.items())}},
        )

    def _cancel_call(self) -> None:
        """The handler call still waiting for the database ends now, as FastStream's own
        graceful stop would end it: the consumer can then stop and leave the group."""
        if self._call is not None and not self._call.done():
            self._call.cancel()


def _positions(offsets: dict[TopicAndPartition, int]) -> str:
    return ", ".join(f"{partition_name(tp)}={o}" for tp, o in sorted(offsets.items()))
