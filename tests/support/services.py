"""Where the real PostgreSQL and Kafka for integration tests come from.

1. The environment: POSTGRES_HOST/PORT/USER/PASSWORD/DB and KAFKA_BOOTSTRAP_SERVERS, as
   exported by `scripts/test` after `scripts/local-stack up` (and by CI).
2. Otherwise testcontainers' PostgresContainer and KafkaContainer, where Docker runs.
3. Otherwise the tests fail (never skip) and say how to provide the services.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass

HOW_TO = (
    "integration tests need a real PostgreSQL and a real Kafka broker. Start them with "
    "`scripts/local-stack up` and run the tests with `scripts/test` (it exports "
    "POSTGRES_HOST, POSTGRES_PORT, POSTGRES_USER, POSTGRES_PASSWORD, POSTGRES_DB and "
    "KAFKA_BOOTSTRAP_SERVERS), or run them where Docker works so testcontainers can start them."
)


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
    from testcontainers.postgres import PostgresContainer

    with PostgresContainer(
        "postgres:16-alpine", username="inventory", password="inventory", dbname="inventory"
    ) as container:
        yield PostgresEndpoint(
            host=container.get_container_host_ip(),
            port=int(container.get_exposed_port(5432)),
            user="inventory",
            password="inventory",
            database="inventory",
        )


@contextlib.contextmanager
def kafka_endpoint() -> Iterator[str]:
    if os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):
        yield os.environ["KAFKA_BOOTSTRAP_SERVERS"]
        return
    if not _docker_works():
        raise RuntimeError(
            f"Kafka: KAFKA_BOOTSTRAP_SERVERS is not set and Docker is not available; {HOW_TO}"
        )
    from testcontainers.kafka import KafkaContainer

    with KafkaContainer("confluentinc/cp-kafka:7.6.1").with_kraft() as container:
        yield container.get_bootstrap_server()
