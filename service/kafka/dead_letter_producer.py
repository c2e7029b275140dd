"""The dead-letter producer: publishes letters (service/core/letters.py) to the DLQ topic.

A letter too large for the dead-letter topic, or refused by the broker for good in any
other way, is published cut (service/core/letter_fit.py decides the form); one refused even in
its smallest form stops its partition (LetterStops) rather than be retried forever.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Sequence
from typing import Any, Protocol

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from service.config.settings import Settings
from service.core.failures import PartitionStopped
from service.core.letter_fit import Form, budgets
from service.core.letters import DeadLetter
from service.core.records import TopicAndPartition, partition_name
from service.kafka import clients
from service.kafka.topics import DLQ_MAX_MESSAGE_BYTES
from service.kafka.transient import retriable_kafka_error
from service.observability.logs import record_fields
from service.observability.metrics import Metrics

LOGGED_MESSAGE_CHARS = 300
# Most bytes of letters the producer puts in one record batch of a partition (start()).
LETTER_BATCH_BYTES = 64 * 1024

log = logging.getLogger("service.dead_letter")


class DeadLetterSink(Protocol):
    async def send(self, letters: Sequence[DeadLetter]) -> None:
        """Publish every letter and return once the broker has acknowledged all of them."""


class LetterStops(Protocol):
    """Where a partition is stopped when its letter cannot be published in any form
    (service/write_path/letter_stops.py)."""

    def stop(self, tp: TopicAndPartition, reason: str) -> None: ...


class KafkaDeadLetterSink:
    """Publishes to the DLQ topic with an idempotent producer, acks from all replicas.

    Retriable errors propagate (the batch is retried). A letter the broker refuses for good
    is published again alone, then cut to smaller and smaller budgets (letter_fit.budgets)
    until one is accepted; if none is, its partition is stopped (`stops`) and
    PartitionStopped raised, so the batch is written again without that partition."""

    def __init__(
        self,
        settings: Settings,
        client_id: str,
        metrics: Metrics | None = None,
        stops: LetterStops | None = None,
    ) -> None:
        """Publishes to KAFKA_DLQ_TOPIC of `settings`."""
        self.topic = settings.kafka_dlq_topic
        self.metrics = metrics or Metrics()
        self.stops = stops
        self._settings = settings
        self._client_id = client_id
        self._producer: AIOKafkaProducer | None = None

    async def start(self) -> None:
        # aiokafka binds a producer to the running loop, so it is made here, not in __init__.
        self._producer = clients.producer(
            self._settings,
            client_id=self._client_id,
            acks="all",
            enable_idempotence=True,
            max_request_size=DLQ_MAX_MESSAGE_BYTES + 64 * 1024,
            linger_ms=0,  # send() is awaited before the commit: lingering only adds latency
            # A batch's letters are sent at once and acknowledged before its commit. The
            # client has one request in flight per broker, carrying one record batch per
            # partition: at the default 16 KiB that is about ten letters per round trip, and
            # 200 ms away from the brokers a batch with 300 letters took longer than the
            # session timeout. Not more than 64 KiB: a record batch over the topic's
            # max.message.bytes is refused with every letter in it, each then published
            # again alone, and operators rarely set a dead-letter topic's limit lower.
            max_batch_size=LETTER_BATCH_BYTES,
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
        forms = [_largest(letter) for letter in letters]
        results = await self._publish(forms)
        for error in results:
            if error is not None and retriable_kafka_error(error):
                raise error
        refused: dict[TopicAndPartition, str] = {}
        sent = list(zip(letters, forms, results, strict=True))
        _log_published([letter for letter, form, error in sent if error is None and not form.cut])
        for letter, form, error in sent:
            if error is None:
                if form.cut:
                    self._written_cut(letter, form, None)
                continue
            problem = await self._write_cut(letter, form, error)
            if problem is not None:
                refused[_tp(letter)] = problem
        if refused:
            for tp, problem in sorted(refused.items()):
                self.metrics.dead_letters_refused.labels(tp[0]).inc()
                if self.stops is not None:
                    self.stops.stop(tp, problem)
            raise PartitionStopped(
                "the dead-letter topic refused letters in every form; stopped "
                + "; ".join(f"{t}[{p}]: {why}" for (t, p), why in sorted(refused.items()))
            )

    async def _publish(self, forms: Sequence[Form]) -> list[Exception | None]:
        """Send every form at once; each one's failure (None: acknowledged)."""
        producer = self._producer
        assert producer is not None
        pending: list[asyncio.Future[Any] | Exception] = []
        for form in forms:
            try:
                pending.append(
                    await producer.send(
                        self.topic, value=form.value, key=form.key, headers=list(form.headers)
                    )
                )
            except KafkaError as error:  # refused before sending (size, metadata)
                pending.append(error)
        results: list[Exception | None] = []
        for future in pending:
            if isinstance(future, Exception):
                results.append(future)
                continue
            try:
                await future
            except KafkaError as error:
                results.append(error)
            else:
                results.append(None)
        return results

    async def _write_cut(self, letter: DeadLetter, sent: Form, error: Exception) -> str | None:
        """Publish `letter` after the broker refused `sent` for good: alone as it was (a
        batch-mate may have been the cause), then cut to each budget in turn. None once one
        is accepted, else what the last refusal said."""
        tried: list[Form] = []
        for form in [sent, *letter.forms(*budgets(DLQ_MAX_MESSAGE_BYTES))]:
            if form is None or form in tried:
                continue
            tried.append(form)
            # A batch the broker refused leaves this idempotent producer's sequence numbers
            # ahead of the broker's: every later batch of that partition would be refused
            # as out of order. A new producer starts a new sequence.
            await self._restart()
            (error_now,) = await self._publish([form])
            if error_now is None:
                if form.cut:
                    self._written_cut(letter, form, error)
                else:
                    _log_published([letter])
                return None
            if retriable_kafka_error(error_now):
                raise error_now
            error = error_now
        record = letter.record
        return (
            f"the dead-letter topic {self.topic} refused the letter of "
            f"{record.topic}[{record.partition}]@{record.offset} even cut to "
            f"{tried[-1].size if tried else 0} bytes ({type(error).__name__}: {error}); check "
            f"the topic's max.message.bytes and ACLs (KAFKA_DLQ_TOPIC), then restart"
        )

    async def _restart(self) -> None:
        await self.stop()
        await self.start()

    def _written_cut(self, letter: DeadLetter, form: Form, refusal: Exception | None) -> None:
        """A cut letter has a line of its own: what was given up, and where the whole record
        still is."""
        record = letter.record
        fields = record_fields(record) | {"reason": letter.reason.value}
        self.metrics.dead_letters_cut.labels(letter.reason.value).inc()
        why = (
            f"the dead-letter topic refused it as it was ({type(refusal).__name__})"
            if refusal is not None
            else f"it was over the {DLQ_MAX_MESSAGE_BYTES} bytes a letter may have"
        )
        marks = dict(form.headers)
        log.warning(
            "dead-lettered %s[%d]@%d as %s, cut (%s) to %d bytes: %s; the original value is "
            "%s bytes with SHA-256 %s, still at that offset while retention keeps it: %s",
            record.topic,
            record.partition,
            record.offset,
            letter.reason.value,
            ",".join(form.cut),
            form.size,
            why,
            (marks["original.value.bytes"] or b"null").decode(),
            (marks["original.value.sha256"] or b"-").decode(),
            letter.message[:LOGGED_MESSAGE_CHARS],
            extra=fields | {"cut": list(form.cut)},
        )


