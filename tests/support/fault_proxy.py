"""A loopback TCP proxy with switchable network faults, for the network fault scenarios
(tests/faults/network.py): the service's POSTGRES_PORT, or the port a broker advertises, is
the proxy's, so the test can make the network between the service and the server slow, cut,
half-open or narrow without touching the server (the shared PostgreSQL is never restarted).

Faults ("toxics", as toxiproxy calls them) apply per connection, each direction on its own:
- `latency_s`: every chunk is delivered that much later, each way (pipelined: throughput
  stays, each round trip gains twice the latency).
- `bandwidth`: bytes per second per connection and direction.
- `partition()`: every open connection is black-holed (bytes read and dropped, nothing
  closed: no FIN, no RST), and new connections are accepted but never answered.
- `half_open(direction)`: the same, for one direction only: "to_client" drops the server's
  replies (the server still gets and acts on every request: a COMMIT is applied and its
  answer lost), "to_server" drops the client's requests.
- `heal()`: new connections pass again. Connections that lost bytes stay dead for ever, as
  when a firewall or NAT forgot the flow: their bytes are gone, so each end must notice by
  itself (timeouts, keepalives). Their server side stays open too, as the server never hears
  of the partition: PostgreSQL keeps such a session, and its locks, until it times out.

Why in the test rather than toxiproxy: the same faults, with no binary to build, install or
start in CI, and no port of its own to manage; the scenarios switch toxics with a method
call instead of an HTTP API, and the proxy runs its own asyncio loop in a thread, so a test
blocked in a subprocess never stalls the traffic.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Literal

from tests.support.loopback_server import LOOPBACK, LoopbackServer

CHUNK = 65536
Direction = Literal["to_server", "to_client"]


@dataclass(eq=False)
class _Connection:
    """One proxied connection; `dead` holds the directions whose bytes are dropped."""

    client: asyncio.StreamWriter
    server: asyncio.StreamWriter | None = None
    dead: set[Direction] = field(default_factory=set)


class FaultProxy(LoopbackServer):
    def __init__(self, target_port: int, port: int = 0) -> None:
        super().__init__(port)
        self.target_port = target_port
        self.latency_s = 0.0
        self.bandwidth: float | None = None  # bytes/s per connection and direction
        self._dropping: set[Direction] = set()  # for connections made while a fault lasts
        self._connections: set[_Connection] = set()
        self.connections_made = 0

    # -- control (from any thread) -------------------------------------------------------------
    def partition(self) -> None:
        """Black-hole every open connection, and every new one until `heal`."""
        self._call(self._drop({"to_server", "to_client"}))

    def half_open(self, direction: Direction) -> None:
        """Drop one direction's bytes on every open connection, and on new ones until `heal`."""
        self._call(self._drop({direction}))

    def heal(self) -> None:
        """New connections pass again; the ones that lost bytes stay dead."""
        self._call(self._drop(set()))

    @property
    def dead_connections(self) -> int:
        return sum(1 for connection in list(self._connections) if connection.dead)

    # -- the loop's side -------------------------------------------------------------------------
    async def _drop(self, directions: set[Direction]) -> None:
        self._dropping = set(directions)
        for connection in self._connections:
            connection.dead |= directions

    async def _abort_connections(self) -> None:
        for connection in list(self._connections):
            for writer in (connection.client, connection.server):
                if writer is not None:
                    writer.transport.abort()

    async def _serve(self, client_in: asyncio.StreamReader, client: asyncio.StreamWriter) -> None:
        self.connections_made += 1
        connection = _Connection(client, dead=set(self._dropping))
        self._connections.add(connection)
        try:
            if connection.dead == {"to_server", "to_client"}:
                # Made during a partition: accepted (the kernel did) and never answered.
                while await client_in.read(CHUNK):
                    pass
                return
            try:
                server_in, server = await asyncio.open_connection(LOOPBACK, self.target_port)
            except OSError:  # the server is down: the client sees its connection refused
                client.transport.abort()
                return
            connection.server = server
            await asyncio.gather(
                self._pipe(connection, "to_server", client_in, server),
                self._pipe(connection, "to_client", server_in, client),
            )
        finally:
            self._connections.discard(connection)

    async def _pipe(
        self,
        connection: _Connection,
        direction: Direction,
        source: asyncio.StreamReader,
        sink: asyncio.StreamWriter,
    ) -> None:
        """Copy `direction` until its source closes, with the toxics of the moment. Latency is
        pipelined: chunks wait in a queue for their delivery time, so reading goes on."""
        queue: asyncio.Queue[tuple[float, bytes] | None] = asyncio.Queue(maxsize=256)

        async def deliver() -> None:
            while (item := await queue.get()) is not None:
                due, data = item
                if direction in connection.dead:
                    continue
                await asyncio.sleep(max(0.0, due - time.monotonic()))
                if self.bandwidth:
                    await asyncio.sleep(len(data) / self.bandwidth)
                if direction in connection.dead:  # cut while it waited
                    continue
                sink.write(data)
                await sink.drain()

        delivery = asyncio.create_task(deliver())
        try:
            while data := await source.read(CHUNK):
                if direction not in connection.dead:
                    await queue.put((time.monotonic() + self.latency_s, data))
            await queue.put(None)
            await delivery
        except (ConnectionError, OSError):
            pass
        finally:
            delivery.cancel()
            if not connection.dead:
                # A close passes on only while the connection is whole: a black-holed peer
                # never learns the other end went away.
                sink.transport.abort()
                source.feed_eof()


@contextlib.contextmanager
def fault_proxy(target_port: int, port: int = 0) -> Iterator[FaultProxy]:
    proxy = FaultProxy(target_port, port)
    proxy.start()
    try:
        yield proxy
    finally:
        proxy.stop()
