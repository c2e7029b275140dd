"""Failover scenarios: the service's database is a PostgreSQL primary with an asynchronous
streaming replica (tests/support/replicated_postgres.py), reached through a TCP forwarder that
the test repoints when the replica is promoted, as a moved address or proxy does in
production.

- `failover`: the replica's WAL stream is cut, the primary goes on committing, then it
  crashes; the replica is promoted and the service, not restarted, finds its stored positions
  and rows rolled back together. Some partitions keep receiving records after the failover
  (busy), the others get nothing (quiet): a quiet partition is re-applied only if the service
  re-reads its positions from the database, since no new batch shows the gap.
- `failover-restart`: the same, with the service SIGKILLed and started again (as an
  orchestrator would) while the database is down.
- `failover-load`: `failover` with the publisher running throughout, at a steady rate: the
  WAL stream is cut, and the primary crashes, while records keep arriving.
- `switchover`: the primary stopped cleanly once the replica has all its WAL; nothing lost.

The read-only database (tests/faults/read_only.py) and the failover while dead letters wait
for their acknowledgements (tests/faults/letters_in_flight.py) build on the steps here.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass

from testbed.publish import partition_of
from tests.faults.harness import Harness, Pair
from tests.faults.scenarios import MAX_RECORD_BYTES, Scenario, stream
from tests.support.consumer import ConsumerProcess
from tests.support.replicated_postgres import ReplicatedPostgres


@dataclass(frozen=True)
class FailoverScale:
    events: int
    products: int
    publish_s: float  # the switchover's publishing window
    sustained_s: float  # failover-load's publishing window, the whole scenario long
    converge_s: float  # after the repoint, every partition must be re-applied within this
    catch_up_s: float


CI = FailoverScale(
    events=20_000,
    products=500,
    publish_s=15.0,
    sustained_s=40.0,
    converge_s=60.0,
    catch_up_s=120.0,
)
FULL = FailoverScale(
    events=1_000_000,
    products=20_000,
    publish_s=90.0,
    sustained_s=600.0,
    converge_s=900.0,
    catch_up_s=1800.0,
)

PARTITIONS = 6
BUSY = frozenset({0, 1, 2})  # records keep coming after the failover; 3, 4, 5 get none
# One member name: a restarted service takes its partitions back at once (static membership).
SETTINGS: dict[str, object] = {
    "kafka_group_instance_id": "sink-0",
    "max_record_bytes": MAX_RECORD_BYTES,
}


def phases(
    pairs: list[Pair], everywhere: float = 0.6, alone: float = 0.2
) -> tuple[list[Pair], list[Pair], list[Pair]]:
    """Applied everywhere (60%); applied on the primary alone, then lost (20%); and after the
    failover only the rest's records of busy partitions (keyless records, whose partition the
    producer picks at random, are left out)."""
    first, second = int(len(pairs) * everywhere), int(len(pairs) * (everywhere + alone))
    after = [
        pair
        for pair in pairs[second:]
        if pair[0] is not None and partition_of(pair[0], PARTITIONS) in BUSY
    ]
    return pairs[:first], pairs[first:second], after


@contextlib.contextmanager
def _supervised(h: Harness) -> Iterator[list[int]]:
    """Restart every consumer that exits, as an orchestrator does; yields the restart log."""
    restarts: list[int] = []

    async def watch() -> None:
        while True:
            for process in h.consumers:
                if not process.alive():
                    process.kill()  # closes its log
                    process.start()
                    restarts.append(process.starts)
            await asyncio.sleep(0.5)

    task = asyncio.get_running_loop().create_task(watch())
    try:
        yield restarts
    finally:
        task.cancel()


async def _restart_while_down(
    h: Harness, service: ConsumerProcess, stack: contextlib.ExitStack, timeout: float = 60.0
) -> None:
    """SIGKILL the service and let the supervisor start it again while the database is
    down: the new process exits (it cannot reach PostgreSQL) and is started again, until the
    database is back."""
    service.kill()
    restarts = stack.enter_context(_supervised(h))
    deadline = time.monotonic() + timeout
    while len(restarts) < 2:  # the first start after the kill, and one after it exited
        assert time.monotonic() < deadline, f"the restarted service never exited:\n{service.tail()}"
        await asyncio.sleep(0.2)
    failed = service.log_dir / f"{service.name}-{restarts[0]}.log"
    assert "cannot reach PostgreSQL" in failed.read_text(), failed.read_text()[-2000:]


async def converge(
    h: Harness, timeout: float, before: dict[int, int], after: dict[int, int]
) -> float:
    """Wait until every partition's stored position is the end of what was published to it;
    seconds it took. On timeout, fail naming each partition that did not get there."""
    ends = h.published_ends()
    started = time.monotonic()
    stored: dict[int, int] = {}
    while time.monotonic() - started < timeout:
        with contextlib.suppress(Exception):  # the database may still be moving
            stored = await h.stored_by_partition()
            if all(stored.get(p, 0) >= end for p, end in ends.items()):
                return time.monotonic() - started
        await asyncio.sleep(0.2)
    behind = [
        f"{'busy' if p in BUSY else 'quiet'} partition {p}: stored {stored.get(p)}, log ends at "
        f"{end} (old primary had {before.get(p)}, promoted replica {after.get(p)})"
        for p, end in sorted(ends.items())
        if stored.get(p, 0) < end
    ]
    logs = "\n".join(f"--- {c.name}\n{c.tail(10)}" for c in h.consumers)
    raise AssertionError(
        f"{len(behind)} partitions were not re-applied within {timeout:.0f}s of the "
        "repoint:\n  " + "\n  ".join(behind) + f"\n{logs}"
    )


def prove_loss(name: str, before: dict[int, int], after: dict[int, int], commits: int) -> int:
    """Fail unless the replica really lacks commits on every partition (or the scenario
    proves nothing); print and return how many records' positions it is behind."""
    kept = [p for p in range(PARTITIONS) if after.get(p, 0) >= before.get(p, 0)]
    assert not kept, (
        f"the promoted replica lost no commits on partitions {kept} (old primary "
        f"{before}, replica {after}): the WAL stream was not cut"
    )
    assert commits > 0, "the old primary's WAL holds no commit the replica lacks"
    lost = sum(before.values()) - sum(after.values())
    print(
        f"{name}: the replica is {lost} records behind the old primary, which committed "
        f"{commits} transactions it never streamed"
    )
    return lost


