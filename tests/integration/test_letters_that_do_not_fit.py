"""Dead letters the dead-letter topic cannot take as they are, through the real service on
the real broker: nothing the broker delivers stops more than its own partition.

- A record compressed with gzip whose value inflates to 6,000,000 zero bytes (6 KB on the
  wire): over MAX_RECORD_BYTES, and its letter over the dead-letter topic's 4 MiB. The letter
  is published cut, with what was cut and the original value's size and SHA-256; the other
  partitions, and the records after it, are applied.
- A dead-letter topic made with a small max.message.bytes: the broker refuses the letter,
  which is cut until it fits, and later letters of that partition are still accepted.
- A dead-letter topic too small for any letter: the partition stops (readiness names it, a
  metric counts it), the other partitions go on.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from service.config.settings import Settings
from service.core.letter_fit import CUT_HEADERS, batch_size
from service.core.letters import ERROR_HEADERS, original_headers
from service.kafka.topics import DLQ_MAX_MESSAGE_BYTES, ensure_topics
from testbed.events import record, upsert
from testbed.publish import publish_acked
from tests.conftest import make_settings
from tests.integration.test_hostile_records import _produce_raw
from tests.support.consumer import ConsumerProcess, wait_for_products
from tests.support.kafka import read_topic
from tests.support.record_batches import batch, gzipped
from tests.support.services import PostgresEndpoint

INFLATED = 6_000_000


@pytest.fixture
def consumer(settings: Settings, tmp_path: Path) -> Iterator[ConsumerProcess]:
    process = ConsumerProcess(settings, tmp_path)
    yield process
    process.kill()


async def _stored(engine: AsyncEngine, group: str, topic: str) -> dict[int, int]:
    async with engine.connect() as connection:
        rows = await connection.execute(
            text(
                "SELECT partition, next_offset FROM consumer_offsets "
                "WHERE group_id = :g AND topic = :t"
            ),
            {"g": group, "t": topic},
        )
        return {partition: offset for partition, offset in rows}


async def _create_dlq(settings: Settings, max_message_bytes: int) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers)
    await admin.start()
    try:
        await admin.create_topics(
            [
                NewTopic(
                    settings.kafka_dlq_topic,
                    num_partitions=1,
                    replication_factor=1,
                    topic_configs={"max.message.bytes": str(max_message_bytes)},
                )
            ]
        )
    finally:
        await admin.close()


def _upserts(first: int, count: int, partition: int) -> list[tuple[bytes, bytes, list, int]]:
    return [(*record(upsert(i, 1)), [], partition) for i in range(first, first + count)]


async def _publish_to(
    kafka: str, topic: str, records: list[tuple[bytes, bytes, list, int]]
) -> None:
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=kafka, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        sent = [
            await producer.send(topic, key=k, value=v, headers=h, partition=p)
            for k, v, h, p in records
        ]
        await asyncio.gather(*sent)
    finally:
        await producer.stop()


def _text(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as response:
        return str(response.read().decode())


def _get(url: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


async def test_a_record_inflating_past_both_limits_is_cut_and_nothing_else_waits(
    settings: Settings, engine: AsyncEngine, consumer: ConsumerProcess, kafka: str
) -> None:
    topic, group = settings.kafka_topic, settings.kafka_group_id
    await ensure_topics(settings)
    value = bytes(INFLATED)
    bomb = gzipped(batch(0, [(b"42", value, [("x-trace", b"t")])]))
    assert len(bomb) < 10_000  # small on the wire
    await _produce_raw(kafka, topic, bomb)  # partition 0, offset 0
    await _publish_to(kafka, topic, [*_upserts(1, 3, 0), *_upserts(11, 3, 1), *_upserts(21, 3, 2)])
    consumer.start()

    want = {1, 2, 3, 11, 12, 13, 21, 22, 23}
    assert await wait_for_products(engine, consumer, want) == want, consumer.tail()
    (letter,) = await read_topic(kafka, settings.kafka_dlq_topic, 1)
    headers = list(letter.headers)
    assert [name for name, _ in headers[-8:]] == [*ERROR_HEADERS, *CUT_HEADERS]
    marks = dict(headers)
    assert marks["error.reason"] == b"record_too_large"
    assert (marks["original.topic"], marks["original.partition"], marks["original.offset"]) == (
        topic.encode(),
        b"0",
        b"0",
    )
    assert marks["letter.cut"] == b"value"
    assert marks["original.value.bytes"] == str(INFLATED).encode()
    assert marks["original.value.sha256"] == hashlib.sha256(value).hexdigest().encode()
    assert letter.key == b"42" and value.startswith(letter.value)
    size = batch_size(letter.key, letter.value, headers)
    assert DLQ_MAX_MESSAGE_BYTES - 8 <= size <= DLQ_MAX_MESSAGE_BYTES
    assert original_headers(headers) == [("x-trace", b"t")]
    assert (await _stored(engine, group, topic)) == {0: 4, 1: 3, 2: 3}

    log = consumer.log_path.read_text(errors="replace")
    assert log.count("as record_too_large, cut (value) to ") == 1, consumer.tail()
    assert "Traceback" not in log and "failed (attempt" not in log, consumer.tail()
    status, _ = _get(consumer.http_url() + "/health/ready")
    assert status == 200


async def test_a_dead_letter_topic_with_a_small_limit_gets_cut_letters(
    pg: PostgresEndpoint, engine: AsyncEngine, kafka: str, names: dict[str, str], tmp_path: Path
) -> None:
    settings = make_settings(pg, kafka, names, kafka_topic_partitions=1, max_record_bytes=4096)
    await _create_dlq(settings, 64 * 1024)  # the sink's ensure_topics keeps it as it is
    await ensure_topics(settings)
    big = upsert(1, 1, name="big")
    big["data"]["description"] = "x" * 200_000  # valid, but over MAX_RECORD_BYTES: a letter
    positions = await publish_acked(
        kafka,
        settings.kafka_topic,
        [record(big), (b"2", b"{not json"), record(upsert(3, 1))],
    )
    consumer = ConsumerProcess(settings, tmp_path)
    consumer.start()
    try:
        assert await wait_for_products(engine, consumer, {3}) == {3}, consumer.tail()
        # A letter after the refused one, on the same dead-letter partition, in a later batch.
        await publish_acked(kafka, settings.kafka_topic, [(b"4", b"[]")])
        letters = await read_topic(kafka, settings.kafka_dlq_topic, 3)
    finally:
        consumer.kill()
    # The cut letter was published after the next record's (accepted at once).
    assert [dict(r.headers)["original.offset"] for r in letters] == [
        str(offset).encode() for offset in (positions[1][1], positions[0][1], positions[2][1] + 1)
    ]
    plain, cut, later = letters
    assert (later.key, later.value, dict(later.headers)["error.reason"]) == (
        b"4",
        b"[]",
        b"invalid_event",
    )
    marks = dict(cut.headers)
    assert marks["letter.cut"] == b"value" and marks["error.reason"] == b"record_too_large"
    assert batch_size(cut.key, cut.value, list(cut.headers)) <= 64 * 1024
    assert record(big)[1].startswith(cut.value) and len(cut.value) > 60_000
    # The letter after the refused one, on the same dead-letter partition, is accepted as it is.
    assert (plain.key, plain.value, dict(plain.headers)["error.reason"]) == (
        b"2",
        b"{not json",
        b"invalid_json",
    )
    assert "letter.cut" not in dict(plain.headers)
    log = consumer.log_path.read_text(errors="replace")
    assert "refused it as it was (MessageSizeTooLargeError)" in log, consumer.tail()


async def test_a_letter_refused_in_every_form_stops_only_its_partition(
    pg: PostgresEndpoint, engine: AsyncEngine, kafka: str, names: dict[str, str], tmp_path: Path
) -> None:
    settings = make_settings(pg, kafka, names)
    await _create_dlq(settings, 200)  # smaller than the sink's own headers
    await ensure_topics(settings)
    await _publish_to(
        kafka,
        settings.kafka_topic,
        [
            *_upserts(1, 1, 0),
            (b"2", b"{not json", [], 0),
            *_upserts(3, 1, 0),
            *_upserts(11, 3, 1),
            *_upserts(21, 3, 2),
        ],
    )
    consumer = ConsumerProcess(settings, tmp_path)
    consumer.start()
    try:
        want = {11, 12, 13, 21, 22, 23}
        assert await wait_for_products(engine, consumer, want) >= want, consumer.tail()
        url = consumer.http_url()
        deadline = time.monotonic() + 30
        status, body = _get(url + "/health/ready")
        while status != 503 and time.monotonic() < deadline:
            await asyncio.sleep(0.3)
            status, body = _get(url + "/health/ready")
        assert status == 503, body
        problem = body["checks"]["dead_letters"]["problem"]
        assert f"{settings.kafka_topic}[0]: the dead-letter topic " in problem, problem
        assert "MessageSizeTooLargeError" in problem and "max.message.bytes" in problem
        metrics = await asyncio.to_thread(_text, url + "/metrics")
        assert (
            f'inventory_sink_dead_letters_refused_total{{topic="{settings.kafka_topic}"}} 1.0'
            in metrics
        )
        await asyncio.sleep(2)  # a retry loop would show here
        stored = await _stored(engine, settings.kafka_group_id, settings.kafka_topic)
        products = await wait_for_products(engine, consumer, want)
    finally:
        consumer.kill()
    # Partition 0 stopped at its stored position: nothing of the batch holding the refused
    # letter is written (it is read again from there after the restart).
    assert stored == {0: 0, 1: 3, 2: 3}, stored
    assert not {1, 3} & products
    log = consumer.log_path.read_text(errors="replace")
    assert log.count("is stopped: nothing of it is consumed or written") == 1, log
    assert log.count("failed (attempt") <= 1, log
