"""What the tests hand the write path: plain records, settings to wire a subscriber, and
`process`, which decodes and writes one batch as the subscriber does (through
service/write_path/overlap.py, there with the next batch's decoding overlapped). The
dead-letter sink and the guard production passes, which the benchmark's write-only mode uses
too, are in testbed/write_path.py."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from service.config.settings import Settings
from service.core.records import Record, TopicAndPartition
from service.write_path.admission import Ownership
from service.write_path.overlap import OverlappedWriter, Seek
from service.write_path.transaction import BatchReport, WritePath
from testbed.write_path import owns_everything


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
