"""The consumer's role reads and writes its tables and can change nothing else.

The database belongs to the owner role (POSTGRES_MIGRATION_USER, created by
scripts/local-stack), `python -m service migrate` runs as the owner and grants the consumer's
role (POSTGRES_USER). Where the server user is a superuser and no owner role is configured
(testcontainers), the superuser owns the database and the test makes a consumer role of its own.
"""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import Iterator

import asyncpg
import pytest
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine

from service.cli.exit_codes import ExitCode
from service.postgres.retention import purge_once
from service.postgres.schema_gate import head_revision, require_current_schema
from service.write_path.retry import Backoff
from service.write_path.transaction import WritePath
from testbed.events import adjust, record, upsert
from testbed.write_path import MemoryDeadLetterSink, guard
from tests.conftest import TEST_DATABASE, _recreate_database
from tests.support.cli import run_service, service_env
from tests.support.grants import effective_grants
from tests.support.services import PostgresEndpoint
from tests.support.write_path import SimpleRecord, process

DATABASE = f"{TEST_DATABASE}_privileges"

# Each must fail with SQLSTATE 42501 (insufficient_privilege) for the consumer's role.
FORBIDDEN = [
    "CREATE TABLE intruder (id int)",
    "CREATE SCHEMA intruder",
    "CREATE INDEX intruder ON products (name)",
    "CREATE VIEW intruder AS SELECT 1",
    "DROP TABLE products",
    "DROP TABLE consumer_offsets",
    "ALTER TABLE products ADD COLUMN intruder text",
    "ALTER TABLE products DROP CONSTRAINT ck_products_quantity_non_negative",
    "TRUNCATE products",
    "TRUNCATE processed_events",
    "DELETE FROM alembic_version",
    "UPDATE schema_compatibility SET min_code_revision = 'x'",
    "DROP TABLE alembic_version",
    # Row privileges no statement of the service uses (revision 82a68c906ffc).
    "DELETE FROM products",
    "DELETE FROM consumer_offsets",
    "UPDATE processed_events SET processed_at = now()",
    "CREATE TEMPORARY TABLE intruder (id int)",
]


async def _connect(role: PostgresEndpoint) -> asyncpg.Connection:
    return await asyncpg.connect(role.url(driver="postgresql"))


async def _roles(pg_server: PostgresEndpoint) -> tuple[PostgresEndpoint, PostgresEndpoint]:
    """(owner, consumer) on the server's default database."""
    owner_user = os.environ.get("POSTGRES_MIGRATION_USER")
    if owner_user and owner_user != pg_server.user:
        owner = PostgresEndpoint(
            pg_server.host,
            pg_server.port,
            owner_user,
            os.environ.get("POSTGRES_MIGRATION_PASSWORD", ""),
            pg_server.database,
        )
        return owner, pg_server
    connection = await _connect(pg_server)
    try:
        if not await connection.fetchval("SELECT rolsuper FROM pg_roles WHERE rolname = user"):
            pytest.fail(
                "the least-privilege test needs an owner role: set POSTGRES_MIGRATION_USER and "
                "POSTGRES_MIGRATION_PASSWORD (`scripts/local-stack env` exports them)",
                pytrace=False,
            )
        app_user, app_password = f"{DATABASE}_app", secrets.token_hex(12)
        await connection.execute(f'DROP ROLE IF EXISTS "{app_user}"')
        await connection.execute(f"CREATE ROLE \"{app_user}\" LOGIN PASSWORD '{app_password}'")
    finally:
        await connection.close()
    app = PostgresEndpoint(
        pg_server.host, pg_server.port, app_user, app_password, pg_server.database
    )
    return pg_server, app


def _on(role: PostgresEndpoint, database: str) -> PostgresEndpoint:
    return PostgresEndpoint(role.host, role.port, role.user, role.password, database)


