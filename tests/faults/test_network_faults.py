"""Network faults between the service and PostgreSQL at CI size (tests/faults/network.py):
the service reaches the shared PostgreSQL through a fault proxy of the test's own, which is
slowed, cut, half-opened or narrowed; the server is never restarted. `python -m
tests.faults.full --only pg-latency,pg-partition,pg-half-open,pg-bandwidth` runs them at
full size."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import make_settings
from tests.faults import network
from tests.faults.scenarios import Scenario
from tests.support.fault_proxy import FaultProxy, fault_proxy
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
    [network.latency, network.partition, network.half_open, network.bandwidth],
    ids=["latency", "partition", "half-open", "bandwidth"],
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
