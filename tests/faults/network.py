"""Network faults between the service and PostgreSQL, through a fault proxy
(tests/support/fault_proxy.py) in front of the database: the service's POSTGRES_HOST/PORT
name the proxy, the harness reads the database directly, the server itself is untouched.

- `pg-latency`: 200 ms added each way for the whole run, under load.
- `pg-partition`: every connection black-holed and new ones unanswered for longer than
  STALL_TIMEOUT_S, then healed; /health/ready must say 503 while it lasts, 200 after.
- `pg-half-open`: the server's replies dropped (statements, COMMITs included, are applied and
  their answers lost) for a while, then healed: the service must notice by itself.
- `pg-bandwidth`: each connection limited to a trickle for the whole run.

Each is judged by the independent model (lost, doubled, mismatched = 0), with the recovery
time (from the heal) and the longest time without progress printed.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from pathlib import Path

from service.config.settings import Settings
from tests.faults.harness import Harness, Outcome, Pair, run_scenario
from tests.faults.scenarios import MAX_RECORD_BYTES, Scale, Scenario, stream
from tests.support.fault_proxy import FaultProxy
from tests.support.scrape import get


@dataclass(frozen=True)
class NetworkScale:
    events: int
    products: int
    publish_s: float
    fault_s: float  # how long a partition or half-open fault lasts (> STALL_TIMEOUT_S)
    catch_up_s: float


CI = NetworkScale(events=8_000, products=300, publish_s=20.0, fault_s=12.0, catch_up_s=150.0)
FULL = NetworkScale(
    events=1_000_000, products=20_000, publish_s=90.0, fault_s=30.0, catch_up_s=1800.0
)

LATENCY_S = 0.2
BANDWIDTH = 64 * 1024  # bytes/s per connection and direction
STALL_TIMEOUT_S = 5.0
# A statement unanswered this long drops its connection (POSTGRES_TIMEOUT_S): shorter than the
# default so a CI run recovers in seconds; the mechanism is the same.
POSTGRES_TIMEOUT_S = 4.0
SETTINGS: dict[str, object] = {
    "max_record_bytes": MAX_RECORD_BYTES,
    "stall_timeout_s": STALL_TIMEOUT_S,
    "progress_check_interval_s": 1.0,
    "postgres_timeout_s": POSTGRES_TIMEOUT_S,
}


def _stream(scale: NetworkScale, seed: int) -> list[Pair]:
    return stream(
        Scale(
            events=scale.events,
            products=scale.products,
            kills=0,
            postgres_restarts=0,
            kafka_restarts=0,
            publish_s=scale.publish_s,
            flood=0,
            catch_up_s=scale.catch_up_s,
            broker_kills=0,
        ),
        seed,
    )


def longest_without_progress(h: Harness) -> float:
    """The longest time the stored position stood still while records waited (seconds)."""
    longest, since, last = 0.0, None, -1
    for at, stored in h.progress:
        if stored != last:
            if since is not None:
                longest = max(longest, at - since)
            since, last = at, stored
    return longest


async def run_judged(
    scenario: Scenario, settings: Settings, database_url: str, log_dir: Path, catch_up_s: float
) -> Outcome:
    """run_scenario, printing the longest time without progress over the whole run."""
    seen: list[Harness] = []

    async def drive(h: Harness) -> int:
        seen.append(h)
        return await scenario.drive(h)

    outcome = await run_scenario(
        scenario.name, settings, database_url, log_dir, scenario.pairs, drive, catch_up_s
    )
    if seen:
        longest = longest_without_progress(seen[0])
        print(f"{scenario.name}: longest time without progress {longest:.1f}s", flush=True)
    return outcome


async def heal(h: Harness, proxy: FaultProxy, stored: int) -> None:
    """Heal `proxy`; the fault (hit at `stored`) has recovered once progress passes where the
    stored position stands now."""
    proxy.heal()
    h.fault_done(stored, recovered_past=await h.stored_progress())


async def _ready(url: str) -> int:
    status, _ = await get(f"{url}/health/ready")
    return status


def steady(name: str, scale: NetworkScale, proxy: FaultProxy, seed: int) -> Scenario:
    """A toxic set on the proxy for the whole run (latency or bandwidth)."""
    pairs = _stream(scale, seed)

    async def drive(h: Harness) -> int:
        consumer = h.consumer()
        await h.publish(pairs, scale.publish_s)
        assert consumer.starts == 1 and consumer.alive(), consumer.tail()
        return 0

    return Scenario(name, pairs, drive, settings=dict(SETTINGS))


def latency(scale: NetworkScale, proxy: FaultProxy) -> Scenario:
    proxy.latency_s = LATENCY_S
    return steady("pg-latency", scale, proxy, seed=911)


def bandwidth(scale: NetworkScale, proxy: FaultProxy) -> Scenario:
    proxy.bandwidth = BANDWIDTH
    return steady("pg-bandwidth", scale, proxy, seed=912)


def partition(scale: NetworkScale, proxy: FaultProxy) -> Scenario:
    """Partitioned for `fault_s` (> STALL_TIMEOUT_S) under load, then healed. Readiness is
    asked all along: 503 from STALL_TIMEOUT_S into the partition to its end, 200 again within
    the recovery."""
    pairs = _stream(scale, seed=913)

    async def drive(h: Harness) -> int:
        consumer = h.consumer()
        url = await asyncio.to_thread(consumer.http_url)
        publisher = asyncio.create_task(h.publish(pairs, scale.publish_s))
        stored = await h.wait_in_flight(published=publisher)
        assert stored is not None, "everything was applied before the partition"
        assert await _ready(url) == 200, "not ready before the fault"
        proxy.partition()
        cut = time.monotonic()
        late: list[tuple[float, int]] = []  # readiness past the stall timeout
        while (elapsed := time.monotonic() - cut) < scale.fault_s:
            status = await _ready(url)
            if elapsed > STALL_TIMEOUT_S + 1.0:
                late.append((elapsed, status))
            await asyncio.sleep(0.5)
        await heal(h, proxy, stored)
        print(f"pg-partition: {proxy.dead_connections} connections left black-holed")
        assert late and all(status == 503 for _, status in late), (
            f"readiness during the partition, past STALL_TIMEOUT_S: {late}"
        )
        healed = time.monotonic()
        while (status := await _ready(url)) != 200:
            assert time.monotonic() - healed < 90, f"still {status} 90s after healing"
            await asyncio.sleep(0.5)
        print(f"pg-partition: ready again {time.monotonic() - healed:.1f}s after healing")
        await publisher
        assert consumer.starts == 1 and consumer.alive(), consumer.tail()
        return 1

    return Scenario("pg-partition", pairs, drive, settings=dict(SETTINGS))


def half_open(scale: NetworkScale, proxy: FaultProxy) -> Scenario:
    """The server's replies dropped for `fault_s` under load, then healed: the server applies
    what it is sent, COMMITs included, and the service hears nothing back."""
    pairs = _stream(scale, seed=914)

    async def drive(h: Harness) -> int:
        consumer = h.consumer()
        publisher = asyncio.create_task(h.publish(pairs, scale.publish_s))
        stored = await h.wait_in_flight(published=publisher)
        assert stored is not None, "everything was applied before the fault"
        proxy.half_open("to_client")
        await asyncio.sleep(scale.fault_s)
        await heal(h, proxy, stored)
        print(f"pg-half-open: {proxy.dead_connections} connections left half-open")
        await publisher
        assert consumer.starts == 1 and consumer.alive(), consumer.tail()
        return 1

    return Scenario("pg-half-open", pairs, drive, settings=dict(SETTINGS))
