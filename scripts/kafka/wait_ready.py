"""Wait until a Kafka broker answers a Metadata request (stdlib only: runs before any venv).

usage: python3 wait_ready.py HOST:PORT TIMEOUT_SECONDS
"""

import socket
import struct
import sys
import time


def metadata_brokers(host: str, port: int) -> int:
    """Send Metadata v0 (all topics) and return how many brokers the answer lists."""
    client_id = b"local-stack"
    body = struct.pack(">hhih", 3, 0, 1, len(client_id)) + client_id + struct.pack(">i", 0)
    with socket.create_connection((host, port), timeout=3) as sock:
        sock.sendall(struct.pack(">i", len(body)) + body)
        size = struct.unpack(">i", _read(sock, 4))[0]
        payload = _read(sock, size)
    # correlation id (4 bytes), then the brokers array length
    return int(struct.unpack(">i", payload[4:8])[0])


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
