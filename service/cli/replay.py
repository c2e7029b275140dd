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
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, TextIO

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from service.cli.replay_selection import (
    Selection,
    SelectionError,
    read_ranges,
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
    await consumer.start()
    try:
        ranges = await _ranges(consumer, dlq, partitions[dlq], selection)
        read = selected = 0
        async for letter, matched in _scan(consumer, dlq, ranges, selection):
            read += 1
            if matched:
                selected += 1
                if dry_run:
                    print(letter.describe(dlq), file=out)
            elif letter.cut is not None and selection.matches(letter):
                print(f"not replayable: {letter.describe(dlq)}; {CUT_LETTER}", file=out)
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
    consumer: AIOKafkaConsumer,
    dlq: str,
    ranges: dict[int, tuple[int, int]],
    selection: Selection,
) -> AsyncIterator[tuple[Letter, bool]]:
    """Every letter in `ranges` (partition by partition interleaved as fetched), and whether
    it is to be replayed: the selection matches it and it was not cut."""
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
                    letter = Letter.of(record)
                    yield letter, letter.cut is None and selection.matches(letter)
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
    await producer.start()
    published = 0
    pending: list[tuple[Letter, asyncio.Future[Any]]] = []

    async def confirm() -> None:
        nonlocal published
        for letter, future in pending:
            try:
                await future
            except KafkaError as error:
                raise ReplayError(
                    f"publishing to {topic} failed ({type(error).__name__}: {error}) after "
                    f"{published} of {total} letters; the first not confirmed is "
                    f"{dlq}[{letter.partition}]@{letter.offset}. Fix the cause, then run again "
                    f"(add --offsets dlq --partition {letter.partition} --from-offset "
                    f"{letter.offset} to resume there; letters already applied are duplicates or "
                    "stale and change nothing)"
                ) from error
            published += 1
        pending.clear()
        if progress is not None:
            progress(published, total)

    try:
        async for letter, matched in _scan(consumer, dlq, ranges, selection):
            if not matched:
                continue
            future = await producer.send(
                topic, value=letter.value, key=letter.key, headers=letter.replay_headers(dlq)
            )
            pending.append((letter, future))
            if len(pending) >= PUBLISH_CHUNK:
                await confirm()
        if pending:
            await confirm()
    finally:
        await producer.stop()
    return published


def replay_command(settings: KafkaSettings, args: argparse.Namespace) -> int:
    """`inventory-sink dead-letters replay`: 0 done, 1 failed, 2 no or a bad selection."""
    try:
        selection = selection_from_args(args)
    except SelectionError as error:
        print(f"inventory-sink dead-letters replay: {error}", file=sys.stderr)
        return 2

    def show(done: int, total: int) -> None:
        print(f"replayed {done}/{total}", file=sys.stderr, flush=True)

    try:
        asyncio.run(replay(settings, selection, dry_run=args.dry_run, progress=show))
    except ReplayError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0
