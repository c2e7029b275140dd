"""The write path: one batch of records becomes one PostgreSQL transaction.

snapshot of the log (the partition guard, before any lock) -> lock positions -> admit (what
of the batch may be written: admission.py) -> claim the ids of stock adjustments (finding
duplicates; versioned events need none) -> read states (no row locks) -> fold (pure) ->
release the claims of rejected adjustments -> write states (only if unchanged since read,
else retry) and positions -> dead-letter the unusable -> commit -> tell the guard what the
admission found (pauses and stops happen here, after the locks are gone).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service.core.claims import claimed_ids, claims_to_release
from service.core.decoding import DEFAULT_MAX_RECORD_BYTES, Unusable, decode
from service.core.domain import Applied, Event, Outcome, Reason, Rejected, Stale, fold
from service.core.failures import OwnershipLapsed
from service.core.letters import DeadLetter
from service.core.records import Record, TopicAndPartition
from service.kafka.dead_letter_producer import DeadLetterSink
from service.observability.logs import brief, record_fields
from service.observability.metrics import Metrics
from service.positions.log_snapshot import Gap, LogSnapshot
from service.postgres import consumer_offsets, processed_events, products
from service.write_path.admission import Admission, Ownership, admit
from service.write_path.batch import Batch
from service.write_path.freezes import FreezeWatch
from service.write_path.part_size import PartSize
from service.write_path.retry import Backoff, is_permanent, ran_out_of_time, retry_forever
from service.write_path.rewinds import Rewind, Rewinds

log = logging.getLogger("service.pipeline")

# Records validated between yields to the event loop. Each database reply of the transaction
# in flight waits for the chunk being validated: smaller chunks answer it sooner, at some
# cost per yield. Chosen with the benchmark (bench/README.md); measure again before changing.
DECODE_CHUNK = 64
# Asked while the dead-letter topic is slow to acknowledge (WritePath._kept_busy).
_STILL_HERE = text("SELECT 1")


class PositionGuard(Protocol):
    """Stored positions against Kafka's log, as the write path asks (service/positions/guard.py,
    with the partitions a refused dead letter stopped: service/write_path/letter_stops.py)."""

    async def snapshot(
        self, first: Mapping[TopicAndPartition, int], sought: Mapping[TopicAndPartition, int]
    ) -> LogSnapshot:
        """Before the positions are locked: what the admission needs of the log for a batch
        whose partitions start at `first` (`sought`: those sought back to a position the
        batch starts past, where a gap is expected)."""

    def log_was_reset(
        self, tp: TopicAndPartition, stored: int, first_offset: int, end: int
    ) -> None:
        """After the transaction: the partition's log was reset under it (it is held back)."""

    def crossed_gap(self, tp: TopicAndPartition, gap: Gap) -> None:
        """After the transaction: the admission met `gap` (crossed it, or held the partition
        back if the guard refused it)."""


@dataclass(slots=True)
class BatchReport:
    records: int = 0
    applied: int = 0
    stale: int = 0
    duplicates: int = 0
    redelivered: int = 0
    abandoned: int = 0
    dead_lettered: Counter[str] = field(default_factory=Counter)
    # Partitions whose batch started past the stored position: where the consumer seeks back
    # to, and from which offset their records were abandoned (rewinds.py).
    rewinds: dict[TopicAndPartition, Rewind] = field(default_factory=dict)
    # The positions this batch committed to the database.
    next_offsets: dict[TopicAndPartition, int] = field(default_factory=dict)

    def merged(self, other: BatchReport) -> BatchReport:
        """The report of two consecutive parts of one batch."""
        return BatchReport(
            records=self.records + other.records,
            applied=self.applied + other.applied,
            stale=self.stale + other.stale,
            duplicates=self.duplicates + other.duplicates,
            redelivered=self.redelivered + other.redelivered,
            abandoned=self.abandoned + other.abandoned,
            dead_lettered=self.dead_lettered + other.dead_lettered,
            rewinds=_merged_rewinds(self.rewinds, other.rewinds),
            next_offsets={**self.next_offsets, **other.next_offsets},
        )

    def as_counts(self) -> dict[str, int]:
        return {
            "applied": self.applied,
            "stale": self.stale,
            "duplicate": self.duplicates,
            "redelivered": self.redelivered,
            "abandoned": self.abandoned,
            "dead_lettered": sum(self.dead_lettered.values()),
        }


