"""Records a producer can send that used to break the framework before the handler,
through the real service on the real broker: binary and null header values, duplicate
header names, headers named like the sink's own, tombstones, empty and huge keys.

Every good record is applied, every bad one is dead-lettered once with its reason and its exact
key, value and headers, and the partition's stored position moves past all of them."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.protocol.produce import ProduceRequest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from service.config.settings import Settings
from service.core.letters import ERROR_HEADERS, original_headers
from service.kafka.topics import ensure_topics
from testbed.events import adjust, record, upsert
from tests.support.consumer import ConsumerProcess
from tests.support.kafka import read_topic
from tests.support.record_batches import BAD_KEY_PLACEHOLDER, batch

Headers = list[tuple[str, bytes | None]]
BINARY = b"\xff\x00\xfe"


@dataclass(frozen=True)
class Sent:
    key: bytes | None
    value: bytes | None
    headers: Headers
    reason: str | None = None  # None: the record must be applied
    offset: int = -1


def _upsert(product_id: int, key: bytes | None = None) -> tuple[bytes | None, bytes]:
    default_key, value = record(upsert(product_id, 1, name=f"hostile {product_id}"))
    return (default_key if key is None else key), value


def hostile_batch() -> list[Sent]:
    adjustment = record(adjust(104, -1))
    mismatched = json.dumps(upsert(106, 1)).encode()
    return [
        Sent(*_upsert(101), [("x-trace", BINARY)]),
        Sent(
            b"102",
            b"{not json",
            [("x-trace", BINARY), ("x-bin", bytes(range(256)))],
            "invalid_json",
        ),
        Sent(*_upsert(103), [("x-null", None)]),
        Sent(*adjustment, [("x-null", None), ("x-empty", b"")], "unknown_product"),
        Sent(*_upsert(105), [("dup", b"1"), ("dup", b"2"), ("dup", None)]),
        Sent(b"999", mismatched, [("dup", b"a"), ("dup", b"\xfe")], "invalid_event"),
        Sent(
            b"107",
            b"[]",
            [("error.reason", b"forged"), ("original.offset", b"999"), ("error.message", BINARY)],
            "invalid_event",
        ),
        Sent(*_upsert(108), [("error.reason", b"forged"), ("original.topic", None)]),
        Sent(b"109", None, [("x-trace", BINARY)], "invalid_json"),  # tombstone
        Sent(*_upsert(110, key=b""), [("x-trace", b"\x80")]),  # empty key: no key check
        Sent(b"9" * 200_000, json.dumps(upsert(111, 1)).encode(), [], "invalid_event"),
        Sent(b"", b"", [("", b"")], "invalid_json"),  # empty key, value and header name
    ]


async def _publish(bootstrap: str, topic: str, records: Sequence[Sent]) -> list[Sent]:
    """Publish to partition 0 (one partition: a stall there would stop everything) and
    return the records with their offsets."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=20)
    await producer.start()
    try:
        futures = [
            await producer.send(topic, value=r.value, key=r.key, headers=r.headers, partition=0)
            for r in records
        ]
        metadata = await asyncio.gather(*futures)
    finally:
        await producer.stop()
    return [
        Sent(r.key, r.value, r.headers, r.reason, m.offset)
        for r, m in zip(records, metadata, strict=True)
    ]


async def _wait_until(
    engine: AsyncEngine,
    group: str,
    topic: str,
    position: int,
    names: set[str],
    consumer: ConsumerProcess,
    timeout: float = 60.0,
) -> None:
    deadline = time.monotonic() + timeout
    found: tuple[object, object] = (None, None)
    while time.monotonic() < deadline:
        async with engine.connect() as connection:
            stored = (
                await connection.execute(
                    text(
                        "SELECT next_offset FROM consumer_offsets "
                        "WHERE group_id = :g AND topic = :t AND partition = 0"
                    ),
                    {"g": group, "t": topic},
                )
            ).scalar()
            rows = set((await connection.execute(text("SELECT name FROM products"))).scalars())
        found = (stored, rows)
        if stored == position and rows == names:
            return
        if not consumer.alive():
            break
        await asyncio.sleep(0.3)
    pytest.fail(
        f"expected position {position} and products {sorted(names)}; found {found}\n"
        f"--- consumer log:\n{consumer.tail()}"
    )


@pytest.fixture
def consumer(settings: Settings, tmp_path: Path) -> Iterator[ConsumerProcess]:
    process = ConsumerProcess(settings, tmp_path)
    yield process
    process.kill()


