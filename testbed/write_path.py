"""The write path's surroundings outside the service, for the tests and the benchmark's
write-only mode: an in-memory dead-letter sink, the guard production passes (the real
PartitionGuard inside LetterStops, on a stand-in consumer: testbed/fake_consumer.py), and an
ownership that keeps every partition."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from prometheus_client import CollectorRegistry

from service.core.letters import DeadLetter
from service.core.position_verdict import OnRecordsLost
from service.positions.guard import PartitionGuard
from service.write_path.letter_stops import LetterStops
from testbed.fake_consumer import FakeConsumer


class MemoryDeadLetterSink:
    """Keeps letters in a list (service.kafka.dead_letter_producer.DeadLetterSink)."""

    def __init__(self) -> None:
        self.letters: list[DeadLetter] = []

    async def send(self, letters: Sequence[DeadLetter]) -> None:
        self.letters.extend(letters)


# The partitions of topic "t" that the write path's tests write to.
TEST_PARTITIONS = 8


def partition_guard(
    sessions: Any = None, group_id: str = "g", on_lost: OnRecordsLost = OnRecordsLost.CONTINUE
) -> PartitionGuard:
    """The partition guard as service/app.py builds it, not yet attached to a consumer
    (build_broker attaches it to the subscriber's)."""
    return PartitionGuard(sessions, group_id, CollectorRegistry(), on_lost=on_lost)


def guard(
    consumer: FakeConsumer | None = None,
    *,
    sessions: Any = None,
    group_id: str = "g",
    on_lost: OnRecordsLost = OnRecordsLost.CONTINUE,
) -> LetterStops:
    """The write path's guard as service/app.py builds it, attached to `consumer` (by
    default one that owns the test topic's partitions, whose logs start at 0 and whose log
    ends are not fetched yet). `sessions` is only read by the guard's own checks
    (assignment, rechecks), not by the write path."""
    partitions = partition_guard(sessions, group_id, on_lost)
    attached = consumer or FakeConsumer([("t", p) for p in range(TEST_PARTITIONS)])
    partitions.attach(lambda: attached)
    stops = LetterStops(partitions)
    stops.attach(lambda: attached)
    return stops


def owns_everything(topic: str, partition: int) -> bool:
    return True
