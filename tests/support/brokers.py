"""Throwaway Kafka brokers for tests that need one of their own (a fresh cluster, another
listener configuration), started from the same broker jars as `scripts/local-stack`.

Only loopback addresses are used. Each broker lives in a temporary directory and is killed
when the context exits.
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
import subprocess
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from tests.support.processes import serving

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def kafka_jars() -> Path:
    """The broker jars `scripts/local-stack up` fetched (same version as the local stack)."""
    pom = (ROOT / "scripts/kafka/pom.xml").read_text()
    match = re.search(r"<kafka.version>(.*)</kafka.version>", pom)
    assert match, "scripts/kafka/pom.xml names no kafka.version"
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    jars = Path(
        os.environ.get("KAFKA_JARS_CACHE") or f"{cache}/inventory-sink/kafka-{match.group(1)}"
    )
    if not (jars / ".complete").exists():
        raise RuntimeError(
            f"Kafka broker jars are missing in {jars}; run `scripts/local-stack up` once to fetch "
            "them"
        )
    return jars


@dataclass(frozen=True)
class Broker:
    """A running throwaway broker: `bootstrap` is its first (client) listener."""

    bootstrap: str
    data_dir: Path
    log: Path


def _base_properties(port: int, controller: int, data_dir: Path) -> dict[str, str]:
    return {
        "process.roles": "broker,controller",
        "node.id": "1",
        "controller.quorum.bootstrap.servers": f"127.0.0.1:{controller}",
        "listeners": f"PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller}",
        "advertised.listeners": f"PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller}",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
        "log.dirs": str(data_dir),
        "num.partitions": "1",
        "offsets.topic.replication.factor": "1",
        "offsets.topic.num.partitions": "1",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "share.coordinator.state.topic.replication.factor": "1",
        "share.coordinator.state.topic.min.isr": "1",
        "group.initial.rebalance.delay.ms": "0",
        "auto.create.topics.enable": "false",
    }


@contextlib.contextmanager
def throwaway_broker(
    properties: Mapping[str, str] | None = None,
    *,
    port: int | None = None,
    controller_port: int | None = None,
    jvm_options: tuple[str, ...] = (),
    timeout: float = 90.0,
) -> Iterator[Broker]:
    """Start a single-node KRaft broker on 127.0.0.1 with fresh storage.

    `properties` override or extend the PLAINTEXT defaults (for example other listeners and
    `listener.security.protocol.map`); `port`/`controller_port` default to free ports.
    Readiness is the broker's own "Kafka Server started" log line.
    """
    jars = kafka_jars()
    port = port or free_port()
    controller_port = controller_port or free_port()
    with tempfile.TemporaryDirectory(prefix="test-kafka-") as tmp:
        base = Path(tmp)
        data_dir = base / "data"
        props = _base_properties(port, controller_port, data_dir)
        props.update(properties or {})
        config = base / "server.properties"
        config.write_text("".join(f"{k}={v}\n" for k, v in props.items()))
        log = base / "kafka.log"
        classpath = f"{jars}/*"
        subprocess.run(
            [
                "java",
                "-cp",
                classpath,
                "kafka.tools.StorageTool",
                "format",
                "-t",
                "throwaway-cluster-00001",
                "-c",
                str(config),
                "--standalone",
            ],
            check=True,
            capture_output=True,
            timeout=120,
        )
        command = [
            "java",
            "-Xms128m",
            "-Xmx384m",
            *jvm_options,
            f"-Dlog4j2.configurationFile={ROOT / 'scripts/kafka/log4j2.properties'}",
            "-cp",
            classpath,
            "kafka.Kafka",
            str(config),
        ]
        ready = b"Kafka Server started"
        with serving(command, log, ready, "throwaway Kafka broker", timeout=timeout, poll=0.3):
            yield Broker(f"127.0.0.1:{port}", data_dir, log)
