"""The subscriber's handler with a fake consumer: ownership, seeks, rewinds on failure, the
Kafka offset mirror, and the shutdown order (finish and commit before the consumer leaves)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiokafka import TopicPartition
from faststream.kafka import TestKafkaBroker

from service.app import build_app, build_broker
from service.health.checks import Lifecycle
from service.kafka.offset_mirror import OffsetMirror
from service.write_path.handler import BatchHandler
from service.write_path.transaction import BatchReport
from testbed.fake_consumer import FakeConsumer
from testbed.write_path import partition_guard
from tests.support.write_path import SUBSCRIBER_SETTINGS


@dataclass(frozen=True)
class Rec:
    topic: str
    partition: int
    offset: int
    key: bytes | None = b"1"
    value: bytes | None = b"{}"
    headers: Sequence[tuple[str, bytes | None]] = ()


@dataclass
class Message:
    raw_message: Any
    nacked: int = 0

    async def nack(self) -> None:
        self.nacked += 1


def batch(topic: str, partition: int, *offsets: int) -> Message:
    return Message(tuple(Rec(topic, partition, o) for o in offsets))


def report(**next_offsets: int) -> BatchReport:
    """`report(t0=5)`: a batch that committed next offset 5 for partition ("t", 0)."""
    return BatchReport(next_offsets={("t", int(k[1:])): v for k, v in next_offsets.items()})


@dataclass
class FakeWriter:
    """The overlapped writer: `submit` returns the previous batch's report, `drain` the last.
    Each batch's report is `reports[i]`; `during_submit(still_owned, seek)` runs inside."""

    reports: list[BatchReport] = field(default_factory=list)
    events: list[object] = field(default_factory=list)
    submitted: list[list[Any]] = field(default_factory=list)
    fail: BaseException | None = None
    during_submit: Any = None
    drain_delay: float = 0.0
    _pending: BatchReport | None = None

    async def submit(self, records: Any, still_owned: Any = None, seek: Any = None) -> Any:
        if self.during_submit is not None:
            self.during_submit(still_owned, seek)
        if self.fail is not None:
            raise self.fail
        self.submitted.append(list(records))
        self.events.append(("submit", [r.offset for r in records]))
        finished = await self.drain()
        index = len(self.submitted) - 1
        self._pending = self.reports[index] if index < len(self.reports) else BatchReport()
        return finished

    async def drain(self) -> BatchReport | None:
        finished, self._pending = self._pending, None
        if finished is not None:
            await asyncio.sleep(self.drain_delay)
            self.events.append(("database commit", finished.next_offsets))
        return finished


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# -- ownership and seeks ----------------------------------------------------------------


async def test_ownership_is_the_consumers_assignment_and_seeks_reach_the_consumer() -> None:
    consumer = FakeConsumer(assigned=[("t", 0)])
    seen: list[tuple[bool, bool]] = []

    def during_submit(still_owned: Any, seek: Any) -> None:
        seen.append((still_owned("t", 0), still_owned("t", 1)))
        consumer.revoke("t", 0)  # a rebalance while the batch is written
        seen.append((still_owned("t", 0), still_owned("t", 1)))
        seek(("t", 0), 17)

    handler = BatchHandler(FakeWriter(during_submit=during_submit))
    await handler(batch("t", 0, 20, 21), consumer)
    assert seen == [(True, False), (False, False)]
    assert consumer.events == [("seek", ("t", 0), 17)]


async def test_without_a_consumer_everything_is_owned_and_nothing_is_sought() -> None:
    seen: list[bool] = []

    def during_submit(still_owned: Any, seek: Any) -> None:
        seen.append(still_owned("t", 3))
        seek(("t", 3), 0)  # no consumer (TestKafkaBroker): nothing to do, nothing raised

    writer = FakeWriter(during_submit=during_submit, reports=[report(t3=9)])
    handler = BatchHandler(writer)
    await handler(batch("t", 3, 8), None)
    await handler(batch("t", 3, 9), None)
    assert seen == [True, True]
    assert handler.mirror.pending == {}  # handed to a consumer that does not exist: done


async def test_a_failed_batch_is_rewound_and_nothing_is_committed() -> None:
    consumer = FakeConsumer(assigned=[("t", 0)])
    handler = BatchHandler(FakeWriter(fail=RuntimeError("database gone")))
    message = batch("t", 0, 4, 5)
    with pytest.raises(RuntimeError, match="database gone"):
        await handler(message, consumer)
    assert message.nacked == 1
    assert consumer.commits == []


async def test_a_cancelled_batch_is_rewound_too() -> None:
    handler = BatchHandler(FakeWriter(fail=asyncio.CancelledError()))
    message = batch("t", 0, 4)
    with pytest.raises(asyncio.CancelledError):
        await handler(message, FakeConsumer(assigned=[("t", 0)]))
    assert message.nacked == 1


# -- the Kafka offset mirror -------------------------------------------------------------


