"""Kafka's committed offsets follow the positions PostgreSQL has committed.

The database is the source of truth (positions are written in the same transaction as the
products); Kafka's committed offset is only a mirror of it, for lag dashboards and tools that
read a group's offsets. It is therefore committed at most once per interval, only for
positions the database has already committed (never ahead of it), only for partitions this
consumer still owns, and a failed commit loses nothing: the offsets are kept for the next try.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping

from service.core.records import TopicAndPartition
from service.kafka.consumer import ConsumerAdapter

log = logging.getLogger("service.offset_mirror")
KAFKA_COMMIT_INTERVAL_S = 1.0


class OffsetMirror:
    def __init__(
        self,
        interval_s: float = KAFKA_COMMIT_INTERVAL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.interval_s = interval_s
        self._clock = clock
        self._last_commit: float | None = None
        # (topic, partition) -> next offset committed in PostgreSQL, not yet in Kafka.
        self._pending: dict[TopicAndPartition, int] = {}

    @property
    def pending(self) -> dict[TopicAndPartition, int]:
        return dict(self._pending)

    def committed(self, next_offsets: Mapping[TopicAndPartition, int]) -> None:
        """The database has committed these next offsets (a batch's report)."""
        for tp, offset in next_offsets.items():
            if offset > self._pending.get(tp, -1):
                self._pending[tp] = offset

    async def commit_due(self, consumer: ConsumerAdapter) -> None:
        """Commit what is pending if the interval has passed since the last commit."""
        now = self._clock()
        if not self._pending:
            return
        if self._last_commit is not None and now - self._last_commit < self.interval_s:
            return
        self._last_commit = now
        await self.flush(consumer)

    async def flush(self, consumer: ConsumerAdapter) -> dict[TopicAndPartition, int]:
        """Commit everything pending now (at shutdown, before the consumer leaves its group).
        Returns what was committed; partitions no longer owned are dropped (their new owner
        commits them)."""
        offsets, self._pending = consumer.owned(self._pending), {}
        if not offsets:
            return {}
        try:
            await consumer.commit(offsets)
        except Exception as error:
            log.warning(
                "Kafka offset commit failed (%s); the database keeps the position, the commit "
                "is tried again after the next batch",
                error,
            )
            self.committed(offsets)
            return {}
        return offsets
