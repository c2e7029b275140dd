"""A 3-node Apache Kafka cluster (KRaft) on 127.0.0.1, from the broker jars scripts/local-stack
fetches (stdlib only: runs before any venv). Beside the local stack's single broker, never
instead of it.

usage: python3 cluster.py --dir DIR --jars JARS [--ports B1,B2,B3 --controller-ports C1,C2,C3]
           up | down | env | status | in-sync | kill-broker N | start-broker N

`scripts/local-stack cluster-up` (and cluster-down, cluster-env, cluster-status,
cluster-in-sync, kill-broker N, start-broker N) runs it; tests/support/kafka_cluster.py
starts one of its own through the same class. Every node is one JVM, broker and controller,
with the durability settings of cluster-node.properties.template. DIR holds cluster.json
(ports, cluster id) and per node its server.properties, data, log and pid file.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from wait_ready import Metadata, metadata  # noqa: E402

NODES = 3
JVM_OPTIONS = ("-Xms256m", "-Xmx512m", "-XX:+UseG1GC")


class ClusterError(RuntimeError):
    """The cluster cannot do what was asked; the message says why and what to do."""


@dataclass(frozen=True)
class Node:
    id: int
    port: int
    controller_port: int

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"


def new_cluster_id() -> str:
    """A KRaft cluster id: a random UUID, base64 without padding (as StorageTool makes it)."""
    return base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")


def _state(pid: int) -> str | None:
    """The process's state letter, None if it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[0]


def _alive(pid: int) -> bool:
    return _state(pid) not in (None, "Z", "X")