def lost_commits(scale: FailoverScale, pair: ReplicatedPostgres, restart: bool = False) -> Scenario:
    pairs_all = stream(scale, seed=606 if not restart else 707)
    first, second, after_failover = phases(pairs_all)
    pairs = first + second + after_failover
    name = "failover-restart" if restart else "failover"

    async def drive(h: Harness) -> int:
        service: ConsumerProcess = h.consumer()
        await h.publish(first)
        await h.wait_caught_up(scale.catch_up_s)
        await asyncio.to_thread(pair.cut_replication)
        await h.publish(second)
        await h.wait_caught_up(scale.catch_up_s)  # on the primary alone
        group, topic = h.settings.kafka_group_id, h.settings.kafka_topic
        before = await asyncio.to_thread(pair.positions, pair.primary, group, topic)
        await asyncio.to_thread(pair.crash_primary)
        commits = await asyncio.to_thread(pair.commits_not_streamed)
        with contextlib.ExitStack() as stack:
            if restart:
                await _restart_while_down(h, service, stack)
            await asyncio.to_thread(pair.promote)
            after = await asyncio.to_thread(pair.positions, pair.replica, group, topic)
            prove_loss(name, before, after, commits)
            pair.repoint()
            h.fault_done(sum(after.values()), recovered_past=len(pairs) - 1)
            await h.publish(after_failover)
            took = await converge(h, scale.converge_s, before, after)
        print(f"{name}: every partition re-applied {took:.1f}s after the repoint")
        if not restart:
            assert service.starts == 1 and service.alive(), "the service restarted or exited"
        return 1

    return Scenario(name, pairs, drive, partitions=PARTITIONS, settings=dict(SETTINGS))


