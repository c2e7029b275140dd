"""The write-only mode: the service's write path on batches decoded beforehand, no Kafka.

The topic is read and decoded first (not timed), in batches of the service's
BATCH_MAX_RECORDS as its consumer's `getmany` forms them; then `WritePath.write` commits the
batches one after the other, one transaction in flight as in the service, with the partition
guard production uses (testbed/write_path.py: the real PartitionGuard inside
LetterStops, on a consumer stand-in that owns every partition) and an in-memory dead-letter
sink. The time from the first batch's write to the last one's commit is PostgreSQL's and the
write path's share of the service's work: beside validate-only (Kafka and decoding, no
writes) it is the second floor the service's rate is held against.
"""

from __future__ import annotations

import gc
import os
import time
from dataclasses import dataclass
from typing import Any

import asyncpg
from aiokafka import AIOKafkaConsumer, TopicPartition

from bench import pg_cost
from bench.measure import HostCpu, Progress
from bench.modes import (
    SERVICE_FETCH_BYTES,
    Topic,
    cpu_account,
    prefill_note,
    spent_since,
    stop_accounts,
)
from bench.prefill import prepare
from bench.report import Result
from bench.verify import check_table
from service.app import tune_gc
from service.postgres.engine import make_engine, make_session_factory
from service.write_path.batch import Batch
from service.write_path.retry import Backoff
from service.write_path.transaction import WritePath
from testbed.fake_consumer import FakeConsumer
from testbed.write_path import MemoryDeadLetterSink, guard, owns_everything


@dataclass
class Decoded:
    batches: list[Batch]
    read_s: float
    decode_s: float

    @property
    def records(self) -> int:
        return sum(len(batch) for batch in self.batches)


async def read_batches(
    topic: Topic, batch_max_records: int, write_path: WritePath, timeout: float
) -> Decoded:
    """Every record of the topic, in the batches the service's consumer would fetch
    (`getmany(max_records=BATCH_MAX_RECORDS)` over all partitions), each decoded by the
    write path's own `decode`."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=topic.target.bootstrap,
        enable_auto_commit=False,
        max_partition_fetch_bytes=SERVICE_FETCH_BYTES,
    )
    await consumer.start()
    started = time.perf_counter()
    fetched: list[list[Any]] = []
    count = 0
    try:
        consumer.assign([TopicPartition(topic.name, p) for p in sorted(topic.ends)])
        await consumer.seek_to_beginning()
        while count < topic.total:
            got = await consumer.getmany(timeout_ms=500, max_records=batch_max_records)
            records = [record for part in got.values() for record in part]
            if records:
                fetched.append(records)
                count += len(records)
            if time.perf_counter() - started > timeout:
                raise TimeoutError(f"write-only read {count} of {topic.total} in {timeout} s")
    finally:
        await consumer.stop()
    read = time.perf_counter()
    batches = []
    for records in fetched:
        batches.append(Batch.of(records, await write_path.decode(records)))
    return Decoded(batches, read - started, time.perf_counter() - read)


async def write_only(topic: Topic, batch_max_records: int, timeout: float) -> Result:
    """`WritePath.write` over the whole stream, pre-decoded; timed from the first write to the
    last commit."""
    prefilled = await prepare(topic.target, topic.prefill)
    group = topic.group(f"write-only-b{batch_max_records}")
    settings = topic.target.settings(
        kafka_topic=topic.name, kafka_group_id=group, batch_max_records=batch_max_records
    )
    # The consumer's engine as service/app.py makes it (idle-in-transaction limit at the
    # group's session timeout), so the write path's sessions match the service's.
    engine = make_engine(settings, idle_in_transaction_ms=settings.kafka_session_timeout_ms)
    sessions = make_session_factory(engine)
    sink = MemoryDeadLetterSink()
    owner = FakeConsumer(
        [(topic.name, p) for p in topic.ends],
        log_ends={(topic.name, p): end for p, end in topic.ends.items()},
    )
    write_path = WritePath(
        sessions,
        sink,
        group,
        Backoff(settings.retry_initial_backoff_s, settings.retry_max_backoff_s),
        max_record_bytes=settings.max_record_bytes,
        guard=guard(owner, sessions=sessions, group_id=group),
        session_timeout_s=settings.kafka_session_timeout_ms / 1000,
    )
    connection = await asyncpg.connect(topic.target.dsn(), timeout=10)
    threshold = gc.get_threshold()
    account = None
    try:
        decoded = await read_batches(topic, batch_max_records, write_path, timeout)
        # The pre-decoded stream is long-lived here, unlike in the service: frozen (as the
        # service freezes what it allocated at start-up) so collections do not walk it.
        tune_gc()
        progress = Progress(f"write-only (batch {batch_max_records})", decoded.records, "written")
        pg_before = await pg_cost.counters(connection)
        account = await cpu_account(topic, [os.getpid()], connection, topic.target.base.postgres_db)
        host = HostCpu()
        started = time.perf_counter()
        written = 0
        for batch in decoded.batches:
            await write_path.write(batch, owns_everything)
            written += len(batch)
            progress(written)
            if time.perf_counter() - started > timeout:
                raise TimeoutError(
                    f"write-only wrote {written} of {decoded.records} in {timeout} s"
                )
        done_at = time.perf_counter()
        cpu = await stop_accounts(account, host, done_at - started)
    finally:
        if account is not None:
            await account.stop()
        await connection.close()
        await engine.dispose()
        gc.set_threshold(*threshold)
    pg_spent = await spent_since(topic, pg_before)
    batches = len(decoded.batches)
    decoded.batches.clear()
    result = Result(
        "write-only", topic.size, written, done_at - started, stream=topic.stream, cpu_s=cpu
    )
    result.batch_max_records = batch_max_records
    result.pg, result.pg_events = pg_spent, written
    prefill_note(result, prefilled)
    result.notes.append(
        f"service.write_path WritePath.write on {batches:,} pre-decoded batches (read "
        f"{decoded.read_s:.1f} s and decoded {decoded.decode_s:.1f} s before, not timed), "
        "one transaction at a time, in the bench process; dead letters kept in memory"
    )
    if topic.expected is not None:
        result.notes.append(await check_table(topic.target, topic.expected, prefilled))
        result.notes.append(
            f"dead letters: {len(sink.letters):,} (oracle: {topic.expected.dead_letters:,})"
        )
    else:
        result.notes.append(f"dead letters: {len(sink.letters):,}")
    return result
