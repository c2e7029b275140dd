"""Rolling deploys and rollbacks under expand/contract (MIGRATIONS.md).

"This release" is the checkout. "The next release" is a copy of its alembic.ini and
migrations/ with extra revisions, which the service uses when ALEMBIC_CONFIG names it. The old
code never sees the next release's files: it decides from the database alone.
"""

from __future__ import annotations

import asyncio
import shutil
import time
from pathlib import Path

import asyncpg
import pytest

from service.cli.exit_codes import ExitCode
from service.kafka.topics import ensure_topics
from service.postgres.schema_gate import code_lineage
from testbed.events import record, upsert
from testbed.publish import publish
from tests.conftest import ROOT, TEST_DATABASE, _recreate_database, make_settings
from tests.support.cli import run_service, service_env
from tests.support.consumer import ConsumerProcess
from tests.support.services import PostgresEndpoint

HEAD = code_lineage()[-1]
EXPAND = "a11ce5e0e001"
CONTRACT = "c0a7ac7e0002"

EXPAND_FILE = f'''"""next release: products.sku, nullable (expand)"""
import sqlalchemy as sa
from alembic import op

revision = "{EXPAND}"
down_revision = "{HEAD}"
branch_labels = None
depends_on = None
compatible_with = "{HEAD}"


def upgrade() -> None:
    op.add_column("products", sa.Column("sku", sa.String(64), nullable=True))


def downgrade() -> None:
    op.drop_column("products", "sku")
'''

# No compatible_with: a contract, only code that knows it may run.
CONTRACT_FILE = f'''"""next release: products.description renamed to details (contract)"""
from alembic import op

revision = "{CONTRACT}"
down_revision = "{EXPAND}"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.alter_column("products", "description", new_column_name="details")


def downgrade() -> None:
    op.alter_column("products", "details", new_column_name="description")
'''


