"""The batch parser FastStream calls before the handler: nothing in a record can break it."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from aiokafka import ConsumerRecord
from aiokafka.record.default_records import DefaultRecordBatch
from faststream.kafka import TestKafkaBroker
from faststream.kafka.message import KafkaAckableMessage

from service.app import build_broker
from service.kafka.parser import RawBatchParser
from service.write_path.handler import BatchHandler
from testbed.write_path import partition_guard
from tests.support.record_batches import batch
from tests.support.write_path import SUBSCRIBER_SETTINGS, RecordingWriter

HOSTILE: list[tuple[str, bytes | None]] = [
    ("x-trace", b"\xff\x00\xfe"),
    ("x-null", None),
    ("dup", b"1"),
    ("dup", b"\x80"),
    ("error.reason", b"forged"),
]


def _record(offset: int, headers: Sequence[tuple[str, bytes | None]] = HOSTILE) -> ConsumerRecord:
    return ConsumerRecord(
        "events", 0, offset, 1700000000000, 0, b"1", None, 0, 1, -1, tuple(headers)
    )


class Seeks:
    def __init__(self) -> None:
        self.calls: list[tuple[object, int]] = []

    async def commit(self) -> None:
        pass

    def seek(self, partition: object, offset: int) -> None:
        self.calls.append((partition, offset))


async def test_the_parser_keeps_the_raw_batch_and_never_reads_headers() -> None:
    consumer = Seeks()
    records = (_record(5), _record(6))
    message = await RawBatchParser(lambda: consumer)(records)
    assert isinstance(message, KafkaAckableMessage)
    assert message.raw_message is records
    assert message.raw_message[0].headers == tuple(HOSTILE)
    assert message.message_id == "5-6-1700000000000"
    await message.nack()  # rewinds the partition to the batch's first record, like FastStream's
    assert [offset for _, offset in consumer.calls] == [5]


async def test_the_parser_tolerates_an_empty_batch_and_a_consumer_not_yet_started() -> None:
    message = await RawBatchParser(lambda: None)(())
    assert message.message_id == "empty"
    await message.nack()  # the fake consumer: nothing to seek, nothing raised


async def test_records_with_binary_null_and_duplicate_headers_reach_the_handler() -> None:
    writer = RecordingWriter()
    broker = build_broker(SUBSCRIBER_SETTINGS, BatchHandler(writer), partition_guard())
    (subscriber,) = broker.subscribers  # taken before the test broker adds its own
    async with TestKafkaBroker(broker):
        await subscriber.process_message((_record(0), _record(1, [("only", None)])))
    assert [[r.headers for r in batch] for batch in writer.batches] == [
        [tuple(HOSTILE), (("only", None),)]
    ]


def test_aiokafka_cannot_unpack_a_header_key_that_is_not_utf8() -> None:
    """What the parser cannot cover: aiokafka decodes header keys inside getmany() (the
    consumer reads through service/kafka/lenient_fetch.py for that). If this starts passing
    through, lenient_fetch.py may go."""
    raw = batch(0, [(b"1", b"{}", [("QQQ", b"v")])])
    unpacked = DefaultRecordBatch(raw)
    assert unpacked.validate_crc()
    with pytest.raises(UnicodeDecodeError):
        list(unpacked)
