"""Retrying a batch until it commits (service/write_path/retry.py retry_forever)."""

from __future__ import annotations

import asyncio

import pytest

from service.write_path.retry import Backoff, retry_forever


async def test_transient_failures_are_retried_until_the_operation_succeeds() -> None:
    attempts: list[int] = []

    async def flaky() -> str:
        attempts.append(len(attempts) + 1)
        if len(attempts) < 3:
            raise ConnectionResetError("the database went away")
        return "committed"

    assert await retry_forever(flaky, Backoff(0.001, 0.001), what="batch") == "committed"
    assert attempts == [1, 2, 3]


async def test_a_cancelled_operation_is_not_retried_even_when_its_cleanup_raised() -> None:
    """Cancelled inside a transaction, the rollback on a connection asyncpg closed raises an
    ordinary error in place of the CancelledError: the cancellation still ends the retries."""
    attempts = 0

    async def transaction() -> None:
        nonlocal attempts
        attempts += 1
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError as cancelled:
            closed = "cannot call Transaction.rollback(): connection is closed"
            raise ConnectionError(closed) from cancelled

    task = asyncio.create_task(retry_forever(transaction, Backoff(0.001, 0.001), what="batch"))
    await asyncio.sleep(0.05)
    task.cancel()
    done, _ = await asyncio.wait({task}, timeout=2)
    assert done == {task}
    with pytest.raises(asyncio.CancelledError):
        task.result()
    assert attempts == 1
