"""How many records of a batch one transaction takes.

A whole batch, normally. A batch can be too big for its surroundings, though: on a slow link
to PostgreSQL its statements outlast POSTGRES_TIMEOUT_S, and run again whole they time out
again, for ever. So after an attempt that ran out of time the next ones take half as many
records, down to one; what no longer fits a transaction is committed in consecutive parts.
The limit doubles back after each `regrow_s` without a timeout, up to whole batches again,
so a link that recovers gets them back. It is not lifted by a batch smaller than the limit:
the next backlog's batch would time out again from the start (seen at 64 KiB/s: three
timeouts in a row, a 23 s stall).
"""

from __future__ import annotations

import time
from collections.abc import Callable

REGROW_S = 60.0
# A limit this high limits no batch (BATCH_MAX_RECORDS is far below it): whole batches again.
NO_LIMIT_ABOVE = 1 << 20


class PartSize:
    def __init__(
        self, regrow_s: float = REGROW_S, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._regrow_s = regrow_s
        self._clock = clock
        self._limit: int | None = None  # None: whole batches
        self._since = 0.0  # when the limit was last set or grown

    def of(self, records: int) -> int:
        """How many of `records` the next transaction takes."""
        self._regrow()
        return records if self._limit is None else min(records, self._limit)

    def ran_out_of_time(self, tried: int) -> int:
        """An attempt at `tried` records ran out of time: the new limit."""
        self._limit = max(1, tried // 2)
        self._since = self._clock()
        return self._limit

    @property
    def limit(self) -> int | None:
        return self._limit

    def _regrow(self) -> None:
        if self._limit is None:
            return
        now = self._clock()
        while self._limit is not None and now - self._since >= self._regrow_s:
            self._since += self._regrow_s
            self._limit *= 2
            if self._limit > NO_LIMIT_ABOVE:
                self._limit = None
