"""KafkaDeadLetterSink's producer settings, lifecycle and refused letters, with a recording
stand-in for aiokafka's producer (tests/integration/test_dead_letter_kafka.py sends real
letters)."""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import pytest
from aiokafka.errors import (
    CorruptRecordException,
    KafkaTimeoutError,
    MessageSizeTooLargeError,
    NotEnoughReplicasError,
    TopicAuthorizationFailedError,
)

from service.config.settings import Settings
from service.core.domain import Reason
from service.core.failures import PartitionStopped
from service.core.letter_fit import batch_size
from service.core.letters import DeadLetter
from service.kafka import clients
from service.kafka.dead_letter_producer import KafkaDeadLetterSink
from service.kafka.security import client_kwargs
from service.kafka.topics import DLQ_MAX_MESSAGE_BYTES
from service.observability.metrics import Metrics
from service.write_path.retry import is_transient
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
    monkeypatch.setattr(clients, "AIOKafkaProducer", FakeProducer)
    return FakeProducer.made


def sink_settings(dlq: str = "dlq", **extra: object) -> Settings:
    """Settings for the sink alone: plaintext unless `extra` says otherwise, whatever the
    environment of the test run holds."""
    values: dict[str, object] = {
        "postgres_user": "inv",
        "postgres_password": "unit-secret",
        "postgres_db": "inventory",
        "kafka_bootstrap_servers": "127.0.0.1:1",
        "kafka_dlq_topic": dlq,
        "kafka_security_protocol": "PLAINTEXT",
    }
    return Settings(**(values | extra))  # type: ignore[arg-type]


async def test_the_producer_is_idempotent_acks_all_sends_at_once_and_takes_big_letters(
    producers: list[FakeProducer],
) -> None:
    settings = sink_settings(
        "events.dlq",
        kafka_security_protocol="SASL_PLAINTEXT",
        kafka_sasl_mechanism="SCRAM-SHA-512",
        kafka_sasl_username="sink",
        kafka_sasl_password="unit-secret",
    )
    sink = KafkaDeadLetterSink(settings, "sink-1")
    await sink.start()
    (producer,) = producers
    options = dict(producer.settings)
    request_size = options.pop("max_request_size")
    assert options == {
        "bootstrap_servers": ["127.0.0.1:1"],
        "client_id": "sink-1",
        "acks": "all",
        "enable_idempotence": True,
        "linger_ms": 0,
        # Many letters per round trip, and a full record batch fits a dead-letter topic
        # with a limit as low as 64 KiB.
        "max_batch_size": 64 * 1024,
        "security_protocol": "SASL_PLAINTEXT",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "sink",
        "sasl_plain_password": "unit-secret",
    }
    # Room for a letter as large as the DLQ topic accepts, plus the request's own framing.
    assert DLQ_MAX_MESSAGE_BYTES < request_size <= DLQ_MAX_MESSAGE_BYTES + 1024 * 1024
    assert producer.started and sink.topic == "events.dlq"


async def test_plaintext_settings_pass_no_tls_and_no_login(producers: list[FakeProducer]) -> None:
    settings = sink_settings()
    assert client_kwargs(settings) == {"security_protocol": "PLAINTEXT"}
    await KafkaDeadLetterSink(settings, "c").start()
    assert producers[0].settings["security_protocol"] == "PLAINTEXT"
    assert not {"ssl_context", "sasl_mechanism"} & set(producers[0].settings)


async def test_letters_go_to_the_dlq_topic_with_the_records_bytes(
    producers: list[FakeProducer],
) -> None:
    sink = KafkaDeadLetterSink(sink_settings("events.dlq"), "c")
    await sink.start()
    record = SimpleRecord("events", 2, 40, b"9", b"{bad", [("h", b"1")])
    letter = DeadLetter(record, Reason.INVALID_JSON, "bad")
    await sink.send([letter])
    assert producers[0].sent == [
        ("events.dlq", {"key": b"9", "value": b"{bad", "headers": letter.headers()})
    ]


