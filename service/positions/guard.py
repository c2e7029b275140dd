"""Keep every partition's stored position honest against Kafka's log while the consumer runs.

When:
- on assignment: every assigned partition is paused, checked (service/core/position_verdict.py
  decides) and only then resumed at its position;
- when a fetch shows it: records below the stored position arrive and the partition's log now
  ends below that position (aiokafka reset the fetch to the new log's start), or a batch skips
  offsets that retention deleted (the write path decides on the guard's `snapshot`, taken
  before it locks the positions, and tells the guard afterwards: `log_was_reset`,
  `crossed_gap`);
- every POSITION_CHECK_INTERVAL_S: the topic ids of running partitions are compared with the
  stored ones (a recreated topic that already holds more records than the stored position
  shows nothing else), and stopped partitions are checked again, so an operator's
  `positions reset` is picked up without a restart.

A stopped partition is paused in the consumer and held back by the write path (nothing of it
is written), listed in `StoppedPartitions` (for readiness) and in the metrics.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from aiokafka import TopicPartition
from prometheus_client import CollectorRegistry, Counter, Gauge
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service.core.position_verdict import (
    Act,
    Decision,
    LogBounds,
    OnAheadOfLog,
    OnRecordsLost,
    Status,
    Stored,
    decide,
    fix,
    lost_in_gap,
    problem,
)
from service.core.records import TopicAndPartition, partition_name, partition_names
from service.kafka.topic_ids import topic_ids
from service.positions.log_snapshot import Gap, LogSnapshot
from service.postgres import consumer_offsets

log = logging.getLogger("service.positions")

# How soon a check that could not run (database or broker unreachable) is tried again.
RETRY_CHECK_S = 2.0


class StoppedPartitions:
    """The partitions this consumer has stopped, each with the reason: readiness fails while
    `stopped()` is not empty."""

    def __init__(self) -> None:
        self._reasons: dict[TopicAndPartition, str] = {}

    def stopped(self) -> dict[TopicAndPartition, str]:
        return dict(self._reasons)

    def __contains__(self, tp: object) -> bool:
        return tp in self._reasons

    def reason(self, tp: TopicAndPartition) -> str | None:
        return self._reasons.get(tp)

    def add(self, tp: TopicAndPartition, reason: str) -> None:
        self._reasons[tp] = reason

    def discard(self, tp: TopicAndPartition) -> None:
        self._reasons.pop(tp, None)

    def problem(self) -> str | None:
        """The readiness check: None while no partition is stopped, else each one's reason."""
        if not self._reasons:
            return None
        named = "; ".join(
            f"{partition_name(tp)}: {why}" for tp, why in sorted(self._reasons.items())
        )
        return (
            f"{len(self._reasons)} partition(s) stopped: {named}; inspect and reset them with "
            "`python -m service positions` (see README, Stored positions and the log)"
        )


class PositionMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.stopped = Gauge(
            "inventory_sink_partition_stopped",
            "1 while a partition is stopped because its stored position does not match the "
            "log (see `python -m service positions`).",
            ["topic", "partition"],
            registry=registry,
        )
        self.stops = Counter(
            "inventory_sink_partition_stops_total",
            "Partitions stopped, by status (ahead-of-log, topic-id-changed, behind-log-start).",
            ["topic", "status"],
            registry=registry,
        )
        self.lost = Counter(
            "inventory_sink_offsets_lost_total",
            "Offsets deleted by Kafka's retention before they were applied.",
            ["topic", "partition"],
            registry=registry,
        )
        self.moves = Counter(
            "inventory_sink_position_resets_total",
            "Stored positions moved automatically to the log start, by status.",
            ["topic", "status"],
            registry=registry,
        )


