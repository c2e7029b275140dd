"""The fault scenarios at full size (1M events per scenario, 20 kills, ...).

    scripts/local-stack up && eval "$(scripts/local-stack env)"
    .venv/bin/python -m tests.faults.full                      # every scenario
    .venv/bin/python -m tests.faults.full --only sigkill,kafka --events 200000
    .venv/bin/python -m tests.faults.full --only failover,failover-restart,switchover
    .venv/bin/python -m tests.faults.full --only failover-load,read-only,letters-in-flight
    .venv/bin/python -m tests.faults.full --only coordinator-kill,dlq-leader-kill,rolling-restart
    .venv/bin/python -m tests.faults.full --only pg-partition,kafka-partition --events 100000

The failover scenarios run on a primary and replica of their own (tests/faults/failover.py),
not on the local stack's PostgreSQL. broker-kill, coordinator-kill, dlq-leader-kill and
rolling-restart each start a 3-node Kafka cluster of their own (tests/support/kafka_cluster.py)
for their run. The pg-* network scenarios put a fault proxy
(tests/support/fault_proxy.py) between the service and the local stack's PostgreSQL; the
kafka-* ones start a broker of their own that advertises a fault proxy
(tests/faults/network.py). Each also prints its longest time without progress.

Prints per scenario: events, kills or restarts, lost, doubled, dead-lettered, time to
recover; exits 1 if anything was lost, doubled or differs from the oracle.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import os
import sys
import tempfile
import uuid
from pathlib import Path

from testbed.run_database import drop_database, run_database
from tests.conftest import TEST_DATABASE, _recreate_database, alembic, make_settings
from tests.faults import cluster as cluster_faults
from tests.faults import failover, letters_in_flight, membership, network, read_only, scenarios
from tests.faults.harness import StackControl
from tests.support.fault_proxy import fault_proxy
from tests.support.kafka_cluster import KafkaCluster, kafka_cluster
from tests.support.replicated_postgres import ReplicatedPostgres, replicated_postgres
from tests.support.services import PostgresEndpoint

# One database per run: recreating a shared one (DROP ... WITH (FORCE)) would pull the tables
# from under another run's service mid-scenario.
DATABASE = run_database(f"{TEST_DATABASE}_faults")
# The scenarios run on a 3-node Kafka cluster of their own.
CLUSTER_SCENARIOS = ("broker-kill", "coordinator-kill", "dlq-leader-kill", "rolling-restart")
# A replica frozen past the session timeout this many times (the two take turns), and a
# minute of replicas joining and leaving.
FULL_PAUSES = 6
FULL_STORM_S = 60.0


def build(
    name: str, scale: scenarios.Scale, stack: StackControl, cluster: KafkaCluster | None
) -> scenarios.Scenario:
    return {
        "broker-kill": lambda: scenarios.broker_kills(scale, cluster),
        "coordinator-kill": lambda: cluster_faults.coordinator_kills(scale, cluster),
        "dlq-leader-kill": lambda: cluster_faults.dead_letter_leader_kills(scale, cluster),
        "rolling-restart": lambda: cluster_faults.rolling_restart(scale, cluster),
        "sigkill": lambda: scenarios.kills(scale),
        "postgres": lambda: scenarios.postgres_restarts(scale, stack),
        "kafka": lambda: scenarios.kafka_restarts(scale, stack),
        "rebalance": lambda: scenarios.rebalances(scale),
        "flood": lambda: scenarios.flood(scale),
        "pause": lambda: membership.pause(scale, pauses=FULL_PAUSES),
        "storm": lambda: membership.storm(scale, FULL_STORM_S),
    }[name]()


def build_failover(
    name: str, scale: failover.FailoverScale, pair: ReplicatedPostgres
) -> scenarios.Scenario:
    return {
        "failover": lambda: failover.lost_commits(scale, pair),
        "failover-restart": lambda: failover.lost_commits(scale, pair, restart=True),
        "switchover": lambda: failover.switchover(scale, pair),
        "failover-load": lambda: failover.under_load(scale, pair),
        "read-only": lambda: read_only.read_only(scale, pair),
        "letters-in-flight": lambda: letters_in_flight.letters_in_flight(scale, pair),
    }[name]()


FAILOVERS = (
    "failover",
    "failover-restart",
    "switchover",
    "failover-load",
    "read-only",
    "letters-in-flight",
)
POSTGRES_NETWORK = {
    "pg-latency": network.latency,
    "pg-partition": network.partition,
    "pg-half-open": network.half_open,
    "pg-half-open-requests": network.half_open_requests,
    "pg-bandwidth": network.bandwidth,
}
KAFKA_NETWORK = {
    "kafka-latency": network.kafka_latency,
    "kafka-partition": network.kafka_partition,
    "kafka-half-open": network.kafka_half_open,
    "kafka-half-open-requests": network.kafka_half_open_requests,
}


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--only",
        default="sigkill,postgres,kafka,rebalance,flood,broker-kill,coordinator-kill,"
        "dlq-leader-kill,rolling-restart,failover,failover-restart,switchover,failover-load,"
        "read-only,letters-in-flight,pg-latency,pg-partition,pg-half-open,pg-half-open-requests,"
        "pg-bandwidth,kafka-latency,kafka-partition,kafka-half-open,kafka-half-open-requests,"
        "pause,storm",
    )
    parser.add_argument("--events", type=int, default=scenarios.FULL.events)
    args = parser.parse_args()
    if not os.environ.get("POSTGRES_HOST") or not os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):
        print(
            'run `scripts/local-stack up && eval "$(scripts/local-stack env)"` first',
            file=sys.stderr,
        )
        return 2
    server = PostgresEndpoint(
        os.environ["POSTGRES_HOST"],
        int(os.environ.get("POSTGRES_PORT", "5432")),
        os.environ["POSTGRES_USER"],
        os.environ["POSTGRES_PASSWORD"],
        os.environ["POSTGRES_DB"],
    )
    await _recreate_database(server, DATABASE)
    pg = dataclasses.replace(server, database=DATABASE)
    result = await asyncio.to_thread(alembic, pg, "upgrade", "head")
    if result.returncode != 0:
        print(result.stderr, file=sys.stderr)
        return 1
    scale = dataclasses.replace(scenarios.FULL, events=args.events)
    # failover-load publishes at the same rate whatever the size: its window scales with it.
    failover_scale = dataclasses.replace(
        failover.FULL,
        events=args.events,
        sustained_s=failover.FULL.sustained_s * args.events / failover.FULL.events,
    )
    network_scale = dataclasses.replace(network.FULL, events=args.events)
    stack = StackControl((pg.host, pg.port), os.environ["KAFKA_BOOTSTRAP_SERVERS"])
    outcomes = []
    log_root = Path(tempfile.mkdtemp(prefix="faults-full-"))
    for name in args.only.split(","):
        log_dir = log_root / name
        log_dir.mkdir()
        with contextlib.ExitStack() as servers:
            endpoint, catch_up_s = pg, scale.catch_up_s
            database = pg  # what the harness reads; the service may reach it through a proxy
            bootstrap = os.environ["KAFKA_BOOTSTRAP_SERVERS"]
            if name in POSTGRES_NETWORK:
                proxy = servers.enter_context(fault_proxy(pg.port))
                scenario = POSTGRES_NETWORK[name](network_scale, proxy)
                endpoint = dataclasses.replace(pg, host="127.0.0.1", port=proxy.port)
                catch_up_s = network_scale.catch_up_s
            elif name in KAFKA_NETWORK:
                bootstrap, proxy = servers.enter_context(network.proxied_broker())
                scenario = KAFKA_NETWORK[name](network_scale, proxy)
                catch_up_s = network_scale.catch_up_s
            elif name in FAILOVERS:
                pair = servers.enter_context(replicated_postgres(log_dir))
                scenario = build_failover(name, failover_scale, pair)
                endpoint, catch_up_s = pair.endpoint, failover_scale.catch_up_s
                database = pair.endpoint
            else:
                cluster = None
                if name in CLUSTER_SCENARIOS:
                    cluster = servers.enter_context(kafka_cluster(log_dir / "kafka-cluster"))
                    bootstrap = cluster.bootstrap
                scenario = build(name, scale, stack, cluster)
            suffix = uuid.uuid4().hex[:8]
            names = {
                "topic": f"faults.{name}.{suffix}",
                "dlq": f"faults.{name}.{suffix}.dlq",
                "group": f"faults-{name}-{suffix}",
            }
            settings = make_settings(
                endpoint,
                bootstrap,
                names,
                kafka_topic_partitions=scenario.partitions,
                batch_max_records=2000,
                **scenario.settings,
            )
            print(f"{name}: {len(scenario.pairs)} records ...", file=sys.stderr, flush=True)
            outcome = await network.run_judged(
                scenario, settings, database.url(), log_dir, catch_up_s
            )
        outcomes.append(outcome)
        print(outcome.line(), flush=True)
        for problem in outcome.problems[:10]:
            print(f"    {problem}", flush=True)
    print(f"(consumer logs in {log_root})")
    passed = all(o.ok and not o.problems for o in outcomes)
    if passed:  # a failed run's tables stay, to be read
        await _drop_database(server, DATABASE)
    else:
        print(f"(its tables: database {DATABASE})")
    return 0 if passed else 1


async def _drop_database(server: PostgresEndpoint, name: str) -> None:
    connection = await server.connect()
    try:
        await drop_database(connection, name)
    finally:
        await connection.close()


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
