"""POSTGRES_SSLMODE and friends reach the engine and Alembic, against a server that accepts
TCP logins only over TLS (`hostssl`, `hostnossl ... reject`) with its own certificate."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from service.cli.exit_codes import ExitCode
from service.config.settings import Settings
from service.postgres.engine import make_engine
from service.postgres.schema_gate import head_revision
from testbed.environment import settings_env
from tests.support.certs import make_ca
from tests.support.cli import run_cli
from tests.support.consumer import ROOT
from tests.support.secure_postgres import SecuredPostgres, secured_postgres

PASSWORD = "pg-tls-Pw7@q/x"


@pytest.fixture(scope="module")
def tls_pg(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecuredPostgres]:
    with secured_postgres(tmp_path_factory.mktemp("pg-pki"), PASSWORD) as pg:
        yield pg


def pg_settings(
    tls_pg: SecuredPostgres, kafka: str, sslmode: str = "verify-full", **fields: object
) -> Settings:
    values = {
        **tls_pg.settings(sslmode, host=str(fields.pop("host", "localhost"))),
        "kafka_bootstrap_servers": kafka,
    }
    values.update(fields)
    return Settings(**values)  # type: ignore[arg-type]


async def session_facts(settings: Settings) -> tuple[bool, str, str | None]:
    """(TLS in use, current_user, alembic revision) seen by the service's own engine."""
    engine = make_engine(settings)
    try:
        async with engine.connect() as connection:
            encrypted = await connection.scalar(
                text("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
            )
            user = await connection.scalar(text("SELECT current_user"))
            has_table = await connection.scalar(text("SELECT to_regclass('alembic_version')"))
            revision = (
                await connection.scalar(text("SELECT version_num FROM alembic_version"))
                if has_table
                else None
            )
    finally:
        await engine.dispose()
    return bool(encrypted), str(user), revision


def last_line(result: subprocess.CompletedProcess[str]) -> str:
    assert "Traceback" not in result.stderr, result.stderr
    return result.stderr.strip().splitlines()[-1]


def test_verify_full_reaches_alembic_and_the_engine(tls_pg: SecuredPostgres, kafka: str) -> None:
    settings = pg_settings(tls_pg, kafka)
    migrate = run_cli(settings, "migrate")
    assert migrate.returncode == 0, migrate.stderr
    # The plain alembic CLI goes through migrations/env.py too.
    current = subprocess.run(
        [sys.executable, "-m", "alembic", "current"],
        cwd=ROOT,
        env=settings_env(settings),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert current.returncode == 0, current.stderr
    assert head_revision() in current.stdout
    assert asyncio.run(session_facts(settings)) == (True, tls_pg.user, head_revision())


def test_require_encrypts_without_a_ca(tls_pg: SecuredPostgres, kafka: str) -> None:
    settings = pg_settings(tls_pg, kafka, "require", host="127.0.0.1")
    encrypted, user, _ = asyncio.run(session_facts(settings))
    assert (encrypted, user) == (True, tls_pg.user)


def test_verify_ca_checks_the_ca_but_not_the_host(tls_pg: SecuredPostgres, kafka: str) -> None:
    # The certificate names only localhost: verify-ca accepts 127.0.0.1, verify-full does not.
    verify_ca = pg_settings(tls_pg, kafka, "verify-ca", host="127.0.0.1")
    assert asyncio.run(session_facts(verify_ca))[0] is True
    result = run_cli(pg_settings(tls_pg, kafka, "verify-full", host="127.0.0.1"), "show")
    assert result.returncode == ExitCode.UNAVAILABLE
    error = last_line(result)
    assert error.startswith("error: the server's TLS certificate was not accepted ("), error
    assert "not valid for '127.0.0.1'" in error and "POSTGRES_HOST" in error


def test_plain_text_is_refused_with_the_fix(tls_pg: SecuredPostgres, kafka: str) -> None:
    for command in ("migrate", "show"):
        result = run_cli(pg_settings(tls_pg, kafka, "disable"), command)
        assert result.returncode == ExitCode.UNAVAILABLE, result.stderr
        error = last_line(result)
        assert error.startswith("error: PostgreSQL requires TLS for this login ("), error
        assert "no encryption" in error and "set POSTGRES_SSLMODE=verify-full" in error


def test_another_ca_is_not_trusted(tls_pg: SecuredPostgres, kafka: str, tmp_path: Path) -> None:
    stranger = make_ca(tmp_path / "other-ca", "some other CA")
    result = run_cli(pg_settings(tls_pg, kafka, postgres_sslrootcert=stranger.cert), "migrate")
    assert result.returncode == ExitCode.UNAVAILABLE
    error = last_line(result)
    assert error.startswith("error: the server's TLS certificate was not accepted ("), error
    assert "POSTGRES_SSLROOTCERT" in error


def test_client_certificate_login(tls_pg: SecuredPostgres, kafka: str) -> None:
    with_cert = pg_settings(
        tls_pg,
        kafka,
        postgres_user=tls_pg.cert_user,
        postgres_db="postgres",
        postgres_sslcert=tls_pg.client.cert,
        postgres_sslkey=tls_pg.client.key,
        postgres_sslpassword=tls_pg.client_key_password,
    )
    encrypted, user, _ = asyncio.run(session_facts(with_cert))
    assert (encrypted, user) == (True, tls_pg.cert_user)

    without = pg_settings(tls_pg, kafka, postgres_user=tls_pg.cert_user, postgres_db="postgres")
    result = run_cli(without, "show")
    assert result.returncode == ExitCode.UNAVAILABLE
    error = last_line(result)
    assert error.startswith("error: PostgreSQL wants a valid client certificate"), error
    assert "POSTGRES_SSLCERT" in error
