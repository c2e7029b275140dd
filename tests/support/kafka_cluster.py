"""A throwaway 3-node Kafka cluster for tests: scripts/kafka/cluster.py (what
`scripts/local-stack cluster-up` runs) on free loopback ports, in a directory of the test's,
from the broker jars the local stack uses. The test starts it itself, so CI needs nothing
more; every node is killed when the context exits.
"""

from __future__ import annotations

import contextlib
import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

from service.config.settings import KafkaSettings
from service.kafka import clients
from tests.support.brokers import free_port, kafka_jars

ROOT = Path(__file__).resolve().parents[2]


def _load() -> ModuleType:
    name = "kafka_cluster_script"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / "kafka" / "cluster.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while the class is made
    spec.loader.exec_module(module)
    return module


cluster_script = _load()
KafkaCluster = cluster_script.KafkaCluster
ClusterError = cluster_script.ClusterError


def _free_ports(count: int) -> list[int]:
    ports: list[int] = []
    while len(ports) < count:
        port = free_port()
        if port not in ports:
            ports.append(port)
    return ports


@contextlib.contextmanager
def kafka_cluster(directory: Path, timeout: float = 150.0) -> Iterator[KafkaCluster]:
    """Format and start the three nodes, wait until each answers for all three, yield the
    cluster (`bootstrap` is its KAFKA_BOOTSTRAP_SERVERS); SIGKILL every node on exit."""
    ports = _free_ports(2 * cluster_script.NODES)
    pairs = list(zip(ports[::2], ports[1::2], strict=True))
    cluster = KafkaCluster.create(directory, kafka_jars(), pairs)
    try:
        cluster.up(timeout)
        yield cluster
    finally:
        cluster.down(hard=True)


def busiest_leader(cluster: KafkaCluster, topic: str) -> tuple[int, list[int]]:
    """The node leading most of `topic`'s partitions, and those partitions."""
    led: dict[int, list[int]] = {}
    for partition, leader in sorted(cluster.leaders(topic).items()):
        led.setdefault(leader, []).append(partition)
    if not led or -1 in led:
        raise ClusterError(f"{topic} has partitions without a leader: {led}")
    node = max(led, key=lambda n: len(led[n]))
    return node, led[node]


async def group_coordinator(settings: KafkaSettings, group: str | None = None) -> int:
    """The node coordinating `group` (default: the settings' KAFKA_GROUP_ID), as the cluster's
    FindCoordinator answers: the leader of the group's __consumer_offsets partition."""
    admin = clients.admin(settings)
    await admin.start()
    try:
        return int(await admin.find_coordinator(group or settings.kafka_group_id))
    finally:
        await admin.close()
