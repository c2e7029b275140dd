"""The real service process against the real broker and database."""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from service.cli.sample import sample_events
from service.config.settings import Settings
from service.kafka.topics import ensure_topics
from testbed.events import (
    LabelledSpec,
    adjust,
    delete,
    event,
    generate_records,
    record,
    upsert,
)
from testbed.oracle import Product, diff, expected_outcome, table
from testbed.publish import publish, publish_acked
from tests.support.consumer import ConsumerProcess
from tests.support.kafka import header_map, read_topic


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
    """Each letter: the original key and value bytes, the original headers exactly (binary,
    null, duplicate names, a forged `error.reason`), then the sink's five, whose position
    headers are the exact partition and offset the broker acknowledged for the original."""
    await ensure_topics(settings)
    forged: list[tuple[str, bytes | None]] = [
        ("trace", b"\x00\xff"),
        ("x-null", None),
        ("dup", b"1"),
        ("dup", b"2"),
        ("error.reason", b"forged"),
    ]
    bad = {
        "invalid_json": (b"5", b'{"event_id": ', forged),
        "invalid_event": (b"5", json.dumps(upsert(5, 1, price="1.234")).encode(), []),
        "unknown type": (b"5", json.dumps(event("product.renamed", 5, {}, 1)).encode(), forged),
        "unknown_product": (*record(adjust(777, 1)), [("only", b"one")]),
        "insufficient_stock": (*record(adjust(5, -100)), forged),
        "key mismatch": (b"6", json.dumps(upsert(5, 9)).encode(), []),
        "unknown version": (b"5", json.dumps(upsert(5, 9)).encode(), [("contract-version", b"2")]),
        "price off the cent": (b"5", json.dumps(upsert(5, 9, price=24.999)).encode(), []),
    }
    reasons = {
        "invalid_json": "invalid_json",
        "invalid_event": "invalid_event",
        "unknown type": "invalid_event",
        "unknown_product": "unknown_product",
        "insufficient_stock": "insufficient_stock",
        "key mismatch": "invalid_event",
        "unknown version": "unknown_contract_version",
        "price off the cent": "invalid_event",
    }
    good_before = [record(upsert(5, 1, quantity=3))]

    # Prices as JSON numbers, as v1 publishers may send them: 24.9, and 1e2 and -0.0 as spelled.
    def spelled(product_id: int, price: bytes) -> tuple[bytes, bytes]:
        body = json.dumps(upsert(product_id, 1, price="PRICE")).encode()
        return str(product_id).encode(), body.replace(b'"PRICE"', price)

    good_after = [
        record(adjust(5, 2)),
        record(upsert(6, 1, name="later", price=24.9, quantity=1)),
        spelled(7, b"1e2"),
        spelled(8, b"-0.0"),
    ]
    pairs = [*good_before, *bad.values(), *good_after]
    positions = await publish_acked(kafka, settings.kafka_topic, pairs)
    consumer.start()

    await wait_for_table(engine, expected_outcome(pairs).products, consumer)
    rows = await table(engine)
    assert rows[5].quantity == 5 and rows[5].version == 1 and rows[6].name == "later"
    prices = [str(rows[pid].price) for pid in (6, 7, 8)]
    assert prices == ["24.90", "100.00", "0.00"]

    letters = await read_topic(kafka, settings.kafka_dlq_topic, len(bad))
    assert len(letters) == len(bad)
    by_position = {
        (int(header_map(r)["original.partition"]), int(header_map(r)["original.offset"])): r
        for r in letters
    }
    for index, (name, (key, value, headers)) in enumerate(bad.items(), start=1):
        partition, offset = positions[index]
        letter = by_position.pop((partition, offset))
        assert (letter.key, letter.value) == (key, value), name
        got = [tuple(h) for h in letter.headers]
        message = got[-4][1]
        assert got == [
            *headers,
            ("error.reason", reasons[name].encode()),
            ("error.message", message),
            ("original.topic", settings.kafka_topic.encode()),
            ("original.partition", str(partition).encode()),
            ("original.offset", str(offset).encode()),
        ], name
        assert message, name
    assert by_position == {}
    price_letter = next(r for r in letters if r.value == bad["invalid_event"][1])
    assert "price" in header_map(price_letter)["error.message"]
    cents_letter = next(r for r in letters if r.value == bad["price off the cent"][1])
    assert header_map(cents_letter)["error.message"] == (
        "product.upserted.data.price: must have at most 2 decimal places; send it as a decimal "
        'string, e.g. "24.90"'
    )
    version_letter = next(r for r in letters if dict(r.headers).get("contract-version"))
    assert "contract-version='2'" in header_map(version_letter)["error.message"]


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
    stream = generate_records(LabelledSpec(events=6000, products=60, seed=3))
    first, second = stream[:3000], stream[3000:]

    await publish(kafka, settings.kafka_topic, first)
    consumer.start()
    await wait_for_table(engine, expected_outcome(first).products, consumer)
    assert consumer.stop() == 0, consumer.tail()  # graceful SIGTERM exits 0

    # Crash mid-stream, then come back: SIGKILL only once the stored position is strictly
    # between the second half's start and end (a batch done, more in flight).
    await publish(kafka, settings.kafka_topic, second)
    consumer.start()
    killed_at, deadline = None, time.monotonic() + 90
    while killed_at is None and time.monotonic() < deadline and consumer.alive():
        stored = await stored_position(engine, settings)
        if len(first) < stored < len(stream):
            consumer.kill()
            killed_at = stored
        await asyncio.sleep(0.01)
    assert killed_at is not None, "the consumer never had work in flight: nothing was killed"
    consumer.start()

    expected = expected_outcome(stream)
    await wait_for_table(engine, expected.products, consumer)
    assert await stored_position(engine, settings) == len(stream) > killed_at
    letters = await read_topic(kafka, settings.kafka_dlq_topic, expected.dead_letters)
    unique = {(h["original.partition"], h["original.offset"]) for h in map(header_map, letters)}
    assert len(unique) == expected.dead_letters


async def stored_position(engine: AsyncEngine, settings: Settings) -> int:
    """The sum of the stored next offsets of the topic's partitions: records applied."""
    async with engine.connect() as connection:
        value = await connection.scalar(
            text(
                "SELECT coalesce(sum(next_offset), 0) FROM consumer_offsets "
                "WHERE group_id = :g AND topic = :t"
            ),
            {"g": settings.kafka_group_id, "t": settings.kafka_topic},
        )
    return int(value or 0)
