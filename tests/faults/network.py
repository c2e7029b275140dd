"""Network faults between the service and each of PostgreSQL and Kafka, through a fault proxy
(tests/support/fault_proxy.py). For PostgreSQL the service's POSTGRES_HOST/PORT name the proxy
in front of the shared server (untouched); for Kafka a broker of the test's own advertises the
proxy's port on the listener the service uses. The harness reaches both directly.

- `pg-latency`: 200 ms added each way for the whole run, under load.
- `pg-partition`: every connection black-holed and new ones unanswered for longer than
  STALL_TIMEOUT_S, then healed; /health/ready must say 503 while it lasts, 200 after.
- `pg-half-open`: the server's replies dropped (statements, COMMITs included, are applied and
  their answers lost) for a while, then healed: the service must notice by itself.
- `pg-bandwidth`: each connection limited to a trickle for the whole run.
- `kafka-latency`: 200 ms added each way between the service and the broker.
- `kafka-partition`: one of two members cut from the broker for longer than the session
  timeout (its partitions go to the other), then healed: it must rejoin and go on.
- `kafka-half-open`: the broker's replies dropped for a while, then healed.

Each is judged by the independent model (lost, doubled, mismatched = 0), with the recovery
time (from the heal) and the longest time without progress printed.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from service.config.settings import Settings
from tests.faults.harness import Harness, Outcome, run_scenario
from tests.faults.scenarios import MAX_RECORD_BYTES, Scenario, stream
from tests.support.brokers import free_port, throwaway_broker
from tests.support.consumer import ConsumerProcess
from tests.support.fault_proxy import Direction, FaultProxy, fault_proxy
from tests.support.scrape import get


@dataclass(frozen=True)
class NetworkScale:
    events: int
    products: int
    publish_s: float
    fault_s: float  # how long a partition or half-open fault lasts (> STALL_TIMEOUT_S)
    catch_up_s: float
    # pg-bandwidth's limit, bytes/s per connection and direction. A link carries about 1 KB
    # per event (statements and replies): at 64 KiB/s a million events would need over four
    # hours. 64 KiB/s is narrow enough that batches outlast POSTGRES_TIMEOUT_S and must be
    # split; 1 MiB/s still binds the service (a million events in about 20 minutes).
    bandwidth: int


CI = NetworkScale(
    events=8_000, products=300, publish_s=20.0, fault_s=12.0, catch_up_s=150.0, bandwidth=64 << 10
)
FULL = NetworkScale(
    events=1_000_000,
    products=20_000,
    publish_s=90.0,
    fault_s=30.0,
    # 200 ms each way to PostgreSQL: about 430 events/s (a dozen round trips a transaction),
    # so a million events take about 40 minutes.
    catch_up_s=3600.0,
    bandwidth=1 << 20,
)

LATENCY_S = 0.2
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


async def until_ready(url: str, timeout: float) -> float:
    """Wait until /health/ready answers 200; the seconds it took."""
    started = time.monotonic()
    while (status := await _ready(url)) != 200:
        assert time.monotonic() - started < timeout, (
            f"/health/ready still {status} after {timeout}s"
        )
        await asyncio.sleep(0.5)
    return time.monotonic() - started


def steady(name: str, scale: NetworkScale, proxy: FaultProxy, seed: int) -> Scenario:
    """A toxic set on the proxy for the whole run (latency or bandwidth)."""
    pairs = stream(scale, seed)

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
    proxy.bandwidth = scale.bandwidth
    return steady("pg-bandwidth", scale, proxy, seed=912)


def partition(scale: NetworkScale, proxy: FaultProxy) -> Scenario:
    """Partitioned for `fault_s` (> STALL_TIMEOUT_S) under load, then healed. Readiness is
    asked all along: 503 from STALL_TIMEOUT_S into the partition to its end, 200 again within
    the recovery."""
    pairs = stream(scale, seed=913)

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
        took = await until_ready(url, 90.0)
        print(f"pg-partition: ready again {took:.1f}s after healing")
        await publisher
        assert consumer.starts == 1 and consumer.alive(), consumer.tail()
        return 1

    return Scenario("pg-partition", pairs, drive, settings=dict(SETTINGS))


def half_open(scale: NetworkScale, proxy: FaultProxy) -> Scenario:
    """The server's replies dropped for `fault_s` under load, then healed: the server applies
    what it is sent, COMMITs included, and the service hears nothing back."""
    return _half_open("pg-half-open", "to_client", scale, proxy, seed=914)


def half_open_requests(scale: NetworkScale, proxy: FaultProxy) -> Scenario:
    """The service's bytes dropped for `fault_s` under load, then healed: statements, COMMITs
    included, never reach the server, which keeps each transaction open, its locks held."""
    return _half_open("pg-half-open-requests", "to_server", scale, proxy, seed=915)


def _half_open(
    name: str,
    direction: Direction,
    scale: NetworkScale,
    proxy: FaultProxy,
    seed: int,
    kafka: bool = False,
) -> Scenario:
    """`direction` of every connection through `proxy` (to PostgreSQL, or with `kafka` to the
    broker) dropped for `fault_s` under load, then healed; the one consumer goes on by
    itself."""
    pairs = stream(scale, seed=seed)

    async def drive(h: Harness) -> int:
        consumer = h.consumer(settings=_through(h, proxy) if kafka else None)
        publisher = asyncio.create_task(h.publish(pairs, scale.publish_s))
        stored = await h.wait_in_flight(published=publisher)
        assert stored is not None, "everything was applied before the fault"
        proxy.half_open(direction)
        await asyncio.sleep(scale.fault_s)
        await heal(h, proxy, stored)
        print(f"{name}: {proxy.dead_connections} connections left half-open")
        await publisher
        assert consumer.starts == 1 and consumer.alive(), consumer.tail()
        return 1

    return Scenario(name, pairs, drive, settings=dict(KAFKA_SETTINGS if kafka else SETTINGS))


# -- Kafka -------------------------------------------------------------------------------------
# Kafka clients connect to the addresses the broker advertises, so the proxy must be one of
# them: a broker of the test's own with a second listener, SERVICE, advertised at the proxy's
# port. The service bootstraps there and only ever reaches the broker through the proxy; the
# harness (publisher, checks) uses the direct PLAINTEXT listener and never meets the faults.
SERVICE_LISTENER = "SERVICE"
SESSION_TIMEOUT_MS = 6_000
KAFKA_SETTINGS: dict[str, object] = {
    "max_record_bytes": MAX_RECORD_BYTES,
    "kafka_session_timeout_ms": SESSION_TIMEOUT_MS,
    "stall_timeout_s": STALL_TIMEOUT_S,
    "progress_check_interval_s": 1.0,
}


@contextlib.contextmanager
def proxied_broker() -> Iterator[tuple[str, FaultProxy]]:
    """A single-node broker of the test's own whose SERVICE listener is advertised at a fault
    proxy's port: yields the direct bootstrap (for the harness) and the proxy (the service's
    bootstrap is 127.0.0.1:proxy.port)."""
    port, service_port, controller = free_port(), free_port(), free_port()
    with fault_proxy(service_port) as proxy:
        properties = {
            "listeners": f"PLAINTEXT://127.0.0.1:{port},"
            f"{SERVICE_LISTENER}://127.0.0.1:{service_port},CONTROLLER://127.0.0.1:{controller}",
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{port},"
            f"{SERVICE_LISTENER}://127.0.0.1:{proxy.port},CONTROLLER://127.0.0.1:{controller}",
            "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,"
            f"{SERVICE_LISTENER}:PLAINTEXT",
        }
        with throwaway_broker(properties, port=port, controller_port=controller) as broker:
            yield broker.bootstrap, proxy


def _through(h: Harness, proxy: FaultProxy) -> Settings:
    """The scenario's settings with the broker reached through `proxy`."""
    return h.settings.model_copy(update={"kafka_bootstrap_servers": f"127.0.0.1:{proxy.port}"})