async def test_a_batchs_letters_are_logged_in_one_line_each_also_at_debug(
    producers: list[FakeProducer], caplog: pytest.LogCaptureFixture
) -> None:
    """A stream of bad records must not write a line per record at the default level: one
    WARNING counts the letters by reason, quotes the first of each, and names the offsets;
    each letter's own line is there at DEBUG."""
    sink = KafkaDeadLetterSink(sink_settings(), "c")
    await sink.start()
    letters = [
        DeadLetter(SimpleRecord("events", 1, 7, b"1", b"{"), Reason.INVALID_JSON, "bad 7"),
        DeadLetter(SimpleRecord("events", 1, 9, b"1", b"{}"), Reason.INVALID_EVENT, "x: 9"),
        DeadLetter(SimpleRecord("events", 0, 3, b"2", b"{"), Reason.INVALID_JSON, "bad 3"),
        DeadLetter(SimpleRecord("events", 1, 12, b"1", b"{"), Reason.INVALID_JSON, "bad 12"),
    ]
    with caplog.at_level(logging.INFO, logger="service.dead_letter"):
        await sink.send(letters)
    (line,) = caplog.records
    assert line.levelno == logging.WARNING
    assert line.getMessage() == (
        "dead-lettered 4 records of events[1]@7-12, events[0]@3-3: 3 as invalid_json (the "
        "first, events[1]@7: bad 7); 1 as invalid_event (the first, events[1]@9: x: 9). "
        "Each letter holds its record and reason; the CLI's `dead-letters` lists them"
    )
    assert (line.letters, line.reasons, line.offsets) == (  # type: ignore[attr-defined]
        4,
        {"invalid_json": 3, "invalid_event": 1},
        {"events[1]": [7, 12], "events[0]": [3, 3]},
    )
    assert len(producers[0].sent) == 4  # every letter was published

    caplog.clear()
    with caplog.at_level(logging.DEBUG, logger="service.dead_letter"):
        await sink.send(letters)
    assert [(r.levelno, r.getMessage()) for r in caplog.records[:4]] == [
        (logging.DEBUG, "dead-lettered events[1]@7 as invalid_json: bad 7"),
        (logging.DEBUG, "dead-lettered events[1]@9 as invalid_event: x: 9"),
        (logging.DEBUG, "dead-lettered events[0]@3 as invalid_json: bad 3"),
        (logging.DEBUG, "dead-lettered events[1]@12 as invalid_json: bad 12"),
    ]
    assert [r.levelno for r in caplog.records[4:]] == [logging.WARNING]


async def test_a_lone_letter_has_its_own_warning_with_the_records_fields(
    producers: list[FakeProducer], caplog: pytest.LogCaptureFixture
) -> None:
    sink = KafkaDeadLetterSink(sink_settings(), "c")
    await sink.start()
    letter = DeadLetter(SimpleRecord("events", 4, 70, b"1", b"{"), Reason.INVALID_JSON, "bad")
    with caplog.at_level(logging.INFO, logger="service.dead_letter"):
        await sink.send([letter])
    (line,) = caplog.records
    assert (line.levelno, line.getMessage()) == (
        logging.WARNING,
        "dead-lettered events[4]@70 as invalid_json: bad",
    )
    assert (line.topic, line.partition, line.offset, line.reason) == (  # type: ignore[attr-defined]
        "events",
        4,
        70,
        "invalid_json",
    )
    assert not hasattr(line, "letters")


async def test_nothing_to_send_needs_no_producer() -> None:
    await KafkaDeadLetterSink(sink_settings(), "c").send([])


async def test_sending_before_start_or_after_stop_is_refused(
    producers: list[FakeProducer],
) -> None:
    sink = KafkaDeadLetterSink(sink_settings(), "c")
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


class RefusingProducer(FakeProducer):
    """Fails a send's acknowledgement with what `refuse(fields)` returns (None: accepted)."""

    refuse: ClassVar[Callable[[dict[str, Any]], Exception | None]] = staticmethod(lambda _: None)

    async def send(self, topic: str, **fields: Any) -> asyncio.Future[None]:
        self.sent.append((topic, fields))
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        error = RefusingProducer.refuse(fields)
        if error is None:
            done.set_result(None)
        else:
            done.set_exception(error)
        return done


@dataclass
class Stops:
    stopped: dict[tuple[str, int], str] = field(default_factory=dict)

    def stop(self, tp: tuple[str, int], reason: str) -> None:
        self.stopped[tp] = reason


