"""Which Kafka errors pass by themselves, so that the same request is worth sending again."""

from __future__ import annotations

from aiokafka.errors import KafkaError, KafkaTimeoutError


def retriable_kafka_error(error: BaseException) -> bool:
    """A Kafka error that may pass by itself (aiokafka's `retriable`: no leader yet, broker
    unreachable, ...; and a timeout). Any other, retried as it is, fails the same way."""
    return isinstance(error, KafkaError) and (
        error.retriable or isinstance(error, KafkaTimeoutError)
    )
