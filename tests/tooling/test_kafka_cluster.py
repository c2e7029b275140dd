"""scripts/kafka/cluster.py's reading of the cluster: the Metadata answer it parses (in
wait_ready.py), when every replica is in sync, which node leads most partitions."""

from __future__ import annotations

import struct
import sys
from pathlib import Path

import pytest

from tests.support.kafka_cluster import ClusterError, KafkaCluster, busiest_leader, cluster_script

# scripts/kafka/wait_ready.py, as cluster.py imported it.
wait_ready = sys.modules[cluster_script.metadata.__module__]


def _string(text: str) -> bytes:
    return struct.pack(">h", len(text)) + text.encode()


def _ids(values: list[int]) -> bytes:
    return struct.pack(">i", len(values)) + b"".join(struct.pack(">i", v) for v in values)


def metadata_v0(
    brokers: list[int], partitions: list[tuple[str, int, int, list[int], list[int]]]
) -> bytes:
    """A Metadata v0 answer (after its size) as a broker sends it."""
    payload = struct.pack(">i", 1) + struct.pack(">i", len(brokers))
    for node in brokers:
        payload += struct.pack(">i", node) + _string("127.0.0.1") + struct.pack(">i", 9000 + node)
    topics = sorted({p[0] for p in partitions})
    payload += struct.pack(">i", len(topics))
    for topic in topics:
        mine = [p for p in partitions if p[0] == topic]
        payload += struct.pack(">h", 0) + _string(topic) + struct.pack(">i", len(mine))
        for _, partition, leader, replicas, isr in mine:
            payload += struct.pack(">hii", 0, partition, leader) + _ids(replicas) + _ids(isr)
    return payload


def answering(monkeypatch: pytest.MonkeyPatch, payload: bytes) -> None:
    monkeypatch.setattr(wait_ready, "_metadata_payload", lambda host, port: payload)


@pytest.fixture
def cluster(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> KafkaCluster:
    nodes = [cluster_script.Node(n, 9000 + n, 9100 + n) for n in (1, 2, 3)]
    found = KafkaCluster(tmp_path, tmp_path, nodes, "id")
    monkeypatch.setattr(found, "running", lambda: [1, 2, 3])
    return found


def test_the_metadata_answer_is_read_partition_by_partition(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    answering(monkeypatch, metadata_v0([1, 2], [("t", 0, 2, [2, 1, 3], [2, 1])]))
    found = wait_ready.metadata("127.0.0.1", 1)
    assert found.brokers == (1, 2)
    assert found.partitions == (wait_ready.PartitionState("t", 0, 2, (2, 1, 3), (2, 1)),)
    assert wait_ready.metadata_brokers("127.0.0.1", 1) == 2


def test_in_sync_only_with_every_node_and_every_replica_in_sync(
    cluster: KafkaCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    answering(
        monkeypatch,
        metadata_v0(
            [1, 3],
            [
                ("t", 0, 1, [1, 2, 3], [1, 3]),
                ("t", 1, -1, [2, 3, 1], [2]),
                ("__consumer_offsets", 0, 3, [3, 1, 2], [3, 1, 2]),
            ],
        ),
    )
    assert cluster.out_of_sync() == [
        "node 2 is not in the cluster",
        "t[0] in sync [1, 3] of [1, 2, 3]",
        "t[1] has no leader",
    ]
    answering(monkeypatch, metadata_v0([1, 2, 3], [("t", 0, 1, [1, 2, 3], [3, 2, 1])]))
    assert cluster.out_of_sync() == []
    assert cluster.wait_in_sync(timeout=1) < 1


def test_the_busiest_leader_leads_most_partitions_of_the_topic(
    cluster: KafkaCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    layout = [("t", p, leader, [1, 2, 3], [1, 2, 3]) for p, leader in enumerate([1, 2, 2, 3, 2])]
    answering(monkeypatch, metadata_v0([1, 2, 3], [*layout, ("u", 0, 1, [1], [1])]))
    assert busiest_leader(cluster, "t") == (2, [1, 2, 4])
    answering(monkeypatch, metadata_v0([1, 2, 3], [("t", 0, -1, [1, 2, 3], [])]))
    with pytest.raises(ClusterError, match="without a leader"):
        busiest_leader(cluster, "t")


def test_a_cluster_has_three_nodes_on_six_different_ports(tmp_path: Path) -> None:
    with pytest.raises(ClusterError, match="3 nodes"):
        KafkaCluster.create(tmp_path, tmp_path, [(1, 2), (3, 4)])
    with pytest.raises(ClusterError, match="must all differ"):
        KafkaCluster.create(tmp_path, tmp_path, [(1, 2), (3, 4), (5, 1)])
