"""PostgreSQL's work for a run, from its cumulative counters read before and after it.

pg_stat_statements would give these per statement, but it needs shared_preload_libraries
and a server restart (and the shared server is not ours to restart), so the counters are
the server's own, always there:

- WAL: `pg_current_wal_lsn()` (bytes) and `pg_stat_wal` (records, full-page images). These are
  the whole server's: anything else writing to it meanwhile is counted too.
- shared buffers: `pg_stat_database` for the bench database (blocks found in shared buffers:
  hits; blocks read from the kernel, its page cache or the disk: reads; commits), and
  `pg_statio_user_tables` per table (heap and index reads of products and processed_events).

A backend reports its counters when it goes idle, at most once a second, and when it exits:
read them after the system under test has closed its connections.
"""

from __future__ import annotations

import asyncpg

WAL = """
SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::float8 AS wal_bytes,
       wal_records::float8, wal_fpi::float8
FROM pg_stat_wal
"""
DATABASE = """
SELECT blks_hit::float8, blks_read::float8, xact_commit::float8
FROM pg_stat_database WHERE datname = current_database()
"""
TABLES = """
SELECT relname,
       (coalesce(heap_blks_read, 0) + coalesce(idx_blks_read, 0))::float8 AS reads,
       (coalesce(heap_blks_hit, 0) + coalesce(idx_blks_hit, 0))::float8 AS hits
FROM pg_statio_user_tables WHERE relname IN ('products', 'processed_events')
"""


async def counters(connection: asyncpg.Connection) -> dict[str, float]:
    """The server's cumulative counters now, for `connection`'s database."""
    await connection.execute("SELECT pg_stat_clear_snapshot()")
    wal = await connection.fetchrow(WAL)
    db = await connection.fetchrow(DATABASE)
    assert wal is not None and db is not None
    found = {**dict(wal), **dict(db)}
    for row in await connection.fetch(TABLES):
        found[f"{row['relname']} reads"] = row["reads"]
        found[f"{row['relname']} hits"] = row["hits"]
    return found


def spent(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    """What happened between two readings (a table emptied or made meanwhile counts from 0)."""
    return {name: value - before.get(name, 0.0) for name, value in after.items()}
