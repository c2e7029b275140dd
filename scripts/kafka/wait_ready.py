"""Wait until a Kafka broker answers a Metadata request (stdlib only: runs before any venv).

usage: python3 wait_ready.py HOST:PORT TIMEOUT_SECONDS

`metadata` also reads the answer's partitions (leader, replicas, in-sync replicas), for
scripts/kafka/cluster.py.
"""

import socket
import struct
import sys
import time
from dataclasses import dataclass


@dataclass(frozen=True)
class PartitionState:
    topic: str
    partition: int
    leader: int  # -1: none
    replicas: tuple[int, ...]
    isr: tuple[int, ...]


@dataclass(frozen=True)
class Metadata:
    brokers: tuple[int, ...]  # node ids
    partitions: tuple[PartitionState, ...]


def _metadata_payload(host: str, port: int) -> bytes:
    """Send Metadata v0 (all topics) and return the answer after its size."""
    client_id = b"local-stack"
    body = struct.pack(">hhih", 3, 0, 1, len(client_id)) + client_id + struct.pack(">i", 0)
    with socket.create_connection((host, port), timeout=3) as sock:
        sock.sendall(struct.pack(">i", len(body)) + body)
        size = struct.unpack(">i", _read(sock, 4))[0]
        return _read(sock, size)


def metadata_brokers(host: str, port: int) -> int:
    """How many brokers the broker's Metadata answer lists."""
    payload = _metadata_payload(host, port)
    # correlation id (4 bytes), then the brokers array length
    return int(struct.unpack(">i", payload[4:8])[0])


def metadata(host: str, port: int) -> Metadata:
    """The brokers and every partition of every topic, as this broker knows them."""
    payload = _metadata_payload(host, port)
    at = 4  # correlation id

    def take(fmt: str) -> int:
        nonlocal at
        (value,) = struct.unpack_from(fmt, payload, at)
        at += struct.calcsize(fmt)
        return int(value)

    def string() -> str:
        nonlocal at
        length = take(">h")
        text = payload[at : at + length].decode()
        at += length
        return text

    def ids() -> tuple[int, ...]:
        return tuple(take(">i") for _ in range(take(">i")))

    brokers = []
    for _ in range(take(">i")):
        brokers.append(take(">i"))
        string()  # host
        take(">i")  # port
    partitions = []
    for _ in range(take(">i")):
        take(">h")  # topic error code
        topic = string()
        for _ in range(take(">i")):
            take(">h")  # partition error code
            partition, leader = take(">i"), take(">i")
            partitions.append(PartitionState(topic, partition, leader, ids(), ids()))
    return Metadata(tuple(brokers), tuple(partitions))


def _read(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise ConnectionError("connection closed")
        data += chunk
    return data


def main() -> int:
    host, port = sys.argv[1].rsplit(":", 1)
    deadline = time.monotonic() + float(sys.argv[2])
    last = "no attempt"
    while time.monotonic() < deadline:
        try:
            if metadata_brokers(host, int(port)) > 0:
                return 0
            last = "metadata lists no broker yet"
        except OSError as error:
            last = str(error)
        time.sleep(0.5)
    print(f"Kafka at {host}:{port} did not answer a metadata request: {last}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
