"""The write path: one batch of records becomes one PostgreSQL transaction.

decode -> lock positions -> drop redelivered records -> claim the ids of stock adjustments
(finding duplicates; versioned events need none) -> read states (no row locks) -> fold (pure)
-> release the claims of rejected adjustments -> write
states (only if unchanged since read, else retry) and positions -> dead-letter the unusable ->
commit.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service.core.claims import claimed_ids, claims_to_release
from service.core.decoding import DEFAULT_MAX_RECORD_BYTES, Unusable, decode
from service.core.domain import Applied, Event, Outcome, Reason, Rejected, Stale, fold
from service.core.letters import DeadLetter
from service.core.records import Record, Run, TopicAndPartition, first_offsets, partition_runs
from service.kafka.dead_letter_producer import DeadLetterSink
from service.observability.logs import partition_fields, record_fields
from service.observability.metrics import Metrics
from service.postgres import consumer_offsets, processed_events, products
from service.write_path.retry import Backoff, is_permanent, retry_forever

log = logging.getLogger("service.pipeline")

Ownership = Callable[[str, int], bool]
# Records validated between yields to the event loop. Each database reply of the transaction
# in flight waits for the chunk being validated: smaller chunks answer it sooner, at some
# cost per yield. Chosen with the benchmark (bench/README.md); measure again before changing.
DECODE_CHUNK = 64


class PositionGuard(Protocol):
    """Checks stored positions against Kafka's log (service/positions/guard.py)."""

    def holds(self, tp: TopicAndPartition) -> bool:
        """True while nothing of the partition may be written (stopped or being checked)."""

    def log_was_reset(self, tp: TopicAndPartition, stored: int, first_offset: int) -> bool:
        """Records below the stored position arrived: True if the log was reset (the
        partition is then held back), False for an ordinary redelivery."""

    async def accept_gap(self, tp: TopicAndPartition, stored: int, first_offset: int) -> bool:
        """Offsets [stored, first_offset) are missing even after a seek back: True to move
        on past them, False if the partition was stopped."""


