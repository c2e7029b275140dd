"""PositionWatch: lag from the database's positions, and partitions whose stored position
fell behind what this consumer committed are checked again (lost commits)."""

from __future__ import annotations

import asyncio

from aiokafka import TopicPartition
from prometheus_client import CollectorRegistry

from service.core.records import TopicAndPartition
from service.health.position_watch import PositionWatch
from service.health.progress import ProgressTracker

A0, A1, A2 = ("events", 0), ("events", 1), ("events", 2)


class LogConsumer:
    """The consumer's assignment and its partitions' log bounds."""

    def __init__(self, ends: dict[TopicAndPartition, int]) -> None:
        self.ends = ends

    def assignment(self) -> set[TopicPartition]:
        return {TopicPartition(*tp) for tp in self.ends}

    async def end_offsets(self, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
        return {tp: self.ends[(tp.topic, tp.partition)] for tp in tps}

    async def beginning_offsets(self, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
        return dict.fromkeys(tps, 0)

    def highwater(self, tp: TopicPartition) -> int | None:
        return self.ends.get((tp.topic, tp.partition))


class Database:
    def __init__(self, stored: dict[TopicAndPartition, int]) -> None:
        self.stored = stored
        self.down = False

    async def read(self, topics: set[str]) -> dict[TopicAndPartition, int]:
        if self.down:
            raise ConnectionRefusedError("connection refused")
        return {tp: o for tp, o in self.stored.items() if tp[0] in topics}


def watch_of(
    consumer: LogConsumer, database: Database, held: set[TopicAndPartition] | None = None
) -> tuple[PositionWatch, list[set[TopicAndPartition]], CollectorRegistry]:
    rechecked: list[set[TopicAndPartition]] = []
    registry = CollectorRegistry()
    watch = PositionWatch(
        ProgressTracker(),
        lambda: consumer,  # type: ignore[arg-type, return-value]
        database.read,
        lambda tps: rechecked.append(set(tps)),
        lambda tp: tp in (held or set()),
        registry,
        interval_s=0.05,
    )
    return watch, rechecked, registry


def rollbacks(registry: CollectorRegistry, partition: int) -> float:
    value = registry.get_sample_value(
        "inventory_sink_position_rollbacks_total", {"topic": "events", "partition": str(partition)}
    )
    return value or 0.0


async def test_lag_is_the_log_end_minus_the_stored_position_of_the_database() -> None:
    database = Database({A0: 40, A1: 10})
    watch, rechecked, _ = watch_of(LogConsumer({A0: 50, A1: 10}), database)
    snapshot = {p.tp: p for p in await watch.refresh()}
    assert (snapshot[A0].stored, snapshot[A0].lag, snapshot[A0].log_end) == (40, 10, 50)
    assert snapshot[A1].lag == 0
    assert rechecked == []


async def test_a_quiet_partition_behind_what_was_committed_is_checked_again() -> None:
    """The failover: commits up to 5000 were acknowledged, the promoted replica holds 1400.
    No record will arrive for the partition, so only the watch can bring it back."""
    database = Database({A0: 5000, A1: 3000, A2: 7})
    watch, rechecked, registry = watch_of(LogConsumer({A0: 5000, A1: 3000, A2: 7}), database)
    watch.tracker.committed({A0: 5000, A1: 3000})
    watch.tracker.resumed(A2, 7)
    await watch.refresh()
    assert rechecked == []

    database.stored = {A0: 1400, A1: 3000}  # A2's row itself was lost
    await watch.refresh()
    assert rechecked == [{A0, A2}]
    assert rollbacks(registry, 0) == 1 and rollbacks(registry, 1) == 0
    assert rollbacks(registry, 2) == 1

    watch.tracker.resumed(A0, 1400)  # the guard resumed them at the database's positions
    watch.tracker.resumed(A2, 0)
    snapshot = {p.tp: p for p in await watch.refresh()}
    assert rechecked == [{A0, A2}]  # once: nothing is lost any more
    assert (snapshot[A0].stored, snapshot[A0].lag) == (1400, 3600)


async def test_a_partition_the_guard_holds_is_left_to_the_guard() -> None:
    database = Database({A0: 10})
    watch, rechecked, _ = watch_of(LogConsumer({A0: 50}), database, held={A0})
    watch.tracker.committed({A0: 50})
    await watch.refresh()
    assert rechecked == []


async def test_a_database_that_cannot_be_read_keeps_the_last_positions_and_is_read_soon() -> None:
    database = Database({A0: 10})
    watch, rechecked, _ = watch_of(LogConsumer({A0: 50}), database)
    watch.tracker.committed({A0: 30})
    database.down = True
    assert await watch.look() is False
    assert watch.tracker.snapshot[0].stored == 30 and rechecked == []
    database.down = False
    assert await watch.look() is True
    assert rechecked == [{A0}]


async def test_the_loop_looks_again_when_woken_and_every_interval() -> None:
    database = Database({A0: 10})
    watch, rechecked, _ = watch_of(LogConsumer({A0: 50}), database)
    task = asyncio.create_task(watch.run())
    try:
        await asyncio.sleep(0.02)
        watch.tracker.committed({A0: 30})  # then lost
        watch.wake()
        for _ in range(100):
            if rechecked:
                break
            await asyncio.sleep(0.01)
        assert rechecked == [{A0}]
    finally:
        task.cancel()
