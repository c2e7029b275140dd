"""LetterStops: partitions stopped because their dead letter was refused in every form are
held back and paused, readiness names them, and the partition guard still has its say."""

from __future__ import annotations

from aiokafka import TopicPartition

from service.core.records import TopicAndPartition
from service.write_path.letter_stops import LetterStops


class Guard:
    def __init__(self) -> None:
        self.held: set[TopicAndPartition] = {("events", 2)}

    def holds(self, tp: TopicAndPartition) -> bool:
        return tp in self.held

    def log_was_reset(self, tp: TopicAndPartition, stored: int, first_offset: int) -> bool:
        return tp == ("events", 2)

    async def accept_gap(self, tp: TopicAndPartition, stored: int, first_offset: int) -> bool:
        return stored == 5


class Consumer:
    def __init__(self) -> None:
        self.paused: list[TopicPartition] = []

    def assignment(self) -> set[TopicPartition]:
        return {TopicPartition("events", p) for p in range(3)}

    def pause(self, *tps: TopicPartition) -> None:
        self.paused.extend(tps)


async def test_a_stopped_partition_is_held_paused_and_named_by_readiness() -> None:
    stops, consumer = LetterStops(Guard()), Consumer()
    stops.attach(lambda: consumer)
    assert stops.problem() is None
    assert [stops.holds(("events", p)) for p in range(3)] == [False, False, True]

    stops.stop(("events", 1), "the dead-letter topic dlq refused ...; check ...")
    stops.stop(("events", 1), "the dead-letter topic dlq refused ...; check ...")  # said once
    assert [stops.holds(("events", p)) for p in range(3)] == [False, True, True]
    # Paused when stopped, and again each time the write path meets it.
    assert consumer.paused == [TopicPartition("events", 1)] * 3
    assert stops.problem() == (
        "1 partition(s) stopped because a dead letter was refused: events[1]: the "
        "dead-letter topic dlq refused ...; check ..."
    )
    stops.stop(("other", 0), "not assigned here")  # paused only where assigned
    assert consumer.paused == [TopicPartition("events", 1)] * 3


async def test_the_guards_answers_pass_through() -> None:
    stops = LetterStops(Guard())
    assert stops.log_was_reset(("events", 2), 9, 0) and not stops.log_was_reset(("events", 0), 9, 0)
    assert await stops.accept_gap(("events", 0), 5, 9)
    assert not await stops.accept_gap(("events", 0), 6, 9)
    alone = LetterStops()
    assert not alone.holds(("events", 2)) and not alone.log_was_reset(("events", 2), 9, 0)
    assert await alone.accept_gap(("events", 0), 6, 9)