@dataclass(slots=True)
class BatchReport:
    records: int = 0
    applied: int = 0
    stale: int = 0
    duplicates: int = 0
    redelivered: int = 0
    abandoned: int = 0
    dead_lettered: Counter[str] = field(default_factory=Counter)
    # Partitions whose batch started past the stored position: the consumer must seek back.
    rewind: dict[tuple[str, int], int] = field(default_factory=dict)
    # ... and the first offset of the records abandoned there (see overlap.OverlappedWriter).
    fence: dict[tuple[str, int], int] = field(default_factory=dict)
    # The positions this batch committed to the database.
    next_offsets: dict[tuple[str, int], int] = field(default_factory=dict)

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
            rewind={**self.rewind, **other.rewind},
            fence={**other.fence, **self.fence},
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
        guard: PositionGuard | None = None,
    ) -> None:
        self.max_record_bytes = max_record_bytes
        self.sessions = sessions
        self.guard = guard
        self.dead_letters = dead_letters
        self.group_id = group_id
        self.backoff = backoff
        self.metrics = metrics or Metrics()
        self._rewound: dict[tuple[str, int], int] = {}
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

    async def write(
        self,
        records: Sequence[Record],
        decoded: Sequence[Event | Unusable],
        still_owned: Ownership | None = None,
    ) -> BatchReport:
        """Commit an already decoded batch exactly once; retries transient failures until it
        commits.

        `still_owned(topic, partition)` is asked after the partition rows are locked: records
        of a partition this consumer lost in a rebalance are abandoned (the new owner reads
        them again from the stored position) and nothing is written for that partition.
        """
        if not records:
            return BatchReport()
        started = time.perf_counter()
        failures = 0

        def failed(_error: BaseException) -> None:
            nonlocal failures
            failures += 1
            self.metrics.retries.inc()

        report = await retry_forever(
            lambda: self._commit_isolating(records, decoded, still_owned),
            self.backoff,
            what=f"batch of {len(records)} records",
            on_retry=failed,
        )
        self._rewound.update(report.rewind)
        self._observe(report, time.perf_counter() - started)
        for listener in self.on_commit:
            listener(report)
        if failures:
            for recovered in self.on_recovery:
                recovered()
        return report

    def forget_rewind(self, tp: TopicAndPartition) -> None:
        """Forget that `tp` was sought back to its stored position: a batch that starts past
        the position is then rewound again rather than taken for a gap in the log."""
        self._rewound.pop(tp, None)

    async def _commit_isolating(
        self,
        records: Sequence[Record],
        decoded: Sequence[Event | Unusable],
        still_owned: Ownership | None,
    ) -> BatchReport:
        """Commit the batch; if the database refuses its data, find the refusing record by
        bisection (committing the halves in order) and dead-letter it as `unstorable`, so one
        such record can never stop the consumer. Transient failures propagate to the retry."""
        try:
            return await self._commit(records, decoded, still_owned)
        except Exception as error:
            if not is_permanent(error):
                raise
            if len(records) == 1:
                log.error(
                    "the database refused %s[%d]@%d: %s; dead-lettering it",
                    records[0].topic,
                    records[0].partition,
                    records[0].offset,
                    error,
                    extra=record_fields(records[0]),
                )
                refused = Unusable(
                    Reason.UNSTORABLE,
                    f"the database refused this event ({type(error).__name__}: "
                    f"{str(error).splitlines()[0][:300]}); fix the event or the schema",
                )
                return await self._commit(records, [refused], still_owned)
            middle = len(records) // 2
            first = await self._commit_isolating(records[:middle], decoded[:middle], still_owned)
            second = await self._commit_isolating(records[middle:], decoded[middle:], still_owned)
            return first.merged(second)

    async def _commit(
        self,
        records: Sequence[Record],
        decoded: Sequence[Event | Unusable],
        still_owned: Ownership | None,
    ) -> BatchReport:
        report = BatchReport(records=len(records))
        runs = partition_runs(records)
        async with self.sessions() as session, session.begin():
            positions = await consumer_offsets.lock_positions(
                session, self.group_id, {run.tp for run in runs}
            )
            if still_owned is not None:
                lost = {tp for tp in positions if not still_owned(*tp)}
                if lost:
                    log.info(
                        "abandoning records of revoked partitions %s",
                        sorted(lost),
                        extra={"partitions": [f"{t}[{p}]" for t, p in sorted(lost)]},
                    )
                    report.abandoned = sum(run.stop - run.start for run in runs if run.tp in lost)
                    positions = {tp: o for tp, o in positions.items() if tp not in lost}
            self._hold_back(records, runs, positions, report)
            await self._guard_gaps(records, runs, positions, report)
            fresh, items, next_offsets = _fresh(records, decoded, runs, positions)
            report.redelivered = len(records) - len(fresh) - report.abandoned

            events = [item for item in items if not isinstance(item, Unusable)]
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
            dead = _dead_letters(fresh, items, result.outcomes)
            report.dead_lettered.update(letter.reason.value for letter in dead)

            await products.save_products(session, list(result.changed.values()), read)
            await consumer_offsets.advance_positions(session, self.group_id, next_offsets)
            report.next_offsets = next_offsets
            # Published and acknowledged before the transaction commits: a crash in between
            # re-delivers the batch and re-publishes the letters (at-least-once on the DLQ,
            # deduplicated by original.topic/partition/offset), never loses one.
            await self.dead_letters.send(dead)
        return report

    def _hold_back(
        self,
        records: Sequence[Record],
        runs: Sequence[Run],
        positions: dict[TopicAndPartition, int],
        report: BatchReport,
    ) -> None:
        """Write nothing of a partition whose stored position does not match the log (the
        guard stopped it or is checking it), nor of one whose log was reset under us: its
        records are new ones, not redeliveries of those the stored position covers."""
        if self.guard is None:
            return
        first = first_offsets(records, runs)
        for tp in sorted(positions):
            stored = positions[tp]
            if self.guard.holds(tp) or (
                first[tp] < stored and self.guard.log_was_reset(tp, stored, first[tp])
            ):
                report.abandoned += sum(run.stop - run.start for run in runs if run.tp == tp)
                del positions[tp]

    async def _guard_gaps(
        self,
        records: Sequence[Record],
        runs: Sequence[Run],
        positions: dict[TopicAndPartition, int],
        report: BatchReport,
    ) -> None:
        """Never move a stored position over records this consumer has not seen.

        A batch that starts past the stored position means records in between were not
        delivered to this handler. The partition's records are abandoned and the consumer
        seeks back to the stored position. If the batch after that seek still starts past it,
        those offsets are not in the log: inside the log they are compaction or transaction
        markers (the gap is accepted); below the log start retention deleted them before they
        were applied, which the guard counts and logs as an ERROR, and either accepts or
        answers by stopping the partition (ON_RECORDS_LOST_TO_RETENTION).
        """
        for tp, offset in first_offsets(records, runs).items():
            if tp not in positions:
                continue
            stored = positions[tp]
            if offset <= stored:
                continue
            if self._rewound.get(tp) == stored:
                if self.guard is not None:
                    if not await self.guard.accept_gap(tp, stored, offset):
                        report.abandoned += sum(
                            run.stop - run.start for run in runs if run.tp == tp
                        )
                        del positions[tp]
                    continue
                log.info(
                    "%s[%d]: offsets %d..%d are not in the log (retention, compaction or "
                    "transaction markers); continuing at %d",
                    *tp,
                    stored,
                    offset - 1,
                    offset,
                    extra=partition_fields(tp, offset) | {"stored_offset": stored},
                )
                continue
            log.warning(
                "%s[%d]: batch starts at offset %d but the database is at %d; seeking back "
                "so no record is skipped",
                *tp,
                offset,
                stored,
                extra=partition_fields(tp, offset) | {"stored_offset": stored},
            )
            report.rewind[tp] = stored
            report.fence[tp] = offset
            report.abandoned += sum(run.stop - run.start for run in runs if run.tp == tp)
            del positions[tp]

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


def _fresh(
    records: Sequence[Record],
    decoded: Sequence[Event | Unusable],
    runs: Sequence[Run],
    positions: dict[TopicAndPartition, int],
) -> tuple[list[Record], list[Event | Unusable], dict[TopicAndPartition, int]]:
    """The records at or past their partition's stored position (those of partitions not in
    `positions` are left out), their decoded items, and each partition's next position."""
    fresh: list[Record] = []
    items: list[Event | Unusable] = []
    next_offsets: dict[TopicAndPartition, int] = {}
    for run in runs:
        stored = positions.get(run.tp)
        if stored is None:
            continue
        start, stop = run.start, run.stop
        if records[start].offset < stored:  # redelivered: skip up to the stored position
            start = next((i for i in range(start, stop) if records[i].offset >= stored), stop)
        if start == stop:
            continue
        fresh.extend(records[start:stop])
        items.extend(decoded[start:stop])
        following = records[stop - 1].offset + 1
        if following > next_offsets.get(run.tp, 0):
            next_offsets[run.tp] = following
    return fresh, items, next_offsets


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
