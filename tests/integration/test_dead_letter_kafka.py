"""KafkaDeadLetterSink on the real broker: each letter is read back from its DLQ topic and
compared byte for byte with the record it stands for (key, value, every original header in
order, then the sink's five), whose partition and offset come from the producer's send
result, never from a range."""

from __future__ import annotations

import asyncio
import logging

import pytest
from aiokafka import AIOKafkaProducer, ConsumerRecord

from service.config.settings import Settings
from service.core.domain import Reason
from service.core.letters import MAX_MESSAGE_CHARS, DeadLetter
from service.kafka.dead_letter_producer import LOGGED_MESSAGE_CHARS, KafkaDeadLetterSink
from service.kafka.topics import DLQ_MAX_MESSAGE_BYTES, ensure_topics
from tests.support.kafka import read_topic
from tests.support.write_path import SimpleRecord

Headers = list[tuple[str, bytes | None]]

# key, value, headers: what a producer upstream sent, headers that look like the sink's own
# and duplicates included; None is a tombstone value or a header without a value.
ORIGINALS: list[tuple[bytes | None, bytes | None, Headers]] = [
    (
        b"7",
        b'{"not": "an event"}',
        [
            ("trace", b"\xff\x00\xfe"),
            ("dup", b"1"),
            ("dup", b"2"),
            ("x-null", None),
            ("error.reason", b"forged"),
            ("original.offset", b"999"),
        ],
    ),
    (None, b"{not json", []),
    (b"7", None, [("tenant", b"acme")]),
    (b"8", b"", [("trace", b"")]),
]
# One reason and message per original: a long one (cut at MAX_MESSAGE_CHARS in the header,
# at LOGGED_MESSAGE_CHARS in the log) and one that is not ASCII.
LETTERS = [
    (Reason.INVALID_EVENT, "price: must be > 0 " + "x" * (MAX_MESSAGE_CHARS + 50)),
    (Reason.INVALID_JSON, "Expecting property name enclosed in double quotes"),
    (Reason.UNKNOWN_PRODUCT, "product 7 does not exist — publish its upsert first"),
    (Reason.UNSTORABLE, "the database refused this event"),
]


def _expected_headers(
    original: Headers, reason: Reason, message: str, source: ConsumerRecord
) -> Headers:
    return [
        *original,
        ("error.reason", reason.value.encode()),
        ("error.message", message[:MAX_MESSAGE_CHARS].encode()),
        ("original.topic", source.topic.encode()),
        ("original.partition", str(source.partition).encode()),
        ("original.offset", str(source.offset).encode()),
    ]


async def _publish(
    kafka: str, topic: str, records: list[tuple[bytes | None, bytes | None, Headers]]
) -> list[tuple[int, int]]:
    """Publish in order; each record's (partition, offset) as the broker acknowledged it."""
    producer = AIOKafkaProducer(bootstrap_servers=kafka, acks="all")
    await producer.start()
    try:
        sent = [
            await producer.send(topic, key=key, value=value, headers=headers)
            for key, value, headers in records
        ]
        return [(ack.partition, ack.offset) for ack in await asyncio.gather(*sent)]
    finally:
        await producer.stop()


async def _read_originals(
    kafka: str, topic: str, positions: list[tuple[int, int]]
) -> list[ConsumerRecord]:
    """The published records as a consumer receives them, in publishing order."""
    received = {(r.partition, r.offset): r for r in await read_topic(kafka, topic, len(positions))}
    assert set(received) == set(positions)
    return [received[position] for position in positions]


