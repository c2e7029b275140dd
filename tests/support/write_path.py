"""What the tests hand the write path: plain records, an in-memory dead-letter sink, the
guard production passes (the real PartitionGuard inside LetterStops, on a fake consumer), and
`process`, which decodes and writes one batch as the subscriber does (through
service/write_path/overlap.py, there with the next batch's decoding overlapped)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry

from service.config.settings import Settings
from service.core.letters import DeadLetter
from service.core.position_verdict import OnRecordsLost
from service.core.records import Record, TopicAndPartition
from service.positions.guard import PartitionGuard
from service.write_path.admission import Ownership
from service.write_path.letter_stops import LetterStops
from service.write_path.overlap import OverlappedWriter, Seek
from service.write_path.transaction import BatchReport, WritePath
from tests.support.fake_consumer import FakeConsumer


@dataclass(frozen=True, slots=True)
class SimpleRecord:
    """A plain record (service.core.records.Record)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: Sequence[tuple[str, bytes | None]] = field(default_factory=tuple)


# What build_broker needs of the settings to wire a subscriber under FastStream's
# TestKafkaBroker (nothing is contacted).
SUBSCRIBER_SETTINGS = Settings(
    postgres_user="u",
    postgres_password="p",
    postgres_db="d",  # type: ignore[arg-type]
    kafka_bootstrap_servers="127.0.0.1:1",
    kafka_topic="events",
    kafka_group_id="grp",
)


class RecordingWriter:
    """Stands where the overlapped writer does: keeps every batch it is handed."""

    def __init__(self) -> None:
        self.batches: list[list[Record]] = []

    async def submit(
        self, records: Sequence[Record], still_owned: object = None, seek: object = None
    ) -> BatchReport:
        self.batches.append(list(records))
        return BatchReport()


class MemoryDeadLetterSink:
    """Keeps letters in a list (service.kafka.dead_letter_producer.DeadLetterSink)."""

    def __init__(self) -> None:
        self.letters: list[DeadLetter] = []

    async def send(self, letters: Sequence[DeadLetter]) -> None:
        self.letters.extend(letters)


# The partitions of topic "t" that the write path's tests write to.
TEST_PARTITIONS = 8


def partition_guard(
    sessions: Any = None, group_id: str = "g", on_lost: OnRecordsLost = OnRecordsLost.CONTINUE
) -> PartitionGuard:
    """The partition guard as service/app.py builds it, not yet attached to a consumer
    (build_broker attaches it to the subscriber's)."""
    return PartitionGuard(sessions, group_id, CollectorRegistry(), on_lost=on_lost)


def guard(
    consumer: FakeConsumer | None = None,
    *,
    sessions: Any = None,
    group_id: str = "g",
    on_lost: OnRecordsLost = OnRecordsLost.CONTINUE,
) -> LetterStops:
    """The write path's guard as service/app.py builds it, attached to `consumer` (by
    default one that owns the test topic's partitions, whose logs start at 0 and whose log
    ends are not fetched yet). `sessions` is only read by the guard's own checks
    (assignment, rechecks), not by the write path."""
    partitions = partition_guard(sessions, group_id, on_lost)
    attached = consumer or FakeConsumer([("t", p) for p in range(TEST_PARTITIONS)])
    partitions.attach(lambda: attached)
    stops = LetterStops(partitions)
    stops.attach(lambda: attached)
    return stops


def owns_everything(topic: str, partition: int) -> bool:
    return True


def seeks_nowhere(tp: TopicAndPartition, offset: int) -> None:
    """A consumer's seek where no consumer fetches: the next batch a test writes is its own."""


async def process(
    write_path: WritePath,
    records: Sequence[Record],
    still_owned: Ownership = owns_everything,
    seek: Seek = seeks_nowhere,
) -> BatchReport:
    """Apply a batch exactly once, as the subscriber's handler does; retries transient
    failures until it commits. An empty report if nothing of it was written (all of it was
    fetched before a seek back, see service/write_path/rewinds.py).

    `still_owned(topic, partition)` is asked after the partition rows are locked: records
    of a partition this consumer lost in a rebalance are abandoned (the new owner reads
    them again from the stored position) and nothing is written for that partition.
    """
    writer = OverlappedWriter(write_path)
    await writer.submit(records, still_owned, seek)
    return await writer.drain() or BatchReport()