def _answers(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
        return True
    return False


class KafkaCluster:
    def __init__(self, directory: Path, jars: Path, nodes: Sequence[Node], cluster_id: str):
        self.directory = directory
        self.jars = jars
        self.nodes = list(nodes)
        self.cluster_id = cluster_id
        self._children: dict[int, subprocess.Popen[bytes]] = {}

    # -- set-up ------------------------------------------------------------------------------
    @classmethod
    def create(cls, directory: Path, jars: Path, ports: Sequence[tuple[int, int]]) -> KafkaCluster:
        """Write each node's configuration and format its storage with the same cluster id,
        one node at a time (three JVMs at once crowd two cores)."""
        if len(ports) != NODES:
            raise ClusterError(
                f"a cluster has {NODES} nodes: give {NODES} (port, controller) pairs"
            )
        if len({port for pair in ports for port in pair}) != 2 * NODES:
            raise ClusterError(f"the cluster's ports must all differ: {list(ports)}")
        directory.mkdir(parents=True, exist_ok=True)
        nodes = [Node(n, port, controller) for n, (port, controller) in enumerate(ports, 1)]
        cluster = cls(directory, jars, nodes, new_cluster_id())
        for node in nodes:
            cluster._configure(node)
            cluster._format(node)
        state = {"cluster_id": cluster.cluster_id, "nodes": [vars(node) for node in nodes]}
        (directory / "cluster.json").write_text(json.dumps(state, indent=2) + "\n")
        return cluster

    @classmethod
    def open(cls, directory: Path, jars: Path) -> KafkaCluster:
        try:
            state = json.loads((directory / "cluster.json").read_text())
        except FileNotFoundError:
            raise ClusterError(
                f"no cluster in {directory}; start one with `scripts/local-stack cluster-up`"
            ) from None
        nodes = [Node(**node) for node in state["nodes"]]
        return cls(directory, jars, nodes, state["cluster_id"])

    def _configure(self, node: Node) -> None:
        voters = ",".join(f"{n.id}@127.0.0.1:{n.controller_port}" for n in self.nodes)
        template = (HERE / "cluster-node.properties.template").read_text()
        values = {
            "@NODE_ID@": str(node.id),
            "@VOTERS@": voters,
            "@KAFKA_PORT@": str(node.port),
            "@CONTROLLER_PORT@": str(node.controller_port),
            "@DATA_DIR@": str(self._dir(node.id) / "data"),
        }
        for marker, value in values.items():
            template = template.replace(marker, value)
        self._dir(node.id).mkdir(parents=True, exist_ok=True)
        self.config(node.id).write_text(template)

    def _format(self, node: Node) -> None:
        result = subprocess.run(
            [
                "java", "-cp", f"{self.jars}/*", "kafka.tools.StorageTool", "format",
                "-t", self.cluster_id, "-c", str(self.config(node.id)),
            ],
            capture_output=True,
            text=True,
            timeout=180,
        )  # fmt: skip
        if result.returncode != 0:
            raise ClusterError(
                f"formatting node {node.id}'s storage failed:\n{result.stdout[-1500:]}"
                f"{result.stderr[-1500:]}"
            )

    # -- where things are --------------------------------------------------------------------
    def _dir(self, node_id: int) -> Path:
        return self.directory / f"node-{node_id}"

    def config(self, node_id: int) -> Path:
        return self._dir(node_id) / "server.properties"

    def log(self, node_id: int) -> Path:
        return self._dir(node_id) / "kafka.log"

    def node(self, node_id: int) -> Node:
        for node in self.nodes:
            if node.id == node_id:
                return node
        raise ClusterError(f"no node {node_id}: the nodes are 1 to {NODES}")

    @property
    def bootstrap(self) -> str:
        """KAFKA_BOOTSTRAP_SERVERS for the cluster: every node's client listener."""
        return ",".join(node.address for node in self.nodes)

    # -- processes ---------------------------------------------------------------------------
    def pid(self, node_id: int) -> int | None:
        """The node's JVM if it runs (checked against its command line, never a stranger)."""
        try:
            pid = int((self._dir(node_id) / "kafka.pid").read_text())
            command = Path(f"/proc/{pid}/cmdline").read_bytes()
        except (OSError, ValueError):
            return None
        return pid if str(self.config(node_id)).encode() in command and _alive(pid) else None

    def running(self) -> list[int]:
        return [node.id for node in self.nodes if self.pid(node.id) is not None]

    def _launch(self, node_id: int) -> None:
        if self.pid(node_id) is not None:
            return
        node = self.node(node_id)
        for port in (node.port, node.controller_port):
            if _answers(port):
                raise ClusterError(
                    f"port {port} of node {node_id} is taken by another process; stop it, or "
                    "give the cluster other ports"
                )
        with self.log(node_id).open("ab") as out:
            out.write(f"--- starting node {node_id} at {time.ctime()}\n".encode())
            out.flush()
            process = subprocess.Popen(
                [
                    "java", *JVM_OPTIONS,
                    f"-Dlog4j2.configurationFile={HERE / 'log4j2.properties'}",
                    "-cp", f"{self.jars}/*", "kafka.Kafka", str(self.config(node_id)),
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )  # fmt: skip
        self._children[node_id] = process
        (self._dir(node_id) / "kafka.pid").write_text(f"{process.pid}\n")
        deadline = time.monotonic() + 10
        while self.pid(node_id) is None:  # until the exec: pid() knows it by its command line
            if process.poll() is not None or time.monotonic() > deadline:
                raise ClusterError(f"node {node_id} did not start; see {self.log(node_id)}")
            time.sleep(0.01)

    def up(self, timeout: float = 120.0) -> None:
        """Start every node that is not running and wait until each answers for all three."""
        for node in self.nodes:
            self._launch(node.id)
        self.wait_ready([node.id for node in self.nodes], timeout)

    def start(self, node_id: int, timeout: float = 90.0) -> None:
        """Start one node (a killed or stopped one) and wait until it answers."""
        self._launch(node_id)
        self.wait_ready([node_id], timeout)

    def kill(self, node_id: int) -> None:
        """SIGKILL the node's JVM: a crashed host, no controlled shutdown."""
        self._end(node_id, signal.SIGKILL, 30.0)

    def stop(self, node_id: int, timeout: float = 60.0) -> None:
        """SIGTERM (a controlled shutdown), SIGKILL after `timeout`."""
        self._end(node_id, signal.SIGTERM, timeout)

    def down(self, hard: bool = False) -> None:
        """Stop every node, all at once (SIGKILL with `hard`: the data is to be thrown away)."""
        ends = [node.id for node in self.nodes if self.pid(node.id) is not None]
        for node_id in ends:
            self._signal(node_id, signal.SIGKILL if hard else signal.SIGTERM)
        for node_id in ends:
            self._end(node_id, signal.SIGKILL if hard else signal.SIGTERM, 60.0)

    def _signal(self, node_id: int, sig: signal.Signals) -> int | None:
        pid = self.pid(node_id)
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, sig)
        return pid

    def _end(self, node_id: int, sig: signal.Signals, timeout: float) -> None:
        pid = self._signal(node_id, sig)
        if pid is None:
            return
        deadline = time.monotonic() + timeout
        while _alive(pid):
            if time.monotonic() > deadline:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pid, signal.SIGKILL)
                deadline = time.monotonic() + 30
            time.sleep(0.1)
        child = self._children.pop(node_id, None)
        if child is not None:
            child.wait(timeout=30)

    # -- what the cluster says ---------------------------------------------------------------
    def wait_ready(self, node_ids: Iterable[int], timeout: float) -> None:
        """Until each of `node_ids` answers a metadata request listing every running node."""
        waiting = set(node_ids)
        deadline = time.monotonic() + timeout
        last = "no answer yet"
        while waiting:
            for node_id in sorted(waiting):
                if self.pid(node_id) is None:
                    raise ClusterError(
                        f"node {node_id} exited while starting; see {self.log(node_id)}"
                    )
                try:
                    brokers = set(metadata("127.0.0.1", self.node(node_id).port).brokers)
                except OSError as error:
                    last = f"node {node_id}: {error}"
                    continue
                if set(self.running()) <= brokers:
                    waiting.discard(node_id)
                else:
                    last = f"node {node_id} lists brokers {sorted(brokers)}"
            if waiting and time.monotonic() > deadline:
                raise ClusterError(
                    f"nodes {sorted(waiting)} not ready within {timeout:g}s ({last}); see their "
                    f"logs in {self.directory}"
                )
            if waiting:
                time.sleep(0.5)

    def metadata(self) -> Metadata:
        """The cluster's metadata, from the first running node that answers."""
        problems = []
        for node_id in self.running():
            try:
                return metadata("127.0.0.1", self.node(node_id).port)
            except OSError as error:
                problems.append(f"node {node_id}: {error}")
        raise ClusterError(f"no node of the cluster answers ({'; '.join(problems) or 'none runs'})")

    def out_of_sync(self) -> list[str]:
        """Every partition without a leader or with a replica out of its in-sync set, and
        every node missing from the cluster: what a second fault must not meet."""
        found = self.metadata()
        problems = [f"node {n} is not in the cluster" for n in range(1, NODES + 1)]
        problems = [p for n, p in enumerate(problems, 1) if n not in found.brokers]
        for state in found.partitions:
            if state.leader < 0:
                problems.append(f"{state.topic}[{state.partition}] has no leader")
            elif set(state.isr) != set(state.replicas):
                problems.append(
                    f"{state.topic}[{state.partition}] in sync {sorted(state.isr)} of "
                    f"{sorted(state.replicas)}"
                )
        return problems

    def wait_in_sync(self, timeout: float = 120.0) -> float:
        """Until every node is in the cluster and every partition has a leader and all its
        replicas in sync; returns the seconds it took."""
        started = time.monotonic()
        while True:
            try:
                problems = self.out_of_sync()
            except (ClusterError, OSError) as error:
                problems = [str(error)]
            if not problems:
                return time.monotonic() - started
            if time.monotonic() - started > timeout:
                shown = "; ".join(problems[:5])
                raise ClusterError(
                    f"not in sync within {timeout:g}s ({len(problems)} problems: {shown})"
                )
            time.sleep(0.5)

    def leaders(self, topic: str) -> dict[int, int]:
        """Partition -> the node leading it (-1: none)."""
        return {
            state.partition: state.leader
            for state in self.metadata().partitions
            if state.topic == topic
        }


