"""A loopback TCP forwarder on a fixed port: the test's stand-in for the virtual IP or proxy
that production puts in front of the database. The service's POSTGRES_HOST/POSTGRES_PORT name
the forwarder; a failover repoints it to the promoted server and drops every connection to
the old one, as a moved address does, without touching the service's settings.

It runs its own asyncio loop in a thread, so that a test blocked in a subprocess (a promote,
a kill) never stalls the traffic of the service and the harness.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator

from tests.support.loopback_server import LOOPBACK, LoopbackServer


class Forwarder(LoopbackServer):
    def __init__(self, target_port: int) -> None:
        super().__init__()
        self.target_port = target_port
        self._open: set[asyncio.WriteTransport] = set()

    def repoint(self, target_port: int) -> None:
        """Forward new connections to `target_port` and cut those to the old target."""
        self._call(self._repoint(target_port))

    async def _repoint(self, target_port: int) -> None:
        self.target_port = target_port
        await self._abort_connections()

    async def _abort_connections(self) -> None:
        for transport in list(self._open):
            transport.abort()

    async def _serve(self, client_in: asyncio.StreamReader, client: asyncio.StreamWriter) -> None:
        try:
            server_in, server = await asyncio.open_connection(LOOPBACK, self.target_port)
        except OSError:  # the target is down: the client sees its connection refused
            client.transport.abort()
            return
        ends = {client.transport, server.transport}
        self._open |= ends
        try:
            await asyncio.gather(_pipe(client_in, server), _pipe(server_in, client))
        finally:
            self._open -= ends


async def _pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
    """Copy until either side closes, then close both ends of this direction."""
    try:
        while data := await source.read(65536):
            sink.write(data)
            await sink.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        sink.transport.abort()
        source.feed_eof()


@contextlib.contextmanager
def forwarding(target_port: int) -> Iterator[Forwarder]:
    forwarder = Forwarder(target_port)
    forwarder.start()
    try:
        yield forwarder
    finally:
        forwarder.stop()
