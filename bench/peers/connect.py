"""Peer `connect`: a Kafka Connect standalone worker with the Debezium JDBC sink.

Renders `connect/worker.properties.template` and `connect/jdbc-sink.properties.template`
into the run's log folder and gives the JVM's command line. The sink upserts with the primary
key from the value, batches of `batch` rows (`DEFAULT_BATCH` unless
`--connect-batch-sizes` says otherwise) through one UNNEST statement, keeps the last row
per key within a batch (reduction buffer), and commits offsets every 10 s (at-least-once).
Its task's state is read from the worker's REST API on a free loopback port.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import socket
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from bench.peers.install import HERE, Installed

# batch.size and consumer.max.poll.records unless --connect-batch-sizes gives others (the
# connector's own default is 500)
DEFAULT_BATCH = 2000
OFFSET_FLUSH_MS = 10_000
HEAP = os.environ.get("CONNECT_HEAP", "-Xms256m -Xmx1g")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def render(template: Path, values: dict[str, str]) -> str:
    text = template.read_text()
    for name, value in values.items():
        text = text.replace(f"@{name}@", value)
    left = re.findall(r"@[A-Z_]+@", text)
    if left:
        raise ValueError(f"{template.name}: placeholders left unfilled: {left}")
    return text


@dataclass(frozen=True)
class ConnectRun:
    name: str  # the connector's name; its consumer group is connect-<name>
    workdir: Path
    rest_port: int

    @property
    def group(self) -> str:
        return f"connect-{self.name}"

    def status_url(self) -> str:
        return f"http://127.0.0.1:{self.rest_port}/connectors/{self.name}/status"


def prepare(
    installed: Installed,
    name: str,
    topic: str,
    bootstrap: str,
    postgres: dict[str, str],
    workdir: Path,
    batch: int,
) -> tuple[ConnectRun, list[str]]:
    """Write the two property files (`batch` as batch.size and max.poll.records); return the
    run and the JVM's argv."""
    workdir.mkdir(parents=True, exist_ok=True)
    run = ConnectRun(name, workdir, free_port())
    worker = render(
        HERE / "connect" / "worker.properties.template",
        {
            "BOOTSTRAP": bootstrap,
            "WORKDIR": str(workdir),
            "REST_PORT": str(run.rest_port),
            "PLUGIN_PATH": str(installed.connect_dir / "plugins"),
            "OFFSET_FLUSH_MS": str(OFFSET_FLUSH_MS),
            "MAX_POLL_RECORDS": str(batch),
        },
    )
    sink = render(
        HERE / "connect" / "jdbc-sink.properties.template",
        {
            "NAME": name,
            "TOPIC": topic,
            "PG_HOST": postgres["host"],
            "PG_PORT": postgres["port"],
            "PG_DB": postgres["database"],
            "PG_USER": postgres["user"],
            "PG_PASSWORD": postgres["password"],
            "BATCH_SIZE": str(batch),
            "REDUCTION": "true",
            "UNNEST": "true",
        },
    )
    (workdir / "worker.properties").write_text(worker)
    (workdir / "jdbc-sink.properties").write_text(sink)
    argv = [
        "java",
        *HEAP.split(),
        "-XX:+UseG1GC",
        f"-Dlog4j2.configurationFile={HERE / 'connect' / 'log4j2.properties'}",
        "-cp",
        f"{installed.connect_dir / 'lib'}/*",
        "org.apache.kafka.connect.cli.ConnectStandalone",
        str(workdir / "worker.properties"),
        str(workdir / "jdbc-sink.properties"),
    ]
    return run, argv


def _get(url: str) -> dict[str, object] | None:
    try:
        with urllib.request.urlopen(url, timeout=2) as answer:
            found: dict[str, object] = json.load(answer)
            return found
    except (OSError, urllib.error.URLError, ValueError):
        return None  # the REST server is not up yet, or the connector not yet created


async def failure(run: ConnectRun) -> str | None:
    """The failed task's trace, or None while nothing failed (or nothing answers yet)."""
    status = await asyncio.to_thread(_get, run.status_url())
    if not status:
        return None
    tasks = status.get("tasks")
    for task in tasks if isinstance(tasks, list) else []:
        if isinstance(task, dict) and task.get("state") == "FAILED":
            trace = str(task.get("trace", ""))
            return f"connect task FAILED: {trace[:2000]}"
    return None
