"""What the write path asks of the Kafka consumer: which partitions it still owns, where to
seek, what to pause, and committing offsets.

The subscriber's aiokafka consumer is None under FastStream's TestKafkaBroker (and before the
subscriber starts): then every partition counts as owned and nothing is sought, paused or
committed, so the handler runs unchanged without a broker.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Protocol

from aiokafka import TopicPartition as KafkaPartition

from service.core.records import TopicAndPartition


class KafkaConsumer(Protocol):
    """The part of `aiokafka.AIOKafkaConsumer` used here (tests pass a fake)."""

    def assignment(self) -> set[KafkaPartition]: ...

    def seek(self, partition: KafkaPartition, offset: int) -> None: ...

    def pause(self, *partitions: KafkaPartition) -> None: ...

    async def commit(self, offsets: dict[KafkaPartition, int]) -> None: ...


class ConsumerAdapter:
    """The subscriber's consumer as the write path sees it: (topic, partition) pairs in,
    aiokafka's `TopicPartition` kept inside."""

    __slots__ = ("_consumer",)

    def __init__(self, consumer: KafkaConsumer | None) -> None:
        self._consumer = consumer

    def still_owned(self, topic: str, partition: int) -> bool:
        """True while the partition is assigned to this consumer (asked by the write path
        after it has locked the partition's stored position)."""
        if self._consumer is None:
            return True
        if _rejoining(self._consumer):
            return False
        return KafkaPartition(topic, partition) in self._consumer.assignment()

    def seek(self, tp: TopicAndPartition, offset: int) -> None:
        """Fetch the partition from `offset` next (the write path's rewinds)."""
        if self._consumer is not None:
            self._consumer.seek(KafkaPartition(*tp), offset)

    def owned(self, offsets: Mapping[TopicAndPartition, int]) -> dict[TopicAndPartition, int]:
        """The entries of `offsets` whose partitions this consumer still owns."""
        if self._consumer is None:
            return dict(offsets)
        assigned = {(tp.topic, tp.partition) for tp in self._consumer.assignment()}
        return {tp: offset for tp, offset in offsets.items() if tp in assigned}

    async def commit(self, offsets: Mapping[TopicAndPartition, int]) -> None:
        """Commit these next offsets to Kafka (the caller keeps them to owned partitions)."""
        if self._consumer is not None and offsets:
            await self._consumer.commit(
                {KafkaPartition(*tp): offset for tp, offset in offsets.items()}
            )

    def pause_all(self) -> list[TopicAndPartition]:
        """Stop fetching every assigned partition; returns them, sorted."""
        if self._consumer is None:
            return []
        assigned = self._consumer.assignment()
        if assigned:
            self._consumer.pause(*assigned)
        return _pairs(assigned)


def _rejoining(consumer: KafkaConsumer) -> bool:
    """True from when the group told this consumer that its membership is gone or being
    redone (a heartbeat or commit refused: a rebalance, or it was silent past the session
    timeout, e.g. frozen) until it is given partitions again. aiokafka's `assignment()` keeps
    the old partitions meanwhile, though the group may have given them to another member."""
    subscription = getattr(consumer, "_subscription", None)  # aiokafka's SubscriptionState
    return bool(getattr(subscription, "reassignment_in_progress", False))


def _pairs(partitions: Iterable[KafkaPartition]) -> list[TopicAndPartition]:
    return sorted((tp.topic, tp.partition) for tp in partitions)
