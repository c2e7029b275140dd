"""Partitions stopped because their dead letter could not be published in any form.

The dead-letter sink (dead_letter.py) stops a partition here when the broker refuses one of
its letters for good even cut to the smallest budget (topic ACLs, a tiny max.message.bytes,
...): retrying the same letter would fail the same way forever. Nothing of such a partition is
written (the write path asks `holds`, as it asks the partition guard) and it is paused in the
consumer; readiness fails naming it with the reason. The stop lasts until the process
restarts: fix the dead-letter topic, then restart.

The stopped partitions are a `StoppedPartitions` (partition_guard.py), the same record the
guard keeps for readiness, but a separate one: the guard resumes its own stopped partitions
once their stored position fits the log, which says nothing about this cause.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from aiokafka import TopicPartition

from service.core.records import TopicAndPartition
from service.positions.guard import StoppedPartitions
from service.write_path.transaction import PositionGuard

log = logging.getLogger("service.dead_letter")


class LetterStops:
    """The write path's PositionGuard: `guard`'s holds, and the partitions stopped here."""

    def __init__(self, guard: PositionGuard | None = None) -> None:
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
        named = "; ".join(f"{t}[{p}]: {why}" for (t, p), why in sorted(stopped.items()))
        return f"{len(stopped)} partition(s) stopped because a dead letter was refused: {named}"

    # -- PositionGuard ------------------------------------------------------------------

    def holds(self, tp: TopicAndPartition) -> bool:
        if tp in self.stopped:
            self._pause(tp)  # again: a rebalance may have given it back, resumed
            return True
        return self.guard is not None and self.guard.holds(tp)

    def log_was_reset(self, tp: TopicAndPartition, stored: int, first_offset: int) -> bool:
        return self.guard is not None and self.guard.log_was_reset(tp, stored, first_offset)

    async def accept_gap(self, tp: TopicAndPartition, stored: int, first_offset: int) -> bool:
        return self.guard is None or await self.guard.accept_gap(tp, stored, first_offset)

    def _pause(self, tp: TopicAndPartition) -> None:
        consumer = self._consumer()
        if consumer is not None and TopicPartition(*tp) in consumer.assignment():
            consumer.pause(TopicPartition(*tp))
