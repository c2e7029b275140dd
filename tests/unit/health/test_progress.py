"""Lag, progress and stalls per partition, with a clock the tests move by hand."""

from __future__ import annotations

from service.health.progress import ProgressTracker, lost_commits, stall_problem

A0, A1, A2, A3 = ("events", 0), ("events", 1), ("events", 2), ("events", 3)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def by_tp(snapshot: tuple) -> dict:
    return {p.tp: p for p in snapshot}


def test_a_caught_up_partition_has_no_lag_and_is_never_stalled() -> None:
    clock = Clock()
    tracker = ProgressTracker(clock)
    tracker.committed({A0: 50})
    clock.advance(3600)
    (p,) = tracker.observe([A0], {}, {A0: 0}, {A0: 50})
    assert (p.stored, p.lag, p.seconds_since_progress) == (50, 0, 0.0)
    assert stall_problem(tracker.snapshot, 120) is None


def test_lag_without_progress_stalls_after_the_timeout_and_names_the_partition() -> None:
    clock = Clock()
    tracker = ProgressTracker(clock)
    tracker.committed({A0: 50, A1: 7})
    tracker.observe([A0, A1], {}, {}, {A0: 50, A1: 7})  # caught up
    clock.advance(10)
    tracker.observe([A0, A1], {}, {}, {A0: 80, A1: 7})  # records arrive, none committed
    clock.advance(119)
    assert stall_problem(tracker.observe([A0, A1], {}, {}, {A0: 80, A1: 7}), 120) is None
    clock.advance(1)
    snapshot = by_tp(tracker.observe([A0, A1], {}, {}, {A0: 90, A1: 7}))
    assert snapshot[A0].lag == 40 and snapshot[A0].seconds_since_progress == 120
    assert snapshot[A0].stalled(120) and not snapshot[A1].stalled(120)
    problem = stall_problem(snapshot.values(), 120)
    assert problem is not None
    assert "events[0] lag 40 (stored position 50, log end 90), no progress for 120s" in problem
    assert "events[1]" not in problem and "STALL_TIMEOUT_S=120" in problem


def test_commits_that_advance_keep_a_partition_with_lag_moving() -> None:
    clock = Clock()
    tracker = ProgressTracker(clock)
    tracker.committed({A0: 0})
    tracker.observe([A0], {}, {}, {A0: 5000})  # behind from the first look
    for offset in range(100, 1100, 100):  # always behind, but advancing every 60 s
        tracker.committed({A0: offset})
        clock.advance(60)
        (p,) = tracker.observe([A0], {}, {}, {A0: 5000})
        assert p.lag == 5000 - offset and p.seconds_since_progress == 60
        assert not p.stalled(120)
    clock.advance(61)
    (p,) = tracker.observe([A0], {}, {}, {A0: 5000})
    assert p.stalled(120)
    tracker.committed({A0: 1000})  # the same position again is no progress
    assert tracker.observe([A0], {}, {}, {A0: 5000})[0].stalled(120)
    tracker.committed({A0: 1200})
    assert not tracker.observe([A0], {}, {}, {A0: 5000})[0].stalled(120)


def test_lag_first_seen_long_after_the_last_look_starts_its_clock_then() -> None:
    """Caught up an hour ago and not looked at since: records that just arrived are no
    stall yet (the probe cannot know when they came)."""
    clock = Clock()
    tracker = ProgressTracker(clock)
    tracker.committed({A0: 10})
    tracker.observe([A0], {}, {}, {A0: 10})
    clock.advance(3600)
    (p,) = tracker.observe([A0], {}, {}, {A0: 25})
    assert p.lag == 15 and p.seconds_since_progress == 0 and not p.stalled(120)
    clock.advance(121)
    assert tracker.observe([A0], {}, {}, {A0: 25})[0].stalled(120)


def test_an_unknown_position_counts_from_the_log_start_until_read() -> None:
    clock = Clock()
    tracker = ProgressTracker(clock)
    snapshot = by_tp(tracker.observe([A0, A1], {}, {A0: 5, A1: 0}, {A0: 30, A1: 0}))
    assert snapshot[A0].lag == 25 and snapshot[A0].stored is None
    assert snapshot[A1].lag == 0

    tracker.committed({A1: 3})  # a batch committed after the database was read ...
    stored = {A0: 20, A1: 0}  # ... so the read's older value for A1 is ignored
    snapshot = by_tp(tracker.observe([A0, A1], stored, {A0: 5, A1: 0}, {A0: 30, A1: 3}))
    assert (snapshot[A0].stored, snapshot[A0].lag) == (20, 10)
    assert (snapshot[A1].stored, snapshot[A1].lag) == (3, 0)


