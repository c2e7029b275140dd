"""The fault-suite engine: publish a seeded stream, run real consumer processes, inject
faults, then compare the table, the processed ids and the dead-letter topic with the
independent model (testbed/model.py): every letter exactly (position, key, value,
original headers, reason), taken from the producer's acknowledgement of each record.

Used by tests/faults/test_faults.py (CI size) and tests/faults/full.py (full size).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import statistics
import subprocess
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from service.config.settings import Settings
from service.kafka.topics import ensure_topics, partitions_of
from testbed.model import original_headers
from testbed.oracle import diff, expected_outcome, table
from testbed.publish import idempotent_producer
from tests.support.consumer import ConsumerProcess
from tests.support.kafka import header_map, read_to_end

# (key, value), or a labelled record with headers (testbed.events.Rec).
Pair = tuple[bytes | None, bytes | None] | tuple[bytes | None, bytes | None, Any, str | None]


class StackControl:
    """Restarts of the real services, through scripts/local-stack (what CI and `scripts/test`
    use). It restarts only the stack that script runs: if the test's PostgreSQL or Kafka is
    anywhere else (another host or port), it refuses, and the restart scenarios fail and
    say how to run them."""

    def __init__(self, postgres: tuple[str, int] | None = None, kafka: str | None = None) -> None:
        self.script = os.environ.get("LOCAL_STACK")
        self.postgres = postgres
        self.kafka = kafka

    def _stack_endpoints(self) -> tuple[tuple[str, int], str]:
        assert self.script is not None
        printed = subprocess.run(
            [self.script, "env"], check=True, timeout=30, capture_output=True, text=True
        ).stdout
        values = dict(
            pair.split("=", 1) for line in printed.splitlines() for pair in line.split()[1:]
        )
        postgres = (values["POSTGRES_HOST"], int(values["POSTGRES_PORT"]))
        return postgres, values["KAFKA_BOOTSTRAP_SERVERS"]

    def check(self) -> None:
        """Refuse unless the endpoints under test are the ones the local stack runs."""
        if not self.script:
            raise AssertionError(
                "restarting PostgreSQL or Kafka needs the local stack: run the fault suite with "
                "`scripts/test tests/faults` (it exports LOCAL_STACK)"
            )
        if self.postgres is None or self.kafka is None:
            raise AssertionError("StackControl needs the endpoints under test to check them")
        postgres, kafka = self._stack_endpoints()
        if (postgres, kafka) != (self.postgres, self.kafka):
            raise AssertionError(
                f"refusing to restart services this test did not start: the test uses "
                f"PostgreSQL {self.postgres[0]}:{self.postgres[1]} and Kafka {self.kafka}, the "
                f"local stack ({self.script}) runs PostgreSQL {postgres[0]}:{postgres[1]} and "
                f"Kafka {kafka}. Point POSTGRES_HOST/POSTGRES_PORT and KAFKA_BOOTSTRAP_SERVERS "
                'at the local stack (eval "$(scripts/local-stack env)"), or run only the '
                "scenarios that restart nothing"
            )

    def _run(self, action: str) -> None:
        self.check()
        assert self.script is not None
        subprocess.run([self.script, action], check=True, timeout=180, capture_output=True)

    def restart_postgres(self) -> None:
        self._run("restart-postgres")

    def restart_kafka(self) -> None:
        self._run("restart-kafka")


@dataclass
class Outcome:
    scenario: str
    events: int
    faults: int
    lost: int = 0
    doubled: int = 0
    mismatched_rows: int = 0
    mismatched_letters: int = 0
    dead_lettered: int = 0
    redelivered_letters: int = 0
    recover_s: list[float] = field(default_factory=list)
    longest_without_progress_s: float = 0.0
    longest_without_progress_from_s: float = 0.0  # when it began, from the first sample
    elapsed_s: float = 0.0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return (
            self.lost == 0
            and self.doubled == 0
            and self.mismatched_rows == 0
            and self.mismatched_letters == 0
        )

    def line(self) -> str:
        recover = (
            f"max {max(self.recover_s):.1f}s / median {statistics.median(self.recover_s):.1f}s"
            if self.recover_s
            else "n/a"
        )
        return (
            f"{self.scenario:<14} events={self.events:<8} faults={self.faults:<3} "
            f"lost={self.lost} doubled={self.doubled} mismatched_rows={self.mismatched_rows} "
            f"mismatched_letters={self.mismatched_letters} "
            f"dead_lettered={self.dead_lettered} (redelivered letters {self.redelivered_letters}) "
            f"recover={recover} no_progress_max={self.longest_without_progress_s:.1f}s "
            f"(from {self.longest_without_progress_from_s:.0f}s) "
            f"elapsed={self.elapsed_s:.0f}s"
        )


class Harness:
    def __init__(self, settings: Settings, engine: AsyncEngine, log_dir: Path) -> None:
        self.settings = settings
        self.engine = engine
        self.log_dir = log_dir
        self.consumers: list[ConsumerProcess] = []
        self.gate = asyncio.Lock()  # held while the broker restarts: the publisher waits
        self.progress: list[tuple[float, int]] = []
        self.published_then: list[int] = []  # records published at each progress sample
        self.fault_times: list[float] = []
        self.fault_positions: list[int] = []  # the stored position when each fault hit
        self.fault_targets: list[int] = []  # the stored position past which each recovered
        self.rng = random.Random(1234)
        # (partition, offset) of each published record, from the broker's acknowledgement.
        self.positions: list[tuple[int, int]] = []

    # -- consumers -------------------------------------------------------------------------
    def consumer(self, name: str = "consumer", settings: Settings | None = None) -> ConsumerProcess:
        """Start a consumer with the scenario's settings, or `settings` (the same group and
        topics reached another way, e.g. through a fault proxy)."""
        process = ConsumerProcess(
            settings or self.settings, self.log_dir, f"{name}-{len(self.consumers)}"
        )
        self.consumers.append(process)
        process.start()
        return process

    def stop_all(self) -> None:
        for process in self.consumers:
            process.kill()

    def fault_done(self, stored: int, recovered_past: int | None = None) -> None:
        """Record a fault injected at stored position `stored` (from `wait_in_flight`). It has
        recovered once the stored position moves past `recovered_past` (default: `stored`)."""
        self.fault_times.append(time.monotonic())
        self.fault_positions.append(stored)
        self.fault_targets.append(stored if recovered_past is None else recovered_past)

    async def wait_in_flight(
        self, timeout: float = 120.0, published: asyncio.Task[None] | None = None
    ) -> int | None:
        """Wait until there is work in flight, and return the stored position: it must have
        moved past the previous fault's, and be strictly below the records published so far
        (hence strictly between the stream's start and end). A fault injected then hits a
        consumer with records to apply, never an idle one.

        With `published` (the publisher's task): None once it has finished and every record
        is applied, since no later fault could hit anything."""
        floor = self.fault_positions[-1] if self.fault_positions else 0
        deadline = time.monotonic() + timeout
        stored = -1
        while time.monotonic() < deadline:
            with contextlib.suppress(Exception):  # the database may be restarting
                stored = await self.stored_progress()
                if floor < stored < len(self.positions):
                    return stored
                if published is not None and published.done() and stored >= len(self.positions):
                    return None
            await asyncio.sleep(0.02)
        raise AssertionError(
            f"no work in flight within {timeout}s (stored {stored}, previous fault at {floor}, "
            f"published {len(self.positions)}): the fault would not hit anything"
        )

    # -- Kafka -----------------------------------------------------------------------------
    async def prepare(self) -> None:
        await ensure_topics(self.settings)

    async def publish(self, pairs: Sequence[Pair], seconds: float = 0.0, chunk: int = 500) -> None:
        """Publish in order, spread over about `seconds` (0: as fast as possible)."""
        producer = idempotent_producer(self.settings.kafka_bootstrap_servers)
        await producer.start()
        try:
            started = time.monotonic()
            for index in range(0, len(pairs), chunk):
                async with self.gate:
                    futures = [
                        await producer.send(
                            self.settings.kafka_topic,
                            key=item[0],
                            value=item[1],
                            headers=list(item[2]) if len(item) > 2 else None,
                        )
                        for item in pairs[index : index + chunk]
                    ]
                    for sent in await asyncio.gather(*futures):
                        self.positions.append((sent.partition, sent.offset))
                if seconds:
                    due = started + seconds * (index + chunk) / len(pairs)
                    await asyncio.sleep(max(0.0, due - time.monotonic()))
        finally:
            await producer.stop()

    async def end_offsets(self, topic: str | None = None) -> int:
        """The sum of the end offsets of `topic`'s partitions (default: the input topic)."""
        topic = topic or self.settings.kafka_topic
        partitions = await partitions_of(self.settings, topic)
        consumer = AIOKafkaConsumer(bootstrap_servers=self.settings.kafka_brokers)
        await consumer.start()
        try:
            ends = await consumer.end_offsets([TopicPartition(topic, p) for p in partitions])
        finally:
            await consumer.stop()
        return sum(ends.values())

    # -- progress --------------------------------------------------------------------------
    async def stored_progress(self) -> int:
        return sum((await self.stored_by_partition()).values())

    async def stored_by_partition(self) -> dict[int, int]:
        """partition -> stored next offset."""
        async with self.engine.connect() as connection:
            rows = await connection.execute(
                text(
                    "SELECT partition, next_offset FROM consumer_offsets "
                    "WHERE group_id = :g AND topic = :t"
                ),
                {"g": self.settings.kafka_group_id, "t": self.settings.kafka_topic},
            )
            return {int(row.partition): int(row.next_offset) for row in rows}

    def published_ends(self) -> dict[int, int]:
        """partition -> the offset after the last record published to it."""
        ends: dict[int, int] = {}
        for partition, offset in self.positions:
            ends[partition] = max(ends.get(partition, 0), offset + 1)
        return ends

    async def watch_progress(self) -> None:
        while True:
            with contextlib.suppress(Exception):  # the database may be restarting
                published = len(self.positions)  # before the read: all of it was waiting
                self.progress.append((time.monotonic(), await self.stored_progress()))
                self.published_then.append(published)
            await asyncio.sleep(0.1)

    def longest_without_progress(self) -> tuple[float, float]:
        """The longest time the stored position did not advance while published records
        waited to be applied; a database that cannot be read counts as no progress, and a
        position that fell back (lost commits) advances again once they are re-applied.
        (seconds, when it began counted from the first sample)."""
        longest, began = 0.0, 0.0
        since: float | None = None
        previous, was_caught_up = 0, True
        for (at, stored), published in zip(self.progress, self.published_then, strict=True):
            caught_up = stored >= published
            if since is not None and not (was_caught_up and caught_up) and at - since > longest:
                longest, began = at - since, since - self.progress[0][0]
            if since is None or stored > previous or caught_up:
                since = at
            previous, was_caught_up = stored, caught_up
        return longest, began

    def recovery_times(self) -> list[float]:
        """Per fault: seconds until the stored position moved past its target (by default
        where the fault hit)."""
        times = []
        for at, target in zip(self.fault_times, self.fault_targets, strict=True):
            moved = next((t for t, p in self.progress if t > at and p > target), None)
            if moved is not None:
                times.append(moved - at)
        return times

    def faults_without_progress(self) -> list[str]:
        return [
            f"fault {n} (at stored position {stored}) was not followed by progress past {target}"
            for n, (at, stored, target) in enumerate(
                zip(self.fault_times, self.fault_positions, self.fault_targets, strict=True), 1
            )
            if not any(t > at and p > target for t, p in self.progress)
        ]

    async def wait_caught_up(self, timeout: float) -> None:
        target = await self.end_offsets()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(Exception):
                if await self.stored_progress() >= target:
                    return
            await asyncio.sleep(0.3)
        logs = "\n".join(f"--- {c.name}\n{c.tail(15)}" for c in self.consumers[-3:])
        raise AssertionError(
            f"consumers did not catch up within {timeout}s "
            f"({await self.stored_progress()}/{target})\n{logs}"
        )

    # -- verdict ---------------------------------------------------------------------------
    async def verify(
        self, name: str, pairs: Sequence[Pair], faults: int, started: float
    ) -> Outcome:
        expected = expected_outcome(pairs, self.settings.max_record_bytes)
        outcome = Outcome(name, len(pairs), faults)
        actual = await table(self.engine)
        problems = diff(expected.products, actual, limit=20)
        outcome.mismatched_rows = sum(
            1
            for pid in expected.products.keys() | actual.keys()
            if expected.products.get(pid) != actual.get(pid)
        )
        async with self.engine.connect() as connection:
            stored_ids = set(
                (await connection.scalars(text("SELECT event_id FROM processed_events"))).all()
            )
        if len(self.positions) != len(pairs):
            problems.append(f"published {len(self.positions)} of {len(pairs)} records")
        index_at = {position: index for index, position in enumerate(self.positions)}
        wanted = {self.positions[i]: reason for i, reason in expected.letters().items()}
        # To the end offsets, not to a count: letters published twice (allowed) would make a
        # count stop short of the last distinct ones.
        letters = await read_to_end(
            self.settings.kafka_bootstrap_servers, self.settings.kafka_dlq_topic
        )
        seen: Counter[tuple[int, int]] = Counter()
        for letter in letters:
            headers = header_map(letter)
            where = (int(headers["original.partition"]), int(headers["original.offset"]))
            seen[where] += 1
            if where not in wanted:
                outcome.doubled += 1
                problems.append(f"unexpected letter for {where}: {letter.value!r:.60}")
                continue
            sent = pairs[index_at[where]]
            got = (
                letter.key,
                letter.value,
                [tuple(h) for h in original_headers(letter.headers)],
                headers["error.reason"],
                headers["original.topic"],
            )
            should = (
                sent[0],
                sent[1],
                list(sent[2]) if len(sent) > 2 else [],
                wanted[where],
                self.settings.kafka_topic,
            )
            if got != should:
                outcome.mismatched_letters += 1
                problems.append(f"letter for {where}: got {got!r:.200}, expected {should!r:.200}")
        missing = [where for where in wanted if where not in seen]
        missing_ids = expected.processed_ids - stored_ids
        extra_ids = stored_ids - expected.processed_ids
        over = sum(
            1
            for pid, product in expected.products.items()
            if pid in actual and actual[pid].quantity > product.quantity
        )
        outcome.lost = len(missing_ids) + len(missing)
        outcome.doubled += len(extra_ids) + over
        outcome.dead_lettered = len(seen)
        outcome.redelivered_letters = len(letters) - len(seen)
        outcome.recover_s = self.recovery_times()
        (
            outcome.longest_without_progress_s,
            outcome.longest_without_progress_from_s,
        ) = self.longest_without_progress()
        outcome.elapsed_s = time.monotonic() - started
        outcome.problems = (
            problems
            + [f"missing letter for {where}" for where in missing[:5]]
            + self.faults_without_progress()
        )
        return outcome


async def run_scenario(
    name: str,
    settings: Settings,
    database_url: str,
    log_dir: Path,
    pairs: Sequence[Pair],
    drive: Callable[[Harness], Awaitable[int]],
    catch_up_timeout: float,
) -> Outcome:
    """Prepare, run `drive` (which starts consumers, publishes and injects faults, returning
    how many faults it injected), wait until the table has caught up, and judge."""
    engine = create_async_engine(database_url, pool_pre_ping=True)
    harness = Harness(settings, engine, log_dir)
    watcher: asyncio.Task[None] | None = None
    try:
        async with engine.begin() as connection:
            await connection.execute(text("TRUNCATE products, processed_events, consumer_offsets"))
        await harness.prepare()
        started = time.monotonic()
        watcher = asyncio.create_task(harness.watch_progress())
        faults = await drive(harness)
        await harness.wait_caught_up(catch_up_timeout)
        # Progress is measured up to here: the verdict's own work (the model of a large
        # stream is seconds of CPU) holds up the sampling and would look like a stall.
        watcher.cancel()
        alive = [c for c in harness.consumers if c.alive()]
        assert alive, "no consumer is running at the end"
        outcome = await harness.verify(name, pairs, faults, started)
        for process in alive:
            code = process.stop()
            if code != 0:
                outcome.problems.append(f"{process.name} exited {code} on SIGTERM")
        return outcome
    finally:
        if watcher is not None:
            watcher.cancel()
        harness.stop_all()
        await engine.dispose()
