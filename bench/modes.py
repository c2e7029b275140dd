"""The catch-up modes: one pre-published topic read by consume-only, validate-only, naive and
service.

Each mode times from its first applied batch (or record) to the end of the topic, so process
start-up, group join and partition assignment are excluded; start-up is reported apart.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
from aiokafka import AIOKafkaConsumer

from bench import database, pg_cost, stream
from bench.cpu import CpuAccount, selectors
from bench.measure import HostCpu, MemorySampler, Progress, cpu_seconds, read_status_kb
from bench.peers.upserts import PeerStream
from bench.prefill import Prefill, Prefilled, prepare
from bench.process import Child
from bench.profile import Profiler
from bench.report import Result
from bench.target import Target, code_state
from bench.verify import Expected, check_table
from service.config.settings import Settings
from service.core.decoding import decode

# The service's default KAFKA_MAX_PARTITION_FETCH_BYTES, so the Kafka side is read alike.
SERVICE_FETCH_BYTES: int = Settings.model_fields["kafka_max_partition_fetch_bytes"].default


@dataclass
class Topic:
    """One published stream, shared by every mode of one size."""

    target: Target
    run_id: str
    name: str
    size: int
    partitions: int
    ends: dict[int, int]
    log_dir: Path
    expected: Expected | None = None
    extra_topics: list[str] = field(default_factory=list)  # DLQs made for it: to delete
    stream: str = "mixed"  # or "upserts": the mixed stream's valid upserts (bench/peers)
    peers: PeerStream | None = None  # with "upserts": the peers' expectations and topics
    prefill: Prefill | None = None  # what the writing modes find in the tables (bench/prefill.py)

    @property
    def total(self) -> int:
        return sum(self.ends.values())

    @property
    def variant(self) -> str:
        """What tells apart the runs of one mode on this topic: the prefill point."""
        p = self.prefill
        return f"-p{p.products}-{p.processed}-{p.expired}" if p else ""

    def group(self, mode: str) -> str:
        return f"bench-{self.run_id}-{mode}-{self.size}-{self.stream}{self.variant}"


async def cpu_account(
    topic: Topic,
    consumer_pids: list[int],
    connection: asyncpg.Connection | None = None,
    database_name: str = "",
) -> CpuAccount:
    """A started account of CPU by process: `consumer_pids`' trees, the backends serving
    `database_name` (not `connection`'s own: the bench's poller), PostgreSQL's background
    processes and the broker."""
    postmaster = backend = None
    if connection is not None:
        postmaster = await database.postmaster_pid(connection)
        backend = int(await connection.fetchval("SELECT pg_backend_pid()"))
    port = int(topic.target.bootstrap.split(",")[0].rsplit(":", 1)[1])
    select = selectors(
        consumer_pids, postmaster, database_name, port, exclude=[backend] if backend else []
    )
    account = CpuAccount(select)
    account.start()
    return account


async def stop_accounts(account: CpuAccount, host: HostCpu, seconds: float) -> dict[str, float]:
    """CPU-seconds by process group, and the host's (every CPU, any process) as "host"."""
    spent = await account.stop()
    spent["host"] = host.busy() * (os.cpu_count() or 1) * seconds
    return spent


async def spent_since(topic: Topic, before: dict[str, float]) -> dict[str, float]:
    """PostgreSQL's counters since `before`, read once the system under test has closed its
    connections (a backend reports its last counters as it exits)."""
    await asyncio.sleep(0.5)
    return pg_cost.spent(before, await pg_counters(topic))


async def pg_counters(topic: Topic) -> dict[str, float]:
    connection = await asyncpg.connect(topic.target.dsn(), timeout=10)
    try:
        return await pg_cost.counters(connection)
    finally:
        await connection.close()


def prefill_note(result: Result, prefilled: Prefilled | None) -> None:
    if prefilled is not None:
        result.prefill = prefilled.spec.short()
        result.notes.append(f"{prefilled.spec.describe()} ({prefilled.seconds:.0f} s, before)")


