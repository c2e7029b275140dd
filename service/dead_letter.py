"""Dead-letter records: the original key and value bytes, with the reason in headers."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from aiokafka import AIOKafkaProducer

from service.domain import Reason
from service.records import Record

ERROR_HEADERS = (
    "error.reason",
    "error.message",
    "original.topic",
    "original.partition",
    "original.offset",
)
MAX_MESSAGE_CHARS = 2_000
# The DLQ topic accepts records larger than the input topic's limit, so an original record
# near that limit still fits once the error headers are added.
DLQ_MAX_MESSAGE_BYTES = 4 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class DeadLetter:
    record: Record
    reason: Reason
    message: str

    def headers(self) -> list[tuple[str, bytes]]:
        kept = [(k, v) for k, v in self.record.headers if k not in ERROR_HEADERS]
        return [
            *kept,
            ("error.reason", self.reason.value.encode()),
            ("error.message", self.message[:MAX_MESSAGE_CHARS].encode("utf-8", "replace")),
            ("original.topic", self.record.topic.encode()),
            ("original.partition", str(self.record.partition).encode()),
            ("original.offset", str(self.record.offset).encode()),
        ]


class DeadLetterSink(Protocol):
    async def send(self, letters: Sequence[DeadLetter]) -> None:
        """Publish every letter and return once the broker has acknowledged all of them."""


class KafkaDeadLetterSink:
    """Publishes to the DLQ topic with an idempotent producer, acks from all replicas."""

    def __init__(
        self,
        bootstrap_servers: str,
        topic: str,
        client_id: str,
        security: Mapping[str, Any] | None = None,
    ) -> None:
        """`security`: service.kafka_security.client_kwargs(settings)."""
        self.topic = topic
        self._bootstrap_servers = bootstrap_servers
        self._client_id = client_id
        self._security = dict(security or {})
        self._producer: AIOKafkaProducer | None = None

    async def start(self) -> None:
        # aiokafka binds a producer to the running loop, so it is made here, not in __init__.
        self._producer = AIOKafkaProducer(
            bootstrap_servers=self._bootstrap_servers,
            client_id=self._client_id,
            acks="all",
            enable_idempotence=True,
            max_request_size=DLQ_MAX_MESSAGE_BYTES + 64 * 1024,
            linger_ms=0,  # send() is awaited before the commit: lingering only adds latency
            **self._security,
        )
        await self._producer.start()

    async def stop(self) -> None:
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None

    async def send(self, letters: Sequence[DeadLetter]) -> None:
        if not letters:
            return
        if self._producer is None:
            raise RuntimeError("dead-letter producer is not started")
        producer = self._producer
        pending = [
            await producer.send(
                self.topic,
                value=letter.record.value,
                key=letter.record.key,
                headers=letter.headers(),
            )
            for letter in letters
        ]
        await asyncio.gather(*pending)


class MemoryDeadLetterSink:
    """Keeps letters in a list: for unit tests and tools."""

    def __init__(self) -> None:
        self.letters: list[DeadLetter] = []

    async def send(self, letters: Sequence[DeadLetter]) -> None:
        self.letters.extend(letters)
