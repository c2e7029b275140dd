"""Consumer processes frozen and replaced under load, at CI size: a replica paused past the
session timeout, and a storm of replicas joining and leaving. Only processes the test started
are signalled; the shared broker and PostgreSQL carry the test's own topics and tables."""

from __future__ import annotations

from pathlib import Path

from tests.faults import membership, scenarios
from tests.support.services import PostgresEndpoint

SCALE = scenarios.CI
# A minute of the storm at full size; CI keeps it shorter to stay within a few minutes.
STORM_S = 40.0


async def test_a_paused_replica_writes_nothing_for_partitions_it_lost(
    pg: PostgresEndpoint, kafka: str, names: dict[str, str], tmp_path: Path
) -> None:
    scenario = membership.pause(SCALE)
    await scenarios.run_checked(scenario, pg, kafka, names, tmp_path, SCALE.catch_up_s)


async def test_a_storm_of_replicas_joining_and_leaving(
    pg: PostgresEndpoint, kafka: str, names: dict[str, str], tmp_path: Path
) -> None:
    scenario = membership.storm(SCALE, STORM_S)
    await scenarios.run_checked(scenario, pg, kafka, names, tmp_path, SCALE.catch_up_s)
