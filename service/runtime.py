"""The consumer process: GC tuning, and tasks that run beside the broker for its lifetime."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator, Coroutine
from contextlib import asynccontextmanager
from typing import Any

# A batch creates tens of thousands of short-lived objects (events, states, parameters),
# freed by reference counting. With CPython's default threshold (700) the cyclic collector
# runs hundreds of times per batch and re-scans every long-lived object (imports, schemas,
# pools) on each full pass: profiling showed validation running 2-3x slower than in
# isolation. A higher first threshold and freezing what start-up allocated remove that.
# 200k rather than 50k: a 5000-event batch holds ~100k objects at its peak, so a lower
# threshold still ran one young collection per batch that scanned all of them (~7 ms).
GC_THRESHOLD = (200_000, 20, 100)


def tune_gc() -> None:
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLD)


@asynccontextmanager
async def background(*jobs: Coroutine[Any, Any, None]) -> AsyncIterator[None]:
    """Run `jobs` (loops that never end by themselves) as tasks inside the block; on leaving
    it, cancel them and wait until they have ended."""
    tasks = [asyncio.create_task(job) for job in jobs]
    try:
        yield
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
