"""What an operator looks at: the products table, the lag per partition, the dead letters."""

from __future__ import annotations

from service.config.settings import Settings
from service.core.letters import Letter
from service.kafka import clients
from service.kafka.topics import partitions_of
from service.postgres import consumer_offsets, products
from service.postgres.engine import connected, make_session_factory


async def print_products(settings: Settings, include_deleted: bool = True) -> None:
    async with connected(settings) as engine, make_session_factory(engine)() as session:
        rows = await products.list_products(session)
    header = f"{'id':>4}  {'name':<24} {'price':>10} {'quantity':>9} {'version':>8}  deleted"
    print(header)
    print("-" * len(header))
    for pid, name, price, quantity, version, deleted in rows:
        if deleted and not include_deleted:
            continue
        print(
            f"{pid:>4}  {name[:24]:<24} {price:>10} {quantity:>9} {version:>8}  "
            f"{'yes' if deleted else ''}"
        )
    print(f"({len(rows)} rows)")


async def partition_lag(settings: Settings) -> dict[int, tuple[int, int]]:
    """Per partition of KAFKA_TOPIC: (records not yet in the database, end offset)."""
    from aiokafka import TopicPartition

    partitions = await partitions_of(settings, settings.kafka_topic)
    tps = [TopicPartition(settings.kafka_topic, p) for p in partitions]
    consumer = clients.consumer(settings)
    await consumer.start()
    try:
        ends = await consumer.end_offsets(tps) if tps else {}
        starts = await consumer.beginning_offsets(tps) if tps else {}
    finally:
        await consumer.stop()
    async with connected(settings) as engine, make_session_factory(engine)() as session:
        stored = await consumer_offsets.read_positions(
            session, settings.kafka_group_id, {settings.kafka_topic}
        )
    lag = {}
    for tp in tps:
        done = max(stored.get(tp, 0), starts[tp])
        lag[tp.partition] = (max(ends[tp] - done, 0), ends[tp])
    return lag


async def print_lag(settings: Settings, wait: float) -> bool:
    """Print the lag; with `wait`, poll until it is zero. True when caught up."""
    import asyncio
    import time

    deadline = time.monotonic() + wait
    while True:
        lag = await partition_lag(settings)
        behind = sum(missing for missing, _ in lag.values())
        if behind == 0 or time.monotonic() >= deadline:
            break
        await asyncio.sleep(0.5)
    for partition, (missing, end) in sorted(lag.items()):
        print(f"{settings.kafka_topic}[{partition}]: end offset {end}, not yet applied {missing}")
    print("caught up" if behind == 0 else f"{behind} records not yet applied")
    return behind == 0


async def print_dead_letters(settings: Settings, count_only: bool, last: int) -> None:
    from aiokafka import TopicPartition

    partitions = await partitions_of(settings, settings.kafka_dlq_topic, needs="Read")
    tps = [TopicPartition(settings.kafka_dlq_topic, p) for p in partitions]
    if not tps:
        print(0 if count_only else f"no topic {settings.kafka_dlq_topic}")
        return
    consumer = clients.consumer(settings, enable_auto_commit=False)
    await consumer.start()
    try:
        ends = await consumer.end_offsets(tps)
        starts = await consumer.beginning_offsets(tps)
        total = sum(ends[tp] - starts[tp] for tp in tps)
        if count_only:
            print(total)
            return
        consumer.assign(tps)
        for tp in tps:
            consumer.seek(tp, max(starts[tp], ends[tp] - last))
        records = []
        while [tp for tp in tps if await consumer.position(tp) < ends[tp]]:
            for batch in (await consumer.getmany(timeout_ms=1000)).values():
                records.extend(batch)
        records.sort(key=lambda r: r.timestamp)
        for letter in map(Letter.of, records[-last:]):
            print(
                f"{letter.original_topic}[{letter.original_partition}]"
                f"@{letter.original_offset} {letter.reason}: {letter.message}"
            )
        print(f"({total} dead letters in {settings.kafka_dlq_topic})")
    finally:
        await consumer.stop()
