"""Which process committed which position, from the database itself.

A deferred constraint trigger on `consumer_offsets` (installed in the test's own database and
dropped again) records, for every position a transaction writes, the partition, the new next
offset, the client port of the connection that wrote it, when the transaction began and when
it committed (a deferred trigger runs at COMMIT). `SocketOwners` maps client ports to the
consumer processes that held them, from /proc, so each committed position is attributed to
the process that wrote it, not inferred from the final table.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.support.consumer import ConsumerProcess

_INSTALL = [
    """CREATE TABLE IF NOT EXISTS position_audit (
        id bigserial PRIMARY KEY,
        partition integer NOT NULL,
        next_offset bigint NOT NULL,
        client_port integer,
        began double precision NOT NULL,
        committed double precision NOT NULL
    )""",
    "TRUNCATE position_audit",
    """CREATE OR REPLACE FUNCTION position_audit_record() RETURNS trigger
    LANGUAGE plpgsql AS $$
    BEGIN
        INSERT INTO position_audit (partition, next_offset, client_port, began, committed)
        VALUES (NEW.partition, NEW.next_offset, inet_client_port(),
                extract(epoch FROM transaction_timestamp()),
                extract(epoch FROM clock_timestamp()));
        RETURN NULL;
    END $$""",
    "DROP TRIGGER IF EXISTS position_audit ON consumer_offsets",
    """CREATE CONSTRAINT TRIGGER position_audit AFTER INSERT OR UPDATE ON consumer_offsets
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION position_audit_record()""",
]
_REMOVE = [
    "DROP TRIGGER IF EXISTS position_audit ON consumer_offsets",
    "DROP FUNCTION IF EXISTS position_audit_record()",
    "DROP TABLE IF EXISTS position_audit",
]


@dataclass(frozen=True)
class Write:
    partition: int
    next_offset: int
    client_port: int | None
    began: float  # epoch seconds (the machine's clock, as time.time())
    committed: float


async def install(engine: AsyncEngine) -> None:
    async with engine.begin() as connection:
        for statement in _INSTALL:
            await connection.execute(text(statement))


async def remove(engine: AsyncEngine) -> None:
    async with engine.begin() as connection:
        for statement in _REMOVE:
            await connection.execute(text(statement))


async def writes(engine: AsyncEngine) -> list[Write]:
    async with engine.connect() as connection:
        rows = await connection.execute(
            text(
                "SELECT partition, next_offset, client_port, began, committed "
                "FROM position_audit ORDER BY id"
            )
        )
        return [Write(*row) for row in rows]


async def locking_ports(engine: AsyncEngine) -> dict[int, str]:
    """Client ports of the sessions now in a transaction that has locked positions (SELECT
    ... FOR UPDATE on consumer_offsets: the write path between its lock and its commit), with
    what each session is doing (state / wait event)."""
    async with engine.connect() as connection:
        rows = await connection.execute(
            text(
                "SELECT a.client_port, a.state || ' / ' || coalesce(a.wait_event, '-') "
                "FROM pg_stat_activity a "
                "JOIN pg_locks l ON l.pid = a.pid AND l.granted "
                "WHERE l.relation = 'consumer_offsets'::regclass AND l.mode = 'RowShareLock' "
                "AND a.datname = current_database() AND a.client_port IS NOT NULL"
            )
        )
        return {int(port): doing for port, doing in rows}


_SOCKET = re.compile(r"socket:\[(\d+)\]")


def _local_ports_by_inode() -> dict[int, int]:
    ports: dict[int, int] = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            ports[int(fields[9])] = int(fields[1].rsplit(":", 1)[1], 16)
    return ports


class SocketOwners:
    """client port -> name of the consumer process that held a TCP socket on it (sampled)."""

    def __init__(self) -> None:
        self.owner: dict[int, str] = {}

    def sample(self, processes: list[ConsumerProcess]) -> None:
        ports = _local_ports_by_inode()
        for process in processes:
            if process.process is None or not process.alive():
                continue
            fd_dir = Path(f"/proc/{process.process.pid}/fd")
            try:
                links = [os.readlink(fd_dir / fd) for fd in os.listdir(fd_dir)]
            except OSError:  # it exited between the check and the listing
                continue
            for link in links:
                if (found := _SOCKET.match(link)) and (port := ports.get(int(found.group(1)))):
                    self.owner[port] = process.name

    def ports_of(self, name: str) -> set[int]:
        return {port for port, owner in self.owner.items() if owner == name}

    def of(self, write: Write) -> str | None:
        return None if write.client_port is None else self.owner.get(write.client_port)