@pytest.fixture
def refusing(monkeypatch: pytest.MonkeyPatch) -> list[FakeProducer]:
    FakeProducer.made = []
    monkeypatch.setattr(clients, "AIOKafkaProducer", RefusingProducer)
    return FakeProducer.made


BUDGETS = [1 << 20, 256 << 10, 64 << 10]


def _size(fields: dict[str, Any]) -> int:
    return batch_size(fields["key"], fields["value"], fields["headers"])


def _accepted(producers: list[FakeProducer]) -> list[dict[str, Any]]:
    return [
        fields
        for producer in producers
        for _, fields in producer.sent
        if RefusingProducer.refuse(fields) is None
    ]


async def _sink(metrics: Metrics, stops: Stops) -> KafkaDeadLetterSink:
    sink = KafkaDeadLetterSink(sink_settings(), "c", metrics=metrics, stops=stops)
    await sink.start()
    return sink


def _count(metrics: Metrics, name: str, **labels: str) -> float:
    return metrics.registry.get_sample_value(name, labels) or 0.0


async def test_a_letter_over_the_letter_limit_is_cut_before_it_is_sent(
    refusing: list[FakeProducer], caplog: pytest.LogCaptureFixture
) -> None:
    RefusingProducer.refuse = staticmethod(lambda _: None)
    metrics, stops = Metrics(), Stops()
    sink = await _sink(metrics, stops)
    value = bytes(6_000_000)
    record = SimpleRecord("events", 1, 9, b"7", value, [("trace", b"t")])
    with caplog.at_level(logging.WARNING, "service.dead_letter"):
        await sink.send([DeadLetter(record, Reason.RECORD_TOO_LARGE, "too large")])
    ((_, fields),) = refusing[0].sent
    assert len(refusing) == 1  # nothing was refused: no new producer
    assert DLQ_MAX_MESSAGE_BYTES - 8 <= _size(fields) <= DLQ_MAX_MESSAGE_BYTES
    marks = dict(fields["headers"])
    assert marks["letter.cut"] == b"value"
    assert marks["original.value.bytes"] == b"6000000"
    assert marks["original.value.sha256"] == hashlib.sha256(value).hexdigest().encode()
    assert marks["original.offset"] == b"9" and marks["original.partition"] == b"1"
    assert _count(metrics, "inventory_sink_dead_letters_cut_total", reason="record_too_large") == 1
    (line,) = [r.getMessage() for r in caplog.records]
    assert line.startswith("dead-lettered events[1]@9 as record_too_large, cut (value) to ")
    assert f"over the {DLQ_MAX_MESSAGE_BYTES} bytes a letter may have" in line
    assert hashlib.sha256(value).hexdigest() in line and "6000000 bytes" in line


async def test_a_letter_the_broker_finds_too_large_is_cut_until_it_fits(
    refusing: list[FakeProducer], caplog: pytest.LogCaptureFixture
) -> None:
    """The topic's max.message.bytes is 100 000 (smaller than the sink assumed): each
    refusal starts a new producer (a fresh idempotent sequence) and tries a quarter."""
    RefusingProducer.refuse = staticmethod(
        lambda fields: MessageSizeTooLargeError() if _size(fields) > 100_000 else None
    )
    metrics, stops = Metrics(), Stops()
    sink = await _sink(metrics, stops)
    small = DeadLetter(SimpleRecord("events", 0, 1, b"1", b"{bad"), Reason.INVALID_JSON, "bad")
    big_value = b"x" * 3_000_000
    big = DeadLetter(
        SimpleRecord("events", 0, 2, b"2", big_value), Reason.RECORD_TOO_LARGE, "too large"
    )
    with caplog.at_level(logging.WARNING, "service.dead_letter"):
        await sink.send([small, big])
    sizes = [_size(fields) for producer in refusing for _, fields in producer.sent]
    # The small letter; the big one as it was (refused), alone again (refused), then cut to
    # 1 MiB and 256 KiB (refused), and 64 KiB.
    whole = batch_size(b"2", big_value, big.headers())
    assert sizes[:3] == [batch_size(b"1", b"{bad", small.headers()), whole, whole]
    assert len(sizes) == 3 + len(BUDGETS)
    for size, budget in zip(sizes[3:], BUDGETS, strict=True):
        assert budget - 8 <= size <= budget
    assert len(refusing) == 1 + 4  # a new producer before each retry
    accepted = _accepted(refusing)
    assert [f["key"] for f in accepted] == [b"1", b"2"]
    assert dict(accepted[1]["headers"])["letter.cut"] == b"value"
    assert _count(metrics, "inventory_sink_dead_letters_cut_total", reason="record_too_large") == 1
    assert not stops.stopped
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2 and "refused it as it was (MessageSizeTooLargeError)" in lines[1]


