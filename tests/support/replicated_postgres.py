"""A throwaway PostgreSQL primary with a streaming ASYNCHRONOUS replica, behind a loopback TCP
forwarder, for failover scenarios: what production runs, on this machine's loopback ports.

The primary commits without waiting for the replica (`synchronous_standby_names = ''`), so a
replica whose WAL stream was cut lacks transactions the primary committed; a crashed primary
takes them with it. Operations: cut the replica's WAL stream, crash the primary (SIGKILL of
all its processes: a lost host, no shutdown checkpoint), promote the replica, a clean
switchover (the primary stopped after the replica received all its WAL), and repoint the
forwarder. The service and the test's own engine connect through the forwarder as a role
that owns the database; the test reads each server directly to prove what was lost.

Data and sockets live in a temporary directory removed at exit; server logs go to the
test's log directory. The shared PostgreSQL is never touched.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.conftest import alembic
from tests.support.brokers import free_port
from tests.support.postgres_cluster import (
    as_owner,
    hand_over,
    init_data_dir,
    server_bindir,
    server_directory,
)
from tests.support.processes import serving
from tests.support.services import PostgresEndpoint
from tests.support.tcp_forwarder import Forwarder, forwarding

ROLE = "inventory_failover"
PASSWORD = "failover-pass"
DATABASE = "inventory_failover"

# Both roles: replication needs `replica`; the replica must serve reads (hot standby).
OPTIONS = {
    "listen_addresses": "127.0.0.1",
    "fsync": "off",
    "shared_buffers": "16MB",
    "max_connections": "40",
    "wal_level": "replica",
    "max_wal_senders": "4",
    "wal_keep_size": "512MB",
    "hot_standby": "on",
    "synchronous_standby_names": "",
    "wal_receiver_status_interval": "1s",
}


@dataclass
class Node:
    """One server: its data directory, port and Unix socket directory."""

    name: str
    data: Path
    sockets: Path
    port: int
    log: Path
    bindir: Path

    def command(self) -> list[str]:
        options = {**OPTIONS, "port": str(self.port), "unix_socket_directories": str(self.sockets)}
        settings = [arg for key, value in options.items() for arg in ("-c", f"{key}={value}")]
        return as_owner([str(self.bindir / "postgres"), "-D", str(self.data), *settings])

    def run(self, *command: str, timeout: float = 120) -> str:
        """A server tool from the bindir, as the server's user; its output."""
        done = subprocess.run(
            as_owner([str(self.bindir / command[0]), *command[1:]]),
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed on the {self.name}:\n{done.stderr}")
        return done.stdout

    def query(self, sql: str, database: str = "postgres") -> list[list[str]]:
        """Rows of `sql` run as the superuser over the Unix socket (no pool to go stale)."""
        out = self.run(
            "psql", "-X", "-q", "-At", "-F", "\t", "-v", "ON_ERROR_STOP=1",
            "-h", str(self.sockets), "-p", str(self.port), "-U", "postgres", "-d", database,
            "-c", sql,
        )  # fmt: skip
        return [line.split("\t") for line in out.splitlines()]

    def value(self, sql: str, database: str = "postgres") -> str:
        rows = self.query(sql, database)
        assert len(rows) == 1 and len(rows[0]) == 1, f"{sql!r} on the {self.name}: {rows}"
        return rows[0][0]

    def postmaster_pid(self) -> int:
        return int((self.data / "postmaster.pid").read_text().splitlines()[0])


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                # Field 4 of /proc/PID/stat (after the parenthesised name) is the parent.
                stat = (entry / "stat").read_text()
                if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                    found.append(int(entry.name))
    return found


def _lsn(text: str) -> int:
    high, low = text.split("/")
    return (int(high, 16) << 32) | int(low, 16)


class ReplicatedPostgres:
    def __init__(self, directory: Path, log_dir: Path, forwarder: Forwarder) -> None:
        self.bindir = server_bindir()
        self.directory = directory
        self.forwarder = forwarder
        self.primary = self._node("primary", log_dir)
        self.replica = self._node("replica", log_dir)
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.stack = contextlib.ExitStack()

    def _node(self, name: str, log_dir: Path) -> Node:
        sockets = self.directory / f"{name}-sockets"
        sockets.mkdir()
        hand_over(sockets)
        return Node(
            name, self.directory / name, sockets, free_port(), log_dir / f"{name}.log", self.bindir
        )

    # -- endpoints ---------------------------------------------------------------------------
    @property
    def endpoint(self) -> PostgresEndpoint:
        """The database through the forwarder: what the service and the harness use."""
        return PostgresEndpoint("127.0.0.1", self.forwarder.port, ROLE, PASSWORD, DATABASE)

    def direct(self, node: Node) -> PostgresEndpoint:
        return dataclasses.replace(self.endpoint, port=node.port)

    # -- set-up ------------------------------------------------------------------------------
    def _start(self, node: Node, timeout: float = 60.0) -> None:
        # "ready to accept connections", or "... read-only connections" on a standby.
        process = self.stack.enter_context(
            serving(node.command(), node.log, b"ready to accept", f"the {node.name}",
                    timeout=timeout, stop=signal.SIGINT)
        )  # fmt: skip
        self.processes[node.name] = process

    def start(self) -> None:
        init_data_dir(self.bindir, self.primary.data)
        self._start(self.primary)
        self.primary.query(f"CREATE ROLE {ROLE} LOGIN PASSWORD '{PASSWORD}'")
        self.primary.query(f"CREATE DATABASE {DATABASE} OWNER {ROLE}")
        migrated = alembic(self.endpoint, "upgrade", "head")
        if migrated.returncode != 0:
            raise RuntimeError(f"alembic upgrade head failed on the primary:\n{migrated.stderr}")
        # The replica starts from the migrated database and streams from then on.
        self.replica.data.mkdir(mode=0o700)
        hand_over(self.replica.data)
        self.primary.run(
            "pg_basebackup", "-D", str(self.replica.data), "-h", str(self.primary.sockets),
            "-p", str(self.primary.port), "-U", "postgres", "-R", "-X", "stream", "-c", "fast",
        )  # fmt: skip
        self._start(self.replica)
        self.wait_streaming()

    def stop(self) -> None:
        self.stack.close()

    # -- replication -------------------------------------------------------------------------
    def wait_streaming(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            states = self.primary.query("SELECT state FROM pg_stat_replication")
            if ["streaming"] in states:
                return
            time.sleep(0.2)
        raise AssertionError(f"the replica never streamed from the primary ({states})")

    def cut_replication(self, timeout: float = 30.0) -> None:
        """Point the replica's WAL stream at a dead port: from now on the primary commits
        alone, and every commit is one the replica will never have."""
        auto_conf = self.replica.data / "postgresql.auto.conf"
        conf = auto_conf.read_text()
        cut, count = re.subn(r"port=\d+", f"port={free_port()}", conf)
        assert count, f"no primary_conninfo port in {auto_conf}:\n{conf}"
        auto_conf.write_text(cut)
        self.replica.run("pg_ctl", "reload", "-D", str(self.replica.data))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            receiving = self.replica.query(
                "SELECT status FROM pg_stat_wal_receiver WHERE status = 'streaming'"
            )
            sending = self.primary.query("SELECT state FROM pg_stat_replication")
            if not receiving and not sending:
                return
            time.sleep(0.2)
        raise AssertionError("the replica still streams WAL after its conninfo was cut")

    def crash_primary(self) -> None:
        """SIGKILL every process of the primary at once, as a lost host: the postmaster and
        its children (each backend leads a process group of its own, so one killpg is not
        enough). Frozen first, so no backend commits or answers after the first kill."""
        postmaster = self.primary.postmaster_pid()
        frozen: set[int] = set()
        for _ in range(3):  # a child forked while freezing is caught on the next pass
            for pid in {postmaster, *_children(postmaster)} - frozen:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGSTOP)
                frozen.add(pid)
        for pid in frozen:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        process = self.processes["primary"]
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(30)

    def commits_not_streamed(self) -> int:
        """COMMIT records in the old primary's WAL past what the replica replayed (pg_waldump):
        the transactions a failover to the replica loses. Call before the promotion."""
        replayed = self.replica.value("SELECT pg_last_wal_replay_lsn()")
        done = subprocess.run(
            as_owner([str(self.bindir / "pg_waldump"), "-p", str(self.primary.data / "pg_wal"),
                      "-s", replayed, "-r", "Transaction"]),
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        # It reads up to the end of the WAL, where it stops on the first invalid record
        # (exit status 1): only a dump that read nothing is a failure.
        if done.returncode != 0 and not done.stdout:
            raise RuntimeError(f"pg_waldump from {replayed} failed:\n{done.stderr}")
        return sum(1 for line in done.stdout.splitlines() if "desc: COMMIT" in line)

    def promote(self, timeout: float = 60.0) -> None:
        self.replica.run("pg_ctl", "promote", "-w", "-t", str(int(timeout)), "-D",
                         str(self.replica.data), timeout=timeout + 10)  # fmt: skip
        assert self.replica.value("SELECT pg_is_in_recovery()") == "f", "promotion did not end"

    def switchover(self, timeout: float = 60.0) -> str:
        """Stop the primary cleanly (fast shutdown: sessions end, a shutdown checkpoint is
        written and sent), wait until the replica has replayed it, then promote the replica.
        Returns the proof that nothing was lost: the checkpoint and the replica's replay LSN."""
        process = self.processes["primary"]
        os.killpg(process.pid, signal.SIGINT)
        process.wait(timeout)
        control = self.primary.run("pg_controldata", "-D", str(self.primary.data))
        state = re.search(r"Database cluster state:\s+(.+)", control)
        assert state and state.group(1).strip() == "shut down", control
        checkpoint = re.search(r"Latest checkpoint location:\s+(\S+)", control)
        assert checkpoint, control
        deadline = time.monotonic() + timeout
        while True:
            replayed = self.replica.value("SELECT pg_last_wal_replay_lsn()")
            if _lsn(replayed) > _lsn(checkpoint.group(1)):
                break
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"the replica replayed up to {replayed}, short of the old primary's "
                    f"shutdown checkpoint at {checkpoint.group(1)}: a switchover would lose "
                    "commits"
                )
            time.sleep(0.2)
        self.promote(timeout)
        return f"replica replayed {replayed} > old primary's shutdown checkpoint {checkpoint[1]}"

    def repoint(self) -> None:
        """The forwarder now leads to the replica; connections to the old primary are cut."""
        self.forwarder.repoint(self.replica.port)

    # -- what each server holds --------------------------------------------------------------
    def positions(self, node: Node, group: str, topic: str) -> dict[int, int]:
        """partition -> stored next offset, read on `node` itself."""
        rows = node.query(
            f"SELECT partition, next_offset FROM consumer_offsets "
            f"WHERE group_id = '{group}' AND topic = '{topic}'",
            DATABASE,
        )
        return {int(partition): int(offset) for partition, offset in rows}


@contextlib.contextmanager
def replicated_postgres(log_dir: Path) -> Iterator[ReplicatedPostgres]:
    """A migrated primary streaming to an asynchronous replica, and a forwarder to the
    primary; all stopped at exit."""
    with server_directory() as directory, forwarding(target_port=0) as forwarder:
        pair = ReplicatedPostgres(directory, log_dir, forwarder)
        forwarder.repoint(pair.primary.port)
        try:
            pair.start()
            yield pair
        finally:
            pair.stop()
