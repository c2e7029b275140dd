"""The real service process against the real broker and database."""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from service.config import Settings
from service.sample import sample_events
from service.topics import ensure_topics
from tests.support.consumer import ConsumerProcess
from tests.support.events import (
    StreamSpec,
    adjust,
    delete,
    event,
    generate_stream,
    record,
    upsert,
)
from tests.support.kafka import header_map, publish, read_topic
from tests.support.oracle import Product, diff, expected_outcome, table


async def wait_for_table(
    engine: AsyncEngine,
    expected: dict[int, Product],
    consumer: ConsumerProcess,
    timeout: float = 90.0,
) -> None:
    deadline = time.monotonic() + timeout
    problems: list[str] = []
    while time.monotonic() < deadline:
        problems = diff(expected, await table(engine))
        if not problems:
            return
        if not consumer.alive():
            break
        await asyncio.sleep(0.3)
    pytest.fail(
        "table never matched the oracle:\n"
        + "\n".join(problems)
        + "\n--- consumer log:\n"
        + consumer.tail()
    )


@pytest.fixture
def consumer(settings: Settings, tmp_path: Path):  # type: ignore[no-untyped-def]
    process = ConsumerProcess(settings, tmp_path)
    yield process
    process.kill()


async def test_sample_events_become_rows_and_bad_ones_reach_the_dlq(
    settings: Settings, engine: AsyncEngine, consumer: ConsumerProcess, kafka: str
) -> None:
    await ensure_topics(settings)
    pairs = sample_events("e2e")
    await publish(kafka, settings.kafka_topic, pairs)
    consumer.start()

    expected = expected_outcome(pairs)
    await wait_for_table(engine, expected.products, consumer)
    rows = await table(engine)
    assert (rows[1].quantity, rows[2].name, rows[3].is_deleted) == (37, "Milk frother Pro", True)

    letters = await read_topic(kafka, settings.kafka_dlq_topic, expected.dead_letters)
    reasons = Counter(header_map(r)["error.reason"] for r in letters)
    assert reasons == Counter(
        {"invalid_json": 1, "invalid_event": 1, "insufficient_stock": 1, "unknown_product": 1}
    )


async def test_every_kind_of_bad_record_is_dead_lettered_with_its_bytes_and_headers(
    settings: Settings, engine: AsyncEngine, consumer: ConsumerProcess, kafka: str
) -> None:
    await ensure_topics(settings)
    bad = {
        "invalid_json": (b"5", b'{"event_id": '),
        "invalid_event": (b"5", json.dumps(upsert(5, 1, price="1.234")).encode()),
        "unknown type": (b"5", json.dumps(event("product.renamed", 5, {}, 1)).encode()),
        "unknown_product": record(adjust(777, 1)),
        "insufficient_stock": record(adjust(5, -100)),
        "key mismatch": (b"6", json.dumps(upsert(5, 9)).encode()),
    }
    good_before = [record(upsert(5, 1, quantity=3))]
    good_after = [record(adjust(5, 2)), record(upsert(6, 1, name="later", quantity=1))]
    pairs = good_before + list(bad.values()) + good_after
    await publish(kafka, settings.kafka_topic, pairs)
    consumer.start()

    await wait_for_table(engine, expected_outcome(pairs).products, consumer)
    rows = await table(engine)
    assert rows[5].quantity == 5 and rows[5].version == 1 and rows[6].name == "later"

    letters = await read_topic(kafka, settings.kafka_dlq_topic, len(bad))
    assert len(letters) == len(bad)
    by_value = {letter.value: letter for letter in letters}
    expected_reasons = {
        "invalid_json": "invalid_json",
        "invalid_event": "invalid_event",
        "unknown type": "invalid_event",
        "unknown_product": "unknown_product",
        "insufficient_stock": "insufficient_stock",
        "key mismatch": "invalid_event",
    }
    for name, (key, value) in bad.items():
        letter = by_value[value]
        headers = header_map(letter)
        assert letter.key == key, name
        assert headers["error.reason"] == expected_reasons[name], name
        assert headers["error.message"], name
        assert headers["original.topic"] == settings.kafka_topic
        assert int(headers["original.partition"]) in range(settings.kafka_topic_partitions)
        assert int(headers["original.offset"]) >= 0
    assert "price" in header_map(by_value[bad["invalid_event"][1]])["error.message"]


async def test_duplicates_apply_once_and_stale_versions_are_ignored(
    settings: Settings, engine: AsyncEngine, consumer: ConsumerProcess, kafka: str
) -> None:
    await ensure_topics(settings)
    retried = record(adjust(8, -2))
    pairs = [
        record(upsert(8, 2, name="current", quantity=10)),
        retried,
        record(upsert(8, 1, name="stale")),
        retried,
        record(delete(8, 1)),
    ]
    await publish(kafka, settings.kafka_topic, pairs)
    consumer.start()
    await wait_for_table(engine, expected_outcome(pairs).products, consumer)
    row = (await table(engine))[8]
    assert (row.name, row.quantity, row.version, row.is_deleted) == ("current", 8, 2, False)


async def test_restarts_resume_where_they_stopped_with_nothing_lost_or_doubled(
    settings: Settings, engine: AsyncEngine, consumer: ConsumerProcess, kafka: str
) -> None:
    await ensure_topics(settings)
    stream = generate_stream(StreamSpec(events=6000, products=60, seed=3))
    first, second = stream[:3000], stream[3000:]

    await publish(kafka, settings.kafka_topic, first)
    consumer.start()
    await wait_for_table(engine, expected_outcome(first).products, consumer)
    assert consumer.stop() == 0, consumer.tail()  # graceful SIGTERM exits 0

    await publish(kafka, settings.kafka_topic, second)
    consumer.start()
    # Crash mid-stream, then come back.
    await asyncio.sleep(1.5)
    consumer.kill()
    consumer.start()

    expected = expected_outcome(stream)
    await wait_for_table(engine, expected.products, consumer)
    letters = await read_topic(kafka, settings.kafka_dlq_topic, expected.dead_letters)
    unique = {(h["original.partition"], h["original.offset"]) for h in map(header_map, letters)}
    assert len(unique) == expected.dead_letters
