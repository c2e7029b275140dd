"""Every aiokafka client of the service and its commands, made from the settings.

Each connects to KAFKA_BOOTSTRAP_SERVERS with the transport security of the settings
(service/kafka/security.py), so no client connects in plain text or without its login by
accident; `options` are the client's own (client_id, acks, offsets, ...). FastStream's
broker takes its security separately (security.broker_security).

aiokafka binds a client to the running event loop: make one inside a coroutine.
"""

from __future__ import annotations

from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient

from service.config.settings import KafkaSettings
from service.kafka.security import client_kwargs


def consumer(settings: KafkaSettings, **options: Any) -> AIOKafkaConsumer:
    return AIOKafkaConsumer(**_connection(settings), **options)


def producer(settings: KafkaSettings, **options: Any) -> AIOKafkaProducer:
    return AIOKafkaProducer(**_connection(settings), **options)


def admin(settings: KafkaSettings, **options: Any) -> AIOKafkaAdminClient:
    return AIOKafkaAdminClient(**_connection(settings), **options)


def _connection(settings: KafkaSettings) -> dict[str, Any]:
    return {"bootstrap_servers": settings.kafka_brokers, **client_kwargs(settings)}
