"""Serve the app over HTTP (uvicorn), and end the process when its start cannot complete.

FastStream runs the app's start inside the ASGI lifespan: first the start-up checks (schema,
topics, the dead-letter producer), then, while uvicorn already serves HTTP, the broker and
its subscriber. Left alone, uvicorn prints a failure of the checks as a traceback and exits
3, and a failure of the subscriber's own start leaves the process up without a consumer.
`serve` instead raises `StartFailed` (its cause is the failure) in both cases, after uvicorn
has stopped, and the command line prints it as one line (service/cli/explain.py).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from faststream.asgi.types import ASGIApp, Receive, Scope, Send

log = logging.getLogger("service.serving")
# uvicorn's own line for a failed start-up: the `error:` line the command prints replaces it.
UVICORN_STARTUP_FAILED = "Application startup failed. Exiting."


class StartFailed(RuntimeError):
    """The application could not start; `__cause__` says why."""

    def __init__(self, cause: BaseException) -> None:
        lines = str(cause).strip().splitlines()
        reason = f"{type(cause).__name__}: {lines[0][:300]}" if lines else type(cause).__name__
        super().__init__(
            f"the consumer could not start ({reason}); the log above says more, and "
            "LOG_LEVEL=DEBUG logs the traceback"
        )


class LifespanWatch:
    """The app, with its lifespan watched: a failure before uvicorn asked it to shut down is
    a failed start. It is kept for `serve` (logged with its traceback at DEBUG only), and
    `stop` is called so that uvicorn stops serving a process that has no consumer."""

    def __init__(self, app: ASGIApp, stop: Callable[[], None]) -> None:
        self.app = app
        self.stop = stop
        self.failure: BaseException | None = None
        self._shutdown_asked = False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "lifespan":
            await self.app(scope, receive, send)
            return

        async def watched_receive() -> Any:
            message = await receive()
            if message["type"] == "lifespan.shutdown":
                self._shutdown_asked = True
            return message

        async def quiet_send(message: Any) -> None:
            if message["type"].endswith(".failed") and not self._shutdown_asked:
                message = {**message, "message": ""}  # the traceback uvicorn would print
            await send(message)

        try:
            await self.app(scope, watched_receive, quiet_send)
        except BaseException as error:
            if not self._shutdown_asked:
                log.debug("the application's start failed", exc_info=error)
                self.failure = error
                self.stop()
            raise


def _not_uvicorn_startup_failed(record: logging.LogRecord) -> bool:
    return record.getMessage() != UVICORN_STARTUP_FAILED


async def serve(app: ASGIApp, options: dict[str, Any]) -> None:
    """Run `app` under uvicorn (`options`: uvicorn.Config's) until it is told to stop.

    Raises StartFailed if the app's start failed, after uvicorn has stopped."""
    import uvicorn

    server: uvicorn.Server | None = None

    def stop() -> None:
        if server is not None:
            server.should_exit = True

    watch = LifespanWatch(app, stop)
    server = uvicorn.Server(uvicorn.Config(app=watch, log_level=logging.INFO, **options))
    uvicorn_log = logging.getLogger("uvicorn.error")
    uvicorn_log.addFilter(_not_uvicorn_startup_failed)
    try:
        await server.serve()
    except SystemExit:
        # uvicorn exits (3) when the lifespan failed before start-up completed.
        if watch.failure is None:
            raise
    finally:
        uvicorn_log.removeFilter(_not_uvicorn_startup_failed)
    if watch.failure is not None:
        raise StartFailed(watch.failure) from watch.failure
