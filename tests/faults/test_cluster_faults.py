"""The group coordinator, the dead-letter topic's leader and every node in turn faulted on a
3-node Kafka cluster, at CI size, judged by the independent model as every fault scenario."""

from __future__ import annotations

from pathlib import Path

from tests.faults import cluster as scenarios
from tests.faults.scenarios import CI, run_checked
from tests.support.kafka_cluster import KafkaCluster
from tests.support.services import PostgresEndpoint


async def test_group_coordinator_killed_under_load(
    pg: PostgresEndpoint, cluster: KafkaCluster, names: dict[str, str], tmp_path: Path
) -> None:
    scenario = scenarios.coordinator_kills(CI, cluster)
    await run_checked(scenario, pg, cluster.bootstrap, names, tmp_path, CI.catch_up_s)


async def test_dead_letter_leader_killed_while_letters_are_written(
    pg: PostgresEndpoint, cluster: KafkaCluster, names: dict[str, str], tmp_path: Path
) -> None:
    scenario = scenarios.dead_letter_leader_kills(CI, cluster)
    await run_checked(scenario, pg, cluster.bootstrap, names, tmp_path, CI.catch_up_s)


async def test_rolling_restart_without_a_rebalance(
    pg: PostgresEndpoint, cluster: KafkaCluster, names: dict[str, str], tmp_path: Path
) -> None:
    scenario = scenarios.rolling_restart(CI, cluster)
    await run_checked(scenario, pg, cluster.bootstrap, names, tmp_path, CI.catch_up_s)
