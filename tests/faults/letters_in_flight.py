"""A failover while the dead-letter producer waits for its acknowledgements.

The write path publishes a batch's dead letters inside the batch's transaction, after its
positions are written and before COMMIT (service/write_path/transaction.py): the session is
then `idle in transaction` with the position update as its last statement, for as long as the
dead-letter producer waits for the broker (service/kafka/dead_letter_producer.py). A stream
with many bad records keeps letters in every batch; the test watches the primary's
pg_stat_activity for a session in that state, freezes its backend at once (so the COMMIT
that follows the acknowledgements is never applied), and crashes the primary, as in
`failover` (the WAL stream cut before, so committed batches and their letters are lost too).

Proof that the crash hit the window: letters on the dead-letter topic for records at or past
the positions the primary held at the freeze, published for a transaction that never
committed. After the failover every letter must be there (the re-applied batches publish
theirs again: duplicates, counted), rows and positions as the model says.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time

import asyncpg

from testbed.events import LabelledSpec, generate_records
from tests.faults.failover import (
    PARTITIONS,
    SETTINGS,
    FailoverScale,
    converge,
    phases,
    prove_loss,
)
from tests.faults.harness import Harness, Pair
from tests.faults.scenarios import MAX_RECORD_BYTES, Scenario
from tests.support.kafka import header_map, read_topic
from tests.support.replicated_postgres import ReplicatedPostgres

BAD_SHARE = 0.3  # most batches carry letters
# A transaction of the write path between its position update and its COMMIT: only the
# dead-letter producer's send runs there.
AWAITING_LETTERS = """
    SELECT pid FROM pg_stat_activity
    WHERE usename = current_user AND pid <> pg_backend_pid()
      AND state = 'idle in transaction' AND query LIKE '%UPDATE consumer_offsets AS c%'
    LIMIT 1
"""
STILL_WAITING = """
    SELECT count(*) FROM pg_stat_activity
    WHERE pid = $1 AND state = 'idle in transaction' AND query LIKE '%UPDATE consumer_offsets%'
"""


async def _freeze_awaiting_letters(
    pair: ReplicatedPostgres, group: str, timeout: float
) -> tuple[int, dict[int, int], int]:
    """SIGSTOP the backend of a transaction whose letters are being published, once one is
    caught before its COMMIT arrives; (its pid, the committed positions then, attempts)."""
    connection = await asyncpg.connect(pair.direct(pair.primary).url(driver="postgresql"))
    try:
        deadline = time.monotonic() + timeout
        attempts = 0
        while time.monotonic() < deadline:
            pid = await connection.fetchval(AWAITING_LETTERS)
            if pid is None:
                await asyncio.sleep(0.001)
                continue
            attempts += 1
            os.kill(pid, signal.SIGSTOP)
            if await connection.fetchval(STILL_WAITING, pid):
                rows = await connection.fetch(
                    "SELECT partition, next_offset FROM consumer_offsets WHERE group_id = $1",
                    group,
                )
                return pid, {r["partition"]: r["next_offset"] for r in rows}, attempts
            os.kill(pid, signal.SIGCONT)  # its COMMIT got in first: try the next batch
        raise AssertionError(
            f"no transaction was caught waiting for its letters within {timeout}s "
            f"({attempts} caught too late)"
        )
    finally:
        connection.terminate()


async def _letters_past(h: Harness, positions: dict[int, int]) -> int:
    """Letters on the dead-letter topic for records at or past `positions`."""
    letters = await read_topic(
        h.settings.kafka_bootstrap_servers, h.settings.kafka_dlq_topic, 10**9, timeout=5.0
    )
    past = 0
    for letter in letters:
        headers = header_map(letter)
        partition, offset = int(headers["original.partition"]), int(headers["original.offset"])
        past += offset >= positions.get(partition, 0)
    return past


def letters_in_flight(scale: FailoverScale, pair: ReplicatedPostgres) -> Scenario:
    spec = LabelledSpec(
        events=scale.events,
        products=scale.products,
        seed=1111,
        bad_share=BAD_SHARE,
        max_record_bytes=MAX_RECORD_BYTES,
    )
    records: list[Pair] = list(generate_records(spec))
    first, second, after_failover = phases(records)
    pairs = first + second + after_failover
    name = "letters-in-flight"

    async def drive(h: Harness) -> int:
        service = h.consumer()
        await h.publish(first)
        await h.wait_caught_up(scale.catch_up_s)
        await asyncio.to_thread(pair.cut_replication)
        await h.publish(second)
        await h.wait_caught_up(scale.catch_up_s)  # on the primary alone
        group, topic = h.settings.kafka_group_id, h.settings.kafka_topic
        before = await asyncio.to_thread(pair.positions, pair.primary, group, topic)
        # Busy partitions keep getting small batches with letters; the crash hits one of them.
        publisher = asyncio.create_task(h.publish(after_failover, scale.publish_s, chunk=50))
        try:
            pid, frozen_at, attempts = await _freeze_awaiting_letters(pair, group, scale.publish_s)
            await asyncio.to_thread(pair.crash_primary)
        except BaseException:
            publisher.cancel()
            with contextlib.suppress(BaseException):
                await publisher
            raise
        in_flight = await _letters_past(h, frozen_at)
        assert in_flight, (
            f"no letter past the positions {frozen_at} the primary held when backend {pid} was "
            "frozen: the crash did not hit a transaction publishing letters"
        )
        print(
            f"{name}: froze backend {pid} between its position update and its COMMIT "
            f"(attempt {attempts}); {in_flight} letters published for that uncommitted "
            "transaction"
        )
        commits = await asyncio.to_thread(pair.commits_not_streamed)
        await asyncio.to_thread(pair.promote)
        after = await asyncio.to_thread(pair.positions, pair.replica, group, topic)
        prove_loss(name, before, after, commits)
        pair.repoint()
        h.fault_done(sum(after.values()), recovered_past=len(pairs) - 1)
        await publisher
        took = await converge(h, scale.converge_s, before, after)
        print(f"{name}: every partition re-applied {took:.1f}s after the last record")
        assert service.starts == 1 and service.alive(), "the service restarted or exited"
        return 1

    return Scenario(name, pairs, drive, partitions=PARTITIONS, settings=dict(SETTINGS))
