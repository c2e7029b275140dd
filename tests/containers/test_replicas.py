"""N consumer replicas in one group (docker-compose.replicas.yml, `--scale consumer=3`):
they split the topic's partitions between them and the table is the README's."""

from __future__ import annotations

import re
import time
import urllib.request
from collections.abc import Iterator

import pytest

from tests.containers.conftest import ROOT, Compose, new_project
from tests.containers.test_compose_stack import readme_table, wait_for_table

REPLICAS = 3
PARTITIONS = 6  # KAFKA_TOPIC_PARTITIONS' default
LAG = re.compile(r'^inventory_sink_partition_lag\{[^}]*partition="(\d+)"', re.MULTILINE)


@pytest.fixture(scope="module")
def replicas(docker_env: dict[str, str]) -> Iterator[Compose]:
    compose = new_project("inventory-sink-ct-replicas", ROOT / "docker-compose.replicas.yml")
    try:
        yield compose
    finally:
        compose.run("down", "--volumes", "--remove-orphans", "--timeout", "20", check=False)
        assert not compose.volumes()


def assigned(port: str) -> set[int]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        return {int(p) for p in LAG.findall(response.read().decode())}


def test_replicas_share_the_partitions_and_the_table_is_right(replicas: Compose) -> None:
    replicas.run("up", "--detach", "--scale", f"consumer={REPLICAS}", timeout=900)
    ports = []
    for index in range(1, REPLICAS + 1):
        replicas.wait_healthy("consumer", index=index)
        binding = replicas.state("consumer", index)["NetworkSettings"]["Ports"]["8080/tcp"]
        assert [b["HostIp"] for b in binding] == ["127.0.0.1"]
        ports.append(binding[0]["HostPort"])
    replicas.exec("consumer", "python", "-m", "service", "publish", "--sample")
    wait_for_table(replicas, readme_table())
    deadline = time.monotonic() + 90
    while True:
        shares = [assigned(port) for port in ports]
        together = set().union(*shares)
        disjoint = sum(map(len, shares)) == len(together)
        if (all(shares) and disjoint and together == set(range(PARTITIONS))) or (
            time.monotonic() > deadline
        ):
            break
        time.sleep(2)
    print(f"\nobserved: partitions per replica {[sorted(s) for s in shares]}; table as README")
    assert all(shares) and disjoint and together == set(range(PARTITIONS))