def next_release(where: Path, *revisions: str) -> Path:
    """A copy of this release's migrations plus `revisions`; returns its alembic.ini."""
    shutil.copy(ROOT / "alembic.ini", where / "alembic.ini")
    shutil.copytree(
        ROOT / "service" / "postgres" / "migrations",
        where / "migrations",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    for number, source in enumerate(revisions):
        (where / "migrations" / "versions" / f"9999_next_{number}.py").write_text(source)
    return where / "alembic.ini"


@pytest.fixture
def db(pg_server: PostgresEndpoint) -> PostgresEndpoint:
    """A fresh database migrated by this release (to HEAD)."""
    name = f"{TEST_DATABASE}_rolling"
    asyncio.run(_recreate_database(pg_server, name))
    pg = PostgresEndpoint(pg_server.host, pg_server.port, pg_server.user, pg_server.password, name)
    result = run_service(service_env(pg), "migrate")
    assert result.returncode == 0, result.stderr
    return pg


async def _state(pg: PostgresEndpoint) -> tuple[list[str], list[tuple[str, str]], set[str]]:
    connection = await asyncpg.connect(pg.url(driver="postgresql"))
    try:
        versions = [r[0] for r in await connection.fetch("SELECT version_num FROM alembic_version")]
        markers = [
            (r[0], r[1])
            for r in await connection.fetch(
                "SELECT revision, min_code_revision FROM schema_compatibility"
            )
        ]
        columns = {
            r[0]
            for r in await connection.fetch(
                "SELECT column_name FROM information_schema.columns WHERE table_name = 'products'"
            )
        }
        return versions, markers, columns
    finally:
        await connection.close()


async def _this_release_applies_an_event(
    pg: PostgresEndpoint, kafka: str, names: dict[str, str], tmp_path: Path
) -> str:
    """Run this release's consumer (`python -m service run`) until it wrote one event; return
    its log."""
    settings = make_settings(pg, kafka, names)
    await ensure_topics(settings)
    await publish(kafka, settings.kafka_topic, [record(upsert(7, 1, name="rolled", quantity=3))])
    consumer = ConsumerProcess(settings, tmp_path)
    consumer.start()
    try:
        connection = await asyncpg.connect(pg.url(driver="postgresql"))
        try:
            deadline = time.monotonic() + 90
            row = None
            while row is None and time.monotonic() < deadline and consumer.alive():
                row = await connection.fetchrow("SELECT name, quantity FROM products WHERE id = 7")
                await asyncio.sleep(0.3)
        finally:
            await connection.close()
        assert row is not None and tuple(row) == ("rolled", 3), consumer.tail()
        assert consumer.stop() == 0, consumer.tail()
        return consumer.log_path.read_text()
    finally:
        consumer.kill()


def _refusal(result: object) -> str:
    """The one-line refusal of a process that must not start."""
    code, stderr = result.returncode, result.stderr  # type: ignore[attr-defined]
    assert code == ExitCode.REFUSED, stderr
    assert "Traceback" not in stderr, stderr
    return str(stderr).strip().splitlines()[-1]


async def test_this_release_runs_on_the_next_releases_expanded_schema(
    db: PostgresEndpoint, kafka: str, names: dict[str, str], tmp_path: Path
) -> None:
    ini = next_release(tmp_path, EXPAND_FILE)
    migrated = run_service(service_env(db, ALEMBIC_CONFIG=str(ini)), "migrate")
    assert migrated.returncode == 0, migrated.stderr
    versions, markers, columns = await _state(db)
    assert (versions, markers) == ([EXPAND], [(EXPAND, HEAD)])
    assert "sku" in columns

    log = await _this_release_applies_an_event(db, kafka, names, tmp_path)
    assert f"database schema is at revision {EXPAND}, newer than this release's head" in log


async def test_this_release_refuses_a_contracted_schema_until_it_is_rolled_back(
    db: PostgresEndpoint, kafka: str, names: dict[str, str], tmp_path: Path
) -> None:
    next_env = service_env(
        db, ALEMBIC_CONFIG=str(next_release(tmp_path, EXPAND_FILE, CONTRACT_FILE))
    )
    migrated = run_service(next_env, "migrate")
    assert migrated.returncode == 0, migrated.stderr
    versions, markers, columns = await _state(db)
    assert (versions, markers) == ([CONTRACT], [(CONTRACT, CONTRACT)])
    assert "details" in columns and "description" not in columns

    line = _refusal(run_service(service_env(db), "run"))
    assert line == (
        f"error: database schema is at revision {CONTRACT}, newer than this release (head "
        f"{HEAD}), and needs code from revision {CONTRACT} on; deploy the release that has "
        f"revision {CONTRACT}, or downgrade the database with that release "
        f"(`python -m service migrate --downgrade {HEAD}`)"
    )

    # The rollback the message names, run with the next release's files.
    rolled_back = run_service(next_env, "migrate", "--downgrade", HEAD)
    assert rolled_back.returncode == 0, rolled_back.stderr
    versions, markers, columns = await _state(db)
    assert versions == [HEAD] and [m[0] for m in markers] == [HEAD]
    assert {"description", "sku", "details"} & columns == {"description"}

    log = await _this_release_applies_an_event(db, kafka, names, tmp_path)
    assert f"database schema is at this release's head {HEAD}" in log


async def test_the_next_release_refuses_this_releases_schema(
    db: PostgresEndpoint, tmp_path: Path
) -> None:
    next_env = service_env(db, ALEMBIC_CONFIG=str(next_release(tmp_path, EXPAND_FILE)))
    line = _refusal(run_service(next_env, "run"))
    assert line == (
        f"error: database schema is at revision {HEAD}, behind this release's head {EXPAND}; "
        "run `python -m service migrate` (alembic upgrade head) first"
    )
    versions, _, columns = await _state(db)
    assert versions == [HEAD] and "sku" not in columns
