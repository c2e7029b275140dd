"""How long the event loop stood still while a transaction was open.

A process frozen past the group's session timeout (SIGSTOP, a stopped VM, a long pause) has
lost its partitions to another member, and may wake in the middle of a statement the server
was still waiting for, where no idle limit ends its transaction. Wall-clock duration cannot
tell that from a live transaction that is merely slow (a slow link to PostgreSQL, a
dead-letter topic that acknowledges slowly): both take long. A frozen loop can: nothing
scheduled on it runs, so a timer that should fire every `tick_s` fires late by the length of
the freeze. A slow statement or acknowledgement leaves the loop free and the timer on time.
"""

from __future__ import annotations

import asyncio
import time

# Often enough that a freeze is measured to within a fraction of any session timeout (at
# least 1 s), rarely enough to cost nothing beside a transaction.
TICK_S = 0.25


class FreezeWatch:
    """Measures, from its start to `stop()`, the longest time between two runs of a timer
    due every `tick_s`: a freeze's length, plus at most `tick_s` (so it errs towards seeing
    a freeze, which costs a retry, never towards missing one)."""

    def __init__(self, tick_s: float = TICK_S) -> None:
        self._tick_s = tick_s
        self._loop = asyncio.get_running_loop()
        self._last = time.monotonic()
        self._longest = 0.0
        self._timer = self._loop.call_later(tick_s, self._tick)

    def _tick(self) -> None:
        self._note(time.monotonic())
        self._timer = self._loop.call_later(self._tick_s, self._tick)

    def _note(self, now: float) -> None:
        self._longest = max(self._longest, now - self._last)
        self._last = now

    def stop(self) -> float:
        """The longest freeze (seconds) since the start, including one that has only just
        ended (the process woke and this runs before the overdue timer)."""
        self._timer.cancel()
        self._note(time.monotonic())
        return self._longest
