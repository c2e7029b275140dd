"""Does a stored position still belong to its partition's log, and what to do if not. Pure.

The database stores, per partition, the next offset to apply (and, where Kafka exposes one,
the topic's id). Offsets only mean something within one log: when the topic is deleted and
created again, or Kafka is replaced by a fresh cluster, the log starts again at 0 while the
database keeps its old positions. Comparing each stored position with the log's bounds (and
the topic ids) tells the cases apart:

- inside [log start, log end] with the same topic id: ok, resume there;
- ahead of the log end, or another topic id: the log is not the one the position was taken
  in. Never skip: stop the partition (default) or, if chosen, start again from the log start;
- below the log start: retention deleted records that were never applied. The loss
  happened upstream: count it and go on from the log start (default) or stop;
- no stored position: a partition this database has never seen starts at the log start.
"""

from __future__ import annotations

import enum
import uuid
from dataclasses import dataclass


class Status(enum.StrEnum):
    OK = "ok"
    NOT_STORED = "not-stored"
    AHEAD_OF_LOG = "ahead-of-log"
    BEHIND_LOG_START = "behind-log-start"
    TOPIC_ID_CHANGED = "topic-id-changed"


class OnAheadOfLog(enum.StrEnum):
    """ON_POSITION_AHEAD_OF_LOG: what to do with a position ahead of the log or of another
    topic id."""

    STOP = "stop"
    RESTART_FROM_LOG_START = "restart-from-log-start"


class OnRecordsLost(enum.StrEnum):
    """ON_RECORDS_LOST_TO_RETENTION: what to do with a position below the log start."""

    CONTINUE = "continue"
    STOP = "stop"


class Act(enum.StrEnum):
    RESUME = "resume"  # consume from the stored position
    MOVE = "move"  # store `offset` as the position (and the log's topic id), then consume
    STOP = "stop"  # consume nothing of this partition until an operator resets it


@dataclass(frozen=True, slots=True)
class Stored:
    """A stored position: the next offset to apply and the topic id it was taken under."""

    offset: int
    topic_id: uuid.UUID | None = None


@dataclass(frozen=True, slots=True)
class LogBounds:
    """A partition's log now: first offset still kept, next offset to be written, topic id."""

    start: int
    end: int
    topic_id: uuid.UUID | None = None


@dataclass(frozen=True, slots=True)
class Decision:
    status: Status
    act: Act
    offset: int | None = None  # RESUME/MOVE: where consumption continues
    lost: int = 0  # offsets deleted by retention before they were applied


def classify(stored: Stored | None, log: LogBounds) -> Status:
    if stored is None:
        return Status.NOT_STORED
    if None not in (stored.topic_id, log.topic_id) and stored.topic_id != log.topic_id:
        return Status.TOPIC_ID_CHANGED
    if stored.offset > log.end:
        return Status.AHEAD_OF_LOG
    if stored.offset < log.start:
        return Status.BEHIND_LOG_START
    return Status.OK


def decide(
    stored: Stored | None,
    log: LogBounds,
    on_ahead: OnAheadOfLog = OnAheadOfLog.STOP,
    on_lost: OnRecordsLost = OnRecordsLost.CONTINUE,
) -> Decision:
    status = classify(stored, log)
    if status is Status.OK:
        assert stored is not None
        if stored.topic_id is None and log.topic_id is not None:
            return Decision(status, Act.MOVE, stored.offset)  # record the topic id
        return Decision(status, Act.RESUME, stored.offset)
    if status is Status.NOT_STORED:
        return Decision(status, Act.MOVE, log.start)
    assert stored is not None
    if status is Status.BEHIND_LOG_START:
        lost = log.start - stored.offset
        if on_lost is OnRecordsLost.CONTINUE:
            return Decision(status, Act.MOVE, log.start, lost)
        return Decision(status, Act.STOP, None, lost)
    if on_ahead is OnAheadOfLog.RESTART_FROM_LOG_START:
        return Decision(status, Act.MOVE, log.start)
    return Decision(status, Act.STOP)


def lost_in_gap(stored: int, first_offset: int, log_start: int) -> range:
    """Offsets a batch skipped that retention deleted before they were applied.

    A batch of a partition that starts at `first_offset` past the stored position (after a
    seek back to it) skipped [stored, first_offset). Of these, the ones below the log start
    were deleted unapplied; the ones inside the log are compaction or transaction markers
    and carry no record to lose.
    """
    return range(stored, min(first_offset, log_start))


def reset_target(to: str, log: LogBounds) -> int:
    """The offset `positions reset --to` names: log-start, log-end or a number in the log."""
    if to == "log-start":
        return log.start
    if to == "log-end":
        return log.end
    try:
        offset = int(to)
    except ValueError:
        raise ValueError(f"--to {to!r}: give log-start, log-end or an offset") from None
    if not log.start <= offset <= log.end:
        raise ValueError(
            f"--to {offset} is outside the log [{log.start}, {log.end}]: "
            "a position must name a record that is in the log, or its end"
        )
    return offset


def problem(topic: str, partition: int, stored: Stored, log: LogBounds, status: Status) -> str:
    """What is wrong with a partition's stored position, in an operator's words."""
    where = f"{topic}[{partition}]: stored position {stored.offset}"
    bounds = f"log start {log.start}, log end {log.end}"
    if status is Status.TOPIC_ID_CHANGED:
        return (
            f"{where} was taken in topic id {stored.topic_id}, but the topic now has id "
            f"{log.topic_id} ({bounds}): the topic was deleted and created again or Kafka was "
            "replaced, so its offsets name other records"
        )
    if status is Status.AHEAD_OF_LOG:
        return (
            f"{where} is ahead of the log ({bounds}): the topic was deleted and created "
            "again or Kafka was replaced (its data lost), so its offsets name other records"
        )
    if status is Status.BEHIND_LOG_START:
        return (
            f"{where} is below the log start ({bounds}): retention deleted offsets "
            f"{stored.offset}..{log.start - 1} ({log.start - stored.offset} records) before "
            "they were applied; that loss happened in Kafka"
        )
    return f"{where} ({bounds}): {status}"


def fix(topic: str, partition: int, status: Status) -> str:
    """The operator's way out of a stopped partition."""
    command = f"python -m service positions reset --partition {partition} --to log-start"
    if status is Status.BEHIND_LOG_START:
        return (
            f"fix: accept the loss with `{command}` (or re-publish the lost events upstream "
            "first), or set ON_RECORDS_LOST_TO_RETENTION=continue"
        )
    return (
        f"fix: check that {topic} is the topic you mean, then `{command}` to apply every "
        "record of the new log (`python -m service positions` shows all partitions), or set "
        "ON_POSITION_AHEAD_OF_LOG=restart-from-log-start"
    )
