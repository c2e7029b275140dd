"""What WritePath reports around the transaction: the merged report of a bisected batch,
the metrics of a committed batch, the listeners told of it, and the log line and letter of a
record the database refused. The transaction itself is replaced (see test_write_path_units
and tests/integration for it)."""

from __future__ import annotations

import logging
import re
import time
from collections import Counter
from typing import Any

import asyncpg
import pytest
from prometheus_client import CollectorRegistry
from sqlalchemy.exc import OperationalError

from service.core.decoding import Unusable
from service.core.domain import Reason
from service.observability.metrics import Metrics
from service.write_path.batch import Batch
from service.write_path.retry import Backoff
from service.write_path.rewinds import Rewind
from service.write_path.transaction import BatchReport, WritePath
from testbed.write_path import MemoryDeadLetterSink, guard
from tests.support.write_path import SimpleRecord
from tests.unit.write_path.test_transaction import _fake_store


def _batch(*offsets: int, decoded: Any = None) -> Batch:
    records = [SimpleRecord("t", 3, o, b"1", b"{}") for o in offsets]
    return Batch.of(records, decoded or [None] * len(records))


def _write_path() -> WritePath:
    return WritePath(
        None,  # type: ignore[arg-type]
        MemoryDeadLetterSink(),
        "g",
        Backoff(0.001, 0.002),
        metrics=Metrics(CollectorRegistry()),
        guard=guard(),
    )


def _sample(metrics: Metrics, name: str, **labels: str) -> float:
    value = metrics.registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


def test_the_report_of_two_parts_adds_their_counts_and_keeps_the_first_fence() -> None:
    first = BatchReport(
        records=10,
        applied=4,
        stale=1,
        duplicates=2,
        redelivered=3,
        abandoned=0,
        dead_lettered=Counter({"invalid_json": 1}),
        rewinds={("t", 0): Rewind(5, 9), ("t", 1): Rewind(2, 3)},
        next_offsets={("t", 0): 20, ("t", 1): 4},
    )
    second = BatchReport(
        records=7,
        applied=1,
        stale=2,
        duplicates=1,
        redelivered=1,
        abandoned=3,
        dead_lettered=Counter({"invalid_json": 2, "unstorable": 1}),
        rewinds={("t", 1): Rewind(3, 6), ("t", 2): Rewind(0, 1)},
        next_offsets={("t", 0): 25},
    )
    assert first.merged(second) == BatchReport(
        records=17,
        applied=5,
        stale=3,
        duplicates=3,
        redelivered=4,
        abandoned=3,
        dead_lettered=Counter({"invalid_json": 3, "unstorable": 1}),
        # A partition rewound in both parts: sought to the later position, fenced at the
        # first offset abandoned.
        rewinds={("t", 0): Rewind(5, 9), ("t", 1): Rewind(3, 3), ("t", 2): Rewind(0, 1)},
        next_offsets={("t", 0): 25, ("t", 1): 4},  # the later position wins
    )


def test_counts_by_fate_as_the_metrics_label_them() -> None:
    report = BatchReport(
        applied=1,
        stale=2,
        duplicates=3,
        redelivered=4,
        abandoned=5,
        dead_lettered=Counter({"invalid_json": 6, "unstorable": 7}),
    )
    assert report.as_counts() == {
        "applied": 1,
        "stale": 2,
        "duplicate": 3,
        "redelivered": 4,
        "abandoned": 5,
        "dead_lettered": 13,
    }


async def test_a_committed_batch_is_counted_timed_and_told_to_the_listeners(
    caplog: pytest.LogCaptureFixture,
) -> None:
    write_path = _write_path()
    report = BatchReport(
        records=9,
        applied=2,
        duplicates=1,
        redelivered=3,
        dead_lettered=Counter({"invalid_json": 2, "unknown_product": 1}),
        rewinds={("t", 3): Rewind(40, 46)},
    )
    attempts: list[int] = []

    async def commit(*_: Any) -> BatchReport:
        attempts.append(len(attempts))
        if len(attempts) == 1:  # one transient failure first
            raise OperationalError("SELECT 1", {}, ConnectionResetError("connection reset"))
        return report

    write_path._commit_isolating = commit  # type: ignore[method-assign]
    told: list[BatchReport] = []
    write_path.on_commit.append(told.append)
    before = time.time()

    with (
        caplog.at_level(logging.WARNING, "service.retry"),
        caplog.at_level(logging.DEBUG, "service.pipeline"),
    ):
        returned = await write_path.write(_batch(*range(9)), lambda topic, partition: True)

    assert returned is report and told == [report] and len(attempts) == 2
    assert write_path.rewinds.sought_to(("t", 3)) == 40  # the next batch may cross that gap
    assert write_path.rewinds.fenced({("t", 3): 47}) == {("t", 3)}  # fetched before the seek
    retried, committed = (r.getMessage() for r in caplog.records)
    assert retried.startswith("batch of 9 records failed (attempt 1, transient: ")
    assert re.fullmatch(
        r"batch committed in \d+\.\d{3}s: \{'applied': 2, 'stale': 0, 'duplicate': 1, "
        r"'redelivered': 3, 'abandoned': 0, 'dead_lettered': 3\}",
        committed,
    )
    m = write_path.metrics
    assert _sample(m, "inventory_sink_batch_retries_total") == 1
    assert _sample(m, "inventory_sink_batches_total") == 1
    assert {
        fate: _sample(m, "inventory_sink_events_total", fate=fate)
        for fate in ("applied", "stale", "duplicate", "redelivered", "abandoned", "dead_lettered")
    } == {
        "applied": 2,
        "stale": 0,
        "duplicate": 1,
        "redelivered": 3,
        "abandoned": 0,
        "dead_lettered": 3,
    }
    assert _sample(m, "inventory_sink_dead_letters_total", reason="invalid_json") == 2
    assert _sample(m, "inventory_sink_dead_letters_total", reason="unknown_product") == 1
    assert _sample(m, "inventory_sink_batch_seconds_count") == 1
    # From the first attempt to the commit: the retry's pause, not the clock's reading.
    assert 0.0005 <= _sample(m, "inventory_sink_batch_seconds_sum") < 30
    assert before <= _sample(m, "inventory_sink_last_commit_timestamp_seconds") <= time.time()


