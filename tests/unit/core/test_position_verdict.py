"""The pure verdict on a stored position against its partition's log
(service/core/position_verdict.py)."""

from __future__ import annotations

import uuid

import pytest

from service.core.position_verdict import (
    Act,
    Decision,
    LogBounds,
    OnAheadOfLog,
    OnRecordsLost,
    Status,
    Stored,
    classify,
    decide,
    fix,
    lost_in_gap,
    problem,
    reset_target,
)

OLD, NEW = uuid.uuid4(), uuid.uuid4()
STOP, RESTART = OnAheadOfLog.STOP, OnAheadOfLog.RESTART_FROM_LOG_START
GO_ON, HALT = OnRecordsLost.CONTINUE, OnRecordsLost.STOP


@pytest.mark.parametrize(
    ("stored", "log", "status"),
    [
        (None, LogBounds(0, 10), Status.NOT_STORED),
        (Stored(0), LogBounds(0, 0), Status.OK),  # empty log, nothing applied
        (Stored(10), LogBounds(0, 10), Status.OK),  # caught up: at the log end
        (Stored(5), LogBounds(5, 10), Status.OK),  # at the log start
        (Stored(11), LogBounds(0, 10), Status.AHEAD_OF_LOG),
        (Stored(10), LogBounds(0, 4, NEW), Status.AHEAD_OF_LOG),  # no id stored yet
        (Stored(4), LogBounds(5, 10), Status.BEHIND_LOG_START),
        (Stored(3, OLD), LogBounds(0, 10, NEW), Status.TOPIC_ID_CHANGED),  # inside, other id
        (Stored(30, OLD), LogBounds(0, 4, NEW), Status.TOPIC_ID_CHANGED),  # the id tells first
        (Stored(3, OLD), LogBounds(0, 10, None), Status.OK),  # broker gives no id
        (Stored(3, OLD), LogBounds(0, 10, OLD), Status.OK),
    ],
)
def test_classify(stored: Stored | None, log: LogBounds, status: Status) -> None:
    assert classify(stored, log) is status


@pytest.mark.parametrize(
    ("stored", "log", "on_ahead", "on_lost", "decision"),
    [
        (Stored(7, OLD), LogBounds(0, 10, OLD), STOP, GO_ON, Decision(Status.OK, Act.RESUME, 7)),
        # ok, but no topic id stored yet: store it (same offset)
        (Stored(7), LogBounds(0, 10, NEW), STOP, GO_ON, Decision(Status.OK, Act.MOVE, 7)),
        (Stored(7), LogBounds(0, 10), STOP, GO_ON, Decision(Status.OK, Act.RESUME, 7)),
        # never seen: start at the log start, which retention may have moved on
        (None, LogBounds(40, 90, NEW), STOP, HALT, Decision(Status.NOT_STORED, Act.MOVE, 40)),
        # ahead of the log: never skip
        (Stored(30), LogBounds(0, 4), STOP, GO_ON, Decision(Status.AHEAD_OF_LOG, Act.STOP)),
        (Stored(30), LogBounds(0, 4), RESTART, GO_ON, Decision(Status.AHEAD_OF_LOG, Act.MOVE, 0)),
        (
            Stored(30, OLD),
            LogBounds(2, 90, NEW),
            STOP,
            GO_ON,
            Decision(Status.TOPIC_ID_CHANGED, Act.STOP),
        ),
        (
            Stored(30, OLD),
            LogBounds(2, 90, NEW),
            RESTART,
            GO_ON,
            Decision(Status.TOPIC_ID_CHANGED, Act.MOVE, 2),
        ),
        # below the log start: the loss is counted either way
        (
            Stored(3),
            LogBounds(10, 20),
            STOP,
            GO_ON,
            Decision(Status.BEHIND_LOG_START, Act.MOVE, 10, lost=7),
        ),
        (
            Stored(3),
            LogBounds(10, 20),
            RESTART,
            HALT,
            Decision(Status.BEHIND_LOG_START, Act.STOP, None, lost=7),
        ),
    ],
)
def test_decide(
    stored: Stored | None,
    log: LogBounds,
    on_ahead: OnAheadOfLog,
    on_lost: OnRecordsLost,
    decision: Decision,
) -> None:
    assert decide(stored, log, on_ahead, on_lost) == decision


def test_the_defaults_stop_on_a_reset_log_and_go_on_after_retention_loss() -> None:
    assert decide(Stored(30), LogBounds(0, 4)).act is Act.STOP
    assert decide(Stored(3), LogBounds(10, 20)).act is Act.MOVE


@pytest.mark.parametrize(
    ("stored", "first", "log_start", "lost"),
    [
        (10, 25, 20, range(10, 20)),  # 10..19 deleted; 20..24 compacted away
        (10, 25, 25, range(10, 25)),
        (10, 25, 5, range(10, 10)),  # all inside the log: compaction or markers, no loss
        (10, 25, 10, range(10, 10)),
        (10, 25, 40, range(10, 25)),  # the log start moved on since: only the gap counts
    ],
)
def test_lost_in_gap_counts_only_offsets_below_the_log_start(
    stored: int, first: int, log_start: int, lost: range
) -> None:
    assert lost_in_gap(stored, first, log_start) == lost


def test_reset_target() -> None:
    log = LogBounds(5, 50)
    assert reset_target("log-start", log) == 5
    assert reset_target("log-end", log) == 50
    assert reset_target("17", log) == 17
    with pytest.raises(ValueError, match=r"outside the log \[5, 50\]"):
        reset_target("51", log)
    with pytest.raises(ValueError, match="log-start, log-end or an offset"):
        reset_target("start", log)


def test_messages_name_the_partition_offsets_and_the_fix() -> None:
    text = problem("t", 2, Stored(30), LogBounds(0, 4), Status.AHEAD_OF_LOG)
    assert "t[2]" in text and "30" in text and "log start 0, log end 4" in text
    assert "positions reset --partition 2 --to log-start" in fix("t", 2, Status.AHEAD_OF_LOG)
    lost = problem("t", 1, Stored(3), LogBounds(10, 20), Status.BEHIND_LOG_START)
    assert "offsets 3..9 (7 records)" in lost
    changed = problem("t", 0, Stored(3, OLD), LogBounds(0, 9, NEW), Status.TOPIC_ID_CHANGED)
    assert str(OLD) in changed and str(NEW) in changed
