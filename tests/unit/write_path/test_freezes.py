"""How long the event loop stood still (service/write_path/freezes.py): a frozen loop is
told from a slow wait."""

from __future__ import annotations

import asyncio
import time

from service.write_path.freezes import FreezeWatch


async def test_a_slow_wait_on_a_live_loop_is_no_freeze() -> None:
    watch = FreezeWatch(tick_s=0.05)
    await asyncio.sleep(0.6)
    assert watch.stop() < 0.3


async def test_a_loop_blocked_for_a_while_is_measured_at_least_that_long() -> None:
    watch = FreezeWatch(tick_s=0.05)
    await asyncio.sleep(0.12)
    time.sleep(0.4)  # noqa: ASYNC251 - as in SIGSTOP, nothing else on the loop runs
    await asyncio.sleep(0.12)
    assert 0.4 <= watch.stop() < 0.6


async def test_a_freeze_that_just_ended_counts_before_the_timer_runs_again() -> None:
    watch = FreezeWatch(tick_s=0.05)
    time.sleep(0.3)  # noqa: ASYNC251 - a freeze
    assert watch.stop() >= 0.3
