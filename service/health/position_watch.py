"""Watch every owned partition's position in PostgreSQL against the log and against what this
process committed: the one source of lag, stalls and of recovery from lost commits.

The database is the only source of positions, after every reconnect too. Each look (every
PROGRESS_CHECK_INTERVAL_S, at once after a batch committed following failed attempts, and
when readiness is asked) reads the stored positions of the assigned partitions and the log's
bounds. Lag and stalls are measured from those stored positions.

A stored position behind what this process saw committed means committed transactions are
gone: a failover to an asynchronous replica that had not received them, or a restore. The
consumer's fetch positions are then ahead of the database, and a partition that gets no new
record would never be read again. Such partitions go back to the check they get on
assignment (service/positions/guard.py): paused, compared with the log, sought to the stored
position and resumed, so their records are applied again.

Nothing can be written past a gap meanwhile: every transaction of the write path locks the
stored position of each partition it writes and abandons that partition's records unless
they start at or below it (service/write_path/admission.py); a resumed
partition's rewind memory and fence are forgotten, so the write path never takes a gap it saw
before a resume for one it may accept (`OverlappedWriter.forget`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Collection

from aiokafka import AIOKafkaConsumer, TopicPartition
from prometheus_client import CollectorRegistry, Counter

from service.core.records import TopicAndPartition
from service.health.checks import KAFKA_TIMEOUT_S
from service.health.probe import Check, Problem
from service.health.progress import PartitionProgress, ProgressTracker, lost_commits, stall_problem

log = logging.getLogger("service.position_watch")
# How soon to look again after a look that could not read the database (it may be failing
# over: the sooner the positions are read again, the sooner lost commits are re-applied).
RETRY_S = 1.0

# Reads the stored positions of the given topics (consumer_offsets.read_positions).
PositionReader = Callable[[set[str]], Awaitable[dict[TopicAndPartition, int]]]
Recheck = Callable[[Collection[TopicAndPartition]], None]
Held = Callable[[TopicAndPartition], bool]


class WatchMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.rollbacks = Counter(
            "inventory_sink_position_rollbacks_total",
            "Times a partition's stored position was found behind what this consumer had "
            "committed (committed transactions lost, e.g. by a database failover); its "
            "records are read again from the stored position.",
            ["topic", "partition"],
            registry=registry,
        )


class PositionWatch:
    def __init__(
        self,
        tracker: ProgressTracker,
        consumer: Callable[[], AIOKafkaConsumer | None],
        read_positions: PositionReader,
        recheck: Recheck,
        held: Held,
        registry: CollectorRegistry,
        interval_s: float = 5.0,
    ) -> None:
        self.tracker = tracker
        self.interval_s = interval_s
        self._consumer = consumer
        self._read_positions = read_positions
        self._recheck = recheck
        self._held = held
        self._lock = asyncio.Lock()  # one look at a time (the loop and readiness)
        self._wake = asyncio.Event()
        self.metrics = WatchMetrics(registry)

    def wake(self) -> None:
        """Look now (a batch committed after failed attempts: the database may have changed)."""
        self._wake.set()

    async def run(self) -> None:
        """Look every interval, or sooner when woken, forever."""
        delay = 0.0
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), delay)
            self._wake.clear()
            try:
                read = await self.look()
            except Exception as error:  # a look must never end the loop
                log.warning("checking positions against the log failed (%s); retrying", error)
                read = False
            delay = self.interval_s if read else min(RETRY_S, self.interval_s)

    async def look(self) -> bool:
        """Observe the assigned partitions; False if the database could not be read."""
        async with self._lock:
            return await self._look()

    async def refresh(self) -> tuple[PartitionProgress, ...]:
        await self.look()
        return self.tracker.snapshot

    def stall_check(self, timeout_s: float) -> Check:
        async def progress() -> Problem:
            return stall_problem(await self.refresh(), timeout_s)

        return progress

    async def _look(self) -> bool:
        consumer = self._consumer()
        assigned: set[TopicAndPartition] = set()
        if consumer is not None:
            assigned = {(tp.topic, tp.partition) for tp in consumer.assignment()}
        if not assigned or consumer is None:
            self.tracker.observe((), {}, {}, {})
            return True
        starts, ends = await _log_offsets(consumer, sorted(assigned))
        known = self.tracker.positions()  # before the read: every commit reported is in it
        try:
            stored = await self._read_positions({topic for topic, _ in assigned})
        except Exception as error:
            log.debug("cannot read stored positions (%s); using the last known", error)
            self.tracker.observe(assigned, {}, starts, ends)
            return False
        lost = lost_commits(known, {tp: stored.get(tp) for tp in assigned if not self._held(tp)})
        if lost:
            self._read_again(lost)
        self.tracker.observe(assigned, stored, starts, ends)
        return True

    def _read_again(self, lost: dict[TopicAndPartition, tuple[int, int]]) -> None:
        named = ", ".join(
            f"{t}[{p}] at {stored} (this consumer had committed up to {known})"
            for (t, p), (stored, known) in sorted(lost.items())
        )
        log.warning(
            "PostgreSQL holds positions behind those this consumer committed: %s. Committed "
            "transactions were lost (a failover to a replica that had not received them, a "
            "restore) or an operator moved them; reading those partitions again from the "
            "database's positions",
            named,
            extra={
                "positions": {f"{t}[{p}]": s for (t, p), (s, _) in sorted(lost.items())},
                "committed": {f"{t}[{p}]": k for (t, p), (_, k) in sorted(lost.items())},
            },
        )
        for topic, partition in lost:
            self.metrics.rollbacks.labels(topic, str(partition)).inc()
        self._recheck(set(lost))


async def _log_offsets(
    consumer: AIOKafkaConsumer, partitions: list[TopicAndPartition]
) -> tuple[dict[TopicAndPartition, int], dict[TopicAndPartition, int]]:
    """Each partition's log start and end; if the broker does not answer, the end offsets
    the last fetches saw (no starts)."""
    tps = [TopicPartition(*tp) for tp in partitions]
    try:
        # Both at once: each request waits behind the consumer's fetch in flight on the same
        # connection (up to fetch.max.wait.ms, 500 ms), and every scrape of /metrics and every
        # readiness probe makes this look; one after the other, a look took up to a second.
        ends, starts = await asyncio.wait_for(
            asyncio.gather(consumer.end_offsets(tps), consumer.beginning_offsets(tps)),
            KAFKA_TIMEOUT_S,
        )
    except Exception as error:
        log.debug("cannot list offsets (%s); using the last fetched ones", error)
        seen = {(tp.topic, tp.partition): consumer.highwater(tp) for tp in tps}
        return {}, {tp: end for tp, end in seen.items() if end is not None}
    return (
        {(tp.topic, tp.partition): offset for tp, offset in starts.items()},
        {(tp.topic, tp.partition): offset for tp, offset in ends.items()},
    )
