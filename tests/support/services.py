"""Where the real PostgreSQL and Kafka for integration tests come from.

1. The environment: POSTGRES_HOST/PORT/USER/PASSWORD/DB and KAFKA_BOOTSTRAP_SERVERS, as
   exported by `scripts/test` after `scripts/local-stack up` (and by CI).
2. Otherwise containers started with testcontainers, where Docker runs: the images
   docker-compose.yml uses (postgres:16-alpine, apache/kafka:4.1.1), published on free ports of
   127.0.0.1 only. scripts/container-test runs the integration tests this way
   (docs/explanation/testing.md).
3. Otherwise the tests fail (never skip) and say how to provide the services.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import asyncpg

HOW_TO = (
    "integration tests need a real PostgreSQL and a real Kafka broker. Start them with "
    "`scripts/local-stack up` and run the tests with `scripts/test` (it exports "
    "POSTGRES_HOST, POSTGRES_PORT, POSTGRES_USER, POSTGRES_PASSWORD, POSTGRES_DB and "
    "KAFKA_BOOTSTRAP_SERVERS), or run them where Docker works so testcontainers can start them."
)


POSTGRES_IMAGE = "postgres:16-alpine"
KAFKA_IMAGE = "apache/kafka:4.1.1"
# Found in no name or message, so tests that check a secret never appears can tell.
TC_POSTGRES_PASSWORD = "tc-secret-8c1f"


@dataclass(frozen=True)
class PostgresEndpoint:
    host: str
    port: int
    user: str
    password: str
    database: str

    def url(self, database: str | None = None, driver: str = "postgresql+asyncpg") -> str:
        from urllib.parse import quote

        return (
            f"{driver}://{quote(self.user, safe='')}:{quote(self.password, safe='')}"
            f"@{self.host}:{self.port}/{database or self.database}"
        )

    async def connect(self, timeout: float = 10) -> asyncpg.Connection:
        """A plain asyncpg connection to the endpoint's database."""
        return await asyncpg.connect(
            host=self.host,
            port=self.port,
            user=self.user,
            password=self.password,
            database=self.database,
            timeout=timeout,
        )


def _docker_works() -> bool:
    if shutil.which("docker") is None:
        return False
    try:
        return subprocess.run(["docker", "info"], capture_output=True, timeout=15).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


@contextlib.contextmanager
def postgres_endpoint() -> Iterator[PostgresEndpoint]:
    if os.environ.get("POSTGRES_HOST"):
        yield PostgresEndpoint(
            host=os.environ["POSTGRES_HOST"],
            port=int(os.environ.get("POSTGRES_PORT", "5432")),
            user=os.environ.get("POSTGRES_USER", "inventory"),
            password=os.environ.get("POSTGRES_PASSWORD", "inventory"),
            database=os.environ.get("POSTGRES_DB", "inventory"),
        )
        return
    if not _docker_works():
        raise RuntimeError(
            f"PostgreSQL: POSTGRES_HOST is not set and Docker is not available; {HOW_TO}"
        )
    from testcontainers.community.postgres import PostgresContainer

    port = _free_port()
    container = PostgresContainer(
        POSTGRES_IMAGE, username="inventory", password=TC_POSTGRES_PASSWORD, dbname="inventory"
    )
    _publish_on_loopback(container, 5432, port)
    with container:
        yield PostgresEndpoint(
            host="127.0.0.1",
            port=port,
            user="inventory",
            password=TC_POSTGRES_PASSWORD,
            database="inventory",
        )


def _publish_on_loopback(container: Any, container_port: int, host_port: int) -> None:
    """Publish on 127.0.0.1 only: testcontainers' with_bind_ports takes a port alone (every
    interface); the Docker SDK it hands `ports` to also takes (address, port)."""
    container.ports[str(container_port)] = ("127.0.0.1", host_port)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextlib.contextmanager
def kafka_endpoint() -> Iterator[str]:
    if os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):
        yield os.environ["KAFKA_BOOTSTRAP_SERVERS"]
        return
    if not _docker_works():
        raise RuntimeError(
            f"Kafka: KAFKA_BOOTSTRAP_SERVERS is not set and Docker is not available; {HOW_TO}"
        )
    from testcontainers.core.container import DockerContainer
    from testcontainers.core.wait_strategies import LogMessageWaitStrategy

    # A single KRaft node as docker-compose.yml runs it, advertising the port it is published on.
    port = _free_port()
    container = (
        DockerContainer(KAFKA_IMAGE)
        .with_envs(
            KAFKA_NODE_ID="1",
            KAFKA_PROCESS_ROLES="broker,controller",
            KAFKA_LISTENERS="PLAINTEXT://:9092,CONTROLLER://:9093",
            KAFKA_ADVERTISED_LISTENERS=f"PLAINTEXT://127.0.0.1:{port}",
            KAFKA_CONTROLLER_LISTENER_NAMES="CONTROLLER",
            KAFKA_LISTENER_SECURITY_PROTOCOL_MAP="CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
            KAFKA_CONTROLLER_QUORUM_VOTERS="1@localhost:9093",
            KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR="1",
            KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR="1",
            KAFKA_TRANSACTION_STATE_LOG_MIN_ISR="1",
            KAFKA_SHARE_COORDINATOR_STATE_TOPIC_REPLICATION_FACTOR="1",
            KAFKA_SHARE_COORDINATOR_STATE_TOPIC_MIN_ISR="1",
            KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS="0",
            # As the local stack's broker: topics exist only when created (the tests that
            # recreate a topic count its partitions; an auto-created one would have 1).
            KAFKA_AUTO_CREATE_TOPICS_ENABLE="false",
            CLUSTER_ID="YLh8G2KUTwCovva0H6cahg",
        )
        .waiting_for(LogMessageWaitStrategy("Kafka Server started").with_startup_timeout(120))
    )
    _publish_on_loopback(container, 9092, port)
    with container:
        yield f"127.0.0.1:{port}"
