"""Which failures the write path treats as transient (service/write_path/retry.py is_transient)."""

from __future__ import annotations

import asyncpg
from aiokafka.errors import KafkaConnectionError, KafkaTimeoutError
from sqlalchemy.exc import DBAPIError

from service.core.failures import OwnershipLapsed
from service.write_path.retry import is_permanent, is_transient, ran_out_of_time


def _through_sqlalchemy(error: Exception) -> DBAPIError:
    """As SQLAlchemy's asyncpg dialect raises it (seen on a real server): a DBAPIError
    whose `orig` (the DBAPI adapter's error) is caused by asyncpg's."""
    adapted = Exception(str(error))
    adapted.__cause__ = error
    return DBAPIError("INSERT INTO products ...", {}, adapted)


def test_a_read_only_server_is_transient_a_failover_makes_it_writable_again() -> None:
    read_only = asyncpg.exceptions.ReadOnlySQLTransactionError(
        "cannot execute INSERT in a read-only transaction"
    )
    assert read_only.sqlstate == "25006"
    assert is_transient(read_only)
    assert is_transient(_through_sqlalchemy(read_only))
    assert not is_permanent(_through_sqlalchemy(read_only))


def test_other_transaction_state_errors_stay_unexpected() -> None:
    """25006's parent class (25: invalid transaction state) is not transient as a whole."""
    in_failed = asyncpg.exceptions.InFailedSQLTransactionError("current transaction is aborted")
    assert not is_transient(in_failed)
    assert not is_transient(_through_sqlalchemy(in_failed))


def test_attempts_that_took_too_long_are_told_from_other_failures() -> None:
    """What makes the next attempt take fewer records (part_size.py)."""
    canceled = asyncpg.exceptions.QueryCanceledError("canceling statement due to statement timeout")
    assert ran_out_of_time(TimeoutError())  # POSTGRES_TIMEOUT_S, as asyncpg raises it
    assert ran_out_of_time(_through_sqlalchemy(canceled))
    assert ran_out_of_time(KafkaTimeoutError())
    closed = asyncpg.exceptions.ConnectionDoesNotExistError("connection was closed")
    assert not ran_out_of_time(_through_sqlalchemy(closed))
    assert not ran_out_of_time(KafkaConnectionError())
    assert not ran_out_of_time(OwnershipLapsed("frozen"))
