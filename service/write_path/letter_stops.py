"""Partitions stopped because their dead letter could not be published in any form.

The dead-letter sink (dead_letter.py) stops a partition here when the broker refuses one of
its letters for good even cut to the smallest budget (topic ACLs, a tiny max.message.bytes,
...): retrying the same letter would fail the same way forever. Nothing of such a partition is
written (the write path's snapshot holds it back, as it holds the partition guard's) and it is
paused in the consumer; readiness fails naming it with the reason. The stop lasts until the process
restarts: fix the dead-letter topic, then restart.

The stopped partitions are a `StoppedPartitions` (partition_guard.py), the same record the
guard keeps for readiness, but a separate one: the guard resumes its own stopped partitions
once their stored position fits the log, which says nothing about this cause.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from aiokafka import TopicPartition

from service.core.records import TopicAndPartition, partition_name
from service.positions.guard import PartitionGuard, StoppedPartitions
from service.positions.log_snapshot import Gap, LogSnapshot

log = logging.getLogger("service.dead_letter")


class LetterStops:
    """The write path's PositionGuard (transaction.py): `guard`, with the partitions stopped
    here held back too."""

    def __init__(self, guard: PartitionGuard) -> None:
        self.guard = guard
        self.stopped = StoppedPartitions()
        self._consumer: Callable[[], Any] = lambda: None

    def attach(self, consumer: Callable[[], Any]) -> None:
        """Where to find the running AIOKafkaConsumer (None before it starts)."""
        self._consumer = consumer

    def stop(self, tp: TopicAndPartition, reason: str) -> None:
        self._pause(tp)
        if self.stopped.reason(tp) == reason:
            return  # already said
        self.stopped.add(tp, reason)
        log.error(
            "%s[%d] is stopped: nothing of it is consumed or written until the consumer "
            "restarts. %s",
            *tp,
            reason,
            extra={"topic": tp[0], "partition": tp[1]},
        )

    def problem(self) -> str | None:
        """The readiness check: None while no partition is stopped here."""
        stopped = self.stopped.stopped()
        if not stopped:
            return None
        named = "; ".join(f"{partition_name(tp)}: {why}" for tp, why in sorted(stopped.items()))
        return f"{len(stopped)} partition(s) stopped because a dead letter was refused: {named}"

    def holds(self, tp: TopicAndPartition) -> bool:
        """True while nothing of `tp` may be written, here or by the guard."""
        if tp in self.stopped:
            self._pause(tp)  # again: a rebalance may have given it back, resumed
            return True
        return self.guard.holds(tp)

    # -- PositionGuard ------------------------------------------------------------------

    async def snapshot(
        self, first: Mapping[TopicAndPartition, int], sought: Mapping[TopicAndPartition, int]
    ) -> LogSnapshot:
        stopped = frozenset(tp for tp in first if tp in self.stopped)
        for tp in stopped:
            self._pause(tp)  # again: a rebalance may have given it back, resumed
        unstopped = {tp: offset for tp, offset in sought.items() if tp not in stopped}
        return (await self.guard.snapshot(first, unstopped)).holding(stopped)

    def log_was_reset(
        self, tp: TopicAndPartition, stored: int, first_offset: int, end: int
    ) -> None:
        self.guard.log_was_reset(tp, stored, first_offset, end)

    def crossed_gap(self, tp: TopicAndPartition, gap: Gap) -> None:
        self.guard.crossed_gap(tp, gap)

    def _pause(self, tp: TopicAndPartition) -> None:
        consumer = self._consumer()
        if consumer is not None and TopicPartition(*tp) in consumer.assignment():
            consumer.pause(TopicPartition(*tp))
