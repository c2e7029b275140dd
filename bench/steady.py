"""Steady mode: a paced publisher offers R events/s while the service runs; a poller sees
each `stock.adjusted` event's id committed in processed_events and the latency is that moment
minus the event's send time (both on this process's monotonic clock).

Only adjustments leave their id there (upserts and deletes are idempotent by their version
and are not claimed), so the latency is measured on the adjustments: most of the stream,
committed in the same batches as the other events."""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
from aiokafka import AIOKafkaProducer

from bench import database, stream
from bench.measure import (
    HostCpu,
    MemorySampler,
    cpu_seconds,
    percentile,
    say,
    wait_until_group_stable,
)
from bench.process import Child
from bench.report import Result
from bench.target import Target, code_state
from bench.verify import check_table, expected_outcome
from testbed import model
from testbed.publish import idempotent_producer


@dataclass(frozen=True)
class SteadySpec:
    rate: int
    duration: float
    warmup: float
    products: int
    seed: int
    partitions: int
    batch_max_records: int
    poll_interval_s: float
    linger_ms: int
    timeout: float


def tracked_ids(pairs: list[tuple[bytes, bytes]], fates: list[str]) -> list[str | None]:
    """Per record, the event id whose commit it causes (None: no id of its own in
    processed_events: an upsert or delete, unusable, rejected, or a duplicate), as the
    independent model decides (`fates`, the oracle's per record). Only applied
    `stock.adjusted` events leave their id there."""
    tracked: list[str | None] = []
    for (_, value), fate in zip(pairs, fates, strict=True):
        event_id = None
        if fate == model.APPLIED:  # parsed once, only for the events that may be tracked
            event = json.loads(value)
            if event["event_type"] == model.ADJUST:
                event_id = str(event["event_id"])
        tracked.append(event_id)
    return tracked


class RowPoller:
    """Every `interval` s, fetch ids committed since the last poll; remember when each appeared.

    `processed_at` is the committing transaction's start time and the service commits one
    batch at a time, so rows newer than the newest one seen are exactly the new commits.
    """

    def __init__(self, connection: asyncpg.Connection, interval: float) -> None:
        self.connection = connection
        self.interval = interval
        self.seen: dict[str, float] = {}
        self.polls = 0
        self._watermark = datetime(1970, 1, 1, tzinfo=UTC)

    async def poll(self) -> None:
        rows = await self.connection.fetch(
            "SELECT event_id::text, processed_at FROM processed_events WHERE processed_at > $1",
            self._watermark,
        )
        now = time.perf_counter()
        self.polls += 1
        for event_id, processed_at in rows:
            self.seen.setdefault(event_id, now)
            self._watermark = max(self._watermark, processed_at)

    async def run(self) -> None:
        while True:
            started = time.perf_counter()
            await self.poll()
            await asyncio.sleep(max(0.0, self.interval - (time.perf_counter() - started)))


async def _publish_paced(
    producer: AIOKafkaProducer, topic: str, pairs: list[tuple[bytes, bytes]], rate: int
) -> list[float]:
    """Send pairs at `rate` per second; returns each record's send time."""
    sent_at = [0.0] * len(pairs)
    # Acknowledged sends are retired as they complete: gathering 300k futures at the end
    # ran their callbacks in one go and starved the poller (this process) for ~1.5 s, which
    # showed up as the last second's latencies.
    pending: deque[asyncio.Future[object]] = deque()
    started = time.perf_counter()
    next_report = started + 2.0
    i = 0
    while i < len(pairs):
        now = time.perf_counter()
        due = min(len(pairs), int((now - started) * rate) + 1)
        while i < due:
            key, value = pairs[i]
            sent_at[i] = time.perf_counter()
            pending.append(await producer.send(topic, key=key, value=value))
            i += 1
        if now >= next_report:
            say(f"steady: {i}/{len(pairs)} published, {i / (now - started):.0f}/s offered")
            next_report = now + 2.0
        while pending and pending[0].done():
            pending.popleft().result()  # raises if the broker refused the record
        await asyncio.sleep(0.002)
    await asyncio.gather(*pending)
    return sent_at


