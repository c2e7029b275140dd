"""On partition assignment, resume each partition from the offset stored in PostgreSQL."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Protocol

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition

log = logging.getLogger("service.rebalance")

PositionReader = Callable[[set[str]], Awaitable[dict[tuple[str, int], int]]]


class AssignmentCheck(Protocol):
    """Checks stored positions against the log before consuming (service/positions/guard.py)."""

    async def on_assigned(self, assigned: Iterable[TopicPartition]) -> None: ...

    def on_revoked(self, revoked: Iterable[TopicPartition]) -> None: ...


class SeekToStoredPositions(ConsumerRebalanceListener):  # type: ignore[misc]
    """Seek every assigned partition to the next offset the database has committed.

    The database, not Kafka's committed offset, is the source of truth: it is written in the
    same transaction as the products. A partition the database has never seen starts from
    the beginning of the log, so a fresh database is rebuilt from the topic. If the database
    cannot be read now, nothing is lost: Kafka's committed offset is never ahead of the
    database's, and the write path drops any record the database already holds.
    """

    def __init__(
        self,
        consumer: Callable[[], AIOKafkaConsumer | None],
        read_positions: PositionReader,
        check: AssignmentCheck | None = None,
    ) -> None:
        self._consumer = consumer
        self._read_positions = read_positions
        # With a check, each partition is paused, compared with the log's bounds and topic
        # id, and resumed at its stored position only if that still belongs to this log.
        self._check = check

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        if revoked:
            log.info(
                "partitions revoked: %s", _names(revoked), extra={"partitions": _list(revoked)}
            )
            if self._check is not None:
                self._check.on_revoked(revoked)

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        consumer = self._consumer()
        if consumer is None or not assigned:
            return
        if self._check is not None:
            log.info(
                "partitions assigned: %s (checking stored positions)",
                _names(assigned),
                extra={"partitions": _list(assigned)},
            )
            await self._check.on_assigned(assigned)
            return
        try:
            stored = await self._read_positions({tp.topic for tp in assigned})
        except Exception as error:
            log.warning(
                "could not read stored positions (%s); resuming from Kafka's committed offsets",
                error,
                extra={"partitions": _list(assigned)},
            )
            return
        fresh = []
        for tp in sorted(assigned):
            offset = stored.get((tp.topic, tp.partition))
            if offset is None:
                fresh.append(tp)
            else:
                consumer.seek(tp, offset)
        if fresh:
            await consumer.seek_to_beginning(*fresh)
        resuming = {
            f"{t}[{p}]": o
            for (t, p), o in sorted(stored.items())
            if TopicPartition(t, p) in assigned
        }
        log.info(
            "partitions assigned: %s (resuming at %s)",
            _names(assigned),
            resuming,
            extra={"partitions": _list(assigned), "positions": resuming},
        )


def _names(partitions: set[TopicPartition]) -> str:
    return ", ".join(_list(partitions))


def _list(partitions: set[TopicPartition]) -> list[str]:
    return [f"{tp.topic}[{tp.partition}]" for tp in sorted(partitions)]
