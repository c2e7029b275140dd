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
import threading
from collections.abc import Iterator

LOOPBACK = "127.0.0.1"


class Forwarder:
    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = 0  # bound at start: free, then fixed for the forwarder's life
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None
        self._open: set[asyncio.WriteTransport] = set()

    def start(self) -> None:
        self._thread.start()
        self._call(self._listen())

    def stop(self) -> None:
        self._call(self._close())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    def repoint(self, target_port: int) -> None:
        """Forward new connections to `target_port` and cut those to the old target."""
        self._call(self._repoint(target_port))

    def _call(self, coroutine: object) -> None:
        asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(30)  # type: ignore[arg-type]

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(self._serve, LOOPBACK, 0)
        self.port = int(self._server.sockets[0].getsockname()[1])

    async def _repoint(self, target_port: int) -> None:
        self.target_port = target_port
        for transport in list(self._open):
            transport.abort()

    async def _close(self) -> None:
        if self._server is not None:
            self._server.close()
        await self._repoint(self.target_port)

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
