"""The FastStream wiring, with the in-memory TestKafkaBroker (no services needed)."""

from __future__ import annotations

import json

from faststream import AckPolicy
from faststream.kafka import TestKafkaBroker

from service.app import build_broker
from service.write_path.handler import BatchHandler
from testbed.events import record, upsert
from testbed.write_path import partition_guard
from tests.support.write_path import SUBSCRIBER_SETTINGS, RecordingWriter


def test_the_subscriber_is_a_manual_ack_batch_consumer_in_the_configured_group() -> None:
    broker = build_broker(SUBSCRIBER_SETTINGS, BatchHandler(RecordingWriter()), partition_guard())
    (subscriber,) = broker.subscribers
    assert subscriber.topics[0].name == "events"
    assert subscriber.group_id == "grp"
    assert subscriber.ack_policy is AckPolicy.MANUAL
    assert type(subscriber).__name__ == "BatchSubscriber"
    assert subscriber.max_records == SUBSCRIBER_SETTINGS.batch_max_records


async def test_raw_record_bytes_reach_the_write_path_undecoded() -> None:
    write_path = RecordingWriter()
    broker = build_broker(SUBSCRIBER_SETTINGS, BatchHandler(write_path), partition_guard())
    key, value = record(upsert(3, 1))
    async with TestKafkaBroker(broker) as test_broker:
        await test_broker.publish(value, topic="events", key=key)
        await test_broker.publish(b"{broken", topic="events", key=b"3")

    assert [[(r.key, r.value) for r in batch] for batch in write_path.batches] == [
        [(key, value)],
        [(b"3", b"{broken")],
    ]
    assert json.loads(write_path.batches[0][0].value or b"")["product_id"] == 3


def test_the_broker_and_its_consumer_are_given_every_broker_of_the_list() -> None:
    # FastStream takes a string as one host name: "a:1,b:2" would be a host "a:1,b".
    settings = SUBSCRIBER_SETTINGS.model_copy(
        update={"kafka_bootstrap_servers": "127.0.0.1:1,127.0.0.1:2"}
    )
    broker = build_broker(settings, BatchHandler(RecordingWriter()), partition_guard())
    assert broker.specification.url == ["127.0.0.1:1", "127.0.0.1:2"]
    assert broker.config.builder.keywords["bootstrap_servers"] == ["127.0.0.1:1", "127.0.0.1:2"]
