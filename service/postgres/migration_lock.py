"""One migration at a time per database: a PostgreSQL session advisory lock.

Orchestrators start one `migrate` init container per replica. Each takes this lock before
Alembic reads the schema's revision, and holds it until the upgrade (and the grants after it)
committed, so the others wait and then find the schema at head. PostgreSQL releases the lock
when the session ends, so a migrator that dies never leaves it behind.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

from sqlalchemy import Connection, text

# "inv-sink" in ASCII, as a bigint. Advisory locks are per database, so each database
# migrates on its own. In pg_locks it shows as classid 1768846893, objid 1936289387.
MIGRATION_LOCK_KEY = 0x696E762D73696E6B

HOLDER = text(
    "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted "
    "AND database = (SELECT oid FROM pg_database WHERE datname = current_database()) "
    "AND classid = :high AND objid = :low AND objsubid = 1"
)


@contextlib.contextmanager
def migration_lock(
    connection: Connection, on_wait: Callable[[int | None], None] | None = None
) -> Iterator[None]:
    """Hold the migration lock on `connection` for the block; `on_wait(pid of the holder)` is
    called once if another session holds it and this one has to wait."""
    key = {"key": MIGRATION_LOCK_KEY}
    got = connection.scalar(text("SELECT pg_try_advisory_lock(:key)"), key)
    if not got:
        if on_wait is not None:
            high, low = MIGRATION_LOCK_KEY >> 32, MIGRATION_LOCK_KEY & 0xFFFFFFFF
            on_wait(connection.scalar(HOLDER, {"high": high, "low": low}))
        connection.execute(text("SELECT pg_advisory_lock(:key)"), key)
    # The lock belongs to the session: end the implicit transaction, keep the lock.
    connection.commit()
    try:
        yield
    except BaseException:
        # The lock goes with the session anyway; never hide the real error behind the unlock.
        with contextlib.suppress(Exception):
            _unlock(connection)
        raise
    _unlock(connection)


def _unlock(connection: Connection) -> None:
    if connection.in_transaction():
        connection.rollback()
    connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": MIGRATION_LOCK_KEY})
    connection.commit()