@pytest.fixture(scope="module")
def roles(pg_server: PostgresEndpoint) -> Iterator[tuple[PostgresEndpoint, PostgresEndpoint]]:
    """(owner, consumer) on a fresh database the owner created and migrated."""
    owner, app = asyncio.run(_roles(pg_server))
    asyncio.run(_recreate_database(owner, DATABASE))
    owner, app = _on(owner, DATABASE), _on(app, DATABASE)
    migrated = run_service(service_env(app, owner), "migrate")
    assert migrated.returncode == 0, migrated.stderr
    assert f"granted {app.user} exactly: alembic_version (SELECT), consumer_offsets" in (
        migrated.stderr
    ), migrated.stderr
    yield owner, app


@pytest.mark.parametrize("statement", FORBIDDEN)
async def test_the_consumer_role_cannot_change_the_schema(
    roles: tuple[PostgresEndpoint, PostgresEndpoint], statement: str
) -> None:
    _, app = roles
    connection = await _connect(app)
    try:
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await connection.execute(statement)
    finally:
        await connection.close()


async def test_the_consumer_role_runs_the_whole_write_path(
    roles: tuple[PostgresEndpoint, PostgresEndpoint],
) -> None:
    owner, app = roles
    engine = create_async_engine(app.url())
    try:
        await require_current_schema(engine)  # reads alembic_version and the marker
        write_path = WritePath(
            async_sessionmaker(engine),
            MemoryDeadLetterSink(),
            "least-privilege",
            Backoff(0.01, 0.1),
            guard=guard(group_id="least-privilege"),
        )
        pairs = [record(upsert(41, 1, quantity=10)), record(adjust(41, -4)), record(upsert(41, 2))]
        batch = [SimpleRecord("t", 0, offset, k, v) for offset, (k, v) in enumerate(pairs)]
        report = await process(write_path, batch)
        assert report.applied == 3
        assert (await process(write_path, batch)).redelivered == 3  # positions read back
        forgotten = await purge_once(async_sessionmaker(engine), retention_s=0)  # DELETE
    finally:
        await engine.dispose()

    connection = await _connect(owner)
    try:
        product = await connection.fetchrow("SELECT quantity, version FROM products WHERE id = 41")
        position = await connection.fetchval(
            "SELECT next_offset FROM consumer_offsets WHERE group_id = 'least-privilege'"
        )
        version = await connection.fetchval("SELECT version_num FROM alembic_version")
    finally:
        await connection.close()
    assert tuple(product) == (6, 2)
    assert position == 3
    assert forgotten == 1  # the adjustment's claim: upserts claim no id
    assert version == head_revision()


async def test_migrate_names_a_missing_consumer_role_and_changes_nothing(
    roles: tuple[PostgresEndpoint, PostgresEndpoint],
) -> None:
    owner, app = roles
    database = f"{DATABASE}_norole"
    await _recreate_database(_on(owner, owner.database), database)
    ghost = PostgresEndpoint(app.host, app.port, "no_such_consumer_role", "x", database)
    result = await asyncio.to_thread(
        run_service, service_env(ghost, _on(owner, database)), "migrate"
    )

    assert result.returncode == ExitCode.REFUSED, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        "error: migration refused, nothing changed: the consumer's role 'no_such_consumer_role' "
        "(POSTGRES_USER) does not exist; create it (scripts/local-stack up does, and so does "
        "docker-compose's postgres init script) or set POSTGRES_USER to the role the consumer "
        "logs in as"
    )
    connection = await _connect(_on(owner, database))
    try:
        assert await connection.fetchval("SELECT to_regclass('alembic_version')") is None
        assert await connection.fetchval("SELECT to_regclass('products')") is None
    finally:
        await connection.close()


# What the consumer's statements need (tests/integration/test_statement_privileges.py shows it).
EXACT = {
    ("schema public", "USAGE"),
    *(("products", p) for p in ("SELECT", "INSERT", "UPDATE")),
    *(("consumer_offsets", p) for p in ("SELECT", "INSERT", "UPDATE")),
    *(("processed_events", p) for p in ("SELECT", "INSERT", "DELETE")),
    ("alembic_version", "SELECT"),
    ("schema_compatibility", "SELECT"),
}
# What migrate granted before revision 82a68c906ffc declared the consumer's privileges.
BEFORE = EXACT | {
    ("products", "DELETE"),
    ("consumer_offsets", "DELETE"),
    ("processed_events", "UPDATE"),
    ("database", "TEMPORARY"),
}