async def test_a_letter_refused_with_a_batch_mate_is_sent_again_as_it_was(
    refusing: list[FakeProducer], caplog: pytest.LogCaptureFixture
) -> None:
    tries: list[bytes] = []

    def once(fields: dict[str, Any]) -> Exception | None:
        tries.append(fields["key"])
        return CorruptRecordException() if len(tries) == 1 else None

    RefusingProducer.refuse = staticmethod(once)
    metrics, stops = Metrics(), Stops()
    sink = await _sink(metrics, stops)
    letter = DeadLetter(SimpleRecord("events", 0, 1, b"1", b"{bad"), Reason.INVALID_JSON, "bad")
    with caplog.at_level(logging.WARNING, "service.dead_letter"):
        await sink.send([letter])
    assert tries == [b"1", b"1"]
    # Logged once it was accepted, as a lone letter.
    assert [r.getMessage() for r in caplog.records] == [
        "dead-lettered events[0]@1 as invalid_json: bad"
    ]
    assert refusing[-1].sent[-1][1]["headers"] == letter.headers()  # not cut
    assert _count(metrics, "inventory_sink_dead_letters_cut_total", reason="invalid_json") == 0


async def test_a_letter_refused_in_every_form_stops_its_partition(
    refusing: list[FakeProducer],
) -> None:
    RefusingProducer.refuse = staticmethod(
        lambda fields: TopicAuthorizationFailedError("dlq") if fields["key"] == b"2" else None
    )
    metrics, stops = Metrics(), Stops()
    sink = await _sink(metrics, stops)
    letters = [
        DeadLetter(SimpleRecord("events", p, 5, key, b"{bad"), Reason.INVALID_JSON, "bad")
        for p, key in [(0, b"1"), (1, b"2")]
    ]
    with pytest.raises(PartitionStopped, match=r"stopped events\[1\]: the dead-letter topic dlq "):
        await sink.send(letters)
    assert is_transient(PartitionStopped("x"))  # the batch is written again without it
    (reason,) = stops.stopped.values()
    assert list(stops.stopped) == [("events", 1)]
    assert "refused the letter of events[1]@5" in reason
    assert "TopicAuthorizationFailedError" in reason and "ACLs (KAFKA_DLQ_TOPIC)" in reason
    assert _count(metrics, "inventory_sink_dead_letters_refused_total", topic="events") == 1
    # Sent as it was, then alone: every smaller budget gives the same small letter.
    assert [f["key"] for p in refusing for _, f in p.sent] == [b"1", b"2", b"2"]


async def test_a_retriable_error_is_raised_for_the_batch_to_be_retried(
    refusing: list[FakeProducer],
) -> None:
    RefusingProducer.refuse = staticmethod(lambda _: NotEnoughReplicasError())
    sink = await _sink(Metrics(), Stops())
    letter = DeadLetter(SimpleRecord("events", 0, 1, b"1", b"{bad"), Reason.INVALID_JSON, "bad")
    with pytest.raises(NotEnoughReplicasError):
        await sink.send([letter])
    assert len(refusing) == 1  # no new producer, no cut letter
    assert is_transient(NotEnoughReplicasError()) and is_transient(KafkaTimeoutError())
    assert not is_transient(MessageSizeTooLargeError())
    assert not is_transient(TopicAuthorizationFailedError())