async def test_an_empty_batch_commits_nothing_and_counts_nothing() -> None:
    write_path = _write_path()
    told: list[BatchReport] = []
    write_path.on_commit.append(told.append)
    assert await write_path.write(Batch.of([], []), lambda topic, partition: True) == BatchReport()
    assert told == [] and _sample(write_path.metrics, "inventory_sink_batches_total") == 0


async def test_a_refused_record_is_found_by_bisection_logged_and_dead_lettered(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The database refuses any part holding offset 12; the other parts commit, in order,
    each still asking the same ownership check."""
    write_path = _write_path()
    first_line = "value too long for type character varying(200): " + "v" * 300
    refusal = asyncpg.exceptions.DataError(f"{first_line}\nDETAIL: the row")
    commits: list[list[int]] = []
    letters: list[Any] = []
    checks: list[Any] = []

    def still_owned(topic: str, partition: int) -> bool:
        return True

    async def commit(batch: Batch, owned: Any) -> BatchReport:
        checks.append(owned)
        offsets = [r.offset for r in batch.records]
        assert batch.first == {("t", 3): offsets[0]}  # each part knows its own partitions
        if 12 in offsets and not isinstance(batch.decoded[0], Unusable):
            raise refusal
        commits.append(offsets)
        letters.extend(item for item in batch.decoded if isinstance(item, Unusable))
        applied = sum(not isinstance(item, Unusable) for item in batch.decoded)
        return BatchReport(records=len(offsets), applied=applied)

    write_path._commit = commit  # type: ignore[method-assign]
    with caplog.at_level(logging.ERROR, "service.pipeline"):
        report = await write_path.write(_batch(10, 11, 12, 13, decoded=[object()] * 4), still_owned)

    assert commits == [[10, 11], [12], [13]]
    assert checks and all(check is still_owned for check in checks)
    assert letters == [
        Unusable(
            Reason.UNSTORABLE,
            f"the database refused this event (DataError: {first_line[:300]}); fix the event "
            "or the schema",
        )
    ]
    assert (report.records, report.applied) == (4, 3)
    (line,) = [r for r in caplog.records if r.name == "service.pipeline"]
    assert line.getMessage() == (
        f"the database refused t[3]@12: {first_line}\nDETAIL: the row; dead-lettering it"
    )
    assert (line.topic, line.partition, line.offset) == ("t", 3, 12)  # type: ignore[attr-defined]


async def test_the_gap_guard_says_where_it_seeks_back_and_the_partition_guard_which_gap_it_crosses(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Through the whole write path on a fake store: the first batch of t[3] starts at 46 but
    the database is at 40; the refetch after the seek back starts at 46 again."""
    _, write_path = _fake_store(monkeypatch, {("t", 3): 40})
    junk = [Unusable(Reason.INVALID_JSON, "x")] * 2
    with caplog.at_level(logging.INFO):
        first = await write_path.write(_batch(46, 47, decoded=junk), lambda topic, partition: True)
        assert write_path.rewinds.fenced({("t", 3): 46}) == set()  # the refetch
        again = await write_path.write(_batch(46, 47, decoded=junk), lambda topic, partition: True)

    assert (first.rewinds, first.abandoned) == ({("t", 3): Rewind(40, 46)}, 2)
    assert (again.rewinds, again.abandoned, again.next_offsets) == ({}, 0, {("t", 3): 48})
    seek, crossed = (
        r
        for r in caplog.records
        if r.name in ("service.pipeline", "service.positions") and r.levelno >= logging.INFO
    )
    assert (seek.name, seek.levelno, seek.getMessage()) == (
        "service.pipeline",
        logging.WARNING,
        "t[3]: batch starts at offset 46 but the database is at 40; seeking back so no record "
        "is skipped",
    )
    fields = (seek.topic, seek.partition, seek.offset, seek.stored_offset)  # type: ignore[attr-defined]
    assert fields == ("t", 3, 46, 40)
    assert (crossed.name, crossed.levelno, crossed.getMessage()) == (
        "service.positions",
        logging.INFO,
        "t[3]: offsets 40..45 are not in the log (compaction or transaction markers); "
        "continuing at 46",
    )
