"""The write path's pieces without a database: the redelivery skip, the gap guard, the order
of dead letters, the letter's headers, the key check, the overlap fence, and the order of a
batch's writes within its one transaction, with the partition guard's look at the log before
it and its acts after it (a fake session, store and consumer)."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any
from uuid import UUID

import pytest
from hypothesis import given
from hypothesis import strategies as st

from service.core.decoding import Unusable, decode
from service.core.domain import Applied, ProductState, Reason, Rejected, Stale
from service.core.letters import DeadLetter
from service.core.position_verdict import OnRecordsLost
from service.positions.log_snapshot import Gap, LogSnapshot
from service.write_path import transaction as pipeline
from service.write_path.admission import Admission, admit
from service.write_path.batch import Batch
from service.write_path.letter_stops import LetterStops
from service.write_path.overlap import OverlappedWriter
from service.write_path.retry import Backoff
from service.write_path.rewinds import Rewind, Rewinds
from service.write_path.transaction import BatchReport, WritePath, _dead_letters
from testbed.events import BASE_TIME, adjust, delete, record, upsert
from testbed.fake_consumer import FakeConsumer
from testbed.write_path import MemoryDeadLetterSink, guard, owns_everything, partition_guard
from tests.support.write_path import SimpleRecord, process, seeks_nowhere


def recs(partition: int, *offsets: int, topic: str = "t") -> list[SimpleRecord]:
    return [SimpleRecord(topic, partition, o, b"1", b"x") for o in offsets]


def junk(records: Sequence[SimpleRecord]) -> list[Any]:
    return [Unusable(Reason.INVALID_JSON, f"#{r.offset}") for r in records]


# -- the redelivery skip ------------------------------------------------------------------


def admitted(records: Sequence[SimpleRecord], positions: dict[tuple[str, int], int]) -> Admission:
    return admit(
        Batch.of(records, junk(records)), positions, LogSnapshot(), Rewinds(), owns_everything
    )


@pytest.mark.parametrize(
    ("stored", "kept", "following"),
    [(0, [0, 1, 2, 3, 4], 5), (3, [3, 4], 5), (4, [4], 5), (5, [], None), (9, [], None)],
)
def test_records_below_the_stored_position_are_skipped(
    stored: int, kept: list[int], following: int | None
) -> None:
    admission = admitted(recs(0, 0, 1, 2, 3, 4), {("t", 0): stored})
    assert [r.offset for r in admission.fresh] == kept
    assert [i.message for i in admission.items] == [f"#{o}" for o in kept]
    assert admission.next_offsets == ({} if following is None else {("t", 0): following})
    assert admission.redelivered == 5 - len(kept)


def test_partitions_without_a_locked_position_are_left_out_and_each_gets_its_own_next() -> None:
    records = recs(0, 7, 8) + recs(1, 2, 3) + recs(2, 0) + recs(0, 9)
    batch = Batch.of(records, junk(records))
    positions = {("t", 0): 8, ("t", 1): 2}
    admission = admit(batch, positions, LogSnapshot(), Rewinds(), owns_everything)
    assert [(r.partition, r.offset) for r in admission.fresh] == [(0, 8), (1, 2), (1, 3), (0, 9)]
    assert admission.next_offsets == {("t", 0): 10, ("t", 1): 4}


# -- the gap guard, with the real partition guard on a fake consumer ----------------------


async def test_a_batch_at_or_below_the_stored_position_passes_the_gap_guard() -> None:
    admission = admitted(recs(0, 4, 5) + recs(1, 2), {("t", 0): 4, ("t", 1): 3})
    assert admission.positions == {("t", 0): 4, ("t", 1): 3}
    assert (admission.rewinds, admission.abandoned_records) == ({}, 0)


async def test_a_batch_past_the_stored_position_is_abandoned_and_rewound_then_crossed() -> None:
    rewinds = Rewinds()
    records = recs(0, 6, 7) + recs(1, 0)
    first = admit(
        Batch.of(records, junk(records)),
        {("t", 0): 4, ("t", 1): 0},
        LogSnapshot(),
        rewinds,
        owns_everything,
    )
    assert first.positions == {("t", 1): 0}
    assert (first.rewinds, first.abandoned_records) == ({("t", 0): Rewind(4, 6)}, 2)

    rewinds.remember(first.rewinds)  # what write() does once the batch committed
    consumer = FakeConsumer([("t", 0)])
    batch = Batch.of(records[:2], junk(records[:2]))
    snapshot = await guard(consumer).snapshot(batch.first, rewinds.sought(batch.first))
    again = admit(batch, {("t", 0): 4}, snapshot, rewinds, owns_everything)
    assert again.positions == {("t", 0): 4}  # the same gap after the seek back: not in the log
    assert (again.rewinds, again.abandoned_records, again.gaps) == (
        {},
        0,
        {("t", 0): Gap(4, 6, 0, 6, accepted=True)},
    )
    assert consumer.events == [("beginning_offsets", [("t", 0)])]  # asked in the snapshot


@pytest.mark.parametrize("on_lost", list(OnRecordsLost))
async def test_after_a_rewind_the_guard_decides_the_gap(on_lost: OnRecordsLost) -> None:
    """Offsets 4 and 5 were deleted by retention (the log starts at 6)."""
    consumer = FakeConsumer([("t", 0)], log_starts={("t", 0): 6}, log_ends={("t", 0): 9})
    rewinds = Rewinds()
    rewinds.remember({("t", 0): Rewind(4, 6)})
    batch = Batch.of(recs(0, 6, 7), junk(recs(0, 6, 7)))
    snapshot = await guard(consumer, on_lost=on_lost).snapshot(
        batch.first, rewinds.sought(batch.first)
    )
    admission = admit(batch, {("t", 0): 4}, snapshot, rewinds, owns_everything)
    accept = on_lost is OnRecordsLost.CONTINUE
    assert admission.gaps == {("t", 0): Gap(4, 6, 6, 9, accepted=accept)}
    assert admission.positions == ({("t", 0): 4} if accept else {})
    assert (admission.rewinds, admission.abandoned_records) == ({}, 0 if accept else 2)


# -- _dead_letters: record order, unusable and rejected interleaved ------------------------


def test_dead_letters_come_in_record_order_with_their_own_reason() -> None:
    records = recs(0, 10, 11, 12, 13, 14, 15)
    events = [decode(SimpleRecord("t", 0, 0, *record(upsert(1, 1)))) for _ in range(4)]
    items: list[Any] = [
        events[0],
        Unusable(Reason.INVALID_JSON, "not json"),
        events[1],
        events[2],
        Unusable(Reason.RECORD_TOO_LARGE, "big"),
        events[3],
    ]
    product = ProductState(1, "n", None, 1, 0, 1)  # type: ignore[arg-type]
    outcomes = [
        Rejected(Reason.UNKNOWN_PRODUCT, "gone"),
        Applied(product),
        None,
        Rejected(Reason.QUANTITY_OVERFLOW, "too many"),
    ]
    letters = _dead_letters(records, items, outcomes)
    assert [(l.record.offset, l.reason, l.message) for l in letters] == [  # noqa: E741
        (10, Reason.UNKNOWN_PRODUCT, "gone"),
        (11, Reason.INVALID_JSON, "not json"),
        (14, Reason.RECORD_TOO_LARGE, "big"),
        (15, Reason.QUANTITY_OVERFLOW, "too many"),
    ]
    assert _dead_letters(records[:1], items[:1], [Stale(3)]) == []


# -- the letter's headers ------------------------------------------------------------------


@given(
    partition=st.integers(min_value=0, max_value=2**31 - 1),
    offset=st.integers(min_value=0, max_value=2**63 - 1),
    topic=st.text(min_size=1, max_size=20),
    original=st.lists(st.tuples(st.text(max_size=5), st.none() | st.binary(max_size=5))),
    reason=st.sampled_from(list(Reason)),
)
def test_the_sinks_five_headers_follow_the_original_ones_exactly(
    partition: int, offset: int, topic: str, original: list[Any], reason: Reason
) -> None:
    item = SimpleRecord(topic, partition, offset, None, None, original)
    assert DeadLetter(item, reason, "why").headers() == [
        *original,
        ("error.reason", reason.value.encode()),
        ("error.message", b"why"),
        ("original.topic", topic.encode()),
        ("original.partition", str(partition).encode()),
        ("original.offset", str(offset).encode()),
    ]


# -- the key check -------------------------------------------------------------------------


@pytest.mark.parametrize("key", [None, b"", b"42"])
def test_a_missing_empty_or_matching_key_is_accepted(key: bytes | None) -> None:
    value = json.dumps(upsert(42, 1)).encode()
    assert not isinstance(decode(SimpleRecord("t", 0, 0, key, value)), Unusable)


@pytest.mark.parametrize("key", [b"43", b"042", b" 42", b"42 ", b"4", b"+42", b"42.0", b"\xff"])
def test_a_key_naming_another_product_is_an_invalid_event(key: bytes) -> None:
    value = json.dumps(upsert(42, 1)).encode()
    result = decode(SimpleRecord("t", 0, 0, key, value))
    assert isinstance(result, Unusable) and result.reason is Reason.INVALID_EVENT
    assert "does not match product_id 42" in result.message


# -- the overlap fence ---------------------------------------------------------------------


class Recorder:
    def __init__(self) -> None:
        self.written: list[list[tuple[int, int]]] = []
        self.rewinds = Rewinds()

    async def decode(self, records: Sequence[SimpleRecord]) -> list[Any]:
        return junk(records)

    async def write(self, batch: Batch, owned: Any) -> BatchReport:
        self.written.append([(r.partition, r.offset) for r in batch.records])
        report = BatchReport()
        if self.written == [[(0, 8), (0, 9)]]:
            report.rewinds[("t", 0)] = Rewind(5, 8)
        self.rewinds.remember(report.rewinds)  # as WritePath.write does once it committed
        return report


@pytest.mark.parametrize(("refetch", "kept"), [(8, True), (5, True), (9, False), (10, False)])
async def test_the_fence_keeps_a_refetch_and_drops_what_was_fetched_before_the_seek(
    refetch: int, kept: bool
) -> None:
    writer_ = Recorder()
    writer = OverlappedWriter(writer_)  # type: ignore[arg-type]
    await writer.submit(recs(0, 8, 9), owns_everything, seeks_nowhere)
    await writer.drain()
    await writer.submit(recs(0, refetch) + recs(1, 3), owns_everything, seeks_nowhere)
    await writer.drain()
    assert writer_.written[1] == ([(0, refetch)] if kept else []) + [(1, 3)]


# -- one batch, one transaction: the order of its writes (fake session and store) ----------


class FakeStore:
    """Stands in for the table modules (service/postgres/consumer_offsets.py,
    processed_events.py, products.py); logs every call with the transaction it ran in."""

    def __init__(self, positions: dict[tuple[str, int], int]) -> None:
        self.positions = dict(positions)
        self.log: list[tuple[str, int]] = []
        self.claimed: set[UUID] = set()
        self.claims: list[list[UUID]] = []  # the ids of each claim_events call
        self.releases: list[list[UUID]] = []
        self.transaction = 0

    async def lock_positions(self, session: Any, group: str, tps: set[Any]) -> dict[Any, int]:
        self.log.append(("lock", self.transaction))
        return {tp: self.positions.get(tp, 0) for tp in tps}

    async def claim_events(self, session: Any, ids: Sequence[UUID]) -> set[UUID]:
        self.log.append(("claim", self.transaction))
        self.claims.append(list(ids))
        already = self.claimed.intersection(ids)
        self.claimed.update(ids)
        return already

    async def load_products(
        self, session: Any, ids: set[int]
    ) -> tuple[dict[int, ProductState], dict[int, int]]:
        return {}, {}

    async def release_events(self, session: Any, ids: Sequence[UUID]) -> None:
        self.log.append(("release", self.transaction))
        self.releases.append(list(ids))

    async def save_products(
        self, session: Any, products: list[ProductState], read: dict[int, int]
    ) -> None:
        self.log.append(("save", self.transaction))

    async def advance_positions(self, session: Any, group: str, offsets: Mapping[Any, int]) -> None:
        self.log.append(("positions", self.transaction))
        self.positions.update(offsets)

    @asynccontextmanager
    async def session(self) -> AsyncIterator[Any]:
        self.transaction += 1
        store = self

        class Session:
            @asynccontextmanager
            async def begin(self) -> AsyncIterator[None]:
                yield
                store.log.append(("commit", store.transaction))

        yield Session()


# The functions WritePath calls, by the table module that has them.
TABLE_FUNCTIONS = {
    "consumer_offsets": ("lock_positions", "advance_positions"),
    "processed_events": ("claim_events", "release_events"),
    "products": ("load_products", "save_products"),
}


def _stand_in(monkeypatch: pytest.MonkeyPatch, store: FakeStore) -> None:
    for module, names in TABLE_FUNCTIONS.items():
        for name in names:
            monkeypatch.setattr(getattr(pipeline, module), name, getattr(store, name))


class LoggingSink(MemoryDeadLetterSink):
    def __init__(self, store: FakeStore) -> None:
        super().__init__()
        self.store = store

    async def send(self, letters: Sequence[DeadLetter]) -> None:
        self.store.log.append(("letters", self.store.transaction))
        await super().send(letters)


async def test_rows_positions_and_letters_are_written_in_one_transaction_before_its_commit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    store = FakeStore({("t", 0): 1})
    _stand_in(monkeypatch, store)
    sink = LoggingSink(store)
    write_path = WritePath(store.session, sink, "g", Backoff(0.001, 0.01), guard=guard())  # type: ignore[arg-type]
    pairs = [record(upsert(1, 1)), record(upsert(2, 1)), record(adjust(3, 1)), (b"1", b"junk")]
    batch = [SimpleRecord("t", 0, i, k, v) for i, (k, v) in enumerate(pairs)]

    report = await process(write_path, batch)

    assert store.log == [
        ("lock", 1),
        ("claim", 1),
        ("release", 1),  # the adjustment of an unknown product gives its claim back
        ("save", 1),
        ("positions", 1),
        ("letters", 1),
        ("commit", 1),
    ]
    # Offset 0 was below the stored position: skipped without a claim or a letter.
    assert (report.redelivered, report.applied, report.next_offsets) == (1, 1, {("t", 0): 4})
    assert [letter.record.offset for letter in sink.letters] == [2, 3]


def _fake_store(
    monkeypatch: pytest.MonkeyPatch,
    positions: dict[tuple[str, int], int] | None = None,
    on_lost: OnRecordsLost = OnRecordsLost.CONTINUE,
    **log: Any,
) -> tuple[FakeStore, WritePath]:
    """A write path on a fake store, with the real guard on a consumer owning t[0] to t[3]
    whose look-ups and pauses go to the store's log (`log`: log_starts, log_ends)."""
    store = FakeStore(positions or {})
    _stand_in(monkeypatch, store)
    write_path = WritePath(
        store.session,  # type: ignore[arg-type]
        MemoryDeadLetterSink(),
        "g",
        Backoff(0.001, 0.01),
        guard=guard(
            FakeConsumer([("t", p) for p in range(4)], events=store.log, **log), on_lost=on_lost
        ),
    )
    return store, write_path


