"""The six fault scenarios, at any scale."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from testbed.events import LabelledSpec, generate_records
from tests.conftest import make_settings
from tests.faults import bad_inputs
from tests.faults.harness import Harness, Pair, StackControl, run_scenario
from tests.support.kafka_cluster import KafkaCluster, busiest_leader
from tests.support.services import PostgresEndpoint


@dataclass(frozen=True)
class Scale:
    events: int
    products: int
    kills: int
    postgres_restarts: int
    kafka_restarts: int
    publish_s: float
    flood: int
    catch_up_s: float
    broker_kills: int


CI = Scale(
    events=20_000,
    products=500,
    kills=10,
    postgres_restarts=2,
    kafka_restarts=2,
    publish_s=25.0,
    flood=400,
    catch_up_s=240.0,
    broker_kills=2,
)
FULL = Scale(
    events=1_000_000,
    products=20_000,
    kills=20,
    postgres_restarts=5,
    kafka_restarts=3,
    publish_s=90.0,
    flood=5_000,
    catch_up_s=1800.0,
    broker_kills=10,
)

Drive = Callable[[Harness], Awaitable[int]]


@dataclass
class Scenario:
    name: str
    pairs: list[Pair]
    drive: Drive
    partitions: int = 6
    settings: dict[str, object] = field(
        default_factory=lambda: {"max_record_bytes": MAX_RECORD_BYTES}
    )


# Records over this size are dead-lettered unparsed: the streams carry a few just over it.
MAX_RECORD_BYTES = 16_384


async def run_checked(
    scenario: Scenario,
    pg: PostgresEndpoint,
    kafka: str,
    names: dict[str, str],
    log_dir: Path,
    catch_up_s: float,
) -> None:
    """Run `scenario` at CI size against `pg` and `kafka`; fail unless the outcome equals the
    oracle's and no problem was seen."""
    settings = make_settings(
        pg, kafka, names, kafka_topic_partitions=scenario.partitions, **scenario.settings
    )
    outcome = await run_scenario(
        scenario.name, settings, pg.url(), log_dir, scenario.pairs, scenario.drive, catch_up_s
    )
    print(outcome.line())
    assert outcome.ok and not outcome.problems, outcome.line() + "\n" + "\n".join(outcome.problems)


class StreamSize(Protocol):
    """What a scenario's stream is made of (Scale and the network and failover scales)."""

    @property
    def events(self) -> int: ...

    @property
    def products(self) -> int: ...


def stream(scale: StreamSize, seed: int) -> list[Pair]:
    spec = LabelledSpec(
        events=scale.events, products=scale.products, seed=seed, max_record_bytes=MAX_RECORD_BYTES
    )
    return list(generate_records(spec))


