"""A throwaway PostgreSQL cluster, for tests that need a server configured their own way
(`hostssl` only with a certificate made at test time; a statement log of one role).

It uses the server binaries `scripts/local-stack up` installs, listens on 127.0.0.1 and a
Unix socket in its own directory, and is stopped when the context exits. The shared cluster
is never touched. As root, the server runs as the `postgres` user (PostgreSQL refuses root).
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from tests.support.brokers import free_port
from tests.support.processes import serving


def server_bindir() -> Path:
    if override := os.environ.get("PG_BINDIR"):
        return Path(override)
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4])
    )
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    if initdb:
        return Path(initdb).parent
    raise RuntimeError(
        "PostgreSQL server binaries (initdb, postgres) are missing; `scripts/local-stack up` "
        "installs them, or set PG_BINDIR"
    )


@dataclass(frozen=True)
class Cluster:
    port: int
    socket_dir: Path
    log: Path
    host: str = "127.0.0.1"


def as_owner(command: list[str]) -> list[str]:
    """`command` as the user the server runs as (PostgreSQL refuses to run as root)."""
    return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else command


def hand_over(path: Path) -> None:
    """Give the server's own files to the user it runs as."""
    if os.geteuid() == 0:
        record = pwd.getpwnam("postgres")
        os.chown(path, record.pw_uid, record.pw_gid)


@dataclass(frozen=True)
class ServerTls:
    """The server's certificate and key, and the CA client certificates are checked against."""

    cert: Path
    key: Path
    ca: Path


@contextlib.contextmanager
def server_directory() -> Iterator[Path]:
    """A temporary directory for data and sockets, removed at exit. Under the system's temp
    directory, not pytest's (whose parent is private to root): the server user must reach it."""
    with tempfile.TemporaryDirectory(prefix="test-postgres-") as tmp:
        directory = Path(tmp)
        os.chmod(directory, 0o755)
        yield directory


def init_data_dir(bindir: Path, data: Path) -> None:
    """initdb `data` (created here) for the superuser `postgres`, trusted on every local login."""
    data.mkdir()
    hand_over(data)
    initdb = subprocess.run(
        as_owner([str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust",
                  "--no-sync", "-E", "UTF8", "--locale=C"]),
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    if initdb.returncode != 0:
        raise RuntimeError(f"initdb failed:\n{initdb.stdout}\n{initdb.stderr}")


@contextlib.contextmanager
def throwaway_postgres(
    *,
    hba: Sequence[str],
    tls: ServerTls | None = None,
    settings: Mapping[str, str] | None = None,
    timeout: float = 60.0,
) -> Iterator[Cluster]:
    """Start a cluster whose pg_hba.conf is `local all all trust` followed by `hba`.

    The superuser is `postgres`, reachable without a password over the Unix socket only.
    With `tls`, the server speaks TLS too. `settings` are further server settings (`-c`).
    """
    bindir = server_bindir()
    with (
        server_directory() as directory,
        _cluster(directory, bindir, tls, hba, dict(settings or {}), timeout) as cluster,
    ):
        yield cluster


@contextlib.contextmanager
def _cluster(
    directory: Path,
    bindir: Path,
    tls: ServerTls | None,
    hba: Sequence[str],
    settings: dict[str, str],
    timeout: float,
) -> Iterator[Cluster]:
    data, sockets, log = directory / "pgdata", directory / "sockets", directory / "postgres.log"
    sockets.mkdir()
    hand_over(sockets)
    init_data_dir(bindir, data)
    if tls is not None:
        for source, name in ((tls.cert, "server.crt"), (tls.key, "server.key"), (tls.ca, "ca.crt")):
            target = data / name
            shutil.copyfile(source, target)
            os.chmod(target, 0o600)
            hand_over(target)
    (data / "pg_hba.conf").write_text("\n".join(["local all all trust", *hba]) + "\n")
    port = free_port()
    options = {
        "port": str(port),
        "listen_addresses": "127.0.0.1",
        "unix_socket_directories": str(sockets),
        "fsync": "off",
        "shared_buffers": "16MB",
        "max_connections": "40",
    }
    if tls is not None:
        options.update(
            ssl="on", ssl_cert_file="server.crt", ssl_key_file="server.key", ssl_ca_file="ca.crt"
        )
    options.update(settings)
    arguments = [arg for key, value in options.items() for arg in ("-c", f"{key}={value}")]
    command = as_owner([str(bindir / "postgres"), "-D", str(data), *arguments])
    ready = b"ready to accept connections"
    # SIGINT: PostgreSQL's fast shutdown.
    with serving(command, log, ready, "throwaway PostgreSQL", timeout=timeout, stop=signal.SIGINT):
        yield Cluster(port=port, socket_dir=sockets, log=log)
