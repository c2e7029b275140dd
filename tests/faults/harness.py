"""The fault-suite engine: publish a seeded stream, run real consumer processes, inject
faults, then compare the table and the dead-letter topic with the oracle.

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

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from service.config import Settings
from service.topics import ensure_topics, partitions_of
from tests.support.consumer import ConsumerProcess
from tests.support.kafka import header_map, read_topic
from tests.support.oracle import diff, expected_outcome, table

Pair = tuple[bytes | None, bytes | None]


class StackControl:
    """Restarts of the real services, through scripts/local-stack (what CI and `scripts/test`
    use). Elsewhere the restart scenarios fail and say how to run them."""

    def __init__(self) -> None:
        self.script = os.environ.get("LOCAL_STACK")

    def _run(self, action: str) -> None:
        if not self.script:
            raise AssertionError(
                "restarting PostgreSQL or Kafka needs the local stack: run the fault suite with "
                "`scripts/test tests/faults` (it exports LOCAL_STACK)"
            )
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
    dead_lettered: int = 0
    redelivered_letters: int = 0
    recover_s: list[float] = field(default_factory=list)
    elapsed_s: float = 0.0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.lost == 0 and self.doubled == 0 and self.mismatched_rows == 0

    def line(self) -> str:
        recover = (
            f"max {max(self.recover_s):.1f}s / median {statistics.median(self.recover_s):.1f}s"
            if self.recover_s
            else "n/a"
        )
        return (
            f"{self.scenario:<14} events={self.events:<8} faults={self.faults:<3} "
            f"lost={self.lost} doubled={self.doubled} mismatched_rows={self.mismatched_rows} "
            f"dead_lettered={self.dead_lettered} (redelivered letters {self.redelivered_letters}) "
            f"recover={recover} elapsed={self.elapsed_s:.0f}s"
        )


class Harness:
    def __init__(self, settings: Settings, engine: AsyncEngine, log_dir: Path) -> None:
        self.settings = settings
        self.engine = engine
        self.log_dir = log_dir
        self.consumers: list[ConsumerProcess] = []
        self.gate = asyncio.Lock()  # held while the broker restarts: the publisher waits
        self.progress: list[tuple[float, int]] = []
        self.fault_times: list[float] = []
        self.rng = random.Random(1234)

    # -- consumers -------------------------------------------------------------------------
    def consumer(self, name: str = "consumer") -> ConsumerProcess:
        process = ConsumerProcess(self.settings, self.log_dir, f"{name}-{len(self.consumers)}")
        self.consumers.append(process)
        process.start()
        return process

    def stop_all(self) -> None:
        for process in self.consumers:
            process.kill()

    def fault_done(self) -> None:
        self.fault_times.append(time.monotonic())

    # -- Kafka -----------------------------------------------------------------------------
    async def prepare(self) -> None:
        await ensure_topics(self.settings)

    async def publish(self, pairs: Sequence[Pair], seconds: float = 0.0, chunk: int = 500) -> None:
        """Publish in order, spread over about `seconds` (0: as fast as possible)."""
        producer = AIOKafkaProducer(
            bootstrap_servers=self.settings.kafka_bootstrap_servers,
            acks="all",
            enable_idempotence=True,
            linger_ms=10,
            max_request_size=2 * 1024 * 1024,
        )
        await producer.start()
        try:
            started = time.monotonic()
            for index in range(0, len(pairs), chunk):
                async with self.gate:
                    futures = [
                        await producer.send(self.settings.kafka_topic, key=key, value=value)
                        for key, value in pairs[index : index + chunk]
                    ]
                    await asyncio.gather(*futures)
                if seconds:
                    due = started + seconds * (index + chunk) / len(pairs)
                    await asyncio.sleep(max(0.0, due - time.monotonic()))
        finally:
            await producer.stop()

    async def end_offsets(self) -> int:
        partitions = await partitions_of(
            self.settings.kafka_bootstrap_servers, self.settings.kafka_topic
        )
        consumer = AIOKafkaConsumer(bootstrap_servers=self.settings.kafka_bootstrap_servers)
        await consumer.start()
        try:
            ends = await consumer.end_offsets(
                [TopicPartition(self.settings.kafka_topic, p) for p in partitions]
            )
        finally:
            await consumer.stop()
        return sum(ends.values())

    # -- progress --------------------------------------------------------------------------
    async def stored_progress(self) -> int:
        async with self.engine.connect() as connection:
            value = await connection.scalar(
                text(
                    "SELECT coalesce(sum(next_offset), 0) FROM consumer_offsets "
                    "WHERE group_id = :g AND topic = :t"
                ),
                {"g": self.settings.kafka_group_id, "t": self.settings.kafka_topic},
            )
        return int(value or 0)

    async def watch_progress(self) -> None:
        while True:
            with contextlib.suppress(Exception):  # the database may be restarting
                self.progress.append((time.monotonic(), await self.stored_progress()))
            await asyncio.sleep(0.1)

    def recovery_times(self) -> list[float]:
        """Per fault: seconds until the stored position moved again (if work was pending)."""
        times = []
        for at in self.fault_times:
            before = [p for t, p in self.progress if t <= at]
            after = [(t, p) for t, p in self.progress if t > at]
            if not before or not after or after[-1][1] <= before[-1]:
                continue
            moved = next(t for t, p in after if p > before[-1])
            times.append(moved - at)
        return times

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
        expected = expected_outcome(pairs)
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
        letters = await read_topic(
            self.settings.kafka_bootstrap_servers,
            self.settings.kafka_dlq_topic,
            expected.dead_letters,
            timeout=60,
        )
        unique: dict[tuple[str, str], tuple[bytes, str]] = {}
        for letter in letters:
            headers = header_map(letter)
            where = (headers["original.partition"], headers["original.offset"])
            unique[where] = (letter.value or b"", headers["error.reason"])
        got = Counter(unique.values())
        missing_letters = expected.dead_letter_values - got
        extra_letters = got - expected.dead_letter_values
        missing_ids = expected.processed_ids - stored_ids
        extra_ids = stored_ids - expected.processed_ids
        over = sum(
            1
            for pid, product in expected.products.items()
            if pid in actual and actual[pid].quantity > product.quantity
        )
        outcome.lost = len(missing_ids) + sum(missing_letters.values())
        outcome.doubled = len(extra_ids) + sum(extra_letters.values()) + over
        outcome.dead_lettered = len(unique)
        outcome.redelivered_letters = len(letters) - len(unique)
        outcome.recover_s = self.recovery_times()
        outcome.elapsed_s = time.monotonic() - started
        outcome.problems = (
            problems
            + [f"missing letter {v[:60]!r} ({r})" for (v, r) in list(missing_letters)[:5]]
            + [f"unexpected letter {v[:60]!r} ({r})" for (v, r) in list(extra_letters)[:5]]
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