async def test_only_the_ids_of_stock_adjustments_are_claimed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Upserts and deletes are idempotent by their version: their ids are never claimed, and
    a rejected delete (unknown product) gives nothing back, as it claimed nothing."""
    store, write_path = _fake_store(monkeypatch)
    bodies = [upsert(1, 1, quantity=3), adjust(1, 2), delete(1, 2), delete(9, 1), adjust(8, 1)]
    batch = [SimpleRecord("t", 0, i, *record(b)) for i, b in enumerate(bodies)]

    report = await process(write_path, batch)

    assert store.claims == [[UUID(bodies[1]["event_id"]), UUID(bodies[4]["event_id"])]]
    assert store.releases == [[UUID(bodies[4]["event_id"])]]  # the unknown product's delta
    assert (report.applied, sum(report.dead_lettered.values())) == (3, 2)


# -- the partition guard around the transaction -------------------------------------------


async def test_kafka_is_asked_before_the_positions_are_locked_and_paused_after_the_commit(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """t[0] was sought back to 4 and its batch still starts at 6: the log starts at 6, so
    offsets 4..5 were deleted by retention and the guard (ON_RECORDS_LOST_TO_RETENTION=stop
    here) stops it. t[1]'s log now ends at 3, below its stored 9: reset. Neither the look-up
    of the log start nor either pause happens while the positions are locked."""
    store, write_path = _fake_store(
        monkeypatch,
        {("t", 0): 4, ("t", 1): 9},
        log_starts={("t", 0): 6},
        log_ends={("t", 0): 8, ("t", 1): 3},
        on_lost=OnRecordsLost.STOP,
    )
    write_path.rewinds.remember({("t", 0): Rewind(4, 6)})
    batch = recs(0, 6, 7) + recs(1, 1, 2)

    with caplog.at_level(logging.WARNING, "service.positions"):
        report = await process(write_path, batch)

    assert store.log == [
        ("beginning_offsets", [("t", 0)]),  # the snapshot: before the transaction
        ("lock", 1),
        ("claim", 1),
        ("save", 1),
        ("positions", 1),
        ("commit", 1),
        ("pause", [("t", 1)]),  # the log reset: checked by the guard from now on
        ("pause", [("t", 0)]),  # the gap refused: stopped
    ]
    assert (report.abandoned, report.applied, report.rewinds) == (4, 0, {})
    assert store.positions == {("t", 0): 4, ("t", 1): 9}
    reset, stopped = caplog.records
    # A suspected reset is a warning until the guard's check against the log confirms it;
    # the refused gap stops its partition, an error.
    assert reset.levelno == logging.WARNING and reset.getMessage().startswith(
        "t[1]: offset 1 arrived but the stored position is 9 and the log, as last fetched, "
        "ends at 3"
    )
    assert stopped.levelno == logging.ERROR and "The partition is stopped" in stopped.getMessage()


async def test_a_position_moved_between_the_snapshot_and_the_lock_is_judged_by_the_locked_row(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The guard judged t[0]'s gap from 4 (where it was sought back to); before the rows are
    locked another writer moves the position to 5. Crossing the snapshot's gap would skip
    offset 5 unapplied: the partition is sought back to 5 instead, nothing of it written."""
    store, write_path = _fake_store(monkeypatch, {("t", 0): 4})

    class MovingLog(FakeConsumer):
        async def beginning_offsets(self, partitions: list[Any]) -> dict[Any, int]:
            looked = await super().beginning_offsets(partitions)
            store.positions[("t", 0)] = 5  # another writer's commit, while Kafka answers
            return looked

    write_path.guard = guard(MovingLog([("t", 0)], events=store.log))
    write_path.rewinds.remember({("t", 0): Rewind(4, 6)})
    seeks: list[tuple[tuple[str, int], int]] = []

    with caplog.at_level(logging.INFO):
        report = await process(
            write_path, recs(0, 6, 7), seek=lambda tp, offset: seeks.append((tp, offset))
        )

    assert (report.applied, report.abandoned, report.next_offsets) == (0, 2, {})
    assert report.rewinds == {("t", 0): Rewind(5, 6)} and seeks == [(("t", 0), 5)]
    assert store.positions == {("t", 0): 5}
    assert not [r for r in caplog.records if "not in the log" in r.getMessage()]
    assert write_path.rewinds.sought_to(("t", 0)) == 5  # the refetch from 5 decides next