async def _grants(owner: PostgresEndpoint, role: str) -> set[tuple[str, str]]:
    connection = await _connect(owner)
    try:
        return await effective_grants(connection, role)
    finally:
        await connection.close()


async def test_a_downgrade_gives_the_previous_grants_back_and_an_upgrade_takes_them(
    roles: tuple[PostgresEndpoint, PostgresEndpoint],
) -> None:
    owner, app = roles
    assert await _grants(owner, app.user) == EXACT
    env = service_env(app, owner)
    try:
        down = await asyncio.to_thread(run_service, env, "migrate", "--downgrade", "3c5f0a9d2b71")
        assert down.returncode == 0, down.stderr
        assert await _grants(owner, app.user) == BEFORE
    finally:
        up = await asyncio.to_thread(run_service, env, "migrate")
        assert up.returncode == 0, up.stderr
    assert await _grants(owner, app.user) == EXACT


async def _fresh_database(owner: PostgresEndpoint, suffix: str) -> PostgresEndpoint:
    """A database of the owner's, empty, on the same server."""
    database = f"{DATABASE}_{suffix}"
    await _recreate_database(_on(owner, owner.database), database)
    return _on(owner, database)


async def _migrate(app: PostgresEndpoint, owner: PostgresEndpoint, *args: str) -> tuple[int, str]:
    result = await asyncio.to_thread(run_service, service_env(app, owner), "migrate", *args)
    return result.returncode, result.stderr


async def _marker_version(owner: PostgresEndpoint) -> tuple[int, ...]:
    """The row versions (xmin) of alembic_version and the marker: a rewrite changes them."""
    connection = await _connect(owner)
    try:
        rows = await connection.fetch(
            "SELECT xmin::text::bigint AS x FROM alembic_version "
            "UNION ALL SELECT xmin::text::bigint FROM schema_compatibility"
        )
        return tuple(row["x"] for row in rows)
    finally:
        await connection.close()


async def _as_owner(owner: PostgresEndpoint, *statements: str) -> None:
    connection = await _connect(owner)
    try:
        for statement in statements:
            await connection.execute(statement)
    finally:
        await connection.close()


async def test_a_new_consumer_role_gets_its_grants_from_migrate_on_a_database_at_head(
    roles: tuple[PostgresEndpoint, PostgresEndpoint],
) -> None:
    """The service first ran as the owner alone (POSTGRES_USER = the owner: nobody to grant);
    then the operator configures a consumer role of its own and runs `migrate` again."""
    owner, app = roles
    database = await _fresh_database(owner, "newrole")
    code, stderr = await _migrate(database, database)
    assert code == 0, stderr
    consumer = _on(app, database.database)
    assert not await _grants(database, consumer.user) & {("products", "SELECT")}

    code, stderr = await _migrate(consumer, database)

    assert code == 0, stderr
    assert await _grants(database, consumer.user) == EXACT
    assert f"granted {consumer.user} exactly: alembic_version (SELECT)" in stderr, stderr


async def test_migrate_at_head_names_a_consumer_role_that_does_not_exist(
    roles: tuple[PostgresEndpoint, PostgresEndpoint],
) -> None:
    owner, app = roles
    database = await _fresh_database(owner, "ghost")
    code, stderr = await _migrate(database, database)
    assert code == 0, stderr
    before = await _marker_version(database)
    ghost = PostgresEndpoint(app.host, app.port, "no_such_consumer_role", "x", database.database)

    code, stderr = await _migrate(ghost, database)

    assert code == ExitCode.REFUSED, stderr
    assert (
        stderr.strip()
        .splitlines()[-1]
        .startswith(
            "error: migration refused, nothing changed: the consumer's role 'no_such_consumer_role'"
        )
    ), stderr
    assert await _marker_version(database) == before


