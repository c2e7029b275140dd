"""One GET through an ASGI app, without a server: how the unit tests read the probes and
/metrics."""

from __future__ import annotations

from typing import Any


async def call(app: Any, path: str) -> tuple[int, bytes]:
    """One GET through an ASGI app: (status, body)."""
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "GET", "path": path, "headers": [], "query_string": b""}
    await app(scope, receive, send)
    return sent[0]["status"], b"".join(m.get("body", b"") for m in sent[1:])
