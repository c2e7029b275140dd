"""A TCP server on 127.0.0.1 that runs its own asyncio loop in a thread, for the test's
stand-ins of the network between the service and a server (tests/support/tcp_forwarder.py,
tests/support/fault_proxy.py): a test blocked in a subprocess (a promote, a kill) never stalls
the traffic of the service and the harness. Controlled from any thread."""

from __future__ import annotations

import asyncio
import threading

LOOPBACK = "127.0.0.1"


class LoopbackServer:
    def __init__(self, port: int = 0) -> None:
        self.port = port  # 0: a free one, fixed at start for the server's life
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None

    def start(self) -> None:
        self._thread.start()
        self._call(self._listen())

    def stop(self) -> None:
        self._call(self._close())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    def _call(self, coroutine: object) -> None:
        asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(30)  # type: ignore[arg-type]

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(self._serve, LOOPBACK, self.port)
        self.port = int(self._server.sockets[0].getsockname()[1])

    async def _close(self) -> None:
        if self._server is not None:
            self._server.close()
        await self._abort_connections()

    async def _abort_connections(self) -> None:
        """Cut every connection open now (the loop's side)."""
        raise NotImplementedError

    async def _serve(self, client_in: asyncio.StreamReader, client: asyncio.StreamWriter) -> None:
        raise NotImplementedError