def _ports(text: str) -> list[int]:
    return [int(part) for part in text.split(",") if part.strip()]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, required=True)
    parser.add_argument("--jars", type=Path, required=True)
    parser.add_argument("--ports", default="29092,29093,29094")
    parser.add_argument("--controller-ports", default="29192,29193,29194")
    parser.add_argument(
        "action",
        choices=["up", "down", "env", "status", "in-sync", "kill-broker", "start-broker"],
    )
    parser.add_argument("node", nargs="?", type=int)
    args = parser.parse_args(argv)
    try:
        if args.action == "up" and not (args.dir / "cluster.json").exists():
            ports = list(zip(_ports(args.ports), _ports(args.controller_ports), strict=False))
            print(f"cluster: formatting {NODES} nodes in {args.dir}", file=sys.stderr)
            cluster = KafkaCluster.create(args.dir, args.jars, ports)
        else:
            cluster = KafkaCluster.open(args.dir, args.jars)
        if args.action in ("kill-broker", "start-broker") and args.node is None:
            raise ClusterError(f"{args.action} needs a node number, 1 to {NODES}")
        if args.action == "up":
            started = time.monotonic()
            cluster.up()
            print(f"cluster: ready on {cluster.bootstrap} ({time.monotonic() - started:.0f}s)")
        elif args.action == "down":
            cluster.down()
            print("cluster: stopped")
        elif args.action == "env":
            print(f"export KAFKA_BOOTSTRAP_SERVERS={cluster.bootstrap} KAFKA_REPLICATION_FACTOR=3")
        elif args.action == "status":
            for node in cluster.nodes:
                pid = cluster.pid(node.id)
                state = f"running (pid {pid})" if pid else "not running"
                print(f"cluster: node {node.id} on {node.address}: {state}")
        elif args.action == "in-sync":
            took = cluster.wait_in_sync()
            print(f"cluster: every partition has a leader and its replicas in sync ({took:.0f}s)")
        elif args.action == "kill-broker":
            cluster.node(args.node)
            cluster.kill(args.node)
            print(f"cluster: node {args.node} killed (SIGKILL)")
        else:
            cluster.start(args.node)
            print(f"cluster: node {args.node} answers on {cluster.node(args.node).address}")
    except ClusterError as error:
        print(f"cluster: error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