async def test_committed_positions_reach_kafka_at_most_once_per_interval() -> None:
    clock = Clock()
    consumer = FakeConsumer(assigned=[("t", 0), ("t", 1)])
    writer = FakeWriter(reports=[report(t0=3), report(t1=7), report(t0=9), BatchReport()])
    handler = BatchHandler(writer, OffsetMirror(interval_s=1.0, clock=clock))

    await handler(batch("t", 0, 0, 1, 2), consumer)  # nothing committed in the database yet
    assert consumer.commits == []
    await handler(batch("t", 1, 5, 6), consumer)  # the first batch committed: at once
    assert consumer.commits == [{("t", 0): 3}]
    clock.now += 0.5
    await handler(batch("t", 0, 3, 4), consumer)  # within the interval: kept back
    assert consumer.commits == [{("t", 0): 3}]
    clock.now += 0.6
    await handler(batch("t", 0, 9), consumer)  # both batches' positions, the latest each
    assert consumer.commits == [{("t", 0): 3}, {("t", 1): 7, ("t", 0): 9}]


async def test_kafka_never_gets_an_offset_the_database_has_not_committed() -> None:
    clock = Clock()
    consumer = FakeConsumer(assigned=[("t", 0)])
    writer = FakeWriter(reports=[report(t0=2), report(t0=4)])
    handler = BatchHandler(writer, OffsetMirror(clock=clock))
    await handler(batch("t", 0, 0, 1), consumer)
    clock.now += 5
    await handler(batch("t", 0, 2, 3), consumer)
    # The second batch is in flight (written, not committed): only the first's position.
    assert consumer.commits == [{("t", 0): 2}]


async def test_positions_of_a_revoked_partition_are_left_to_its_new_owner() -> None:
    clock = Clock()
    consumer = FakeConsumer(assigned=[("t", 0), ("t", 1)])
    writer = FakeWriter(reports=[BatchReport(next_offsets={("t", 0): 5, ("t", 1): 8})])
    handler = BatchHandler(writer, OffsetMirror(clock=clock))
    await handler(batch("t", 0, 4), consumer)
    consumer.revoke("t", 1)
    await handler(batch("t", 0, 5), consumer)
    assert consumer.commits == [{("t", 0): 5}]
    assert handler.mirror.pending == {}