class PartitionGuard:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        group_id: str,
        registry: CollectorRegistry,
        on_ahead: OnAheadOfLog = OnAheadOfLog.STOP,
        on_lost: OnRecordsLost = OnRecordsLost.CONTINUE,
        check_interval_s: float = 30.0,
    ) -> None:
        self.sessions = sessions
        self.group_id = group_id
        self.on_ahead = on_ahead
        self.on_lost = on_lost
        self.check_interval_s = check_interval_s
        self.stopped = StoppedPartitions()
        self.metrics = PositionMetrics(registry)
        self._consumer: Callable[[], Any] = lambda: None
        self._pending: set[TopicAndPartition] = set()  # paused, waiting for a check
        self._lost_counted: dict[TopicAndPartition, tuple[int, int]] = {}
        self._wake = asyncio.Event()
        # Told of every partition resumed after a check, with its stored position; must not
        # raise.
        self.on_resume: list[Callable[[TopicAndPartition, int], None]] = []

    def attach(self, consumer: Callable[[], Any]) -> None:
        """Where to find the running AIOKafkaConsumer (None before it starts)."""
        self._consumer = consumer

    # -- the rebalance listener --------------------------------------------------------

    async def on_assigned(self, assigned: Iterable[TopicPartition]) -> None:
        consumer = self._consumer()
        tps = {(tp.topic, tp.partition) for tp in assigned}
        if consumer is None or not tps:
            return
        _pause(consumer, tps)  # nothing is fetched before its position is checked
        await self._check(consumer, tps)

    def on_revoked(self, revoked: Iterable[TopicPartition]) -> None:
        """Another consumer checks these partitions now."""
        for tp in ((tp.topic, tp.partition) for tp in revoked):
            self._pending.discard(tp)
            if tp in self.stopped:
                self.stopped.discard(tp)
                self.metrics.stopped.labels(tp[0], str(tp[1])).set(0)

    def recheck(self, tps: Iterable[TopicAndPartition]) -> None:
        """Pause these partitions and check them again as on assignment: their stored
        positions moved under the consumer (service/health/position_watch.py)."""
        consumer = self._consumer()
        tps = set(tps)
        if consumer is None or not tps:
            return
        _pause(consumer, tps)
        self._pending |= tps
        self._wake.set()

    # -- the write path (service/write_path/transaction.py) -------------------------------

    def holds(self, tp: TopicAndPartition) -> bool:
        """True while nothing of `tp` may be written: stopped, or waiting for a check."""
        return tp in self.stopped or tp in self._pending

    async def snapshot(
        self, first: Mapping[TopicAndPartition, int], sought: Mapping[TopicAndPartition, int]
    ) -> LogSnapshot:
        """What the write path needs before it locks the positions of a batch whose
        partitions start at `first`: which are held, each one's log end (the consumer's own
        fetch state, no round trip), and for the partitions `sought` back to a position the
        batch now starts past, the gap judged against the log start (the one round trip)."""
        consumer = self._consumer()
        if consumer is None:  # stopped (shutdown): no partition is this process's to write
            return LogSnapshot(held=frozenset(first))
        held = frozenset(tp for tp in first if self.holds(tp))
        # Only partitions still assigned have fetch state (aiokafka's highwater asserts it);
        # the write path abandons the others' records once it has locked their positions.
        assigned = consumer.assignment()
        owned = {tp: ktp for tp in first if (ktp := TopicPartition(*tp)) in assigned}
        ends = {
            tp: end for tp, ktp in owned.items() if (end := consumer.highwater(ktp)) is not None
        }
        gapped = [owned[tp] for tp in sorted(sought) if tp in owned and tp not in held]
        starts = await consumer.beginning_offsets(gapped) if gapped else {}
        gaps: dict[TopicAndPartition, Gap] = {}
        for ktp in gapped:
            tp = (ktp.topic, ktp.partition)
            stored, offset, start = sought[tp], first[tp], starts[ktp]
            lost = lost_in_gap(stored, offset, start)
            accepted = not lost or self.on_lost is OnRecordsLost.CONTINUE
            gaps[tp] = Gap(stored, offset, start, ends.get(tp) or offset, accepted)
        return LogSnapshot(held, ends, gaps)

    def log_was_reset(
        self, tp: TopicAndPartition, stored: int, first_offset: int, end: int
    ) -> None:
        """After the transaction: records below the stored position arrived and the log, as
        this consumer last fetched it, ends below it. The partition is held back and checked;
        the check stops it (an ERROR) if the log was really reset. A member cut off from Kafka
        while another moved the position on sees the same from its stale fetch state, so
        this alone is only a warning."""
        log.warning(
            "%s[%d]: offset %d arrived but the stored position is %d and the log, as last "
            "fetched, ends at %d: the log may have been reset (topic deleted and created "
            "again, or Kafka replaced). Nothing of this partition is written; checking it "
            "against the log",
            *tp,
            first_offset,
            stored,
            end,
        )
        _pause(self._consumer(), {tp})
        self._pending.add(tp)
        self._wake.set()

    def crossed_gap(self, tp: TopicAndPartition, gap: Gap) -> None:
        """After the transaction: the write path met `gap` after a seek back and went on past
        it (`gap.accepted`) or held the partition back (it is stopped here)."""
        lost = gap.lost
        if not lost:
            log.info(
                "%s[%d]: offsets %d..%d are not in the log (compaction or transaction "
                "markers); continuing at %d",
                *tp,
                gap.stored,
                gap.first - 1,
                gap.first,
            )
            return
        first_time = self._count_lost(tp, gap.stored, lost.stop)
        if not gap.accepted:
            bounds = LogBounds(gap.log_start, gap.log_end)
            self._stop(self._consumer(), tp, Stored(gap.stored), bounds, Status.BEHIND_LOG_START)
        elif first_time:  # the same batch again (a retried transaction) is said once
            log.error(
                "%s[%d]: offsets %d..%d (%d records) were deleted by retention before they "
                "were applied (log start %d); continuing at %d "
                "(ON_RECORDS_LOST_TO_RETENTION=continue)",
                *tp,
                lost.start,
                lost.stop - 1,
                len(lost),
                gap.log_start,
                gap.first,
            )

    # -- background: stopped and pending partitions, topic ids --------------------------

    async def run(self) -> None:
        """Check again, forever: pending partitions soon, the rest every interval."""
        loop = asyncio.get_running_loop()
        next_full = loop.time() + self.check_interval_s
        while True:
            timeout = RETRY_CHECK_S if self._pending else self.check_interval_s
            timeout = max(min(timeout, next_full - loop.time()), 0.0)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout)
            self._wake.clear()
            consumer = self._consumer()
            if consumer is None:
                continue
            assigned = {(tp.topic, tp.partition) for tp in consumer.assignment()}
            self._pending &= assigned
            full = loop.time() >= next_full
            if full:
                next_full = loop.time() + self.check_interval_s
            try:
                if full:
                    await self._watch_topic_ids(consumer, assigned)
                recheck = (self._pending | set(self.stopped.stopped())) & assigned
                if recheck and (full or self._pending):
                    await self._check(consumer, recheck)
            except Exception as error:  # a check must never end the loop
                log.warning("checking stored positions failed (%s); trying again", error)

    async def _watch_topic_ids(self, consumer: Any, assigned: set[TopicAndPartition]) -> None:
        running = {tp for tp in assigned if not self.holds(tp)}
        if not running:
            return
        ids = await topic_ids(consumer._client, sorted({t for t, _ in running}))
        for topic in {t for t, _ in running}:
            async with self.sessions() as session:
                stored = await consumer_offsets.read(session, self.group_id, topic)
            changed = {
                tp
                for tp in running
                if tp[0] == topic
                and (kept := stored.get(tp[1])) is not None
                and kept.topic_id is not None
                and ids[topic] is not None
                and kept.topic_id != ids[topic]
            }
            if changed:
                log.error(
                    "%s: the topic id is now %s, not the one the stored positions were taken "
                    "in: the topic was deleted and created again. Holding back %s to check them",
                    topic,
                    ids[topic],
                    sorted(p for _, p in changed),
                )
                _pause(consumer, changed)
                self._pending |= changed

    # -- the check itself ---------------------------------------------------------------

    async def _check(self, consumer: Any, tps: set[TopicAndPartition]) -> None:
        """Decide and act for each (paused) partition; on failure they wait for a retry."""
        try:
            bounds = await log_bounds(consumer, tps)
            stored: dict[TopicAndPartition, Stored] = {}
            async with self.sessions() as session:
                for topic in sorted({t for t, _ in tps}):
                    rows = await consumer_offsets.read(session, self.group_id, topic)
                    stored.update({(topic, p): s for p, s in rows.items()})
        except Exception as error:
            log.warning(
                "could not check the stored positions of %s against the log (%s); they stay "
                "paused and are checked again in %.0fs",
                partition_names(tps),
                error,
                RETRY_CHECK_S,
            )
            self._pending |= tps
            return
        for tp in sorted(tps):
            decision = decide(stored.get(tp), bounds[tp], self.on_ahead, self.on_lost)
            try:
                await self._act(consumer, tp, stored.get(tp), bounds[tp], decision)
            except Exception as error:
                log.warning("%s[%d]: could not act on its position (%s); retrying", *tp, error)
                self._pending.add(tp)

    async def _act(
        self,
        consumer: Any,
        tp: TopicAndPartition,
        stored: Stored | None,
        bounds: LogBounds,
        decision: Decision,
    ) -> None:
        if decision.act is Act.STOP:
            assert stored is not None
            if decision.lost:
                self._count_lost(tp, stored.offset, bounds.start)
            self._stop(consumer, tp, stored, bounds, decision.status)
            self._pending.discard(tp)
            return
        assert decision.offset is not None
        if decision.act is Act.MOVE:
            async with self.sessions() as session, session.begin():
                moved = await consumer_offsets.move(
                    session, self.group_id, *tp, stored, decision.offset, bounds.topic_id
                )
            if not moved:  # someone else changed it meanwhile: look again soon
                self._pending.add(tp)
                return
            self._report_move(tp, stored, bounds, decision)
        self._pending.discard(tp)
        if tp in self.stopped:
            log.warning(
                "%s[%d]: the stored position %d fits the log now; resuming",
                *tp,
                decision.offset,
            )
            self.stopped.discard(tp)
            self.metrics.stopped.labels(tp[0], str(tp[1])).set(0)
        ktp = TopicPartition(*tp)
        if ktp in consumer.assignment():  # not revoked while we looked
            consumer.seek(ktp, decision.offset)
            for listener in self.on_resume:
                listener(tp, decision.offset)
            consumer.resume(ktp)

    def _report_move(
        self, tp: TopicAndPartition, stored: Stored | None, bounds: LogBounds, decision: Decision
    ) -> None:
        if decision.status in (Status.OK, Status.NOT_STORED):
            return
        assert stored is not None
        self.metrics.moves.labels(tp[0], decision.status.value).inc()
        if decision.status is Status.BEHIND_LOG_START:
            self._count_lost(tp, stored.offset, bounds.start)
            log.error(
                "%s; continuing at the log start %d (ON_RECORDS_LOST_TO_RETENTION=continue)",
                problem(*tp, stored, bounds, decision.status),
                bounds.start,
            )
            return
        log.warning(
            "%s; restarting the partition at the log start %d and applying offsets %d..%d "
            "(ON_POSITION_AHEAD_OF_LOG=restart-from-log-start)",
            problem(*tp, stored, bounds, decision.status),
            bounds.start,
            bounds.start,
            bounds.end - 1,
        )

    def _stop(
        self,
        consumer: Any,
        tp: TopicAndPartition,
        stored: Stored,
        bounds: LogBounds,
        status: Status,
    ) -> None:
        _pause(consumer, {tp})
        reason = problem(*tp, stored, bounds, status)
        if self.stopped.reason(tp) == reason:
            return  # already said
        self.stopped.add(tp, reason)
        self.metrics.stopped.labels(tp[0], str(tp[1])).set(1)
        self.metrics.stops.labels(tp[0], status.value).inc()
        log.error(
            "%s. The partition is stopped: nothing of it is consumed or written. %s",
            reason,
            fix(*tp, status),
        )

    def _count_lost(self, tp: TopicAndPartition, stored: int, stop: int) -> bool:
        """Count offsets [stored, stop) as lost, once however often they are seen; True the
        first time."""
        if self._lost_counted.get(tp) == (stored, stop) or stop <= stored:
            return False
        self._lost_counted[tp] = (stored, stop)
        self.metrics.lost.labels(tp[0], str(tp[1])).inc(stop - stored)
        return True


async def log_bounds(
    consumer: Any, tps: set[TopicAndPartition]
) -> dict[TopicAndPartition, LogBounds]:
    ktps = [TopicPartition(*tp) for tp in sorted(tps)]
    starts = await consumer.beginning_offsets(ktps)
    ends = await consumer.end_offsets(ktps)
    ids = await topic_ids(consumer._client, sorted({tp.topic for tp in ktps}))
    return {(tp.topic, tp.partition): LogBounds(starts[tp], ends[tp], ids[tp.topic]) for tp in ktps}


def _pause(consumer: Any, tps: Iterable[TopicAndPartition]) -> None:
    if consumer is None:  # stopped: it fetches nothing
        return
    owned = consumer.assignment()
    ktps = [ktp for ktp in (TopicPartition(*tp) for tp in tps) if ktp in owned]
    if ktps:
        consumer.pause(*ktps)
