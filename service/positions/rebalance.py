"""On partition assignment, resume each partition from the offset stored in PostgreSQL."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Protocol

from aiokafka import ConsumerRebalanceListener, TopicPartition

from service.core.records import partition_name, partition_names

log = logging.getLogger("service.rebalance")


class AssignmentCheck(Protocol):
    """Checks stored positions against the log before consuming (service/positions/guard.py)."""

    async def on_assigned(self, assigned: Iterable[TopicPartition]) -> None: ...

    def on_revoked(self, revoked: Iterable[TopicPartition]) -> None: ...


class SeekToStoredPositions(ConsumerRebalanceListener):  # type: ignore[misc]
    """Resume every assigned partition at the next offset the database has committed.

    The database, not Kafka's committed offset, is the source of truth: it is written in the
    same transaction as the products. Each assigned partition is paused, its stored position
    compared with the log's bounds and topic id, and resumed there only if it still belongs
    to this log (`check`, the partition guard); a partition the database has never seen
    starts from the beginning of the log, so a fresh database is rebuilt from the topic.
    """

    def __init__(self, check: AssignmentCheck) -> None:
        self._check = check

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        if revoked:
            log.info(
                "partitions revoked: %s",
                partition_names(revoked),
                extra={"partitions": _list(revoked)},
            )
            self._check.on_revoked(revoked)

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        if not assigned:
            return
        log.info(
            "partitions assigned: %s (checking stored positions)",
            partition_names(assigned),
            extra={"partitions": _list(assigned)},
        )
        await self._check.on_assigned(assigned)


def _list(partitions: set[TopicPartition]) -> list[str]:
    return [partition_name(tp) for tp in sorted(partitions)]
