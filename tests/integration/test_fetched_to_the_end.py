"""Whether records wait beyond a batch, as a real consumer and broker tell it
(service/kafka/consumer.py's `fetched_to_the_end`): the overlapped writer commits a batch
before fetching again only when nothing waits."""

from __future__ import annotations

import asyncio

from aiokafka import AIOKafkaConsumer, TopicPartition

from service.config.settings import Settings
from service.kafka.consumer import ConsumerAdapter
from service.kafka.topics import ensure_topics
from testbed.events import record, upsert
from testbed.publish import publish


async def test_a_batch_reaches_the_end_once_it_holds_the_last_record_fetched(
    settings: Settings, kafka: str
) -> None:
    await ensure_topics(settings.model_copy(update={"kafka_topic_partitions": 1}))
    await publish(kafka, settings.kafka_topic, [record(upsert(i, 1)) for i in range(1, 11)])
    tp = TopicPartition(settings.kafka_topic, 0)
    consumer = AIOKafkaConsumer(bootstrap_servers=kafka, enable_auto_commit=False)
    await consumer.start()
    try:
        consumer.assign([tp])
        adapter = ConsumerAdapter(consumer)
        await consumer.seek_to_beginning(tp)
        first = (await consumer.getmany(tp, timeout_ms=10_000, max_records=4))[tp]
        assert [r.offset for r in first] == [0, 1, 2, 3]
        assert not adapter.fetched_to_the_end(first)  # six more are waiting
        rest = (await consumer.getmany(tp, timeout_ms=10_000))[tp]
        assert [r.offset for r in rest] == list(range(4, 10))
        assert adapter.fetched_to_the_end(rest)

        # A record published since waits once a fetch has told the consumer of it.
        await publish(kafka, settings.kafka_topic, [record(upsert(11, 1))])
        for _ in range(200):  # the fetcher's next response brings the new end
            if consumer.highwater(tp) == 11:
                break
            await asyncio.sleep(0.05)
        assert not adapter.fetched_to_the_end(rest)
        last = (await consumer.getmany(tp, timeout_ms=10_000))[tp]
        assert [r.offset for r in last] == [10]
        assert adapter.fetched_to_the_end(last)

        consumer.unsubscribe()  # revoked: aiokafka keeps no end for it, so it may wait
        assert not adapter.fetched_to_the_end(last)
    finally:
        await consumer.stop()