async def _quiet_caught_up(h: Harness, timeout: float) -> None:
    """Wait until every quiet partition's stored position is the end of what was published
    to it: from then on only the database's positions can show its lost commits."""
    deadline = time.monotonic() + timeout
    while True:
        ends = h.published_ends()
        with contextlib.suppress(Exception):
            stored = await h.stored_by_partition()
            if all(stored.get(p, 0) >= end for p, end in ends.items() if p not in BUSY):
                return
        assert time.monotonic() < deadline, f"quiet partitions not applied within {timeout}s"
        await asyncio.sleep(0.1)


async def _published(h: Harness, count: int, publisher: asyncio.Task[None]) -> None:
    while len(h.positions) < count:
        if publisher.done():
            publisher.result()  # its error, if it failed
            raise AssertionError(f"the publisher ended at {len(h.positions)} of {count}")
        await asyncio.sleep(0.05)


def under_load(scale: FailoverScale, pair: ReplicatedPostgres) -> Scenario:
    """`failover` while one publisher runs from the first record to the last at a steady
    rate: the stream's first 40% go to every partition, the next 20% too (applied on the
    primary alone once the WAL stream is cut), then only busy partitions get records. The
    primary crashes once the quiet partitions are applied, with the publisher still going."""
    first, second, after_failover = phases(stream(scale, seed=909), everywhere=0.4, alone=0.2)
    pairs = first + second + after_failover
    name = "failover-load"

    async def drive(h: Harness) -> int:
        service = h.consumer()
        publisher = asyncio.create_task(h.publish(pairs, scale.sustained_s, chunk=100))
        await _published(h, len(first), publisher)
        await asyncio.to_thread(pair.cut_replication)
        await _published(h, len(first) + len(second), publisher)
        await _quiet_caught_up(h, scale.catch_up_s)
        assert not publisher.done(), "the publisher finished before the crash: slow it down"
        group, topic = h.settings.kafka_group_id, h.settings.kafka_topic
        before = await asyncio.to_thread(pair.positions, pair.primary, group, topic)
        await asyncio.to_thread(pair.crash_primary)
        crashed_at = len(h.positions)
        commits = await asyncio.to_thread(pair.commits_not_streamed)
        await asyncio.to_thread(pair.promote)
        after = await asyncio.to_thread(pair.positions, pair.replica, group, topic)
        prove_loss(name, before, after, commits)
        pair.repoint()
        h.fault_done(sum(after.values()), recovered_past=len(pairs) - 1)
        print(
            f"{name}: crashed with {crashed_at} of {len(pairs)} records published; "
            f"{len(h.positions)} published by the repoint"
        )
        assert not publisher.done(), "the publisher finished before the repoint: slow it down"
        await publisher
        took = await converge(h, scale.converge_s, before, after)
        print(f"{name}: every partition re-applied {took:.1f}s after the last record")
        assert service.starts == 1 and service.alive(), "the service restarted or exited"
        return 1

    return Scenario(name, pairs, drive, partitions=PARTITIONS, settings=dict(SETTINGS))


def switchover(scale: FailoverScale, pair: ReplicatedPostgres) -> Scenario:
    pairs = stream(scale, seed=808)

    async def drive(h: Harness) -> int:
        service = h.consumer()
        publisher = asyncio.create_task(h.publish(pairs, scale.publish_s))
        await asyncio.sleep(scale.publish_s / 3)
        stored = await h.wait_in_flight()
        proof = await asyncio.to_thread(pair.switchover)
        pair.repoint()
        h.fault_done(stored)
        print(f"switchover: {proof}")
        await publisher
        await h.wait_caught_up(scale.catch_up_s)
        assert service.starts == 1 and service.alive(), "the service restarted or exited"
        return 1

    return Scenario("switchover", pairs, drive, partitions=PARTITIONS, settings=dict(SETTINGS))