def kafka_latency(scale: NetworkScale, proxy: FaultProxy) -> Scenario:
    pairs = stream(scale, seed=921)

    async def drive(h: Harness) -> int:
        proxy.latency_s = LATENCY_S
        consumer = h.consumer(settings=_through(h, proxy))
        await h.publish(pairs, scale.publish_s)
        assert consumer.starts == 1 and consumer.alive(), consumer.tail()
        return 0

    return Scenario("kafka-latency", pairs, drive, settings=dict(KAFKA_SETTINGS))


def kafka_partition(scale: NetworkScale, proxy: FaultProxy) -> Scenario:
    """Two members of the group: one through the proxy, one direct. The proxied one is cut
    from Kafka (not from PostgreSQL) for longer than the session timeout, under load: the
    group gives its partitions to the other, which goes on from the stored positions while the
    cut one may still hold fetched records. Healed, it must rejoin and take partitions again;
    nothing lost or doubled (a write for a partition it no longer owns would double)."""
    pairs = stream(scale, seed=922)

    async def drive(h: Harness) -> int:
        cut = h.consumer("proxied", settings=_through(h, proxy))
        url = await asyncio.to_thread(cut.http_url)
        direct = h.consumer("direct")
        publisher = asyncio.create_task(h.publish(pairs, scale.publish_s))
        stored = await h.wait_in_flight(published=publisher)
        assert stored is not None, "everything was applied before the partition"
        await asyncio.to_thread(direct.wait_for_log, ASSIGNED)  # both members own partitions
        await until_ready(url, 60.0)
        assigned_before = _assignments(cut)
        proxy.partition()
        started = time.monotonic()
        late: list[tuple[float, int]] = []
        while (elapsed := time.monotonic() - started) < max(
            scale.fault_s, 2 * SESSION_TIMEOUT_MS / 1000
        ):
            status = await _ready(url)
            if elapsed > KAFKA_PROBE_S:
                late.append((elapsed, status))
            await asyncio.sleep(0.5)
        await heal(h, proxy, stored)
        print(f"kafka-partition: {proxy.dead_connections} connections left black-holed")
        assert late and all(status == 503 for _, status in late), (
            f"readiness of the cut member during the partition: {late}"
        )
        healed = time.monotonic()
        while _assignments(cut) <= assigned_before or await _ready(url) != 200:
            assert time.monotonic() - healed < 120, (
                f"the cut member did not rejoin within 120s:\n{cut.tail()}"
            )
            await asyncio.sleep(0.5)
        print(f"kafka-partition: rejoined and ready {time.monotonic() - healed:.1f}s after healing")
        await publisher
        for member in (cut, direct):
            assert member.starts == 1 and member.alive(), member.tail()
        return 1

    return Scenario("kafka-partition", pairs, drive, settings=dict(KAFKA_SETTINGS))


# Readiness asks Kafka with a 3 s timeout (service/health/checks.py): past it, a cut member
# must say it is not ready.
KAFKA_PROBE_S = 5.0


ASSIGNED = "partitions assigned:"  # service/positions/rebalance.py


def _assignments(consumer: ConsumerProcess) -> int:
    """How many times the member logged a new assignment."""
    return consumer.log_path.read_text(errors="replace").count(ASSIGNED)


def kafka_half_open(scale: NetworkScale, proxy: FaultProxy) -> Scenario:
    """The broker's replies dropped for `fault_s` under load (requests, heartbeats included,
    still reach it), then healed: the consumer must notice by itself and go on."""
    return _half_open("kafka-half-open", "to_client", scale, proxy, seed=923, kafka=True)


def kafka_half_open_requests(scale: NetworkScale, proxy: FaultProxy) -> Scenario:
    """The consumer's requests dropped for `fault_s` under load (heartbeats included: the
    group drops the member after its session timeout), then healed: it must rejoin by itself
    and go on from the positions in PostgreSQL."""
    return _half_open("kafka-half-open-requests", "to_server", scale, proxy, seed=924, kafka=True)
