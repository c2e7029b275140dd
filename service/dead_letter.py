"""Dead-letter records: the original key and value bytes, with the reason in headers."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from aiokafka import AIOKafkaProducer

from service.domain import Reason
from service.logs import record_fields
from service.records import Record

ERROR_HEADERS = (
    "error.reason",
    "error.message",
    "original.topic",
    "original.partition",
    "original.offset",
)
MAX_MESSAGE_CHARS = 2_000
LOGGED_MESSAGE_CHARS = 300
# The DLQ topic accepts records larger than the input topic's limit, so an original record
# near that limit still fits once the error headers are added.
DLQ_MAX_MESSAGE_BYTES = 4 * 1024 * 1024

log = logging.getLogger("service.dead_letter")


@dataclass(frozen=True, slots=True)
class DeadLetter:
    record: Record
    reason: Reason
    message: str

    def headers(self) -> list[tuple[str, bytes | None]]:
        """The original headers exactly as they came (bytes or None, duplicates and names
        like the sink's own kept, in order), then the sink's five: a reader takes the last
        header of a name (Kafka's `lastHeader`), and `original_headers` gives the rest back.
        The one change: a name that was not UTF-8 (see lenient_fetch.py) cannot be sent as
        it was; each invalid byte becomes U+FFFD."""
        return [
            *((_sendable(name), value) for name, value in self.record.headers),
            ("error.reason", self.reason.value.encode()),
            ("error.message", self.message[:MAX_MESSAGE_CHARS].encode("utf-8", "replace")),
            ("original.topic", self.record.topic.encode()),
            ("original.partition", str(self.record.partition).encode()),
            ("original.offset", str(self.record.offset).encode()),
        ]


def _sendable(name: str) -> str:
    """`name` as a producer can encode it: bytes that were not UTF-8 (kept as surrogate
    escapes by lenient_fetch) become U+FFFD."""
    if name.isascii():
        return name
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def original_headers(headers: Sequence[tuple[str, bytes | None]]) -> list[tuple[str, bytes | None]]:
    """The original record's headers from a dead letter's: all but the sink's last five."""
    headers = list(headers)
    if [name for name, _ in headers[-len(ERROR_HEADERS) :]] != list(ERROR_HEADERS):
        raise ValueError("not a dead letter of this sink: its last headers are not error.*")
    return headers[: -len(ERROR_HEADERS)]


class DeadLetterSink(Protocol):
    async def send(self, letters: Sequence[DeadLetter]) -> None:
        """Publish every letter and return once the broker has acknowledged all of them."""


class KafkaDeadLetterSink:
    """Publishes to the DLQ topic with an idempotent producer, acks from all replicas."""

    def __init__(
        self,
        bootstrap_servers: list[str],
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
        for letter in letters:
            record = letter.record
            log.warning(
                "dead-lettered %s[%d]@%d as %s: %s",
                record.topic,
                record.partition,
                record.offset,
                letter.reason.value,
                letter.message[:LOGGED_MESSAGE_CHARS],
                extra=record_fields(record) | {"reason": letter.reason.value},
            )
