"""Read a running service's HTTP endpoints (/metrics, /health/...) as Prometheus and a person
would: plain GETs, the text exposition parsed by sample."""

from __future__ import annotations

import asyncio
import re
import time
import urllib.error
import urllib.request
from collections.abc import Callable

from tests.support.consumer import ConsumerProcess


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


async def get(url: str) -> tuple[int, str]:
    return await asyncio.to_thread(_get, url)


def samples(metrics: str, name: str) -> dict[str, float]:
    """`name`'s samples in a Prometheus text exposition, by label string."""
    found = {}
    for line in metrics.splitlines():
        match = re.fullmatch(rf"{name}(\{{[^}}]*\}})? (\S+)", line)
        if match:
            found[match.group(1) or ""] = float(match.group(2))
    return found


async def wait_for_metric(
    url: str,
    name: str,
    done: Callable[[dict[str, float]], bool],
    consumer: ConsumerProcess,
    timeout: float = 60.0,
) -> dict[str, float]:
    """`name`'s samples at `url`/metrics once `done` says so; fails with the last seen."""
    deadline = time.monotonic() + timeout
    seen: dict[str, float] = {}
    while time.monotonic() < deadline:
        seen = samples((await get(f"{url}/metrics"))[1], name)
        if done(seen):
            return seen
        assert consumer.alive(), consumer.tail()
        await asyncio.sleep(0.3)
    raise AssertionError(f"{name} never got there; last {seen}\n--- log:\n{consumer.tail()}")
