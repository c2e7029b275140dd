"""LetterStops: partitions stopped because their dead letter was refused in every form are
held back and paused, readiness names them, and the partition guard still has its say."""

from __future__ import annotations

import logging

import pytest

from service.positions.log_snapshot import Gap, LogSnapshot
from testbed.fake_consumer import FakeConsumer
from testbed.write_path import guard


async def test_a_stopped_partition_is_held_paused_and_named_by_readiness() -> None:
    consumer = FakeConsumer([("events", p) for p in range(3)])
    stops = guard(consumer)
    stops.guard.recheck([("events", 2)])  # the partition guard holds partition 2 for a check
    consumer.events.clear()
    assert stops.problem() is None
    assert [stops.holds(("events", p)) for p in range(3)] == [False, False, True]

    stops.stop(("events", 1), "the dead-letter topic dlq refused ...; check ...")
    stops.stop(("events", 1), "the dead-letter topic dlq refused ...; check ...")  # said once
    assert [stops.holds(("events", p)) for p in range(3)] == [False, True, True]
    first = {("events", p): 0 for p in range(3)}
    assert (await stops.snapshot(first, {})).held == {("events", 1), ("events", 2)}
    # Paused when stopped, and again each time the write path or the watch meets it.
    assert consumer.events == [("pause", [("events", 1)])] * 4
    assert stops.problem() == (
        "1 partition(s) stopped because a dead letter was refused: events[1]: the "
        "dead-letter topic dlq refused ...; check ..."
    )
    stops.stop(("other", 0), "not assigned here")  # paused only where assigned
    assert consumer.events == [("pause", [("events", 1)])] * 4


async def test_the_guards_snapshot_and_acts_pass_through(caplog: pytest.LogCaptureFixture) -> None:
    consumer = FakeConsumer(
        [("events", 0), ("events", 1)], log_starts={("events", 0): 5}, log_ends={("events", 0): 9}
    )
    stops = guard(consumer)
    stops.stop(("events", 1), "refused")
    consumer.events.clear()

    seen = await stops.snapshot(
        {("events", 0): 7, ("events", 1): 8}, {("events", 0): 5, ("events", 1): 2}
    )

    assert seen == LogSnapshot(
        frozenset({("events", 1)}),
        {("events", 0): 9},
        {("events", 0): Gap(5, 7, 5, 9, accepted=True)},
    )
    # The log start of a partition stopped here is not asked for.
    assert consumer.events == [("pause", [("events", 1)]), ("beginning_offsets", [("events", 0)])]
    with caplog.at_level(logging.INFO, "service.positions"):
        stops.crossed_gap(("events", 0), seen.gaps[("events", 0)])
        stops.log_was_reset(("events", 0), 9, 1, 3)
    crossed, reset = (r.getMessage() for r in caplog.records if r.name == "service.positions")
    assert crossed == (
        "events[0]: offsets 5..6 are not in the log (compaction or transaction markers); "
        "continuing at 7"
    )
    assert reset.startswith("events[0]: offset 1 arrived but the stored position is 9")
    assert stops.holds(("events", 0))  # the guard checks it now
    assert consumer.events[-1] == ("pause", [("events", 0)])