async def consume_only(topic: Topic, timeout: float, validate: bool = False) -> Result:
    """aiokafka getmany into nothing: the Kafka-side limit for this host.

    With `validate`, each record also goes through the service's own decode (the contract's
    pydantic validation and the key check) and nothing else: the floor for any consumer
    that validates its events, before a single database write.
    Timed from the moment the group assigned the partitions (the fetcher starts then).
    """
    mode = "validate-only" if validate else "consume-only"
    progress = Progress(mode, topic.total, "read")
    spawned = time.perf_counter()
    consumer = AIOKafkaConsumer(
        topic.name,
        bootstrap_servers=topic.target.bootstrap,
        group_id=topic.group("validate" if validate else "consume"),
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        max_partition_fetch_bytes=SERVICE_FETCH_BYTES,
    )
    await consumer.start()
    count = 0
    account: CpuAccount | None = None
    try:
        while not consumer.assignment():
            if time.perf_counter() - spawned > timeout:
                raise TimeoutError(f"{mode} got no assignment in {timeout} s")
            await asyncio.sleep(0.005)
        joined = time.perf_counter()
        account, host = await cpu_account(topic, [os.getpid()]), HostCpu()  # this process
        while count < topic.total:
            batch = await consumer.getmany(timeout_ms=500)
            for records in batch.values():
                count += len(records)
                if validate:
                    for record in records:
                        decode(record)
            progress(count)
            if time.perf_counter() - spawned > timeout:
                raise TimeoutError(f"{mode} read {count} of {topic.total} in {timeout} s")
        done_at = time.perf_counter()
        cpu = await stop_accounts(account, host, done_at - joined)
    finally:
        if account is not None:
            await account.stop()
        await consumer.stop()
    result = Result(mode, topic.size, count, done_at - joined, stream=topic.stream, cpu_s=cpu)
    result.startup_s = joined - spawned
    result.notes.append("timed from partition assignment (group join excluded)")
    if validate:
        result.notes.append("service.core.decoding.decode per record, in this (the bench) process")
    return result


async def naive(topic: Topic, cap: int, time_limit: float, timeout: float) -> Result:
    """`python -m bench.naive`: one message, one transaction."""
    prefilled = await prepare(topic.target, topic.prefill)
    target = min(cap, topic.total)
    settings = topic.target.settings(kafka_topic=topic.name, kafka_group_id=topic.group("naive"))
    child = Child(
        f"naive-{topic.size}{topic.variant}",
        [
            "-m",
            "bench.naive",
            *("--topic", topic.name, "--group", topic.group("naive")),
            *("--target", str(target), "--time-limit", str(time_limit)),
        ],
        topic.target.env(settings),
        topic.log_dir,
        pipe_stdout=True,
    )
    progress = Progress("naive", target, "applied")
    pg_before = await pg_counters(topic)
    spawned_wall = time.time()
    await child.start()
    assert child.process is not None and child.process.stdout is not None
    sampler = MemorySampler(child.pid)
    sampler.start()
    peak_kb = 0
    report: dict[str, Any] = {}
    cpu_marks: tuple[float | None, float] = (None, 0.0)
    cpu_used = timed = 0.0
    try:
        while True:
            remaining = timeout - (time.time() - spawned_wall)
            if remaining <= 0:
                raise TimeoutError(
                    f"naive handled {report.get('count', 0)} of {target} in {timeout:.0f} s "
                    f"(log {child.log_path})"
                )
            line = await asyncio.wait_for(child.process.stdout.readline(), remaining)
            if not line:
                child.check_alive()
                raise RuntimeError(f"naive consumer ended without a report:\n{child.tail()}")
            report = json.loads(line)
            peak_kb = max(peak_kb, read_status_kb(child.pid, "VmHWM") or 0)
            if report["count"] and cpu_marks[0] is None:
                cpu_marks = (cpu_seconds(child.pid), report["seconds"])
            if report["done"] and cpu_marks[0] is not None:
                cpu_used = (cpu_seconds(child.pid) or cpu_marks[0]) - cpu_marks[0]
                timed = report["seconds"] - cpu_marks[1]
            progress(report["count"])
            if report["done"]:
                break
    finally:
        await sampler.stop()
        code = await child.stop(exiting=15.0 if report.get("done") else 0.0)
    result = Result("naive", topic.size, report["count"], report["seconds"])
    result.pg, result.pg_events = await spent_since(topic, pg_before), report["count"]
    result.peak_rss_mb = max(peak_kb / 1024, max((mb for _, mb in sampler.samples), default=0))
    if report["first_wall"] is not None:
        result.startup_s = report["first_wall"] - spawned_wall
    result.series["rss_mb"] = sampler.samples
    result.series["fates"] = report["fates"]
    prefill_note(result, prefilled)
    if report["count"] < topic.total:
        result.notes.append(
            f"capped: stopped after {report['count']:,} of {topic.total:,} records "
            f"(cap {cap:,} records or {time_limit:.0f} s after the first); rate from those"
        )
    elif topic.expected is not None:
        result.notes.append(await check_table(topic.target, topic.expected, prefilled))
    result.notes.append(
        "one transaction per record; unusable records are skipped (no dead-letter publishing)"
    )
    if timed > 0:
        result.notes.append(f"naive process CPU {100 * cpu_used / timed:.0f}% of one core")
    if code not in (0, None):
        result.notes.append(f"naive consumer exited with code {code} (log {child.log_path})")
    return result