async def test_after_the_consumer_stopped_nothing_is_written(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A batch still in flight when the consumer has stopped (a shutdown that outwaited it):
    no partition is this process's any more, the next owner reads them again."""
    store, write_path = _fake_store(monkeypatch, {("t", 0): 0})
    write_path.guard = LetterStops(partition_guard())  # FastStream's consumer is None now
    report = await process(write_path, recs(0, 0, 1))
    assert (report.applied, report.abandoned, report.next_offsets) == (0, 2, {})
    assert store.positions == {("t", 0): 0}


# -- what a person reads in error.message (mutation testing found these unasserted) -------


def _event(body: dict[str, Any]) -> Any:
    event = decode(SimpleRecord("t", 0, 0, *record(body)))
    assert not isinstance(event, Unusable)
    return event


def test_rejection_messages_name_the_problem_and_the_fix() -> None:
    from service.core.domain import apply_event

    live = ProductState(7, "n", None, 1, 0, 1)  # type: ignore[arg-type]
    gone = live._replace(deleted_at=BASE_TIME)
    cases = [
        (
            None,
            _event(delete(7, 2)),
            "product 7 does not exist, so it cannot be deleted; "
            "publish its product.upserted event first",
        ),
        (
            None,
            _event(adjust(7, 1)),
            "product 7 does not exist; stock can only be adjusted for "
            "a live product (publish product.upserted first)",
        ),
        (
            gone,
            _event(adjust(7, 1)),
            "product 7 is deleted; stock can only be adjusted for a "
            "live product (publish product.upserted first)",
        ),
    ]
    for current, event, message in cases:
        outcome = apply_event(current, event)
        assert isinstance(outcome, Rejected) and outcome.reason is Reason.UNKNOWN_PRODUCT
        assert outcome.message == message


def test_a_later_upsert_replaces_the_description_even_with_null() -> None:
    from service.core.domain import fold

    first = upsert(3, 1)
    first["data"]["description"] = "old"
    second = upsert(3, 2)
    second["data"]["description"] = "new"
    third = upsert(3, 3)  # no description: null
    states = [fold({}, [_event(first), _event(second)][:n]).changed for n in (1, 2)]
    assert [s[3].description for s in states] == ["old", "new"]
    last = fold({}, [_event(first), _event(second), _event(third)]).changed[3]
    assert last.description is None


async def test_a_partition_revoked_before_the_snapshot_is_abandoned_not_retried(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A rebalance took t[1] while its batch waited: its fetch state is gone (aiokafka's
    highwater asserts the partition is assigned), so the snapshot leaves it out and the
    transaction abandons its records; the batch's other partition is written at once."""
    store, write_path = _fake_store(monkeypatch, {("t", 0): 0, ("t", 1): 0}, log_ends={})
    consumer = FakeConsumer([("t", 0)], events=store.log)
    write_path.guard = guard(consumer)
    write_path.rewinds.remember({("t", 1): Rewind(0, 2)})  # a gap was expected on t[1]
    records = recs(0, 0, 1) + recs(1, 2, 3)
    batch = Batch.of(records, junk(records))
    report = await write_path.write(batch, lambda topic, partition: (topic, partition) == ("t", 0))
    assert report.next_offsets == {("t", 0): 2}
    assert (report.abandoned, report.rewinds) == (2, {})
    assert write_path.metrics.retries._value.get() == 0  # no attempt failed
    assert ("beginning_offsets", [("t", 1)]) not in store.log


async def test_recovery_is_announced_after_a_retried_batch_commits_and_only_then(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The position watch is woken when writing works again after failures, not after every
    batch (it would take each batch for a recovery)."""
    store, write_path = _fake_store(monkeypatch, {("t", 0): 0})
    recoveries: list[int] = []
    write_path.on_recovery.append(lambda: recoveries.append(len(store.log)))
    commit = write_path._commit_isolating
    attempts = 0

    async def fails_once(batch: Batch, still_owned: Any) -> BatchReport:
        nonlocal attempts
        attempts += 1
        if attempts == 1:
            raise ConnectionResetError("the database connection dropped")
        return await commit(batch, still_owned)

    records = recs(0, 0, 1)
    await write_path.write(Batch.of(records, junk(records)), owns_everything)
    assert recoveries == []  # committed at the first attempt
    monkeypatch.setattr(write_path, "_commit_isolating", fails_once)
    records = recs(0, 2, 3)
    report = await write_path.write(Batch.of(records, junk(records)), owns_everything)
    assert (attempts, report.next_offsets, len(recoveries)) == (2, {("t", 0): 4}, 1)
    assert write_path.metrics.retries._value.get() == 1