async def steady(
    target: Target,
    run_id: str,
    spec: SteadySpec,
    extra_env: dict[str, str],
    log_dir: Path,
    created: list[str],
) -> Result:
    topic = f"bench.{run_id}.steady.r{spec.rate}"
    dlq = f"{topic}.dlq"
    created += [topic, dlq]
    await stream.create_topic(target.bootstrap, topic, spec.partitions)
    warm = int(spec.rate * spec.warmup)
    measured = int(spec.rate * spec.duration)
    pairs = stream.build(warm + measured, spec.products, spec.seed)
    expected = expected_outcome(pairs)
    ids = tracked_ids(pairs, expected.fates)
    await database.truncate(target)
    group = f"bench-{run_id}-steady-r{spec.rate}"
    settings = target.settings(
        kafka_topic=topic,
        kafka_dlq_topic=dlq,
        kafka_group_id=group,
        kafka_topic_partitions=spec.partitions,
        batch_max_records=spec.batch_max_records,
    )
    child = Child(
        f"service-steady-r{spec.rate}",
        ["-m", "service", "run"],
        target.env(settings, extra_env),
        log_dir,
        pipe_stdout=False,
    )
    connection = await asyncpg.connect(target.dsn(), timeout=10)
    poller = RowPoller(connection, spec.poll_interval_s)
    producer = idempotent_producer(
        target.bootstrap, linger_ms=spec.linger_ms, client_id="inventory-bench-steady"
    )
    code_at_spawn = code_state()
    spawned = time.perf_counter()
    await child.start()
    sampler = MemorySampler(child.pid)
    sampler.start()
    poll_task: asyncio.Task[None] | None = None
    try:
        await wait_until_group_stable(target.bootstrap, group, timeout=120)
        startup = time.perf_counter() - spawned
        await asyncio.sleep(0.5)  # let the assignment's seek settle
        await producer.start()
        poll_task = asyncio.create_task(poller.run())
        say(
            f"steady: service joined after {startup:.1f} s; offering {spec.rate}/s "
            f"for {spec.warmup:g} s warm-up + {spec.duration:g} s"
        )
        host, own_cpu = HostCpu(), time.process_time()
        service_cpu = cpu_seconds(child.pid) or 0.0
        sent_at = await _publish_paced(producer, topic, pairs, spec.rate)
        publish_s = time.perf_counter() - sent_at[0]
        usage = (
            ((cpu_seconds(child.pid) or 0.0) - service_cpu) / publish_s,
            (time.process_time() - own_cpu) / publish_s,
            host.busy(),
        )
        last_sent = max(sent_at)
        wanted = {event_id for event_id in ids if event_id is not None}
        deadline = time.perf_counter() + spec.timeout
        while not wanted <= poller.seen.keys() and time.perf_counter() < deadline:
            child.check_alive()
            await asyncio.sleep(0.05)
        drained = time.perf_counter() - last_sent
        peak = sampler.peak_mb()
    finally:
        if poll_task is not None:
            poll_task.cancel()
            await asyncio.gather(poll_task, return_exceptions=True)
        await producer.stop()
        await sampler.stop()
        code = await child.stop()
    await poller.poll()  # anything committed in the last instant (seen late, not counted)
    stored = int(await connection.fetchval("SELECT count(*) FROM processed_events"))
    await connection.close()
    # Nothing lost or doubled: the whole table against the oracle, once every id was seen.
    verdict = await check_table(target, expected)
    letters = sum((await stream.end_offsets(target.bootstrap, dlq)).values())

    latencies: list[float] = []
    timeline: list[tuple[float, float]] = []
    begin = sent_at[warm] if warm < len(sent_at) else sent_at[0]
    unseen = 0
    for i in range(warm, len(pairs)):
        event_id = ids[i]
        if event_id is None:
            continue
        if event_id not in poller.seen:
            unseen += 1
            continue
        latency = (poller.seen[event_id] - sent_at[i]) * 1000
        latencies.append(latency)
        timeline.append((sent_at[i] - begin, latency))
    offered_s = last_sent - begin
    result = Result("steady", measured, len(pairs) - warm, offered_s)
    result.batch_max_records = spec.batch_max_records
    result.offered_rate = spec.rate
    result.startup_s = startup
    result.p50_ms = percentile(latencies, 50)
    result.p99_ms = percentile(latencies, 99)
    result.max_ms = max(latencies, default=float("nan"))
    result.peak_rss_mb = peak
    result.series = {
        "latency_ms": _per_second(timeline),
        "rss_mb": sampler.samples,
        "code": code_at_spawn,
    }
    result.notes += [
        f"offered {spec.rate}/s for {spec.duration:g} s after a {spec.warmup:g} s warm-up "
        f"(excluded); latency of {len(latencies):,} committed event ids "
        f"(poll every {spec.poll_interval_s * 1000:.0f} ms, producer linger {spec.linger_ms} ms)",
        f"caught up {drained:.2f} s after the last send"
        + ("" if not unseen else f"; {unseen:,} ids NOT seen within {spec.timeout:.0f} s"),
        f"processed_events holds {stored:,} ids; expected {len(set(filter(None, ids))):,}; "
        f"{poller.polls:,} polls",
        verdict,
        f"dead letters: {letters:,} (oracle: {expected.dead_letters:,})",
        f"while publishing: service process CPU {100 * usage[0]:.0f}% of one core, bench "
        f"(publisher + poller) {100 * usage[1]:.0f}%, all {os.cpu_count()} host CPUs "
        f"{100 * usage[2]:.0f}% busy",
    ]
    result.series["cpu"] = {"service": usage[0], "bench": usage[1], "host_busy": usage[2]}
    if result.rate < 0.95 * spec.rate:
        result.notes.append(
            f"the publisher fell behind: {result.rate:,.0f}/s offered of {spec.rate:,}/s asked "
            "(the bench process shares the host's CPUs)"
        )
    if code != 0:
        result.notes.append(f"service exited with code {code} after SIGTERM ({child.log_path})")
    return result


def _per_second(timeline: list[tuple[float, float]]) -> list[dict[str, float]]:
    """Latency p50/p99/max per second of send time: the figure for the plot and the JSON."""
    buckets: dict[int, list[float]] = {}
    for at, latency in timeline:
        buckets.setdefault(int(at), []).append(latency)
    return [
        {
            "second": second,
            "count": len(values),
            "p50_ms": percentile(values, 50),
            "p99_ms": percentile(values, 99),
            "max_ms": max(values),
        }
        for second, values in sorted(buckets.items())
    ]