def _log_published(letters: Sequence[DeadLetter]) -> None:
    """The letters published as they were, in one line: a stream of bad records would
    otherwise write a line per record, and the logging would cost more than the letters.
    Each reason is counted and shown by its first letter; the letters on the topic are the
    account of each record (`dead-letters` lists them). Each letter's own line at DEBUG."""
    if not letters:
        return
    if len(letters) == 1:
        _log_letter(logging.WARNING, letters[0])
        return
    if log.isEnabledFor(logging.DEBUG):
        for letter in letters:
            _log_letter(logging.DEBUG, letter)
    first: dict[str, DeadLetter] = {}
    counts: Counter[str] = Counter()
    spans: dict[TopicAndPartition, tuple[int, int]] = {}
    for letter in letters:
        record = letter.record
        reason = letter.reason.value
        counts[reason] += 1
        first.setdefault(reason, letter)
        tp = _tp(letter)
        low, high = spans.get(tp, (record.offset, record.offset))
        spans[tp] = (min(low, record.offset), max(high, record.offset))
    reasons = "; ".join(
        f"{counts[reason]} as {reason} (the first, {partition_name(_tp(letter))}@"
        f"{letter.record.offset}: "
        f"{letter.message[:LOGGED_MESSAGE_CHARS]})"
        for reason, letter in first.items()
    )
    where = ", ".join(f"{partition_name(tp)}@{low}-{high}" for tp, (low, high) in spans.items())
    head = letters[0].record
    log.warning(
        "dead-lettered %d records of %s: %s. Each letter holds its record and reason; "
        "the CLI's `dead-letters` lists them",
        len(letters),
        where,
        reasons,
        extra=record_fields(head)
        | {
            "reason": letters[0].reason.value,
            "letters": len(letters),
            "reasons": dict(counts),
            "offsets": {partition_name(tp): [low, high] for tp, (low, high) in spans.items()},
        },
    )


def _log_letter(level: int, letter: DeadLetter) -> None:
    """One letter's own line, with its record's fields and its reason."""
    record = letter.record
    log.log(
        level,
        "dead-lettered %s[%d]@%d as %s: %s",
        record.topic,
        record.partition,
        record.offset,
        letter.reason.value,
        letter.message[:LOGGED_MESSAGE_CHARS],
        extra=record_fields(record) | {"reason": letter.reason.value},
    )


def _tp(letter: DeadLetter) -> TopicAndPartition:
    return (letter.record.topic, letter.record.partition)


def _largest(letter: DeadLetter) -> Form:
    """The letter as it is, or cut to the most a letter may have (DLQ_MAX_MESSAGE_BYTES, far
    more than the sink's own headers need, so it always has a form)."""
    (form,) = letter.forms(DLQ_MAX_MESSAGE_BYTES)
    assert form is not None, "DLQ_MAX_MESSAGE_BYTES holds any letter's sink headers"
    return form