async def test_hostile_records_are_applied_or_dead_lettered_and_never_stall_the_partition(
    settings: Settings, engine: AsyncEngine, consumer: ConsumerProcess, kafka: str
) -> None:
    topic = settings.kafka_topic
    await ensure_topics(settings)
    consumer.start()

    sent = await _publish(kafka, topic, hostile_batch())
    good = {f"hostile {json.loads(r.value or b'')['product_id']}" for r in sent if not r.reason}
    await _wait_until(engine, settings.kafka_group_id, topic, sent[-1].offset + 1, good, consumer)

    # One record on its own after that batch: the partition still moves.
    (alone,) = await _publish(kafka, topic, [Sent(*_upsert(120), [("x-trace", BINARY)])])
    good.add("hostile 120")
    await _wait_until(engine, settings.kafka_group_id, topic, alone.offset + 1, good, consumer)

    bad = [r for r in sent if r.reason]
    letters = await read_topic(kafka, settings.kafka_dlq_topic, len(bad))
    letters.sort(key=lambda letter: int(dict(letter.headers)["original.offset"] or b""))
    assert len(letters) == len(bad)
    for original, letter in zip(bad, letters, strict=True):
        assert (letter.key, letter.value) == (original.key, original.value)
        headers = list(letter.headers)
        assert original_headers(headers) == original.headers
        sink = headers[len(original.headers) :]
        assert [name for name, _ in sink] == list(ERROR_HEADERS)
        assert sink[0] == ("error.reason", original.reason.encode())  # type: ignore[union-attr]
        assert sink[1][1], "error.message is empty"
        assert sink[2:] == [
            ("original.topic", topic.encode()),
            ("original.partition", b"0"),
            ("original.offset", str(original.offset).encode()),
        ]

    log = consumer.log_path.read_text(errors="replace")
    assert "Traceback" not in log, consumer.tail()


def _batch_with_a_header_key_that_is_not_utf8(key: bytes, value: bytes) -> bytes:
    return batch(0, [(key, value, [(BAD_KEY_PLACEHOLDER, b"v")])])


async def _produce_raw(bootstrap: str, topic: str, batch: bytes) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        await producer.client.force_metadata_update()
        leader = producer.client.cluster.leader_for_partition(TopicPartition(topic, 0))
        response = await producer.client.send(
            leader, ProduceRequest(None, -1, 10_000, [(topic, [(0, batch)])])
        )
        assert response.topics[0][1][0][1] == 0, response  # the broker accepts it
    finally:
        await producer.stop()


async def test_a_header_key_that_is_not_utf8_is_applied_or_dead_lettered_and_nothing_stalls(
    settings: Settings, engine: AsyncEngine, consumer: ConsumerProcess, kafka: str
) -> None:
    """aiokafka alone cannot unpack such a record and its partition would stop for good
    (service/kafka/lenient_fetch.py): a valid event is applied, a bad one dead-lettered with the
    name's invalid bytes as U+FFFD, and the records after them are applied."""
    topic, group = settings.kafka_topic, settings.kafka_group_id
    await ensure_topics(settings)
    consumer.start()
    (before,) = await _publish(kafka, topic, [Sent(*_upsert(131), [])])
    await _wait_until(engine, group, topic, before.offset + 1, {"hostile 131"}, consumer)

    await _produce_raw(kafka, topic, _batch_with_a_header_key_that_is_not_utf8(*_upsert(132)))
    bad_value = b"{not json"
    await _produce_raw(kafka, topic, _batch_with_a_header_key_that_is_not_utf8(b"134", bad_value))
    (after,) = await _publish(kafka, topic, [Sent(*_upsert(133), [])])
    await _wait_until(
        engine,
        group,
        topic,
        after.offset + 1,
        {"hostile 131", "hostile 132", "hostile 133"},
        consumer,
    )
    (letter,) = await read_topic(kafka, settings.kafka_dlq_topic, 1)
    assert (letter.key, letter.value) == (b"134", bad_value)
    assert original_headers(list(letter.headers)) == [("\ufffd\ufffd\x00", b"v")]
    assert dict(letter.headers)["original.offset"] == str(after.offset - 1).encode()
    assert dict(letter.headers)["error.reason"] == b"invalid_json"
    log = consumer.log_path.read_text(errors="replace")
    assert "header key that is not UTF-8" in log, consumer.tail()
    assert "Traceback" not in log, consumer.tail()
