"""Network faults between the service and each of PostgreSQL and Kafka at CI size
(tests/faults/network.py): the service reaches the shared PostgreSQL, or a broker of the
test's own, through a fault proxy of the test's, which is slowed, cut, half-opened or
narrowed; no server is restarted. `python -m tests.faults.full --only pg-latency,...` runs
them at full size."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from service.kafka.topics import ensure_topics
from tests.conftest import make_settings
from tests.faults import network
from tests.faults.scenarios import Scenario
from tests.support.consumer import ConsumerProcess
from tests.support.fault_proxy import FaultProxy, fault_proxy
from tests.support.scrape import get
from tests.support.services import PostgresEndpoint

SCALE = network.CI


@pytest.fixture
def proxy(pg: PostgresEndpoint) -> Iterator[FaultProxy]:
    with fault_proxy(pg.port) as running:
        yield running


async def run_through_proxy(
    scenario: Scenario,
    pg: PostgresEndpoint,
    proxy: FaultProxy,
    kafka: str,
    names: dict[str, str],
    log_dir: Path,
) -> None:
    """The service connects through `proxy`; the harness reads `pg` directly."""
    through = dataclasses.replace(pg, host="127.0.0.1", port=proxy.port)
    settings = make_settings(
        through, kafka, names, kafka_topic_partitions=scenario.partitions, **scenario.settings
    )
    outcome = await network.run_judged(scenario, settings, pg.url(), log_dir, SCALE.catch_up_s)
    print(outcome.line())
    assert outcome.ok and not outcome.problems, outcome.line() + "\n" + "\n".join(outcome.problems)


Build = Callable[[network.NetworkScale, FaultProxy], Scenario]


@pytest.mark.parametrize(
    "build",
    [
        network.latency,
        network.partition,
        network.half_open,
        network.half_open_requests,
        network.bandwidth,
    ],
    ids=["latency", "partition", "half-open", "half-open-requests", "bandwidth"],
)
async def test_postgres_network_fault(
    build: Build,
    pg: PostgresEndpoint,
    proxy: FaultProxy,
    kafka: str,
    names: dict[str, str],
    tmp_path: Path,
) -> None:
    scenario = build(SCALE, proxy)
    await run_through_proxy(scenario, pg, proxy, kafka, names, tmp_path)


@pytest.fixture
def broker() -> Iterator[tuple[str, FaultProxy]]:
    """A broker of the test's own, reached by the service only through a fault proxy."""
    with network.proxied_broker() as running:
        yield running


@pytest.mark.parametrize(
    "build",
    [
        network.kafka_latency,
        network.kafka_partition,
        network.kafka_half_open,
        network.kafka_half_open_requests,
    ],
    ids=["latency", "partition", "half-open", "half-open-requests"],
)
async def test_kafka_network_fault(
    build: Build,
    pg: PostgresEndpoint,
    broker: tuple[str, FaultProxy],
    names: dict[str, str],
    tmp_path: Path,
) -> None:
    direct, proxy = broker
    scenario = build(SCALE, proxy)
    settings = make_settings(
        pg, direct, names, kafka_topic_partitions=scenario.partitions, **scenario.settings
    )
    outcome = await network.run_judged(scenario, settings, pg.url(), tmp_path, SCALE.catch_up_s)
    print(outcome.line())
    assert outcome.ok and not outcome.problems, outcome.line() + "\n" + "\n".join(outcome.problems)


async def test_kafka_readiness_passes_again_once_a_partition_heals(
    pg: PostgresEndpoint, broker: tuple[str, FaultProxy], names: dict[str, str], tmp_path: Path
) -> None:
    """A partition leaves the service's connections to the broker black-holed for good (their
    bytes are gone); readiness must say 503 while it lasts and 200 again once new
    connections pass, not keep asking a dead connection."""
    direct, proxy = broker
    await ensure_topics(make_settings(pg, direct, names))
    service = ConsumerProcess(
        make_settings(pg, f"127.0.0.1:{proxy.port}", names, **network.KAFKA_SETTINGS), tmp_path
    )
    service.start()
    try:
        url = await asyncio.to_thread(service.http_url)
        await network.until_ready(url, 60.0)
        proxy.partition()
        await asyncio.sleep(network.KAFKA_PROBE_S + 3)
        status, body = await get(f"{url}/health/ready")
        assert status == 503 and "cannot reach Kafka" in body, body
        proxy.heal()
        took = await network.until_ready(url, 90.0)
        print(f"ready again {took:.1f}s after the partition healed")
        assert service.alive() and service.starts == 1, service.tail()
    finally:
        service.kill()
