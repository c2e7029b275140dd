"""PostgreSQL transport security from the settings: asyncpg's `ssl` connect argument.

The engine (service.db) and Alembic (migrations/env.py) both take `connect_args(settings)`,
so the consumer and the migrations connect the same way.
"""

from __future__ import annotations

from typing import Any

from service.config.settings import PostgresSettings
from service.config.tls import TlsFiles, client_context


def connect_args(settings: PostgresSettings) -> dict[str, Any]:
    """{"ssl": ...} for asyncpg.connect, following libpq's sslmode meanings.

    disable, allow and prefer are passed to asyncpg as they are (allow and prefer fall back
    to plain text). require encrypts without checking the certificate; verify-ca checks it
    against POSTGRES_SSLROOTCERT (or the system's CAs); verify-full also checks that it
    names POSTGRES_HOST. A client certificate (POSTGRES_SSLCERT/POSTGRES_SSLKEY) is
    presented with require, verify-ca and verify-full.
    """
    mode = settings.postgres_sslmode
    if mode in ("disable", "allow", "prefer"):
        return {"ssl": mode}
    files = TlsFiles(
        ca_file=settings.postgres_sslrootcert,
        cert_file=settings.postgres_sslcert,
        key_file=settings.postgres_sslkey,
        key_password=settings.postgres_sslpassword,
        ca_variable="POSTGRES_SSLROOTCERT",
        cert_variable="POSTGRES_SSLCERT",
        key_variable="POSTGRES_SSLKEY",
        password_variable="POSTGRES_SSLPASSWORD",
    )
    verify = mode in ("verify-ca", "verify-full")
    return {"ssl": client_context(files, verify=verify, check_hostname=mode == "verify-full")}
