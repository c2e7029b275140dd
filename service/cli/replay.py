"""`dead-letters replay`: republish chosen dead letters to the input topic.

The DLQ topic is read up to the end offsets it has when the replay starts (letters that a
replayed record earns meanwhile are never replayed by the same run). A first pass counts the
letters the selection matches (and, with --dry-run, lists them); a second pass publishes them
to KAFKA_TOPIC with their original key, value and headers, plus `replayed.from`, through an
idempotent producer with acks from all replicas. Keys are kept, so each record goes to its
product's partition, after that product's newer events.

A replayed event is applied exactly once: an upsert or delete by its version (a repeat is
stale), an adjustment by its id: the write path keeps only the ids of applied adjustments
(claims.py), so a letter rejected earlier applies when replayed after its cause is fixed, and
replaying it again is a duplicate (or stale).

When the broker refuses part of it, the run stops reading, waits for every send in flight and
ends in one line naming, per DLQ partition, where its unconfirmed letters begin, and the
command (the same selection plus --resume) that replays all of them; letters it had confirmed
after those offsets come again as duplicates or stale, so each is still applied once.
"""

from __future__ import annotations

import argparse
import asyncio
import shlex
import sys
import time
from collections import Counter
from collections.abc import AsyncGenerator, Callable
from contextlib import aclosing
from dataclasses import dataclass, replace
from typing import Any, TextIO

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import (
    KafkaError,
    KafkaTimeoutError,
    MessageSizeTooLargeError,
    NotEnoughReplicasAfterAppendError,
    NotEnoughReplicasError,
    OutOfOrderSequenceNumber,
    RecordTooLargeError,
    TopicAuthorizationFailedError,
    UnknownTopicOrPartitionError,
)

from service.cli.exit_codes import CommandError, ExitCode
from service.cli.replay_selection import (
    Selection,
    SelectionError,
    read_ranges,
    resume_points,
    selection_from_args,
)
from service.config.settings import KafkaSettings
from service.core.letters import Letter
from service.kafka import clients
from service.kafka.refusal import KafkaAccessDenied
from service.kafka.topics import DLQ_MAX_MESSAGE_BYTES, described_partitions

# A letter cut to fit the DLQ topic is not the original record: publishing it would be wrong.
CUT_LETTER = (
    "it was cut to fit the dead-letter topic; publish the original again from its source "
    "(original.value.sha256 identifies it)"
)
PUBLISH_CHUNK = 500  # records sent before waiting for their acknowledgements
STALL_SECONDS = 30.0  # reading the DLQ makes no progress this long: give up
CLIENT_ID = "inventory-sink-replay"  # every Kafka client of the replay


class ReplayError(RuntimeError):
    """The replay cannot go on; the message names the problem and the fix."""


@dataclass(frozen=True, slots=True)
class ReplayResult:
    read: int  # letters read from the DLQ (the ranges worth reading)
    selected: int
    published: int


