"""Backoff.delay draws equal jitter: uniform between half the exponential ceiling and it."""

from __future__ import annotations

import pytest

from service.write_path.retry import Backoff


@pytest.mark.parametrize(("attempt", "ceiling"), [(1, 0.2), (2, 0.4), (3, 0.8), (6, 6.4), (7, 10)])
def test_each_delay_lies_between_half_the_ceiling_and_the_ceiling(
    attempt: int, ceiling: float
) -> None:
    delays = [Backoff(0.2, 10).delay(attempt) for _ in range(2000)]  # a miss: p < 1e-17

    assert ceiling / 2 <= min(delays) < ceiling / 2 * 1.02  # never below half: not full jitter
    assert ceiling * 0.98 < max(delays) <= ceiling  # spread up to the ceiling, capped
