"""Which failures the write path treats as transient (service/write_path/retry.py is_transient)."""

from __future__ import annotations

import asyncpg
from sqlalchemy.exc import DBAPIError

from service.write_path.retry import is_permanent, is_transient


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
