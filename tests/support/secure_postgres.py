"""A throwaway PostgreSQL that accepts TCP logins only over TLS (`hostssl`), with a server
certificate from a test CA that names `localhost` only (not 127.0.0.1), so that verify-ca
and verify-full differ observably.

Roles: `user` logs in with a password and owns `database`; `cert_user` logs in with a
client certificate (the `cert` method: its common name is the role).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg

from tests.support.certs import CertificateAuthority, Issued, make_ca
from tests.support.postgres_cluster import Cluster, ServerTls, throwaway_postgres

HBA = [
    "hostssl all sink_cert 127.0.0.1/32 cert",
    "hostssl all all 127.0.0.1/32 scram-sha-256",
    "hostnossl all all 127.0.0.1/32 reject",
]


@dataclass(frozen=True)
class SecuredPostgres:
    cluster: Cluster
    ca: CertificateAuthority
    user: str
    password: str
    database: str
    cert_user: str
    client: Issued
    client_key_password: str

    def settings(self, sslmode: str = "verify-full", host: str = "localhost") -> dict[str, Any]:
        """Settings fields for logging in as `user` (by password)."""
        fields: dict[str, Any] = {
            "postgres_host": host,
            "postgres_port": self.cluster.port,
            "postgres_user": self.user,
            "postgres_password": self.password,
            "postgres_db": self.database,
            "postgres_sslmode": sslmode,
            # One role for migrations and the consumer, whatever the environment names.
            "postgres_migration_user": None,
            "postgres_migration_password": None,
        }
        if sslmode in ("verify-ca", "verify-full"):
            fields["postgres_sslrootcert"] = self.ca.cert
        return fields

    async def superuser(self) -> asyncpg.Connection:
        return await asyncpg.connect(
            host=str(self.cluster.socket_dir),
            port=self.cluster.port,
            user="postgres",
            database="postgres",
        )


async def _create_roles(pg: SecuredPostgres) -> None:
    connection = await pg.superuser()
    try:
        password = pg.password.replace("'", "''")
        await connection.execute(f"CREATE ROLE {pg.user} LOGIN PASSWORD '{password}'")
        await connection.execute(f"CREATE DATABASE {pg.database} OWNER {pg.user}")
        await connection.execute(f"CREATE ROLE {pg.cert_user} LOGIN")
    finally:
        await connection.close()


@contextlib.contextmanager
def secured_postgres(
    directory: Path,
    password: str,
    user: str = "inventory_tls",
    client_key_password: str = "pg-client-key-pass",
) -> Iterator[SecuredPostgres]:
    ca = make_ca(directory, "inventory-sink test PostgreSQL CA")
    server = ca.issue("postgres-server", "localhost", server=True, hosts=("localhost",))
    client = ca.issue("sink_cert", "sink_cert", server=False, key_password=client_key_password)
    with throwaway_postgres(
        hba=HBA, tls=ServerTls(cert=server.cert, key=server.key, ca=ca.cert)
    ) as cluster:
        pg = SecuredPostgres(
            cluster=cluster,
            ca=ca,
            user=user,
            password=password,
            database=user,
            cert_user="sink_cert",
            client=client,
            client_key_password=client_key_password,
        )
        asyncio.run(_create_roles(pg))
        yield pg
