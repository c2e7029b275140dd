"""Fault scenarios on a 3-node Kafka cluster beyond the partition leaders (scenarios.broker_kills):
the group coordinator, the dead-letter topic's leader, and a rolling restart of every node.

Each runs one consumer given the list of all three nodes and never restarts it: the service
must ride every fault out by itself. A fault has recovered once everything published before it
is applied (a fault on one node leaves the other nodes' partitions moving at once, so the
position where it hit says little).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable

from testbed.events import LabelledSpec, generate_records
from tests.faults.harness import Harness, Pair
from tests.faults.scenarios import BROKER_DOWN_S, MAX_RECORD_BYTES, Scale, Scenario, stream
from tests.support.consumer import ConsumerProcess
from tests.support.kafka_cluster import KafkaCluster, busiest_leader, group_coordinator
from tests.support.scrape import get, samples

CLUSTER_SETTINGS: dict[str, object] = {
    "kafka_replication_factor": 3,
    "max_record_bytes": MAX_RECORD_BYTES,
    "http_host": "127.0.0.1",
}
# What the service logs each time the group gives it partitions (service/positions/rebalance.py):
# once at the start, and again after every rebalance.
ASSIGNED = re.compile(r"partitions assigned: ")
REVOKED = re.compile(r"partitions revoked: ")


def _survived(consumer: ConsumerProcess, h: Harness, fault: str) -> None:
    """The one process the scenario started still runs, never restarted; how often the group
    gave it partitions is printed (only the rolling restart requires once)."""
    assert h.consumers == [consumer] and consumer.starts == 1 and consumer.alive(), (
        f"the consumer did not survive {fault}:\n{consumer.tail()}"
    )
    assigned, revoked = rebalances_seen(consumer)
    print(f"{fault}: the consumer was assigned partitions {assigned}x, revoked {revoked}x")


def rebalances_seen(consumer: ConsumerProcess) -> tuple[int, int]:
    """(assignments, revocations) the consumer has logged so far."""
    log = consumer.log_path.read_text(errors="replace")
    return len(ASSIGNED.findall(log)), len(REVOKED.findall(log))


@contextlib.asynccontextmanager
async def readiness_honest(consumer: ConsumerProcess, fault: str) -> AsyncIterator[None]:
    """While the faults last, /health/ready is asked every half second. With one node of
    three away the cluster still serves, so the probe must never blame Kafka (nor PostgreSQL,
    untouched here); the progress check may fail during a stall, and says so. Afterwards the
    service is ready again and its metrics say so too."""
    url = await asyncio.to_thread(consumer.http_url)
    answers: list[tuple[int, dict[str, dict[str, object]]]] = []
    done = asyncio.Event()

    async def watch() -> None:
        while not done.is_set():
            status, body = await get(f"{url}/health/ready")
            answers.append((status, json.loads(body)["checks"]))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(done.wait(), 0.5)

    watcher = asyncio.create_task(watch())
    try:
        yield
    finally:
        done.set()
        await watcher
    blamed = [
        (name, check.get("problem"))
        for _, checks in answers
        for name, check in checks.items()
        if name in ("kafka", "database") and not check["ok"]
    ]
    assert not blamed, f"{fault}: readiness blamed a service that was up: {blamed[:3]}"
    unready = [sorted(n for n, c in checks.items() if not c["ok"]) for st, checks in answers]
    failing = [names for names in unready if names]
    deadline = time.monotonic() + 60.0
    while (await get(f"{url}/health/ready"))[0] != 200:
        assert time.monotonic() < deadline, f"{fault}: not ready 60s after the faults"
        await asyncio.sleep(0.5)
    ready = samples((await get(f"{url}/metrics"))[1], "inventory_sink_ready")
    assert ready == {"": 1.0}, f"{fault}: ready, but inventory_sink_ready says {ready}"
    print(
        f"{fault}: readiness asked {len(answers)}x during the faults, unready {len(failing)}x "
        f"({sorted({n for names in failing for n in names}) or 'never'}); ready after"
    )


async def _wait_assigned(consumer: ConsumerProcess, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while rebalances_seen(consumer)[0] == 0:
        if time.monotonic() > deadline or not consumer.alive():
            raise AssertionError(f"the consumer was never assigned partitions:\n{consumer.tail()}")
        await asyncio.sleep(0.2)


# Picks the node to kill now: its id, and what to print about it.
Victim = Callable[[Harness], Awaitable[tuple[int, str]]]


async def _kill_under_load(
    h: Harness,
    cluster: KafkaCluster,
    pairs: list[Pair],
    scale: Scale,
    fault: str,
    victim: Victim,
    after: Callable[[Harness, int], Awaitable[str]] | None = None,
) -> int:
    """Publish `pairs` over twice the scale's window while, `broker_kills` times with work in
    flight, the node `victim` picks is SIGKILLed and started again BROKER_DOWN_S later. At
    least half the kills must hit work, and the one consumer must ride them all out."""
    publish_s = 2 * scale.publish_s  # each kill keeps a node away for BROKER_DOWN_S
    consumer = h.consumer()
    publisher = asyncio.create_task(h.publish(pairs, publish_s))
    end = time.monotonic() + publish_s
    kills = 0
    async with readiness_honest(consumer, fault):
        for remaining in range(scale.broker_kills, 0, -1):
            await asyncio.to_thread(cluster.wait_in_sync, 120.0)
            window = max(0.0, end - time.monotonic())
            await asyncio.sleep(h.rng.uniform(0.1, 0.4) * window / remaining)
            stored = await h.wait_in_flight(published=publisher)
            if stored is None:
                break
            node, what = await victim(h)
            await asyncio.to_thread(cluster.kill, node)
            h.fault_done(stored, recovered_past=len(h.positions) - 1)
            kills += 1
            print(f"{fault}: node {node} ({what}) killed at {stored}")
            await asyncio.sleep(BROKER_DOWN_S)
            await asyncio.to_thread(cluster.start, node)
            if after is not None:
                print(f"{fault}: node {node} back, {await after(h, node)}")
        await publisher
        await asyncio.to_thread(cluster.wait_in_sync, 120.0)
    assert kills >= max(1, scale.broker_kills // 2), (
        f"only {kills} of {scale.broker_kills} kills hit work"
    )
    _survived(consumer, h, fault)
    return kills


def coordinator_kills(scale: Scale, cluster: KafkaCluster) -> Scenario:
    """Under load, the node coordinating the consumer's group (as the group's FindCoordinator
    answers) is SIGKILLed and started again `broker_kills` times: heartbeats, joins and
    offset commits must find the new coordinator by themselves."""
    pairs = stream(scale, seed=707)

    async def coordinator(h: Harness) -> tuple[int, str]:
        return await group_coordinator(h.settings), "the group's coordinator"

    async def moved(h: Harness, _node: int) -> str:
        return f"the group's coordinator is node {await group_coordinator(h.settings)}"

    async def drive(h: Harness) -> int:
        return await _kill_under_load(
            h, cluster, pairs, scale, "coordinator-kill", coordinator, after=moved
        )

    return Scenario("coordinator-kill", pairs, drive, settings=dict(CLUSTER_SETTINGS))


# A third of the stream dead-lettered: every batch in flight has letters to publish.
LETTER_SHARE = 0.3


def dead_letter_leader_kills(scale: Scale, cluster: KafkaCluster) -> Scenario:
    """A stream with many bad records; whenever letters are being published, the node leading
    most of the dead-letter topic's partitions is SIGKILLed and started again. Every letter
    must be on the dead-letter topic afterwards (a letter published twice is counted, not
    failed: the batch is written again after a refused send)."""
    spec = LabelledSpec(
        events=scale.events,
        products=scale.products,
        seed=808,
        bad_share=LETTER_SHARE,
        max_record_bytes=MAX_RECORD_BYTES,
    )
    pairs = list(generate_records(spec))

    async def dlq_leader(h: Harness) -> tuple[int, str]:
        letters = await h.end_offsets(h.settings.kafka_dlq_topic)
        node, led = busiest_leader(cluster, h.settings.kafka_dlq_topic)
        return node, f"leading dead-letter partitions {led}, {letters} letters written"

    async def drive(h: Harness) -> int:
        return await _kill_under_load(h, cluster, pairs, scale, "dlq-leader-kill", dlq_leader)

    return Scenario("dlq-leader-kill", pairs, drive, settings=dict(CLUSTER_SETTINGS))


def rolling_restart(scale: Scale, cluster: KafkaCluster) -> Scenario:
    """Under load, each node in turn is stopped cleanly (SIGTERM: a controlled shutdown moves
    its leaderships first) and started again, the next only once every partition is led and
    fully in sync. Nothing lost or doubled, and no rebalance: the consumer keeps the one
    assignment it got at the start."""
    pairs = stream(scale, seed=909)
    publish_s = 2 * scale.publish_s

    async def drive(h: Harness) -> int:
        consumer = h.consumer()
        publisher = asyncio.create_task(h.publish(pairs, publish_s))
        await _wait_assigned(consumer)
        restarts = 0
        async with readiness_honest(consumer, "the rolling restart"):
            for node in cluster.nodes:
                await asyncio.to_thread(cluster.wait_in_sync, 120.0)
                stored = await h.wait_in_flight(published=publisher)
                if stored is None:
                    break
                coordinator = await group_coordinator(h.settings)
                started = time.monotonic()
                await asyncio.to_thread(cluster.stop, node.id)
                h.fault_done(stored, recovered_past=len(h.positions) - 1)
                stopped = time.monotonic()
                await asyncio.to_thread(cluster.start, node.id)
                synced = await asyncio.to_thread(cluster.wait_in_sync, 120.0)
                restarts += 1
                print(
                    f"rolling-restart: node {node.id} (the group's coordinator: "
                    f"node {coordinator}) "
                    f"stopped in {stopped - started:.1f}s, back and in sync "
                    f"{time.monotonic() - stopped:.1f}s later (in sync after {synced:.1f}s)"
                )
            await publisher
        assert restarts == len(cluster.nodes), (
            f"only {restarts} of {len(cluster.nodes)} nodes restarted with work in flight"
        )
        _survived(consumer, h, "the rolling restart")
        assigned, revoked = rebalances_seen(consumer)
        assert (assigned, revoked) == (1, 0), (
            f"the rolling restart rebalanced the group: {assigned} assignments, {revoked} "
            f"revocations (1 and 0 without a rebalance):\n{consumer.tail()}"
        )
        return restarts

    return Scenario("rolling-restart", pairs, drive, settings=dict(CLUSTER_SETTINGS))