def test_the_first_read_is_no_progress_and_later_reads_that_advance_are() -> None:
    clock = Clock()
    tracker = ProgressTracker(clock)
    tracker.observe([A0], {}, {A0: 0}, {A0: 30})  # behind from the first look
    clock.advance(200)
    assert tracker.observe([A0], {A0: 10}, {A0: 0}, {A0: 30})[0].stalled(120)
    # Another process (or this one, unreported) moved the stored position on.
    (p,) = tracker.observe([A0], {A0: 12}, {A0: 0}, {A0: 30})
    assert (p.stored, p.lag, p.seconds_since_progress) == (12, 18, 0.0)


def test_lag_is_measured_from_the_database_not_from_what_this_process_committed() -> None:
    """After a failover the database holds less than this process committed: until the
    partition is resumed there, the tracker keeps what it knew (a read never lowers it), and
    the lag shows once it is resumed at the database's position."""
    clock = Clock()
    tracker = ProgressTracker(clock)
    tracker.committed({A0: 5000})
    (p,) = tracker.observe([A0], {A0: 5000}, {A0: 0}, {A0: 5000})
    assert p.lag == 0
    (p,) = tracker.observe([A0], {A0: 1400}, {A0: 0}, {A0: 5000})
    assert p.stored == 5000
    tracker.resumed(A0, 1400)
    (p,) = tracker.observe([A0], {A0: 1400}, {A0: 0}, {A0: 5000})
    assert (p.stored, p.lag, p.log_end, p.seconds_since_progress) == (1400, 3600, 5000, 0.0)
    clock.advance(121)  # resumed but never re-applied: a stall, named with both positions
    (p,) = tracker.observe([A0], {A0: 1400}, {A0: 0}, {A0: 5000})
    problem = stall_problem([p], 120)
    assert problem is not None
    assert "events[0] lag 3600 (stored position 1400, log end 5000)" in problem


def test_positions_are_what_this_process_last_knew() -> None:
    tracker = ProgressTracker(Clock())
    assert tracker.positions() == {}
    tracker.committed({A0: 7})
    tracker.resumed(A1, 3)
    tracker.observe([A0, A1, A2], {A2: 9}, {}, {})
    assert tracker.positions() == {A0: 7, A1: 3, A2: 9}
    tracker.resumed(A0, 2)  # a resume may lower it
    assert tracker.positions()[A0] == 2


def test_lost_commits_are_positions_behind_what_was_known() -> None:
    known = {A0: 100, A1: 50, A2: 10}
    stored = {A0: 100, A1: 40, A2: None, A3: 5}
    assert lost_commits(known, stored) == {A1: (40, 50), A2: (0, 10)}
    assert lost_commits({}, stored) == {}
    assert lost_commits(known, {A0: 101}) == {}


def test_a_position_below_the_log_start_counts_from_the_log_start() -> None:
    """Retention deleted records never applied: they are no lag, so an idle partition in
    that state is not stalled."""
    tracker = ProgressTracker(Clock())
    tracker.committed({A0: 10})
    (p,) = tracker.observe([A0], {}, {A0: 500}, {A0: 500})
    assert p.lag == 0
    (p,) = tracker.observe([A0], {}, {A0: 500}, {A0: 520})
    assert p.lag == 20


def test_partitions_no_longer_assigned_are_forgotten() -> None:
    clock = Clock()
    tracker = ProgressTracker(clock)
    tracker.committed({A0: 10, A1: 10})
    tracker.observe([A0, A1], {}, {}, {A0: 10, A1: 10})
    assert [p.tp for p in tracker.observe([A1], {}, {}, {A0: 10, A1: 10})] == [A1]
    assert A0 not in tracker.positions()  # re-assigned later: read from the database again
    assert [p.tp for p in tracker.snapshot] == [A1]


def test_without_the_log_end_the_lag_is_unknown_and_nothing_stalls() -> None:
    clock = Clock()
    tracker = ProgressTracker(clock)
    tracker.committed({A0: 10})
    tracker.observe([A0], {}, {}, {})
    clock.advance(1000)
    (p,) = tracker.observe([A0], {}, {}, {})
    assert p.lag is None and not p.stalled(1)
    assert stall_problem([p], 1) is None
