"""Which partitions the write path may still write: aiokafka's own subscription state, as
its group coordinator moves it."""

from __future__ import annotations

from aiokafka import AIOKafkaConsumer, TopicPartition

from service.kafka.consumer import ConsumerAdapter

TOPIC = "events"


async def test_partitions_count_as_lost_from_a_refused_heartbeat_until_the_next_assignment() -> (
    None
):
    consumer = AIOKafkaConsumer(bootstrap_servers="127.0.0.1:1")  # never started
    consumer.subscribe([TOPIC])
    state = consumer._subscription
    state.assign_from_subscribed({TopicPartition(TOPIC, 0)})
    adapter = ConsumerAdapter(consumer)
    assert adapter.still_owned(TOPIC, 0) and not adapter.still_owned(TOPIC, 1)

    # What the coordinator does when a heartbeat finds the member expelled (frozen past the
    # session timeout) or the group rebalancing: the old assignment is still reported...
    state.begin_reassignment()
    assert TopicPartition(TOPIC, 0) in consumer.assignment()
    # ...but another member may own the partition already: nothing of it is written.
    assert not adapter.still_owned(TOPIC, 0)

    state.assign_from_subscribed({TopicPartition(TOPIC, 0)})  # given it again
    assert adapter.still_owned(TOPIC, 0)