async def service(
    topic: Topic,
    batch_max_records: int,
    extra_env: dict[str, str],
    timeout: float,
    profile: Path | None = None,
    replicas: int = 1,
) -> Result:
    """`python -m service run` (`replicas` processes in one group), timed from the first
    committed batch until lag is zero."""
    prefilled = await prepare(topic.target, topic.prefill)
    group = f"{topic.group('service')}-b{batch_max_records}-r{replicas}"
    dlq = f"{topic.name}.dlq.b{batch_max_records}.r{replicas}{topic.variant}"
    topic.extra_topics.append(dlq)
    settings = topic.target.settings(
        kafka_topic=topic.name,
        kafka_dlq_topic=dlq,
        kafka_group_id=group,
        kafka_topic_partitions=topic.partitions,
        batch_max_records=batch_max_records,
    )
    env = topic.target.env(settings, extra_env)
    children = [
        Child(
            f"service-{topic.size}-b{batch_max_records}-r{replicas}{topic.variant}-{index}",
            ["-m", "service", "run"],
            env,
            topic.log_dir,
            pipe_stdout=False,
        )
        for index in range(replicas)
    ]
    child = children[0]
    connection = await asyncpg.connect(topic.target.dsn(), timeout=10)
    pg_before = await pg_cost.counters(connection)
    positions = database.Positions(connection, group, topic.name)
    progress = Progress(f"service (batch {batch_max_records})", topic.total)
    code_at_spawn = code_state()
    spawned = time.perf_counter()
    for each in children:
        await each.start()
    samplers = [MemorySampler(each.pid) for each in children]
    for each_sampler in samplers:
        each_sampler.start()
    sampler = samplers[0]
    profiler = Profiler(child.pid, profile) if profile is not None else None
    if profiler is not None:
        await profiler.start()
    first_at, first_done, cpu_at_first = None, 0, 0.0
    host = HostCpu()
    account: CpuAccount | None = None
    pids = [each.pid for each in children]
    try:
        while True:
            rows, done = await positions.read()
            now = time.perf_counter()
            if rows and first_at is None:
                first_at, first_done = now, done
                account = await cpu_account(topic, pids, connection, topic.target.base.postgres_db)
                host.start()
                cpu_at_first = sum(cpu_seconds(each.pid) or 0.0 for each in children)
            progress(done)
            if done >= topic.total:
                break
            for each in children:
                each.check_alive()
            if now - spawned > timeout:
                raise TimeoutError(f"service applied {done} of {topic.total} in {timeout} s")
            await asyncio.sleep(0.1)
        done_at = time.perf_counter()
        host_busy = host.busy()
        assert account is not None and first_at is not None
        cpu = await stop_accounts(account, host, done_at - first_at)
        cpu_used = sum(cpu_seconds(each.pid) or 0.0 for each in children) - cpu_at_first
        peak = max(each_sampler.peak_mb() for each_sampler in samplers)
    finally:
        if account is not None:
            await account.stop()
        await connection.close()
        for each_sampler in samplers:
            await each_sampler.stop()
        codes = [await each.stop() for each in children]
        code = next((c for c in codes if c != 0), 0)
        if profiler is not None:
            await profiler.wait()
    assert first_at is not None
    pg_spent = await spent_since(topic, pg_before)
    result = Result(
        "service",
        topic.size,
        topic.total - first_done,
        done_at - first_at,
        stream=topic.stream,
        cpu_s=cpu,
    )
    result.batch_max_records = batch_max_records
    result.replicas = replicas
    result.pg = pg_spent
    result.pg_events = topic.total
    result.startup_s = first_at - spawned
    result.peak_rss_mb = peak
    result.series["rss_mb"] = sampler.samples
    result.series["code"] = code_at_spawn
    prefill_note(result, prefilled)
    if not result.events:
        result.events, result.seconds = topic.total, done_at - spawned
        result.notes.append("all records came in the first batch: timed from process spawn")
    else:
        result.notes.append(
            f"timed from its first committed batch ({first_done:,} records, seen within 0.1 s) "
            "to lag 0; start-up (spawn to that batch) reported apart"
        )
        result.notes.append(
            f"while timed: service CPU {cpu_used:.1f} s over {replicas} process(es) "
            f"({100 * cpu_used / result.seconds:.0f}% of one core); peak RSS is the largest "
            f"process's; all {os.cpu_count()} host "
            f"CPUs {100 * host_busy:.0f}% busy (service + PostgreSQL + Kafka + bench)"
        )
        result.series["service_cpu_s"] = cpu_used
        result.series["host_busy"] = host_busy
    letters = sum((await stream.end_offsets(topic.target.bootstrap, dlq)).values())
    if topic.expected is not None:
        result.notes.append(await check_table(topic.target, topic.expected, prefilled))
        result.notes.append(f"dead letters: {letters:,} (oracle: {topic.expected.dead_letters:,})")
    else:
        result.notes.append(f"dead letters: {letters:,}")
    if code != 0:
        result.notes.append(f"service exited with code {code} after SIGTERM ({child.log_path})")
    return result