async def test_letters_carry_the_original_bytes_and_exact_headers(
    settings: Settings, kafka: str, names: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    await ensure_topics(settings)
    positions = await _publish(kafka, names["topic"], ORIGINALS)
    sources = await _read_originals(kafka, names["topic"], positions)
    for source, (key, value, headers) in zip(sources, ORIGINALS, strict=True):
        assert (source.key, source.value, list(source.headers)) == (key, value, headers)

    sink = KafkaDeadLetterSink(settings, "dlq-test")
    await sink.start()
    try:
        with caplog.at_level(logging.WARNING, "service.dead_letter"):
            letters = [
                DeadLetter(source, reason, message)
                for source, (reason, message) in zip(sources, LETTERS, strict=True)
            ]
            await sink.send(letters)
    finally:
        await sink.stop()

    read = await read_topic(kafka, names["dlq"], len(letters))
    assert len(read) == len(letters)
    by_origin = {
        (dict(r.headers)["original.partition"], dict(r.headers)["original.offset"]): r for r in read
    }
    for source, (key, value, headers), (reason, message) in zip(
        sources, ORIGINALS, LETTERS, strict=True
    ):
        letter = by_origin.pop((str(source.partition).encode(), str(source.offset).encode()))
        assert letter.topic == names["dlq"]
        assert (letter.key, letter.value) == (key, value)
        assert list(letter.headers) == _expected_headers(headers, reason, message, source)
    assert not by_origin
    # The two letters keyed b"7" share a DLQ partition, in the order they were sent.
    sevens = [r for r in read if r.key == b"7"]
    assert [dict(r.headers)["original.offset"] for r in sevens] == [
        str(sources[0].offset).encode(),
        str(sources[2].offset).encode(),
    ]

    # One line for the batch: each reason counted and quoted by its first letter, the
    # offsets of each partition, and the fields of the first letter's record.
    (line,) = [r for r in caplog.records if r.name == "service.dead_letter"]
    assert line.levelno == logging.WARNING
    message = line.getMessage()
    assert message.startswith(f"dead-lettered {len(letters)} records of "), message
    for s, (reason, text) in zip(sources, LETTERS, strict=True):
        assert (
            f"1 as {reason.value} (the first, {names['topic']}[{s.partition}]@{s.offset}: "
            f"{text[:LOGGED_MESSAGE_CHARS]})"
        ) in message
    spans: dict[str, list[int]] = {}
    for s in sources:
        low, high = spans.get(f"{s.topic}[{s.partition}]", [s.offset, s.offset])
        spans[f"{s.topic}[{s.partition}]"] = [min(low, s.offset), max(high, s.offset)]
    assert (line.letters, line.reasons, line.offsets) == (  # type: ignore[attr-defined]
        len(letters),
        {reason.value: 1 for reason, _ in LETTERS},
        spans,
    )
    first = sources[0]
    assert (line.topic, line.partition, line.offset, line.reason) == (  # type: ignore[attr-defined]
        first.topic,
        first.partition,
        first.offset,
        LETTERS[0][0].value,
    )


async def test_a_letter_just_under_the_dlq_limit_is_published(
    settings: Settings, kafka: str, names: dict[str, str]
) -> None:
    """A record near the input topic's limit grows by the error headers: the DLQ topic and
    the sink's producer take letters up to DLQ_MAX_MESSAGE_BYTES (4 MiB), far over the
    producer's default 1 MiB."""
    await ensure_topics(settings)
    big = b"v" * (DLQ_MAX_MESSAGE_BYTES - 16 * 1024)
    ((partition, offset),) = await _publish(kafka, names["topic"], [(b"5", b"{}", [])])
    record = SimpleRecord(names["topic"], partition, offset, b"5", big, [("trace", b"t")])

    sink = KafkaDeadLetterSink(settings, "dlq-test")
    await sink.start()
    try:
        await sink.send([DeadLetter(record, Reason.RECORD_TOO_LARGE, "too large")])
    finally:
        await sink.stop()

    (letter,) = await read_topic(kafka, names["dlq"], 1)
    assert (letter.key, len(letter.value), letter.value == big) == (b"5", len(big), True)
    assert next(iter(letter.headers)) == ("trace", b"t")
    assert dict(letter.headers)["original.offset"] == str(offset).encode()
