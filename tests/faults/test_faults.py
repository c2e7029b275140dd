"""Exactly-once under real faults, at CI size: each scenario's final table, processed ids and
dead-letter topic must equal the oracle's, row by row. `python -m tests.faults.full` runs the
same scenarios at full size."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.faults import scenarios
from tests.faults.harness import StackControl
from tests.support.kafka_cluster import KafkaCluster
from tests.support.services import PostgresEndpoint

SCALE = scenarios.CI


async def _run(
    scenario: scenarios.Scenario,
    pg: PostgresEndpoint,
    kafka: str,
    names: dict[str, str],
    tmp_path: Path,
) -> None:
    await scenarios.run_checked(scenario, pg, kafka, names, tmp_path, SCALE.catch_up_s)


@pytest.fixture
def stack(pg: PostgresEndpoint, kafka: str) -> StackControl:
    control = StackControl((pg.host, pg.port), kafka)
    control.check()  # before anything runs: never restart services the test did not start
    return control


async def test_sigkill_at_random_moments(
    pg: PostgresEndpoint, kafka: str, names: dict[str, str], tmp_path: Path
) -> None:
    await _run(scenarios.kills(SCALE), pg, kafka, names, tmp_path)


async def test_postgres_restarts_while_consuming(
    pg: PostgresEndpoint, kafka: str, names: dict[str, str], tmp_path: Path, stack: StackControl
) -> None:
    await _run(scenarios.postgres_restarts(SCALE, stack), pg, kafka, names, tmp_path)


async def test_kafka_restarts_while_consuming(
    pg: PostgresEndpoint, kafka: str, names: dict[str, str], tmp_path: Path, stack: StackControl
) -> None:
    await _run(scenarios.kafka_restarts(SCALE, stack), pg, kafka, names, tmp_path)


async def test_rebalances_in_a_group_of_three(
    pg: PostgresEndpoint, kafka: str, names: dict[str, str], tmp_path: Path
) -> None:
    await _run(scenarios.rebalances(SCALE), pg, kafka, names, tmp_path)


async def test_a_flood_of_hostile_records(
    pg: PostgresEndpoint, kafka: str, names: dict[str, str], tmp_path: Path
) -> None:
    await _run(scenarios.flood(SCALE), pg, kafka, names, tmp_path)


async def test_partition_leaders_killed_in_a_three_broker_cluster(
    pg: PostgresEndpoint, cluster: KafkaCluster, names: dict[str, str], tmp_path: Path
) -> None:
    await _run(scenarios.broker_kills(SCALE, cluster), pg, cluster.bootstrap, names, tmp_path)
