"""Failover of the service's database at CI size (tests/faults/failover.py): a primary with a
real asynchronous replica, behind a forwarder the test repoints. Each test runs its own pair
of servers; the shared PostgreSQL is not touched. `python -m tests.faults.full --only
failover,failover-restart,switchover` runs them at full size."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.faults import failover, letters_in_flight, read_only
from tests.faults.scenarios import run_checked
from tests.support.replicated_postgres import ReplicatedPostgres, replicated_postgres

SCALE = failover.CI


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[ReplicatedPostgres]:
    with replicated_postgres(tmp_path) as servers:
        yield servers


async def test_async_replica_failover_with_lost_commits(
    pair: ReplicatedPostgres, kafka: str, names: dict[str, str], tmp_path: Path
) -> None:
    scenario = failover.lost_commits(SCALE, pair)
    await run_checked(scenario, pair.endpoint, kafka, names, tmp_path, SCALE.catch_up_s)


async def test_failover_with_the_service_restarted_while_the_database_is_down(
    pair: ReplicatedPostgres, kafka: str, names: dict[str, str], tmp_path: Path
) -> None:
    scenario = failover.lost_commits(SCALE, pair, restart=True)
    await run_checked(scenario, pair.endpoint, kafka, names, tmp_path, SCALE.catch_up_s)


async def test_clean_switchover(
    pair: ReplicatedPostgres, kafka: str, names: dict[str, str], tmp_path: Path
) -> None:
    scenario = failover.switchover(SCALE, pair)
    await run_checked(scenario, pair.endpoint, kafka, names, tmp_path, SCALE.catch_up_s)


async def test_failover_under_sustained_load(
    pair: ReplicatedPostgres, kafka: str, names: dict[str, str], tmp_path: Path
) -> None:
    scenario = failover.under_load(SCALE, pair)
    await run_checked(scenario, pair.endpoint, kafka, names, tmp_path, SCALE.catch_up_s)


async def test_a_database_that_comes_back_read_only_before_its_promotion(
    pair: ReplicatedPostgres, kafka: str, names: dict[str, str], tmp_path: Path
) -> None:
    scenario = read_only.read_only(SCALE, pair)
    await run_checked(scenario, pair.endpoint, kafka, names, tmp_path, SCALE.catch_up_s)


async def test_failover_while_dead_letters_wait_for_their_acknowledgements(
    pair: ReplicatedPostgres, kafka: str, names: dict[str, str], tmp_path: Path
) -> None:
    scenario = letters_in_flight.letters_in_flight(SCALE, pair)
    await run_checked(scenario, pair.endpoint, kafka, names, tmp_path, SCALE.catch_up_s)
