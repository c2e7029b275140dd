"""Retry with bounded exponential backoff: transient failures never skip or dead-letter."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Awaitable, Callable, Iterator
from typing import TypeVar

import asyncpg
from aiokafka.errors import KafkaError, KafkaTimeoutError, RequestTimedOutError
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

from service.core.failures import Conflict, OwnershipLapsed, PartitionStopped, UnstorableRow
from service.kafka.transient import retriable_kafka_error
from service.observability.logs import brief

T = TypeVar("T")
log = logging.getLogger("service.retry")

_TRANSIENT_PG = (
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.exceptions.SerializationError,
    asyncpg.exceptions.DeadlockDetectedError,
    asyncpg.exceptions.TooManyConnectionsError,
    asyncpg.exceptions.CannotConnectNowError,
    asyncpg.exceptions.AdminShutdownError,
    asyncpg.exceptions.CrashShutdownError,
    asyncpg.exceptions.QueryCanceledError,
    asyncpg.exceptions.LockNotAvailableError,
    # SQLSTATE 25006: the server is read-only (a replica not yet promoted during a failover,
    # or default_transaction_read_only); it takes writes again once it is primary.
    asyncpg.exceptions.ReadOnlySQLTransactionError,
)


def is_transient(error: BaseException) -> bool:
    """True for failures of the surroundings (database, broker, network), not of the data."""
    if isinstance(
        error, Conflict | PartitionStopped | OwnershipLapsed | OperationalError | InterfaceError
    ):
        return True
    if isinstance(error, KafkaError):
        return retriable_kafka_error(error)
    if isinstance(error, DBAPIError):
        if error.connection_invalidated:
            return True
        cause = error.orig.__cause__ if error.orig is not None else None
        return isinstance(cause, _TRANSIENT_PG) or isinstance(error.orig, _TRANSIENT_PG)
    return isinstance(error, (*_TRANSIENT_PG, OSError, TimeoutError))


_PERMANENT_PG = (
    asyncpg.exceptions.DataError,  # SQLSTATE class 22: the value itself is wrong
    asyncpg.exceptions.IntegrityConstraintViolationError,  # class 23
    asyncpg.exceptions.ProgramLimitExceededError,  # class 54, e.g. an index row too large
    asyncpg.exceptions._base.DataError,  # a parameter asyncpg cannot encode
)


def is_permanent(error: BaseException) -> bool:
    """True when the data of the batch made the database refuse it: retrying the same
    statement fails the same way."""
    return any(
        isinstance(seen, (*_PERMANENT_PG, UnicodeEncodeError, UnstorableRow))
        for seen in _causes(error)
    )


def ran_out_of_time(error: BaseException) -> bool:
    """True when an attempt failed because it took too long: a statement past
    POSTGRES_TIMEOUT_S or the server's statement_timeout, letters not acknowledged in time.
    A smaller part of the batch may fit where the whole did not (part_size.py)."""
    return any(
        isinstance(
            seen,
            TimeoutError
            | asyncpg.exceptions.QueryCanceledError
            | KafkaTimeoutError
            | RequestTimedOutError,
        )
        for seen in _causes(error)
    )


def _causes(error: BaseException) -> Iterator[BaseException]:
    """`error` and what lies under it, as SQLAlchemy and asyncpg wrap it (the DBAPI error
    in `orig`, the driver's under `__cause__`): at most five deep."""
    seen: BaseException | None = error
    for _ in range(5):
        if seen is None:
            return
        yield seen
        seen = getattr(seen, "orig", None) or seen.__cause__


class Backoff:
    def __init__(self, initial: float, maximum: float) -> None:
        self.initial = initial
        self.maximum = maximum

    def delay(self, attempt: int) -> float:
        """Exponential delay with equal jitter for the given attempt (1-based): uniform
        between half the ceiling and the ceiling, so retries spread out but never fire at once."""
        ceiling: float = min(self.maximum, self.initial * 2 ** (attempt - 1))
        return random.uniform(ceiling / 2, ceiling)


async def retry_forever(
    operation: Callable[[], Awaitable[T]],
    backoff: Backoff,
    *,
    what: str,
    on_retry: Callable[[BaseException], None] | None = None,
) -> T:
    """Run `operation` until it succeeds, sleeping between failures.

    Transient failures are expected and logged as warnings. Anything else is logged as an
    error with its traceback and retried too: the batch holds its position rather than skip
    valid events, so an operator can fix the cause without losing data.
    """
    attempt = 0
    while True:
        attempt += 1
        try:
            return await operation()
        except asyncio.CancelledError:
            raise
        except Exception as error:
            if _being_cancelled():
                # Cancelled mid-transaction, the rollback on the connection asyncpg closed
                # raises in place of the CancelledError; retried, the write would outlive
                # its cancellation (a shutdown would wait for it for ever).
                raise asyncio.CancelledError from error
            # Nothing below may raise: an exception escaping here would let the consumer move
            # past records that were never written.
            with contextlib.suppress(Exception):
                if on_retry is not None:
                    on_retry(error)
            delay = backoff.delay(attempt)
            if _safely_transient(error):
                log.warning(
                    "%s failed (attempt %d, transient: %s); retrying in %.2fs",
                    what,
                    attempt,
                    brief(error),
                    delay,
                )
            else:
                log.error(
                    "%s failed (attempt %d) with an unexpected error; the batch keeps its "
                    "position and is retried in %.2fs. If this repeats, check the database "
                    "schema is at `alembic upgrade head` and report the traceback.",
                    what,
                    attempt,
                    delay,
                    exc_info=error,
                )
            await asyncio.sleep(delay)


def _being_cancelled() -> bool:
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


def _safely_transient(error: BaseException) -> bool:
    try:
        return is_transient(error)
    except Exception:  # pragma: no cover - classification must never break the retry loop
        return False