async def replay(
    settings: KafkaSettings,
    selection: Selection,
    dry_run: bool = False,
    out: TextIO | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> ReplayResult:
    """Replay the dead letters `selection` matches (with `dry_run`, only list them); what it
    did goes to `out` (stdout), and `progress(done, total)` is told after each chunk."""
    out = out or sys.stdout
    dlq, topic = settings.kafka_dlq_topic, settings.kafka_topic
    partitions, denied = await described_partitions(settings, [dlq, topic], client_id=CLIENT_ID)
    if dlq in denied:
        raise KafkaAccessDenied("Read", "topic", dlq)
    if topic in denied and not dry_run:
        raise KafkaAccessDenied("Write", "topic", topic)
    if not partitions[dlq]:
        raise ReplayError(
            f"there is no dead-letter topic {dlq!r}; check KAFKA_DLQ_TOPIC "
            "(the consumer creates it, or run `inventory-sink create-topics`)"
        )
    if not partitions[topic] and not dry_run:
        raise ReplayError(
            f"there is no input topic {topic!r} to replay to; check KAFKA_TOPIC or create "
            "it with `inventory-sink create-topics`"
        )
    # Made once the topics are known: a consumer never started must not be left unclosed.
    consumer = clients.consumer(
        settings,
        client_id=CLIENT_ID,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    try:
        await consumer.start()
        ranges = await _ranges(consumer, dlq, partitions[dlq], selection)
        read = selected = 0
        other_topics: Counter[str] = Counter()
        async with aclosing(_scan(consumer, dlq, ranges)) as letters:
            async for letter in letters:
                read += 1
                verdict = selection.verdict(letter, topic)
                if verdict == "replay":
                    selected += 1
                    if dry_run:
                        print(letter.describe(dlq), file=out)
                elif verdict == "cut":
                    print(f"not replayable: {letter.describe(dlq)}; {CUT_LETTER}", file=out)
                elif verdict == "other topic":
                    other_topics[letter.original_topic or "(no original.topic)"] += 1
        if other_topics:
            print(_other_topics(other_topics, topic), file=out)
        if dry_run or not selected:
            verb = "would replay" if dry_run else "nothing to replay:"
            print(
                f"{verb} {selected} of {read} dead letters read from {dlq} to {topic}"
                + (" (dry run: nothing published)" if dry_run else ""),
                file=out,
            )
            return ReplayResult(read, selected, 0)
        published = await _publish(consumer, settings, ranges, selection, selected, progress)
    finally:
        await consumer.stop()
    print(f"replayed {published} of {read} dead letters read from {dlq} to {topic}", file=out)
    return ReplayResult(read, selected, published)


def _other_topics(counts: Counter[str], topic: str) -> str:
    total = sum(counts.values())
    each = ", ".join(f"{name}: {n}" for name, n in sorted(counts.items()))
    return (
        f"skipped {total} dead letter{'s' if total != 1 else ''} dead-lettered from another "
        f"input topic ({each}): --partition/--from-offset/--to-offset select letters of "
        f"KAFKA_TOPIC {topic} only, since a replay publishes to it"
    )


async def _ranges(
    consumer: AIOKafkaConsumer, dlq: str, partitions: list[int], selection: Selection
) -> dict[int, tuple[int, int]]:
    tps = [TopicPartition(dlq, p) for p in partitions]
    starts = {tp.partition: o for tp, o in (await consumer.beginning_offsets(tps)).items()}
    ends = {tp.partition: o for tp, o in (await consumer.end_offsets(tps)).items()}
    since_offsets: dict[int, int | None] | None = None
    if selection.since is not None:
        found = await consumer.offsets_for_times(
            {tp: int(selection.since.timestamp() * 1000) for tp in tps}
        )
        since_offsets = {tp.partition: (o.offset if o else None) for tp, o in found.items()}
    return read_ranges(selection, starts, ends, since_offsets)


async def _scan(
    consumer: AIOKafkaConsumer, dlq: str, ranges: dict[int, tuple[int, int]]
) -> AsyncGenerator[Letter, None]:
    """Every letter in `ranges`, each partition's in offset order (partitions interleaved as
    fetched)."""
    remaining = {TopicPartition(dlq, p): stop for p, (_, stop) in ranges.items()}
    if not remaining:
        return
    consumer.assign(list(remaining))
    for tp in remaining:
        consumer.seek(tp, ranges[tp.partition][0])
    last_progress = time.monotonic()
    while remaining:
        batch = await consumer.getmany(*remaining, timeout_ms=1000, max_records=PUBLISH_CHUNK)
        for tp, records in batch.items():
            stop = remaining.get(tp)
            for record in records:
                if stop is not None and record.offset < stop:
                    yield Letter.of(record)
        for tp in list(remaining):
            if await consumer.position(tp) >= remaining[tp]:
                del remaining[tp]
        if batch:
            last_progress = time.monotonic()
        elif time.monotonic() - last_progress > STALL_SECONDS:
            stuck = ", ".join(
                [
                    f"{tp.partition} (at {await consumer.position(tp)} of {stop})"
                    for tp, stop in sorted(remaining.items())
                ]
            )
            raise ReplayError(
                f"reading {dlq} made no progress for {STALL_SECONDS:.0f} s on partitions "
                f"{stuck}; check that the broker is reachable and the partitions have a leader"
            )


async def _publish(
    consumer: AIOKafkaConsumer,
    settings: KafkaSettings,
    ranges: dict[int, tuple[int, int]],
    selection: Selection,
    total: int,
    progress: Callable[[int, int], None] | None,
) -> int:
    """Publish the selected letters; on the first refusal stop reading, wait for every send
    still in flight, and raise a ReplayError that names where each DLQ partition's
    unconfirmed letters begin and the command that resumes them all."""
    dlq, topic = settings.kafka_dlq_topic, settings.kafka_topic
    producer = clients.producer(
        settings,
        client_id=CLIENT_ID,
        acks="all",
        enable_idempotence=True,
        # The DLQ accepts larger records than the input topic may; the broker has the last word.
        max_request_size=DLQ_MAX_MESSAGE_BYTES + 64 * 1024,
        linger_ms=5,
    )
    published = 0
    read_to: dict[int, int] = {}  # per DLQ partition, the offset after the last letter read
    pending: list[tuple[Letter, asyncio.Future[Any]]] = []
    refused: list[tuple[Letter, BaseException]] = []

    async def confirm() -> None:
        nonlocal published
        if not pending:
            return
        # Every outcome is collected, so none is left unretrieved after a refusal.
        outcomes = await asyncio.gather(*(future for _, future in pending), return_exceptions=True)
        for (letter, _), outcome in zip(pending, outcomes, strict=True):
            if isinstance(outcome, BaseException):
                refused.append((letter, outcome))
            else:
                published += 1
        pending.clear()
        if progress is not None:
            progress(published, total)

    try:
        await producer.start()
        async with aclosing(_scan(consumer, dlq, ranges)) as letters:
            async for letter in letters:
                read_to[letter.partition] = letter.offset + 1
                if selection.verdict(letter, topic) != "replay":
                    continue
                try:
                    future = await producer.send(
                        topic,
                        value=letter.value,
                        key=letter.key,
                        headers=letter.replay_headers(dlq),
                    )
                except KafkaError as error:
                    refused.append((letter, error))
                    break
                pending.append((letter, future))
                if len(pending) >= PUBLISH_CHUNK:
                    await confirm()
                    if refused:
                        break
    finally:
        try:
            await confirm()
        finally:
            await producer.stop()
    if refused:
        raise ReplayError(_refusal(settings, selection, ranges, read_to, refused, published, total))
    return published


def _refusal(
    settings: KafkaSettings,
    selection: Selection,
    ranges: dict[int, tuple[int, int]],
    read_to: dict[int, int],
    refused: list[tuple[Letter, BaseException]],
    published: int,
    total: int,
) -> str:
    """The one line a refused replay ends with: what the broker said, what is not confirmed,
    per DLQ partition in partition order, the fix, and the command that resumes all of it."""
    dlq, topic = settings.kafka_dlq_topic, settings.kafka_topic
    points = resume_points(ranges, read_to, [(r.partition, r.offset) for r, _ in refused])
    errors = Counter(type(error).__name__ for _, error in refused)
    said = ", ".join(f"{name} for {n}" for name, n in sorted(errors.items()))
    # Once a batch is refused, the idempotent producer's later batches of that partition fail
    # out of sequence: the cause is the other error.
    causes = [e for _, e in refused if not isinstance(e, OutOfOrderSequenceNumber)]
    cause = (causes or [error for _, error in refused])[0]
    where = ", ".join(f"partition {p.partition} from offset {p.first}" for p in points)
    command = shlex.join(
        ["inventory-sink", "dead-letters", "replay", *replace(selection, resume=points).options()]
    )
    return (
        f"publishing to {topic} was refused ({said}); {published} of {total} letters "
        f"confirmed; not confirmed in {dlq}: {where}. {_fix(cause, topic)}; then resume all of "
        f"them with: {command} (a letter confirmed after those offsets is published again "
        "and changes nothing: a duplicate or stale)"
    )


def _fix(error: BaseException, topic: str) -> str:
    """What to change for the broker to accept the records."""
    if isinstance(error, TopicAuthorizationFailedError):
        return str(KafkaAccessDenied("Write", "topic", topic))
    if isinstance(error, MessageSizeTooLargeError | RecordTooLargeError):
        return (
            f"A record is larger than {topic} accepts: raise the topic's max.message.bytes "
            "(or the broker's message.max.bytes) to at least the record's size"
        )
    if isinstance(error, NotEnoughReplicasError | NotEnoughReplicasAfterAppendError):
        return (
            f"Too few in-sync replicas of {topic} for its min.insync.replicas: bring its "
            "brokers back or lower min.insync.replicas"
        )
    if isinstance(error, KafkaTimeoutError | UnknownTopicOrPartitionError):
        return (
            f"Check that topic {topic} exists (`inventory-sink create-topics`) and its "
            "partitions have a leader"
        )
    return "Fix what the broker said"


def replay_command(settings: KafkaSettings, args: argparse.Namespace) -> int:
    """`inventory-sink dead-letters replay`: a bad or no selection is a usage error; Kafka
    refusing to read or publish the letters is a service that cannot be used (exit_codes)."""
    try:
        selection = selection_from_args(args)
    except SelectionError as error:
        raise CommandError(f"dead-letters replay: {error}", ExitCode.USAGE) from None

    def show(done: int, total: int) -> None:
        print(f"replayed {done}/{total}", file=sys.stderr, flush=True)

    try:
        asyncio.run(replay(settings, selection, dry_run=args.dry_run, progress=show))
    except ReplayError as error:
        raise CommandError(str(error), ExitCode.UNAVAILABLE) from None
    return ExitCode.OK