async def test_a_failed_kafka_commit_loses_nothing_and_is_tried_again(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = Clock()
    consumer = FakeConsumer(assigned=[("t", 0)])
    consumer.fail_commits = 1
    writer = FakeWriter(reports=[report(t0=2), report(t0=4), BatchReport()])
    handler = BatchHandler(writer, OffsetMirror(clock=clock))
    with caplog.at_level(logging.WARNING, "service.offset_mirror"):
        await handler(batch("t", 0, 0, 1), consumer)
        await handler(batch("t", 0, 2, 3), consumer)  # the commit of offset 2 fails
    assert consumer.commits == []
    assert "Kafka offset commit failed (CommitFailedError" in caplog.text
    assert "the database keeps the position" in caplog.text
    assert handler.mirror.pending == {("t", 0): 2}
    clock.now += 1
    await handler(batch("t", 0, 4), consumer)
    assert consumer.commits == [{("t", 0): 4}]


# -- shutdown ---------------------------------------------------------------------------


async def test_close_stops_fetching_finishes_the_batch_in_flight_then_commits_it() -> None:
    events: list[object] = []
    clock = Clock()
    consumer = FakeConsumer(assigned=[("t", 0), ("t", 1)], events=events)
    writer = FakeWriter(reports=[report(t0=2), report(t1=6)], events=events)
    handler = BatchHandler(writer, OffsetMirror(clock=clock))
    await handler(batch("t", 0, 0, 1), consumer)
    await handler(batch("t", 1, 4, 5), consumer)  # commits (t,0)=2; (t,1) is in flight

    await handler.close(consumer)
    await handler(batch("t", 0, 2), consumer)  # fetched before the pause took effect

    assert events == [
        ("submit", [0, 1]),
        ("submit", [4, 5]),
        ("database commit", {("t", 0): 2}),
        ("kafka commit", {("t", 0): 2}),
        ("pause", [("t", 0), ("t", 1)]),
        ("database commit", {("t", 1): 6}),
        ("kafka commit", {("t", 1): 6}),  # within the interval, but shutting down
    ]
    assert writer.submitted == [[Rec("t", 0, 0), Rec("t", 0, 1)], [Rec("t", 1, 4), Rec("t", 1, 5)]]


async def test_close_waits_for_the_batch_being_handed_over() -> None:
    events: list[object] = []
    consumer = FakeConsumer(assigned=[("t", 0)], events=events)
    writer = FakeWriter(reports=[report(t0=1), report(t0=2)], events=events, drain_delay=0.05)
    handler = BatchHandler(writer)
    await handler(batch("t", 0, 0), consumer)
    call = asyncio.create_task(handler(batch("t", 0, 1), consumer))
    await asyncio.sleep(0.01)  # the call waits for the first batch to commit
    await handler.close(consumer)
    await call
    assert events == [
        ("submit", [0]),
        ("submit", [1]),
        ("pause", [("t", 0)]),
        ("database commit", {("t", 0): 1}),
        ("kafka commit", {("t", 0): 1}),  # by the call in progress, once its batch is in
        ("database commit", {("t", 0): 2}),  # the batch it handed over: finished too
        ("kafka commit", {("t", 0): 2}),
    ]


async def test_close_without_a_consumer_or_partitions_still_finishes_the_batch() -> None:
    events: list[object] = []
    writer = FakeWriter(reports=[report(t0=1)], events=events)
    handler = BatchHandler(writer)
    await handler(batch("t", 0, 0), None)
    await handler.close(None)  # TestKafkaBroker: no consumer to pause or commit to
    assert events == [("submit", [0]), ("database commit", {("t", 0): 1})]

    nothing_assigned = FakeConsumer()
    await BatchHandler(FakeWriter()).close(nothing_assigned)
    assert nothing_assigned.events == []  # nothing to pause, nothing to commit


async def test_close_gives_up_on_a_batch_that_cannot_commit(
    caplog: pytest.LogCaptureFixture,
) -> None:
    consumer = FakeConsumer(assigned=[("t", 0)])
    writer = FakeWriter(reports=[report(t0=1)], drain_delay=30)
    handler = BatchHandler(writer, close_timeout_s=0.1)
    await handler(batch("t", 0, 0), consumer)
    with caplog.at_level(logging.INFO, "service.batch_handler"):
        await asyncio.wait_for(handler.close(consumer), 5)
    assert "did not commit within 0.1s (is PostgreSQL reachable?)" in caplog.text
    assert "nothing is lost" in caplog.text
    assert consumer.commits == []


async def test_the_app_finishes_and_commits_before_the_consumer_leaves_the_group() -> None:
    """The production wiring (build_app) under FastStream's own stop sequence: on_shutdown,
    broker.stop() (the consumer stops), after_shutdown. The consumer reaches the handler
    through FastStream's `Consumer` annotation."""
    events: list[object] = []
    consumer = FakeConsumer(assigned=[("events", 0)], events=events)
    reports = [BatchReport(next_offsets={("events", 0): n}) for n in (1, 2)]
    writer = FakeWriter(reports=reports, events=events)
    handler = BatchHandler(writer)
    broker = build_broker(SUBSCRIBER_SETTINGS, handler, partition_guard())
    lifecycle = Lifecycle()
    app = build_app(broker, handler, lifecycle)
    (subscriber,) = broker.subscribers
    async with TestKafkaBroker(broker) as test_broker:
        subscriber.consumer = consumer  # type: ignore[attr-defined]
        await lifecycle.started()
        await test_broker.publish(b"{}", topic="events", key=b"1")
        await test_broker.publish(b"{}", topic="events", key=b"1")
    # TestKafkaBroker replaces broker.stop(); outside it, the broker's own stop runs.
    await app.stop()
    assert not lifecycle.serving
    assert events == [
        ("submit", [0]),
        ("submit", [0]),
        ("database commit", {("events", 0): 1}),
        ("kafka commit", {("events", 0): 1}),
        ("pause", [("events", 0)]),
        ("database commit", {("events", 0): 2}),
        ("kafka commit", {("events", 0): 2}),
        "consumer stopped, left the group",
    ]


# -- what FastStream hands the handler --------------------------------------------------


async def test_a_batch_is_a_flat_sequence_of_records_from_aiokafka_and_the_test_broker() -> None:
    """Why the handler does `list(message.raw_message)` and nothing more: FastStream 0.7.8's
    batch subscriber chains aiokafka's per-partition lists into one tuple, and its
    TestKafkaBroker hands a flat list for both `publish` and `publish_batch`."""
    broker = build_broker(SUBSCRIBER_SETTINGS, BatchHandler(FakeWriter()), partition_guard())
    (subscriber,) = broker.subscribers

    class Fetching:
        async def getmany(self, timeout_ms: int, max_records: int | None) -> dict[Any, Any]:
            return {
                TopicPartition("events", 0): [Rec("events", 0, 0), Rec("events", 0, 1)],
                TopicPartition("events", 1): [Rec("events", 1, 0)],
            }

    fetched = await subscriber.get_msg(Fetching())  # type: ignore[attr-defined]
    assert fetched == (Rec("events", 0, 0), Rec("events", 0, 1), Rec("events", 1, 0))

    writer = FakeWriter()
    broker = build_broker(SUBSCRIBER_SETTINGS, BatchHandler(writer), partition_guard())
    async with TestKafkaBroker(broker) as test_broker:
        await test_broker.publish(b"a", topic="events", key=b"1")
        await test_broker.publish_batch(b"b", b"c", topic="events")
    assert [[r.value for r in records] for records in writer.submitted] == [
        [b"a"],
        [b"b", b"c"],
    ]
