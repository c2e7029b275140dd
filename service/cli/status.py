"""What an operator looks at: the products table, the lag per partition, the dead letters.

Each prints a table for people, or with `--json` one JSON document for scripts. Every Kafka
client is stopped in a `finally`, also when its start fails: an unstopped client leaves
"Unclosed AIOKafkaConsumer" lines after the command's `error:` line.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from aiokafka import AIOKafkaConsumer

from service.config.settings import KafkaSettings, PostgresSettings, StoreAndBrokerSettings
from service.core.letters import Letter
from service.kafka import clients
from service.kafka.topics import partitions_of
from service.postgres import consumer_offsets, products
from service.postgres.engine import connected, make_session_factory


@asynccontextmanager
async def started_consumer(settings: KafkaSettings, **options: Any) -> AsyncIterator[Any]:
    """A consumer of the command, started, and stopped on leaving (a failed start too)."""
    consumer: AIOKafkaConsumer = clients.consumer(settings, **options)
    try:
        await consumer.start()
        # Without a group, aiokafka's start creates a task that stop cancels and awaits: one
        # cancelled before it first ran raises CancelledError from stop (`lag` on a topic with
        # no partitions did). One turn of the loop lets it start.
        await asyncio.sleep(0)
        yield consumer
    finally:
        await consumer.stop()


def print_json(document: object) -> None:
    print(json.dumps(document, indent=2, default=str))


async def print_products(
    settings: PostgresSettings,
    include_deleted: bool = True,
    limit: int = 100,
    as_json: bool = False,
) -> None:
    """The products by id, at most `limit` of them, and how many more there are."""
    async with connected(settings) as engine, make_session_factory(engine)() as session:
        total = await products.count_products(session, include_deleted)
        rows = await products.list_products(session, include_deleted, limit)
    more = total - len(rows)
    if as_json:
        print_json(
            {
                "products": [{**row._asdict(), "price": str(row.price)} for row in rows],
                "total": total,
                "more": more,
            }
        )
        return
    header = f"{'id':>4}  {'name':<24} {'price':>10} {'quantity':>9} {'version':>8}  deleted"
    print(header)
    print("-" * len(header))
    for pid, name, price, quantity, version, deleted in rows:
        print(
            f"{pid:>4}  {name[:24]:<24} {price:>10} {quantity:>9} {version:>8}  "
            f"{'yes' if deleted else ''}"
        )
    print(f"({len(rows)} rows)")
    if more:
        print(f"{more} more rows not shown; raise --limit to see them")


async def partition_lag(settings: StoreAndBrokerSettings) -> dict[int, tuple[int, int]]:
    """Per partition of KAFKA_TOPIC: (records not yet in the database, end offset)."""
    from aiokafka import TopicPartition

    partitions = await partitions_of(settings, settings.kafka_topic)
    tps = [TopicPartition(settings.kafka_topic, p) for p in partitions]
    async with started_consumer(settings) as consumer:
        ends = await consumer.end_offsets(tps) if tps else {}
        starts = await consumer.beginning_offsets(tps) if tps else {}
    async with connected(settings) as engine, make_session_factory(engine)() as session:
        stored = await consumer_offsets.read_positions(
            session, settings.kafka_group_id, {settings.kafka_topic}
        )
    lag = {}
    for tp in tps:
        done = max(stored.get(tp, 0), starts[tp])
        lag[tp.partition] = (max(ends[tp] - done, 0), ends[tp])
    return lag


async def print_lag(settings: StoreAndBrokerSettings, wait: float, as_json: bool = False) -> bool:
    """Print the lag; with `wait`, poll until it is zero. True when caught up."""
    import time

    deadline = time.monotonic() + wait
    while True:
        lag = await partition_lag(settings)
        behind = sum(missing for missing, _ in lag.values())
        if behind == 0 or time.monotonic() >= deadline:
            break
        await asyncio.sleep(0.5)
    if as_json:
        print_json(
            {
                "topic": settings.kafka_topic,
                "group": settings.kafka_group_id,
                "partitions": [
                    {"partition": partition, "end_offset": end, "not_yet_applied": missing}
                    for partition, (missing, end) in sorted(lag.items())
                ],
                "not_yet_applied": behind,
                "caught_up": behind == 0,
            }
        )
        return behind == 0
    for partition, (missing, end) in sorted(lag.items()):
        print(f"{settings.kafka_topic}[{partition}]: end offset {end}, not yet applied {missing}")
    print("caught up" if behind == 0 else f"{behind} records not yet applied")
    return behind == 0


def event_id(letter: Letter) -> str | None:
    """The letter's `event_id` if its value is a JSON object that has one as a string (a
    letter dead-lettered as invalid JSON or without the field has none)."""
    if letter.value is None:
        return None
    try:
        document = json.loads(letter.value)
    except ValueError:
        return None
    found = document.get("event_id") if isinstance(document, dict) else None
    return found if isinstance(found, str) else None


def key_text(letter: Letter) -> str | None:
    """The letter's key as text (bytes that are not UTF-8 escaped as \\xNN)."""
    if letter.key is None:
        return None
    return letter.key.decode("utf-8", "backslashreplace")


def letter_json(letter: Letter) -> dict[str, object]:
    return {
        "dlq_partition": letter.partition,
        "dlq_offset": letter.offset,
        "timestamp": letter.timestamp.isoformat(),
        "original_topic": letter.original_topic,
        "original_partition": letter.original_partition,
        "original_offset": letter.original_offset,
        "key": key_text(letter),
        "event_id": event_id(letter),
        "reason": letter.reason,
        "message": letter.message,
    }


async def print_dead_letters(
    settings: KafkaSettings, count_only: bool, last: int, as_json: bool = False
) -> None:
    from aiokafka import TopicPartition

    partitions = await partitions_of(settings, settings.kafka_dlq_topic, needs="Read")
    tps = [TopicPartition(settings.kafka_dlq_topic, p) for p in partitions]
    if not tps:
        if as_json:
            print_json({"topic": settings.kafka_dlq_topic, "exists": False, "total": 0})
        else:
            print(0 if count_only else f"no topic {settings.kafka_dlq_topic}")
        return
    async with started_consumer(settings, enable_auto_commit=False) as consumer:
        ends = await consumer.end_offsets(tps)
        starts = await consumer.beginning_offsets(tps)
        total = sum(ends[tp] - starts[tp] for tp in tps)
        records = []
        if not count_only:
            consumer.assign(tps)
            for tp in tps:
                consumer.seek(tp, max(starts[tp], ends[tp] - last))
            while [tp for tp in tps if await consumer.position(tp) < ends[tp]]:
                for batch in (await consumer.getmany(timeout_ms=1000)).values():
                    records.extend(batch)
    records.sort(key=lambda r: r.timestamp)
    letters = [Letter.of(record) for record in records[-last:]]
    if as_json:
        document: dict[str, object] = {"topic": settings.kafka_dlq_topic, "total": total}
        if not count_only:
            document["letters"] = [letter_json(letter) for letter in letters]
        print_json(document)
        return
    if count_only:
        print(total)
        return
    for letter in letters:
        print(
            f"{letter.original_topic}[{letter.original_partition}]"
            f"@{letter.original_offset} key={key_text(letter) or '-'} "
            f"event_id={event_id(letter) or '-'} "
            f"{letter.reason}: {letter.message}"
        )
    print(f"({total} dead letters in {settings.kafka_dlq_topic})")