def kills(scale: Scale) -> Scenario:
    pairs = stream(scale, seed=101)

    async def drive(h: Harness) -> int:
        h.consumer()
        publisher = asyncio.create_task(h.publish(pairs, scale.publish_s))
        end = time.monotonic() + scale.publish_s
        kills = 0
        for remaining in range(scale.kills, 0, -1):
            # Spread the kills over what is left of the publishing window: each restart takes
            # a few seconds of it, and once everything is applied no kill can hit work.
            window = max(0.0, end - time.monotonic())
            await asyncio.sleep(h.rng.uniform(0.2, 0.8) * window / remaining)
            stored = await h.wait_in_flight(published=publisher)
            if stored is None:
                break
            h.consumers[-1].kill()  # SIGKILL at a random moment with work in flight
            h.fault_done(stored)
            h.consumer()
            kills += 1
        await publisher
        # A fast consumer may catch up before every planned kill found work in flight; most
        # must still have hit (each was followed by progress: see Harness.verify).
        assert kills >= max(1, scale.kills // 2), f"only {kills} of {scale.kills} kills hit work"
        return kills

    # The same replica restarting, as an orchestrator restarts it: with static membership it
    # takes its partitions back without waiting for the group's session timeout.
    return Scenario(
        "sigkill",
        pairs,
        drive,
        settings={"kafka_group_instance_id": "sink-0", "max_record_bytes": MAX_RECORD_BYTES},
    )


def _restarts(
    name: str,
    pairs: list[Pair],
    count: int,
    publish_s: float,
    restart: Callable[[], None],
    pause_publisher: bool,
) -> Scenario:
    """One consumer runs while a service is restarted `count` times at random moments."""

    async def drive(h: Harness) -> int:
        h.consumer()
        publisher = asyncio.create_task(h.publish(pairs, publish_s))
        end = time.monotonic() + publish_s
        restarts = 0
        for remaining in range(count, 0, -1):
            # Spread over what is left of the publishing window, as the kills are: a restart
            # takes seconds of it (a broker recovering its logs, more), and once everything
            # is applied no restart can hit work.
            window = max(0.0, end - time.monotonic())
            await asyncio.sleep(h.rng.uniform(0.2, 0.8) * window / remaining)
            stored = await h.wait_in_flight(published=publisher)
            if stored is None:
                break
            if pause_publisher:  # the test's own publisher waits; the consumer does not know
                async with h.gate:
                    await asyncio.to_thread(restart)
            else:
                await asyncio.to_thread(restart)
            h.fault_done(stored)
            restarts += 1
        await publisher
        assert restarts >= max(1, count // 2), f"only {restarts} of {count} restarts hit work"
        return restarts

    return Scenario(name, pairs, drive)


def postgres_restarts(scale: Scale, stack: StackControl) -> Scenario:
    return _restarts(
        "postgres",
        stream(scale, seed=202),
        scale.postgres_restarts,
        scale.publish_s,
        stack.restart_postgres,
        pause_publisher=False,
    )


def kafka_restarts(scale: Scale, stack: StackControl) -> Scenario:
    return _restarts(
        "kafka",
        stream(scale, seed=303),
        scale.kafka_restarts,
        scale.publish_s,
        stack.restart_kafka,
        pause_publisher=True,
    )


def rebalances(scale: Scale) -> Scenario:
    pairs = stream(scale, seed=404)

    async def drive(h: Harness) -> int:
        group = [h.consumer("member") for _ in range(3)]
        publisher = asyncio.create_task(h.publish(pairs, scale.publish_s))
        await asyncio.sleep(scale.publish_s / 3)
        stored = await h.wait_in_flight()
        group[1].kill()
        h.fault_done(stored)
        await asyncio.sleep(scale.publish_s / 3)
        stored = await h.wait_in_flight()
        h.consumer("member")
        h.fault_done(stored)
        await publisher
        return 2

    return Scenario("rebalance", pairs, drive, partitions=6)


def flood(scale: Scale) -> Scenario:
    good = list(
        generate_records(
            LabelledSpec(events=scale.events // 2, products=scale.products, seed=505, bad_share=0)
        )
    )
    bad = bad_inputs.collect(scale.flood)
    rng = random.Random(505)
    pairs: list[Pair] = list(good)
    for item in bad:  # hostile records at random places; good records keep their order
        pairs.insert(rng.randrange(len(pairs) + 1), item)

    async def drive(h: Harness) -> int:
        h.consumer()
        await h.publish(pairs, scale.publish_s / 2, chunk=100)
        return 0

    # The flood's own records near the broker's limit must reach the parser: default limit.
    return Scenario("flood", pairs, drive, settings={})


# Longer than the brokers' session timeout (9 s): the controller fences the killed node and
# moves the leadership of its partitions, as when a host is gone, not just slow.
BROKER_DOWN_S = 12.0


def broker_kills(scale: Scale, cluster: KafkaCluster) -> Scenario:
    """One consumer on a 3-node cluster (replication factor 3, min.insync.replicas=2) given
    the list of all three; under load, the node leading most of the input's partitions is
    SIGKILLed and started again, `broker_kills` times. The consumer is never restarted."""
    pairs = stream(scale, seed=606)
    publish_s = 2 * scale.publish_s  # each kill keeps a node away for BROKER_DOWN_S

    async def drive(h: Harness) -> int:
        consumer = h.consumer()
        publisher = asyncio.create_task(h.publish(pairs, publish_s))
        end = time.monotonic() + publish_s
        kills = 0
        for remaining in range(scale.broker_kills, 0, -1):
            # Every partition led and fully in sync before any fault: a second kill while a
            # replica catches up could leave a partition below min.insync.replicas.
            await asyncio.to_thread(cluster.wait_in_sync, 120.0)
            window = max(0.0, end - time.monotonic())
            await asyncio.sleep(h.rng.uniform(0.1, 0.4) * window / remaining)
            stored = await h.wait_in_flight(published=publisher)
            if stored is None:
                break
            victim, led = busiest_leader(cluster, h.settings.kafka_topic)
            await asyncio.to_thread(cluster.kill, victim)
            h.fault_done(stored)
            kills += 1
            print(f"broker-kill: node {victim} (leading partitions {led}) killed at {stored}")
            await asyncio.sleep(BROKER_DOWN_S)
            await asyncio.to_thread(cluster.start, victim)
        await publisher
        await asyncio.to_thread(cluster.wait_in_sync, 120.0)
        assert kills >= max(1, scale.broker_kills // 2), (
            f"only {kills} of {scale.broker_kills} kills hit work"
        )
        # The service rode the failovers out by itself: the one process it started still runs.
        assert h.consumers == [consumer] and consumer.starts == 1 and consumer.alive(), (
            f"the consumer did not survive the broker kills:\n{consumer.tail()}"
        )
        return kills

    return Scenario(
        "broker-kill",
        pairs,
        drive,
        settings={"kafka_replication_factor": 3, "max_record_bytes": MAX_RECORD_BYTES},
    )