async def test_a_cut_letter_is_logged_once_with_what_was_cut_and_how_to_find_the_original(
    refusing: list[FakeProducer], caplog: pytest.LogCaptureFixture
) -> None:
    """The operator's one line about a cut letter: what was cut, to what size, why, and the
    size and digest of the original value (or null for a record without one)."""
    RefusingProducer.refuse = staticmethod(lambda _: None)
    sink = await _sink(Metrics(), Stops())
    value = bytes(5_000_000)
    digest = hashlib.sha256(value).hexdigest()
    letters = [
        DeadLetter(SimpleRecord("events", 1, 9, b"7", value), Reason.RECORD_TOO_LARGE, "big"),
        DeadLetter(SimpleRecord("events", 2, 4, bytes(5_000_000), None), Reason.INVALID_EVENT, "k"),
    ]
    with caplog.at_level(logging.WARNING, "service.dead_letter"):
        await sink.send(letters)
    sizes = [_size(fields) for _, fields in refusing[0].sent]
    cuts = [dict(fields["headers"])["letter.cut"].decode() for _, fields in refusing[0].sent]
    first, second = caplog.records
    assert first.getMessage() == (
        f"dead-lettered events[1]@9 as record_too_large, cut ({cuts[0]}) to {sizes[0]} bytes: "
        f"it was over the {DLQ_MAX_MESSAGE_BYTES} bytes a letter may have; the original value "
        f"is 5000000 bytes with SHA-256 {digest}, still at that offset while retention keeps "
        "it: big"
    )
    assert second.getMessage().startswith(
        f"dead-lettered events[2]@4 as invalid_event, cut ({cuts[1]}) to {sizes[1]} bytes: "
    )
    assert "the original value is null bytes with SHA-256 -," in second.getMessage()
    assert (first.cut, first.reason, first.offset) == (cuts[0].split(","), "record_too_large", 9)  # type: ignore[attr-defined]
    assert second.cut == cuts[1].split(",")  # type: ignore[attr-defined]


async def test_a_letter_refused_before_it_is_sent_is_cut_and_its_batch_mates_still_go(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """aiokafka refuses a record it finds too large in send() itself, before any batch: that
    letter is tried again cut, the others of the batch are sent as they were."""

    class EarlyRefusal(RefusingProducer):
        async def send(self, topic: str, **fields: Any) -> asyncio.Future[None]:
            if _size(fields) > 100_000:
                raise MessageSizeTooLargeError()
            return await super().send(topic, **fields)

    FakeProducer.made = []
    monkeypatch.setattr(clients, "AIOKafkaProducer", EarlyRefusal)
    RefusingProducer.refuse = staticmethod(lambda _: None)
    metrics, stops = Metrics(), Stops()
    sink = await _sink(metrics, stops)
    letters = [
        DeadLetter(SimpleRecord("events", 0, 1, b"1", b"{bad"), Reason.INVALID_JSON, "bad"),
        DeadLetter(SimpleRecord("events", 0, 2, b"2", b"x" * 3_000_000), Reason.INVALID_JSON, "b"),
        DeadLetter(SimpleRecord("events", 0, 3, b"3", b"{bad"), Reason.INVALID_JSON, "bad"),
    ]
    await sink.send(letters)
    sent = [fields for producer in FakeProducer.made for _, fields in producer.sent]
    assert [f["key"] for f in sent] == [b"1", b"3", b"2"]
    assert sent[0]["headers"] == letters[0].headers()
    assert sent[1]["headers"] == letters[2].headers()
    assert dict(sent[2]["headers"])["letter.cut"] == b"value" and _size(sent[2]) <= 64 << 10
    assert _count(metrics, "inventory_sink_dead_letters_cut_total", reason="invalid_json") == 1
    assert not stops.stopped


async def test_the_refusal_that_stops_a_partition_names_the_smallest_form_and_the_error(
    refusing: list[FakeProducer],
) -> None:
    RefusingProducer.refuse = staticmethod(lambda _: TopicAuthorizationFailedError("no"))
    stops = Stops()
    sink = await _sink(Metrics(), stops)
    letter = DeadLetter(SimpleRecord("events", 3, 7, b"1", b"{bad"), Reason.INVALID_JSON, "bad")
    with pytest.raises(PartitionStopped):
        await sink.send([letter])
    size = batch_size(b"1", b"{bad", letter.headers())
    assert stops.stopped == {
        ("events", 3): (
            f"the dead-letter topic dlq refused the letter of events[3]@7 even cut to {size} "
            f"bytes (TopicAuthorizationFailedError: {TopicAuthorizationFailedError('no')}); "
            "check the topic's max.message.bytes and ACLs (KAFKA_DLQ_TOPIC), then restart"
        )
    }