class WritePath:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        dead_letters: DeadLetterSink,
        group_id: str,
        backoff: Backoff,
        metrics: Metrics | None = None,
        max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES,
        *,
        guard: PositionGuard,
        session_timeout_s: float = 10.0,
    ) -> None:
        """`session_timeout_s`: how long the group waits for a silent member
        (KAFKA_SESSION_TIMEOUT_MS), also the idle-in-transaction limit of the sessions'
        connections (service/app.py)."""
        self.max_record_bytes = max_record_bytes
        self.session_timeout_s = session_timeout_s
        self.part_size = PartSize()
        self.sessions = sessions
        self.guard = guard
        self.dead_letters = dead_letters
        self.group_id = group_id
        self.backoff = backoff
        self.metrics = metrics or Metrics()
        self.rewinds = Rewinds()
        # Told of every committed batch (progress tracking); must not raise.
        self.on_commit: list[Callable[[BatchReport], None]] = []
        # Told when a batch committed after failed attempts: the database may have been
        # replaced meanwhile (a failover), so positions are worth reading again; must not raise.
        self.on_recovery: list[Callable[[], None]] = []

    async def decode(self, records: Sequence[Record]) -> list[Event | Unusable]:
        """Validate every record (pure CPU), yielding to the event loop between chunks so a
        transaction in flight keeps talking to the database meanwhile."""
        decoded: list[Event | Unusable] = []
        limit = self.max_record_bytes
        for start in range(0, len(records), DECODE_CHUNK):
            decoded.extend(
                decode(record, limit) for record in records[start : start + DECODE_CHUNK]
            )
            if start + DECODE_CHUNK < len(records):
                await asyncio.sleep(0)
        return decoded

    async def write(self, batch: Batch, still_owned: Ownership) -> BatchReport:
        """Commit an already decoded batch exactly once; retries transient failures until it
        commits.

        `still_owned(topic, partition)` is asked after the partition rows are locked: records
        of a partition this consumer lost in a rebalance are abandoned (the new owner reads
        them again from the stored position) and nothing is written for that partition.
        """
        if not len(batch):
            return BatchReport()
        started = time.perf_counter()
        retried = False
        rest, tried = batch, 0
        report: BatchReport | None = None

        def failed(error: BaseException) -> None:
            nonlocal retried
            retried = True
            self.metrics.retries.inc()
            if tried > 1 and ran_out_of_time(error):
                limit = self.part_size.ran_out_of_time(tried)
                log.warning(
                    "%d records ran out of time in one transaction (%s); writing at most %d "
                    "per transaction until it fits. The link to PostgreSQL or to the "
                    "dead-letter topic is too slow for transactions this size: move the "
                    "service nearer, or raise POSTGRES_TIMEOUT_S",
                    tried,
                    brief(error),
                    limit,
                )

        async def attempt() -> BatchReport:
            nonlocal tried
            tried = self.part_size.of(len(rest))
            return await self._commit_isolating(rest.head(tried), still_owned)

        while len(rest):
            part = await retry_forever(
                attempt, self.backoff, what=f"batch of {len(rest)} records", on_retry=failed
            )
            report = part if report is None else report.merged(part)
            rest = rest.tail(tried)
        assert report is not None
        self.rewinds.settle(report.next_offsets)
        self.rewinds.remember(report.rewinds)
        self._observe(report, time.perf_counter() - started)
        for listener in self.on_commit:
            listener(report)
        if retried:
            for recovered in self.on_recovery:
                recovered()
        return report

    async def _commit_isolating(self, batch: Batch, still_owned: Ownership) -> BatchReport:
        """Commit the batch; if the database refuses its data, find the refusing record by
        bisection (committing the halves in order) and dead-letter it as `unstorable`, so one
        such record can never stop the consumer. Transient failures propagate to the retry."""
        try:
            return await self._commit(batch, still_owned)
        except Exception as error:
            if not is_permanent(error):
                raise
            if len(batch) == 1:
                (record,) = batch.records
                log.error(
                    "the database refused %s[%d]@%d: %s; dead-lettering it",
                    record.topic,
                    record.partition,
                    record.offset,
                    error,
                    extra=record_fields(record),
                )
                refused = Unusable(
                    Reason.UNSTORABLE,
                    f"the database refused this event ({type(error).__name__}: "
                    f"{str(error).splitlines()[0][:300]}); fix the event or the schema",
                )
                return await self._commit(
                    Batch(batch.records, [refused], batch.runs, batch.first), still_owned
                )
            first_half, second_half = batch.halves()
            first = await self._commit_isolating(first_half, still_owned)
            second = await self._commit_isolating(second_half, still_owned)
            return first.merged(second)

    async def _commit(self, batch: Batch, still_owned: Ownership) -> BatchReport:
        # Asked before the transaction: the rows locked below are not kept waiting for Kafka.
        snapshot = await self.guard.snapshot(batch.first, self.rewinds.sought(batch.first))
        async with self.sessions() as session, session.begin():
            locked = await consumer_offsets.lock_positions(session, self.group_id, set(batch.first))
            freezes = FreezeWatch()
            try:
                admission = admit(batch, locked, snapshot, self.rewinds, still_owned)
                report = await self._write(session, admission)
                report.records = len(batch)
            finally:
                frozen = freezes.stop()
            self._not_frozen_meanwhile(frozen)
        self._tell_guard(admission)
        return report

    async def _write(self, session: AsyncSession, admission: Admission) -> BatchReport:
        """Write what the admission kept, in the transaction of `session`."""
        report = BatchReport(
            redelivered=admission.redelivered,
            abandoned=admission.abandoned_records,
            rewinds=admission.rewinds,
        )
        events = [item for item in admission.items if not isinstance(item, Unusable)]
        already = await processed_events.claim_events(session, claimed_ids(events))
        states, read = await products.load_products(session, {e.product_id for e in events})
        result = fold(states, events, already)

        fates = Counter(map(type, result.outcomes))
        report.applied, report.stale = fates[Applied], fates[Stale]
        report.duplicates = fates[type(None)]
        if fates[Rejected]:  # a rejected adjustment's claim is given back (claims.py)
            await processed_events.release_events(
                session,
                claims_to_release(events, result.outcomes, already),
            )
        dead = _dead_letters(admission.fresh, admission.items, result.outcomes)
        report.dead_lettered.update(letter.reason.value for letter in dead)

        await products.save_products(session, list(result.changed.values()), read)
        await consumer_offsets.advance_positions(session, self.group_id, admission.next_offsets)
        report.next_offsets = admission.next_offsets
        # Published and acknowledged before the transaction commits: a crash in between
        # re-delivers the batch and re-publishes the letters (at-least-once on the DLQ,
        # deduplicated by original.topic/partition/offset), never loses one.
        await self._kept_busy(session, self.dead_letters.send(dead))
        return report

    async def _kept_busy(self, session: AsyncSession, acknowledged: Awaitable[None]) -> None:
        """Wait for the letters' acknowledgement, keeping the transaction from looking idle.
        PostgreSQL ends a transaction idle for the session timeout, meant for a client that
        froze or vanished; a live one whose letters are slow to be acknowledged (a distant or
        struggling dead-letter topic) asks it something every quarter of that time."""
        sending = asyncio.ensure_future(acknowledged)
        try:
            while True:
                done, _ = await asyncio.wait({sending}, timeout=self.session_timeout_s / 4)
                if done:
                    return sending.result()
                await session.execute(_STILL_HERE)
        finally:
            if not sending.done():
                sending.cancel()

    def _not_frozen_meanwhile(self, frozen_s: float) -> None:
        """Before the commit: ownership was asked when the transaction began. A process
        frozen for most of the session timeout may have missed the heartbeats the group
        waits for (sent every quarter of it) and lost its partitions to another member; it
        may wake in the middle of a statement the server was still waiting for, where no
        idle limit ends it. Committing then would write partitions another member owns."""
        if frozen_s > self.session_timeout_s / 2:
            raise OwnershipLapsed(
                f"the process stood still for {frozen_s:.1f}s inside a transaction, over half "
                f"the group's session timeout ({self.session_timeout_s:g}s): its partitions "
                "may have been given to another member; rolled back, to be run again on what "
                "this consumer owns now"
            )

    def _tell_guard(self, admission: Admission) -> None:
        """The transaction committed and its locks are gone: the guard may now pause and stop
        partitions on what the admission found."""
        for tp, reset in admission.log_resets.items():
            self.guard.log_was_reset(tp, reset.stored, reset.first, reset.log_end)
        for tp, gap in admission.gaps.items():
            self.guard.crossed_gap(tp, gap)

    def _observe(self, report: BatchReport, seconds: float) -> None:
        m = self.metrics
        for fate, count in report.as_counts().items():
            if count:
                m.events.labels(fate).inc(count)
        for reason, count in report.dead_lettered.items():
            m.dead_letters.labels(reason).inc(count)
        m.batches.inc()
        m.batch_seconds.observe(seconds)
        m.last_commit.set_to_current_time()
        log.debug("batch committed in %.3fs: %s", seconds, report.as_counts())


def _merged_rewinds(
    earlier: Mapping[TopicAndPartition, Rewind], later: Mapping[TopicAndPartition, Rewind]
) -> dict[TopicAndPartition, Rewind]:
    """The rewinds of two consecutive parts of a batch: the later position to seek to, and
    the first offset abandoned (records from there on were fetched before the seek)."""
    merged = {**earlier, **later}
    for tp in earlier.keys() & later.keys():
        merged[tp] = Rewind(later[tp].to, earlier[tp].fence)
    return merged


def _dead_letters(
    records: Sequence[Record], items: Sequence[Event | Unusable], outcomes: Sequence[Outcome | None]
) -> list[DeadLetter]:
    """In record order: the records that are no event, and the events the fold rejected.
    `outcomes` holds one entry per event among `items`, in order."""
    letters: list[DeadLetter] = []
    fates = iter(outcomes)
    for record, item in zip(records, items, strict=True):
        if isinstance(item, Unusable):
            letters.append(DeadLetter(record, item.reason, item.message))
            continue
        outcome = next(fates)
        if isinstance(outcome, Rejected):
            letters.append(DeadLetter(record, outcome.reason, outcome.message))
    return letters