async def test_migrate_restores_a_grant_changed_by_hand(
    roles: tuple[PostgresEndpoint, PostgresEndpoint],
) -> None:
    owner, app = roles
    database = await _fresh_database(owner, "byhand")
    consumer = _on(app, database.database)
    code, stderr = await _migrate(consumer, database)
    assert code == 0, stderr
    await _as_owner(
        database,
        f'REVOKE INSERT ON products FROM "{consumer.user}"',
        f'GRANT TRUNCATE ON consumer_offsets TO "{consumer.user}"',
        f'GRANT SELECT ON processed_events TO "{consumer.user}" WITH GRANT OPTION',
        f'GRANT TEMPORARY ON DATABASE "{database.database}" TO "{consumer.user}"',
    )
    changed = await _grants(database, consumer.user)
    assert ("products", "INSERT") not in changed and ("consumer_offsets", "TRUNCATE") in changed

    code, stderr = await _migrate(consumer, database)

    assert code == 0, stderr
    assert await _grants(database, consumer.user) == EXACT
    connection = await _connect(database)
    try:  # the grant option is gone too: the role cannot hand its privileges on
        grantable = await connection.fetchval(
            "SELECT count(*) FROM information_schema.role_table_grants "
            "WHERE grantee = $1 AND is_grantable = 'YES'",
            consumer.user,
        )
    finally:
        await connection.close()
    assert grantable == 0


async def _set_read_only(owner: PostgresEndpoint, on: bool) -> None:
    value = "on" if on else "off"
    await _as_owner(
        owner,
        "SET default_transaction_read_only = off",  # this session's
        f'ALTER DATABASE "{owner.database}" SET default_transaction_read_only = {value}',
    )


@pytest.mark.parametrize(
    ("args", "expected"),
    [((), EXACT), (("--downgrade", "3c5f0a9d2b71"), BEFORE)],
    ids=["head", "before-declarations"],
)
async def test_migrate_with_nothing_to_do_and_the_grants_intact_writes_nothing(
    roles: tuple[PostgresEndpoint, PostgresEndpoint],
    args: tuple[str, ...],
    expected: set[tuple[str, str]],
) -> None:
    """Every session of the database is read-only: any write (a GRANT, the marker) fails.
    Below the first declaration the grants are the older releases' (read back the same way)."""
    owner, app = roles
    database = await _fresh_database(owner, "intact")
    consumer = _on(app, database.database)
    code, stderr = await _migrate(consumer, database)
    assert code == 0, stderr
    code, stderr = await _migrate(consumer, database, *args)
    assert code == 0, stderr
    before = await _marker_version(database)
    await _set_read_only(database, True)
    try:
        code, stderr = await _migrate(consumer, database, *args)
    finally:
        await _set_read_only(database, False)

    assert code == 0, stderr
    assert "granted" not in stderr, stderr
    assert await _marker_version(database) == before
    assert await _grants(database, consumer.user) == expected


async def test_migrate_at_head_names_a_read_only_server_when_the_grants_differ(
    roles: tuple[PostgresEndpoint, PostgresEndpoint],
) -> None:
    owner, app = roles
    database = await _fresh_database(owner, "readonly")
    consumer = _on(app, database.database)
    code, stderr = await _migrate(consumer, database)
    assert code == 0, stderr
    await _as_owner(database, f'REVOKE INSERT ON products FROM "{consumer.user}"')
    await _set_read_only(database, True)
    try:
        code, stderr = await _migrate(consumer, database)
    finally:
        await _set_read_only(database, False)

    assert code == ExitCode.UNAVAILABLE, stderr
    assert "Traceback" not in stderr, stderr
    line = stderr.strip().splitlines()[-1]
    assert line.startswith("error: PostgreSQL at POSTGRES_HOST takes no writes now ("), line
    assert ("products", "INSERT") not in await _grants(database, consumer.user)
