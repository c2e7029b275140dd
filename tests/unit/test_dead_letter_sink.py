"""KafkaDeadLetterSink's producer settings and lifecycle, with a recording stand-in for
aiokafka's producer (tests/integration/test_dead_letter_kafka.py sends real letters)."""

from __future__ import annotations

import asyncio
from typing import Any, ClassVar

import pytest

from service import dead_letter
from service.dead_letter import DLQ_MAX_MESSAGE_BYTES, DeadLetter, KafkaDeadLetterSink
from service.domain import Reason
from tests.support.write_path import SimpleRecord


class FakeProducer:
    made: ClassVar[list[FakeProducer]] = []

    def __init__(self, **settings: Any) -> None:
        self.settings = settings
        self.started = self.stopped = False
        self.sent: list[tuple[str, dict[str, Any]]] = []
        FakeProducer.made.append(self)

    async def start(self) -> None:
        self.started = True

    async def stop(self) -> None:
        self.stopped = True

    async def send(self, topic: str, **fields: Any) -> asyncio.Future[None]:
        self.sent.append((topic, fields))
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done


@pytest.fixture
def producers(monkeypatch: pytest.MonkeyPatch) -> list[FakeProducer]:
    FakeProducer.made = []
    monkeypatch.setattr(dead_letter, "AIOKafkaProducer", FakeProducer)
    return FakeProducer.made


async def test_the_producer_is_idempotent_acks_all_sends_at_once_and_takes_big_letters(
    producers: list[FakeProducer],
) -> None:
    security = {"security_protocol": "SSL", "ssl_context": object()}
    sink = KafkaDeadLetterSink("127.0.0.1:1", "events.dlq", "sink-1", security)
    await sink.start()
    (producer,) = producers
    settings = dict(producer.settings)
    request_size = settings.pop("max_request_size")
    assert settings == {
        "bootstrap_servers": "127.0.0.1:1",
        "client_id": "sink-1",
        "acks": "all",
        "enable_idempotence": True,
        "linger_ms": 0,
        **security,
    }
    # Room for a letter as large as the DLQ topic accepts, plus the request's own framing.
    assert DLQ_MAX_MESSAGE_BYTES < request_size <= DLQ_MAX_MESSAGE_BYTES + 1024 * 1024
    assert producer.started and sink.topic == "events.dlq"


async def test_without_security_settings_none_are_passed(producers: list[FakeProducer]) -> None:
    await KafkaDeadLetterSink("127.0.0.1:1", "dlq", "c").start()
    assert not {"security_protocol", "ssl_context", "sasl_mechanism"} & set(producers[0].settings)


async def test_letters_go_to_the_dlq_topic_with_the_records_bytes(
    producers: list[FakeProducer],
) -> None:
    sink = KafkaDeadLetterSink("127.0.0.1:1", "events.dlq", "c")
    await sink.start()
    record = SimpleRecord("events", 2, 40, b"9", b"{bad", [("h", b"1")])
    letter = DeadLetter(record, Reason.INVALID_JSON, "bad")
    await sink.send([letter])
    assert producers[0].sent == [
        ("events.dlq", {"key": b"9", "value": b"{bad", "headers": letter.headers()})
    ]


async def test_nothing_to_send_needs_no_producer() -> None:
    await KafkaDeadLetterSink("127.0.0.1:1", "dlq", "c").send([])


async def test_sending_before_start_or_after_stop_is_refused(
    producers: list[FakeProducer],
) -> None:
    sink = KafkaDeadLetterSink("127.0.0.1:1", "dlq", "c")
    letter = DeadLetter(SimpleRecord("t", 0, 0, None, None), Reason.INVALID_JSON, "x")
    with pytest.raises(RuntimeError, match=r"^dead-letter producer is not started$"):
        await sink.send([letter])
    await sink.start()
    await sink.stop()
    assert producers[0].stopped
    with pytest.raises(RuntimeError, match=r"^dead-letter producer is not started$"):
        await sink.send([letter])
    await sink.stop()  # a second stop is harmless
    assert len(producers) == 1
